"""Hugging Face model families: how each checkpoint ``model_type`` maps onto our modules.

A ``Family`` in ``FAMILIES`` says how to read our config from ``config.json``, which
checkpoint tensor becomes which parameter (``Tensor``: its name, our parameter path, and how
its layout differs from ours), which tensors are deliberately ignored, and, for the families
we export, how to write ``config.json`` back. Families: llama, qwen2, gpt2 (decoders, import
and export) and bert, roberta (encoders, import only). Reading and writing checkpoint files
is `agentrl.models.hf`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from typing import Any, Callable

import flax.traverse_util
import jax
import numpy as np

from agentrl.models import decoder as decoder_lib
from agentrl.models import encoder as encoder_lib
from agentrl.models.decoder import DecoderConfig
from agentrl.models.encoder import EncoderConfig

Config = DecoderConfig | EncoderConfig
PathLike = str | os.PathLike

# ----------------------------------------------------------------------------------------
# Tensor mapping
# ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Tensor:
  """One checkpoint tensor and the parameter it becomes.

  ``name`` is the checkpoint name without the family's prefix, ``path`` the parameter path
  ("layer_0/attn/q_proj/kernel"). A checkpoint keeps every tensor as a matrix or a flat
  vector: ``split`` is how many leading axes of our parameter form its rows (None: flat),
  and ``transpose`` marks torch ``Linear`` weights, stored [out, in].
  """

  name: str
  path: str
  split: int | None = None
  transpose: bool = False

  def hf_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
    if self.split is None:
      return (math.prod(shape),)
    rows, cols = math.prod(shape[:self.split]), math.prod(shape[self.split:])
    return (cols, rows) if self.transpose else (rows, cols)

  def to_ours(self, x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return (x.T if self.transpose else x).reshape(shape)

  def to_hf(self, x: np.ndarray) -> np.ndarray:
    flat = self.hf_shape(x.shape)
    x = x.reshape(flat[::-1] if self.transpose else flat)
    return np.ascontiguousarray(x.T if self.transpose else x)


def _linear(name: str, path: str, split: int = 1, bias: bool = False) -> list[Tensor]:
  """A torch Linear [out, in] (+ bias) as a kernel whose first `split` axes are inputs."""
  out = [Tensor(f"{name}.weight", f"{path}/kernel", split, transpose=True)]
  return out + ([Tensor(f"{name}.bias", f"{path}/bias")] if bias else [])


def _conv1d(name: str, path: str, split: int = 1) -> list[Tensor]:
  """GPT-2's Conv1D: the weight is already [in, out]; always with a bias."""
  return [Tensor(f"{name}.weight", f"{path}/kernel", split),
          Tensor(f"{name}.bias", f"{path}/bias")]


def _norm(name: str, path: str, bias: bool) -> list[Tensor]:
  out = [Tensor(f"{name}.weight", f"{path}/scale")]
  return out + ([Tensor(f"{name}.bias", f"{path}/bias")] if bias else [])


def _embed(name: str, path: str) -> Tensor:
  return Tensor(name, f"{path}/embedding", split=1)


@dataclasses.dataclass(frozen=True)
class Family:
  """How one Hugging Face ``model_type`` maps onto our modules.

  ``read_config``: config.json dict -> our config. ``tensors``: our config -> every tensor
  we use. ``prefix``: the trunk prefix, optional on import, written on export to all but
  the ``lm_head``. ``ignore``: regexes of (unprefixed) checkpoint tensors we deliberately
  drop. ``write_config``: our config -> config.json dict, for families we export.
  """

  read_config: Callable[[dict], Config]
  tensors: Callable[[Config], list[Tensor]]
  prefix: str = ""
  ignore: tuple[str, ...] = ()
  write_config: Callable[[Any], dict] | None = None

  def strip(self, name: str) -> str:
    return name[len(self.prefix):] if self.prefix and name.startswith(self.prefix) else name

  def full_name(self, name: str) -> str:
    return name if name.startswith("lm_head.") else self.prefix + name

  def is_ignored(self, name: str, config: Config) -> bool:
    if getattr(config, "tie_embeddings", False) and name == "lm_head.weight":
      return True  # some exports keep a copy of the tied embedding
    return any(re.fullmatch(p, name) for p in self.ignore)


