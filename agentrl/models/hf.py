"""Hugging Face checkpoints: import into our parameter trees, export decoders back.

A checkpoint directory holds ``config.json`` and ``model.safetensors`` (or a sharded
``model.safetensors.index.json``). Each ``model_type`` is one ``Family`` in ``FAMILIES``
(`agentrl.models.hf_families`, re-exported here): its config fields, which tensor becomes
which parameter, which tensors are ignored.

    config, params = load_pretrained("/ckpt/qwen2-0.5b", dtype="bfloat16")  # numpy leaves
    logits = Decoder(config).apply({"params": params}, tokens, positions, mask).logits
    save_pretrained(config, params, "/tmp/export")  # AutoModelForCausalLM reads it
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any

import flax.linen as nn
import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from agentrl.models.decoder import DecoderConfig
from agentrl.models.hf_families import (  # noqa: F401  (re-exported: the families)
    FAMILIES, Config, Family, PathLike, Tensor, get_family, param_shapes)

# ----------------------------------------------------------------------------------------
# Import and export
# ----------------------------------------------------------------------------------------


def _read_json(path: PathLike) -> dict:
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def load_config(path: PathLike) -> Config:
  """Our config for the checkpoint directory `path` (or its config.json file)."""
  path = os.fspath(path)
  hf = _read_json(os.path.join(path, "config.json") if os.path.isdir(path) else path)
  return get_family(hf.get("model_type")).read_config(hf)


def _shard_files(path: str) -> dict[str, str]:
  """{checkpoint tensor name: safetensors file} for a single-file or sharded checkpoint."""
  single = os.path.join(path, "model.safetensors")
  index = os.path.join(path, "model.safetensors.index.json")
  if os.path.exists(single):
    with safe_open(single, framework="numpy") as f:
      return {name: single for name in f.keys()}
  if os.path.exists(index):
    return {name: os.path.join(path, file)
            for name, file in _read_json(index)["weight_map"].items()}
  raise FileNotFoundError(f"No model.safetensors or model.safetensors.index.json in {path}.")


def load_pretrained(path: PathLike, *, dtype: Any = None) -> tuple[Config, Any]:
  """Reads a Hugging Face checkpoint directory into (our config, our parameter tree).

  The tree has the structure of ``init_params`` / ``init_encoder_params``; leaves are numpy
  arrays in `dtype` (e.g. "bfloat16"), which also becomes the config's dtype and
  param_dtype (None: float32, whatever the checkpoint stores). A tensor we need but cannot
  find raises KeyError; a wrongly shaped one, or one we neither use nor ignore, ValueError.
  """
  path = os.fspath(path)
  hf = _read_json(os.path.join(path, "config.json"))
  family = get_family(hf.get("model_type"))
  config = family.read_config(hf)
  if dtype is not None:
    config = config.replace(dtype=jnp.dtype(dtype).name, param_dtype=jnp.dtype(dtype).name)
  structure, shapes = param_shapes(config)

  files: dict[str, tuple[str, str]] = {}  # unprefixed name -> (checkpoint name, file)
  for name, file in _shard_files(path).items():
    key = family.strip(name)
    if key in files:
      raise ValueError(f"Checkpoint tensors {files[key][0]!r} and {name!r} both map to {key!r}.")
    files[key] = (name, file)
  wanted = family.tensors(config)
  unexpected = sorted(files[k][0] for k in set(files) - {t.name for t in wanted}
                      if not family.is_ignored(k, config))
  if unexpected:
    raise ValueError(f"{len(unexpected)} checkpoint tensors in {path} are not used by "
                     f"{hf['model_type']} with this config: {unexpected[:10]}")
  prefixed = any(name != key for key, (name, _) in files.items())

  flat = {}
  with contextlib.ExitStack() as stack:
    handles = {}
    for t in wanted:
      if t.name not in files:
        name = family.full_name(t.name) if prefixed else t.name
        raise KeyError(f"Tensor {name!r} (parameter {t.path}) is missing from the checkpoint "
                       f"in {path}.")
      name, file = files[t.name]
      if file not in handles:
        handles[file] = stack.enter_context(safe_open(file, framework="numpy"))
      shape = shapes[t.path].shape
      expected, found = t.hf_shape(shape), tuple(handles[file].get_slice(name).get_shape())
      if found != expected:
        raise ValueError(f"Tensor {name!r} (parameter {t.path}) has shape {found}; expected "
                         f"{expected}.")
      x = t.to_ours(handles[file].get_tensor(name), shape)
      flat[t.path] = np.ascontiguousarray(x, dtype=jnp.dtype(config.param_dtype))

  params = flax.traverse_util.unflatten_dict(flat, sep="/")
  if jax.tree_util.tree_structure(params) != structure:  # a table out of step with a module
    raise AssertionError(f"{hf['model_type']}: imported tree lacks parameters "
                         f"{sorted(set(shapes) - set(flat))[:10]}.")
  return config, params


def save_pretrained(config: DecoderConfig, params: Any, path: PathLike, *, dtype: Any = None,
                    extra_config: dict | None = None) -> None:
  """Writes decoder `params` as a Hugging Face checkpoint (config.json + model.safetensors).

  The model_type is gpt2 for learned positions, qwen2 for a Q/K/V bias without an output
  bias, llama otherwise. `dtype` casts the tensors (default: as they are). `extra_config`
  entries (e.g. token ids) go into config.json; bos/eos/pad ids are otherwise None.
  """
  if not isinstance(config, DecoderConfig):
    raise TypeError(f"save_pretrained exports decoders only, got {type(config).__name__}.")
  model_type = ("gpt2" if config.position == "learned" else
                "qwen2" if config.qkv_bias and not config.out_bias else "llama")
  family = FAMILIES[model_type]
  hf = family.write_config(config)
  structure, shapes = param_shapes(config)
  params = nn.meta.unbox(params)
  if jax.tree_util.tree_structure(params) != structure:
    raise ValueError("params do not have the tree structure of init_params(config).")
  flat = flax.traverse_util.flatten_dict(jax.device_get(params), sep="/")
  tensors = {}
  for t in family.tensors(config):
    x = np.asarray(flat[t.path], dtype=None if dtype is None else jnp.dtype(dtype))
    if x.shape != shapes[t.path].shape:
      raise ValueError(f"Parameter {t.path} has shape {x.shape}; expected "
                       f"{shapes[t.path].shape}.")
    tensors[family.full_name(t.name)] = t.to_hf(x)
  hf.update({"bos_token_id": None, "eos_token_id": None, "pad_token_id": None,
             "dtype": next(iter(tensors.values())).dtype.name, **(extra_config or {})})
  os.makedirs(path, exist_ok=True)
  with open(os.path.join(path, "config.json"), "w", encoding="utf-8") as f:
    json.dump(hf, f, indent=2, sort_keys=True)
  save_file(tensors, os.path.join(path, "model.safetensors"), metadata={"format": "pt"})