def _rope(hf: dict) -> dict:
  """RoPE settings from either layout: transformers 5 `rope_parameters`, or the older
  top-level `rope_theta` with `rope_scaling`. Types we do not implement, and partial RoPE,
  are refused, never ignored."""
  dicts = [d for d in (hf.get("rope_scaling"), hf.get("rope_parameters")) if d]
  out = {}
  for rope in dicts[::-1]:  # an old-style rope_scaling, when present, takes priority
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind not in ("default", "linear", "llama3") or rope.get("partial_rotary_factor", 1.0) != 1.0:
      raise NotImplementedError(
          f"{hf['model_type']}: RoPE scaling type {kind!r} (partial_rotary_factor="
          f"{rope.get('partial_rotary_factor', 1.0)}) is not implemented; supported: "
          "'default', 'linear', 'llama3'.")
    if kind != "default":
      out.update(rope_scaling=kind, rope_factor=float(rope["factor"]))
    if kind == "llama3":
      out.update(rope_low_freq_factor=float(rope["low_freq_factor"]),
                 rope_high_freq_factor=float(rope["high_freq_factor"]),
                 rope_original_max_position=int(rope["original_max_position_embeddings"]))
    if "rope_theta" in rope:
      out["rope_theta"] = float(rope["rope_theta"])
  out.setdefault("rope_theta", float(hf.get("rope_theta", 10000.0)))
  return out


def _rope_parameters(cfg: DecoderConfig) -> dict:
  """Our RoPE settings in transformers' `rope_parameters` layout."""
  params = {"rope_type": cfg.rope_scaling or "default", "rope_theta": cfg.rope_theta}
  if cfg.rope_scaling:
    params["factor"] = cfg.rope_factor
  if cfg.rope_scaling == "llama3":
    params.update(low_freq_factor=cfg.rope_low_freq_factor,
                  high_freq_factor=cfg.rope_high_freq_factor,
                  original_max_position_embeddings=cfg.rope_original_max_position)
  return params


def _activation(hf: dict, key: str, allowed: dict[str, str]) -> str:
  """Our name for the activation in `hf[key]` (default: the first of `allowed`)."""
  act = hf.get(key, next(iter(allowed)))
  if act not in allowed:
    raise NotImplementedError(f"{hf['model_type']}: {key}={act!r} is not supported; expected "
                              f"one of {sorted(allowed)}.")
  return allowed[act]


def _require(cfg: DecoderConfig, model_type: str, **expected) -> None:
  for field, value in expected.items():
    if getattr(cfg, field) != value:
      raise ValueError(f"Cannot export as {model_type}: needs {field}={value!r}, the config "
                       f"has {getattr(cfg, field)!r}.")


# ----------------------------------------------------------------------------------------
# Families
# ----------------------------------------------------------------------------------------


def _llama_config(hf: dict) -> DecoderConfig:
  """Llama and Qwen2 (which always has a Q/K/V bias and may have sliding-window layers)."""
  _activation(hf, "hidden_act", {"silu": "swiglu"})
  is_qwen2 = hf["model_type"] == "qwen2"
  if is_qwen2 and ("sliding_attention" in hf["layer_types"] if hf.get("layer_types") else
                   hf.get("use_sliding_window") and hf.get("sliding_window") is not None
                   and hf["num_hidden_layers"] > hf.get("max_window_layers", 28)):
    raise NotImplementedError("qwen2: sliding-window attention layers are not implemented.")
  heads, bias = hf["num_attention_heads"], bool(hf.get("attention_bias", False))
  return DecoderConfig.llama(
      vocab_size=hf["vocab_size"], hidden_size=hf["hidden_size"],
      num_layers=hf["num_hidden_layers"], num_heads=heads,
      num_kv_heads=hf.get("num_key_value_heads") or heads,
      head_dim=hf.get("head_dim") or hf["hidden_size"] // heads,
      mlp_dim=hf["intermediate_size"],
      max_position_embeddings=hf.get("max_position_embeddings", 2048),
      norm_eps=hf.get("rms_norm_eps", 1e-6), **_rope(hf),
      qkv_bias=is_qwen2 or bias, out_bias=bias, mlp_bias=bool(hf.get("mlp_bias", False)),
      tie_embeddings=bool(hf.get("tie_word_embeddings", False)))


def _llama_tensors(cfg: DecoderConfig) -> list[Tensor]:
  out = [_embed("embed_tokens.weight", "embed")]
  for i in range(cfg.num_layers):
    hf, ours = f"layers.{i}", f"layer_{i}"
    out += _norm(f"{hf}.input_layernorm", f"{ours}/attn_norm", bias=False)
    for proj in ("q_proj", "k_proj", "v_proj"):
      out += _linear(f"{hf}.self_attn.{proj}", f"{ours}/attn/{proj}", bias=cfg.qkv_bias)
    out += _linear(f"{hf}.self_attn.o_proj", f"{ours}/attn/o_proj", 2, cfg.out_bias)
    out += _norm(f"{hf}.post_attention_layernorm", f"{ours}/mlp_norm", bias=False)
    for proj in ("gate_proj", "up_proj", "down_proj"):
      out += _linear(f"{hf}.mlp.{proj}", f"{ours}/mlp/{proj}", bias=cfg.mlp_bias)
  out += _norm("norm", "final_norm", bias=False)
  return out + ([] if cfg.tie_embeddings else _linear("lm_head", "lm_head"))


def _llama_write(cfg: DecoderConfig, model_type: str) -> dict:
  _require(cfg, model_type, norm="rms", position="rope", activation="swiglu", fused_qkv=False)
  hf = dict(
      architectures=["Qwen2ForCausalLM" if model_type == "qwen2" else "LlamaForCausalLM"],
      model_type=model_type, vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size,
      intermediate_size=cfg.mlp_size, num_hidden_layers=cfg.num_layers,
      num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.kv_heads,
      head_dim=cfg.head_size, hidden_act="silu",
      max_position_embeddings=cfg.max_position_embeddings, rms_norm_eps=cfg.norm_eps,
      rope_theta=cfg.rope_theta,  # older readers; transformers 5 reads rope_parameters
      rope_parameters=_rope_parameters(cfg),
      tie_word_embeddings=cfg.tie_embeddings)
  if model_type == "qwen2":
    _require(cfg, model_type, qkv_bias=True, out_bias=False, mlp_bias=False)
    hf.update(use_sliding_window=False, max_window_layers=cfg.num_layers)
  else:
    _require(cfg, model_type, out_bias=cfg.qkv_bias)  # Llama's attention_bias covers both
    hf.update(attention_bias=cfg.qkv_bias, mlp_bias=cfg.mlp_bias)
  return hf


_GPT2_ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu"}


def _gpt2_config(hf: dict) -> DecoderConfig:
  if hf.get("scale_attn_by_inverse_layer_idx", False) or not hf.get("scale_attn_weights", True):
    raise NotImplementedError("gpt2: only attention scaled by 1/sqrt(head_dim) is supported "
                              "(scale_attn_weights=True, scale_attn_by_inverse_layer_idx=False).")
  return DecoderConfig.gpt2(
      vocab_size=hf["vocab_size"], hidden_size=hf["n_embd"], num_layers=hf["n_layer"],
      num_heads=hf["n_head"], mlp_dim=hf.get("n_inner") or 4 * hf["n_embd"],
      max_position_embeddings=hf["n_positions"], norm_eps=hf.get("layer_norm_epsilon", 1e-5),
      activation=_activation(hf, "activation_function", _GPT2_ACTIVATIONS),
      tie_embeddings=bool(hf.get("tie_word_embeddings", True)))


def _gpt2_tensors(cfg: DecoderConfig) -> list[Tensor]:
  out = [_embed("wte.weight", "embed"), _embed("wpe.weight", "pos_embed")]
  for i in range(cfg.num_layers):
    hf, ours = f"h.{i}", f"layer_{i}"
    out += _norm(f"{hf}.ln_1", f"{ours}/attn_norm", bias=True)
    out += _conv1d(f"{hf}.attn.c_attn", f"{ours}/attn/qkv_proj")
    out += _conv1d(f"{hf}.attn.c_proj", f"{ours}/attn/o_proj", split=2)
    out += _norm(f"{hf}.ln_2", f"{ours}/mlp_norm", bias=True)
    out += _conv1d(f"{hf}.mlp.c_fc", f"{ours}/mlp/up_proj")
    out += _conv1d(f"{hf}.mlp.c_proj", f"{ours}/mlp/down_proj")
  out += _norm("ln_f", "final_norm", bias=True)
  return out + ([] if cfg.tie_embeddings else _linear("lm_head", "lm_head"))


def _gpt2_write(cfg: DecoderConfig) -> dict:
  _require(cfg, "gpt2", norm="layer", fused_qkv=True, qkv_bias=True, out_bias=True,
           mlp_bias=True, head_size=cfg.hidden_size // cfg.num_heads)
  if cfg.activation not in ("gelu_tanh", "gelu"):
    raise ValueError(f"Cannot export as gpt2: activation {cfg.activation!r}.")
  return dict(
      architectures=["GPT2LMHeadModel"], model_type="gpt2", vocab_size=cfg.vocab_size,
      n_embd=cfg.hidden_size, n_layer=cfg.num_layers, n_head=cfg.num_heads,
      n_inner=cfg.mlp_size, n_positions=cfg.max_position_embeddings,
      activation_function="gelu_new" if cfg.activation == "gelu_tanh" else "gelu",
      layer_norm_epsilon=cfg.norm_eps, scale_attn_weights=True,
      tie_word_embeddings=cfg.tie_embeddings)


_ENCODER_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh"}


def _encoder_config(hf: dict) -> EncoderConfig:
  """BERT and RoBERTa (import only)."""
  positions, causal = hf.get("position_embedding_type", "absolute"), hf.get("is_decoder", False)
  if positions != "absolute" or causal:
    raise NotImplementedError(
        f"{hf['model_type']}: position_embedding_type={positions!r}, is_decoder={causal}; only "
        "bidirectional encoders with absolute positions are supported.")
  preset = EncoderConfig.roberta if hf["model_type"] == "roberta" else EncoderConfig.bert
  pad = hf.get("pad_token_id")
  return preset(
      vocab_size=hf["vocab_size"], hidden_size=hf["hidden_size"],
      num_layers=hf["num_hidden_layers"], num_heads=hf["num_attention_heads"],
      mlp_dim=hf["intermediate_size"], max_position_embeddings=hf["max_position_embeddings"],
      type_vocab_size=hf.get("type_vocab_size", 2), norm_eps=hf.get("layer_norm_eps", 1e-12),
      activation=_activation(hf, "hidden_act", _ENCODER_ACTIVATIONS),
      **({} if pad is None else {"pad_token_id": pad}))


def _encoder_tensors(cfg: EncoderConfig) -> list[Tensor]:
  out = [_embed("embeddings.word_embeddings.weight", "token_embed"),
         _embed("embeddings.position_embeddings.weight", "pos_embed"),
         _embed("embeddings.token_type_embeddings.weight", "type_embed")]
  out += _norm("embeddings.LayerNorm", "embed_norm", bias=True)
  for i in range(cfg.num_layers):
    hf, ours = f"encoder.layer.{i}", f"layer_{i}"
    for proj, name in (("q_proj", "query"), ("k_proj", "key"), ("v_proj", "value")):
      out += _linear(f"{hf}.attention.self.{name}", f"{ours}/attn/{proj}", bias=True)
    out += _linear(f"{hf}.attention.output.dense", f"{ours}/attn/o_proj", 2, bias=True)
    out += _norm(f"{hf}.attention.output.LayerNorm", f"{ours}/attn_norm", bias=True)
    out += _linear(f"{hf}.intermediate.dense", f"{ours}/mlp/up_proj", bias=True)
    out += _linear(f"{hf}.output.dense", f"{ours}/mlp/down_proj", bias=True)
    out += _norm(f"{hf}.output.LayerNorm", f"{ours}/mlp_norm", bias=True)
  return out


_ROPE_BUFFERS = (r"(layers\.\d+\.self_attn\.)?rotary_emb\.inv_freq",)  # in old exports
_GPT2_BUFFERS = (r"h\.\d+\.attn\.bias", r"h\.\d+\.attn\.masked_bias")  # causal-mask buffers
# Buffers, the tanh pooler and pre-training heads: nothing our encoder computes.
_ENCODER_EXTRAS = (r"embeddings\.position_ids", r"embeddings\.token_type_ids", r"pooler\..*",
                   r"cls\..*", r"lm_head\..*")

FAMILIES: dict[str, Family] = {
    "llama": Family(_llama_config, _llama_tensors, "model.", _ROPE_BUFFERS,
                    lambda cfg: _llama_write(cfg, "llama")),
    "qwen2": Family(_llama_config, _llama_tensors, "model.", _ROPE_BUFFERS,
                    lambda cfg: _llama_write(cfg, "qwen2")),
    "gpt2": Family(_gpt2_config, _gpt2_tensors, "transformer.", _GPT2_BUFFERS, _gpt2_write),
    "bert": Family(_encoder_config, _encoder_tensors, "bert.", _ENCODER_EXTRAS),
    "roberta": Family(_encoder_config, _encoder_tensors, "roberta.", _ENCODER_EXTRAS),
}


def get_family(model_type: str | None) -> Family:
  """The registry entry for `model_type`, or a ValueError listing the supported ones."""
  if model_type not in FAMILIES:
    raise ValueError(f"Unsupported model_type {model_type!r}; supported: {sorted(FAMILIES)}.")
  return FAMILIES[model_type]


def param_shapes(config: Config) -> tuple[Any, dict[str, jax.ShapeDtypeStruct]]:
  """The tree structure and the flat {path: shape} of `config`'s parameters."""
  if isinstance(config, DecoderConfig):
    init = lambda rng: decoder_lib.init_params(config, rng)  # noqa: E731
  elif isinstance(config, EncoderConfig):
    init = lambda rng: encoder_lib.init_encoder_params(config, rng)  # noqa: E731
  else:
    raise TypeError(f"No parameter tree for {type(config).__name__}.")
  tree = jax.eval_shape(init, jax.random.PRNGKey(0))
  return jax.tree_util.tree_structure(tree), flax.traverse_util.flatten_dict(tree, sep="/")
