"""Training checkpoints: a thin layer over `orbax.checkpoint.CheckpointManager`.

One checkpoint (one step) holds three things:

* ``state``: any pytree of jax/numpy arrays and Python scalars (parameters, optimizer states,
  a target critic, PRNG keys). Typed keys (``jax.random.key``) are stored as their key data
  and re-wrapped on restore; raw ``uint32`` keys are ordinary arrays. ``restore`` rebuilds the
  state in the structure, dtypes and shardings of a template: concrete arrays, or abstract
  ``jax.ShapeDtypeStruct`` leaves that carry shardings (a sharded run restores sharded, each
  host reading only its shards; an abstract leaf without a sharding restores onto the default
  device, whatever mesh or number of processes saved it). Every process of a multi-process
  run calls `save` and `restore` alike: orbax writes each array's shards from the processes
  that hold them, and host numpy values (`extras`, which must then be the same on every
  process) and the JSON items once, from process 0.
* ``extras``: a pytree of host numpy arrays (a replay buffer's storage, counters), restored as
  numpy without a template.
* ``metadata``: a JSON-able dict (iteration, config, ``bit_generator.state`` of a numpy
  generator, counters). numpy scalars and arrays are converted to Python numbers and lists;
  tuples come back as lists.

Typical use::

  ckpt = checkpoint.Checkpointer(workdir / "checkpoints", max_to_keep=3)
  ckpt.save(step, state={"params": params, "opt": opt_state, "rng": key},
            extras=buffer.state_dict(), metadata={"np_rng": rng.bit_generator.state})
  ...
  state, extras, metadata = ckpt.restore(state_template=abstract_state)  # latest step

Saves are asynchronous (`save` returns once arrays are copied to host; `wait` blocks until
they are on disk) and atomic: orbax writes a step into ``<step>.orbax-checkpoint-tmp*`` and
renames it when complete, so a process killed mid-save leaves the previous step as the
latest one; the incomplete directory is ignored and removed when a `Checkpointer` is next
opened on the directory.

Besides orbax's own items each step holds a small ``layout`` JSON item (key paths, shapes,
dtypes, PRNG implementations of the state leaves) so that a template that does not match the
checkpoint fails with the first mismatching key path instead of restoring silently wrong.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

_TMP_MARKER = ".orbax-checkpoint-tmp"
_LAYOUT_VERSION = 1


def _is_key(x: Any) -> bool:
  """True for typed PRNG key arrays and abstract values with a key dtype."""
  dtype = getattr(x, "dtype", None)
  return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def _json_default(obj: Any) -> Any:
  if isinstance(obj, np.generic):
    return obj.item()
  if isinstance(obj, np.ndarray):
    return obj.tolist()
  raise TypeError(f"metadata value of type {type(obj).__name__} is not JSON-serialisable: "
                  f"{obj!r:.80}")


def _placeholder(path: Any, x: Any, record: dict[str, Any]) -> Any:
  """Replaces a zero-size array (orbax refuses them) by one element; records what it was."""
  if np.size(x) or not hasattr(x, "shape"):
    return x
  record[jax.tree_util.keystr(path)] = (list(x.shape), str(x.dtype))
  return np.zeros((1,) * len(x.shape), x.dtype)


def _empty(shape: list[int], dtype: str) -> np.ndarray:
  return np.zeros(tuple(shape), jax.numpy.dtype(dtype))


def _sharding_or_default(leaf: Any) -> jax.sharding.Sharding:
  """The leaf's sharding; the default device for an abstract leaf without one (so that a
  checkpoint saved by any mesh or number of processes restores onto one device)."""
  sharding = getattr(leaf, "sharding", None)
  return sharding if sharding is not None else jax.sharding.SingleDeviceSharding(
      jax.local_devices()[0])


def _layout_of(state: Any) -> dict[str, Any]:
  """Key paths, shapes and dtypes of the state's leaves (typed keys: logical shape)."""
  leaves, _ = jax.tree_util.tree_flatten_with_path(state)
  paths, shapes, dtypes, impls = [], [], [], []
  for path, leaf in leaves:
    paths.append(jax.tree_util.keystr(path))
    shapes.append(list(np.shape(leaf)))
    dtypes.append(str(leaf.dtype) if hasattr(leaf, "dtype") else type(leaf).__name__)
    impls.append(str(jax.random.key_impl(leaf)) if _is_key(leaf) else None)
  return {"version": _LAYOUT_VERSION, "paths": paths, "shapes": shapes, "dtypes": dtypes,
          "key_impls": impls}


class Checkpointer:
  """Saves and restores (state, extras, metadata) per step under one directory.

  Args:
    directory: where the step directories live (created if missing).
    max_to_keep: newest complete checkpoints kept; older ones are deleted (None keeps all).
    save_interval_steps: `save` writes on steps that are multiples of this, on the first save
      into a directory without checkpoints, on a preemption signal, and when forced.
  """

  def __init__(self, directory: str | os.PathLike, *, max_to_keep: int | None = 3,
               save_interval_steps: int = 1):
    path = os.fspath(directory)
    self.directory = path if "://" in path else os.path.abspath(path)  # gs:// etc. stay as is
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, save_interval_steps=save_interval_steps, create=True,
        cleanup_tmp_directories=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def __enter__(self) -> "Checkpointer":
    return self

  def __exit__(self, *exc: Any) -> None:
    self.close()

  def latest_step(self) -> int | None:
    """The newest complete step, or None when there is none."""
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    """Complete steps on disk, ascending (incomplete, interrupted saves are not listed)."""
    return sorted(self._manager.all_steps())

  def wait(self) -> None:
    """Blocks until pending asynchronous saves are on disk."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    """Waits for pending saves and releases the manager's resources."""
    self._manager.close()

  def save(self, step: int, *, state: Any, extras: Mapping[str, Any] | None = None,
           metadata: Mapping[str, Any] | None = None, force: bool = False) -> bool:
    """Starts saving a checkpoint for `step`; returns whether one is being written.

    Nothing is written when `step` is not a multiple of `save_interval_steps`, unless
    `force`, or the directory has no checkpoint yet. The call returns once device arrays are
    copied to host; call `wait` before depending on the files. Arrays in `state` / `extras`
    may be modified after it returns.
    """
    leaves = jax.tree.leaves(state)
    if not leaves:
      raise ValueError("Checkpointer.save: `state` has no leaves to save.")
    layout = _layout_of(state)
    for path, size in zip(layout["paths"], (np.size(x) for x in leaves)):
      if size == 0:
        raise ValueError(f"Checkpointer.save: state leaf {path} has zero size; orbax cannot "
                         "save empty arrays (keep them in `extras`).")
    layout["has_extras"] = extras is not None and bool(jax.tree.leaves(extras))
    layout["empty_extras"] = {}
    if layout["has_extras"]:
      extras = jax.tree_util.tree_map_with_path(
          lambda p, x: _placeholder(p, x, layout["empty_extras"]), dict(extras))
    layout["has_metadata"] = metadata is not None
    meta_json = json.loads(json.dumps(dict(metadata or {}), default=_json_default))
    stored_state = jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, state)
    items = {
        "state": ocp.args.StandardSave(stored_state),
        "layout": ocp.args.JsonSave(layout),
        "metadata": ocp.args.JsonSave(meta_json),
    }
    if layout["has_extras"]:
      items["extras"] = ocp.args.StandardSave(dict(extras))
    return self._manager.save(step, args=ocp.args.Composite(**items), force=force)

  def _resolve_step(self, step: int | None) -> int:
    if step is None:
      step = self.latest_step()
      if step is None:
        root = epath.Path(self.directory)
        incomplete = [p.name for p in (root.iterdir() if root.exists() else [])
                      if _TMP_MARKER in p.name]
        note = f" (incomplete saves present: {sorted(incomplete)})" if incomplete else ""
        raise FileNotFoundError(f"No complete checkpoint in {self.directory}{note}.")
      return step
    if step not in self._manager.all_steps():
      raise FileNotFoundError(f"No checkpoint for step {step} in {self.directory}; "
                              f"available steps: {self.all_steps()}.")
    return step

  def read_metadata(self, step: int | None = None) -> dict[str, Any] | None:
    """The metadata dict of the latest (or given) step, without reading any array."""
    step = self._resolve_step(step)
    out = self._manager.restore(step, args=ocp.args.Composite(
        layout=ocp.args.JsonRestore(), metadata=ocp.args.JsonRestore()))
    return out["metadata"] if out["layout"]["has_metadata"] else None

  def restore(self, step: int | None = None, *, state_template: Any
              ) -> tuple[Any, dict[str, Any] | None, dict[str, Any] | None]:
    """Returns (state, extras, metadata) of the latest step, or of `step`.

    `state` takes the tree structure, dtypes and shardings of `state_template`, whose leaves
    may be arrays, numpy arrays (restored as numpy), Python scalars or `jax.ShapeDtypeStruct`s
    (typed PRNG keys: a key dtype). `extras` (numpy) and `metadata` are None when the step
    was saved without them.

    Raises:
      FileNotFoundError: no complete checkpoint (naming the directory), or no such step.
      ValueError: the template's key paths, shapes or key types differ from the checkpoint's
        (naming the first mismatching key path).
    """
    step = self._resolve_step(step)
    layout = self._manager.restore(step, args=ocp.args.Composite(
        layout=ocp.args.JsonRestore()))["layout"]
    target = self._restore_target(state_template, layout, step)
    items = {"state": ocp.args.StandardRestore(target), "metadata": ocp.args.JsonRestore()}
    if layout["has_extras"]:
      items["extras"] = ocp.args.StandardRestore()
    out = self._manager.restore(step, args=ocp.args.Composite(**items))
    impls = layout["key_impls"]
    flat, treedef = jax.tree.flatten(out["state"])
    flat = [jax.random.wrap_key_data(x, impl=impl) if impl is not None else x
            for x, impl in zip(flat, impls)]
    state = jax.tree.unflatten(treedef, flat)
    extras = None
    if layout["has_extras"]:
      empty = layout["empty_extras"]
      extras = jax.tree_util.tree_map_with_path(
          lambda p, x: _empty(*empty[k]) if (k := jax.tree_util.keystr(p)) in empty else x,
          dict(out["extras"]))
    metadata = out["metadata"] if layout["has_metadata"] else None
    return state, extras, metadata

  def _restore_target(self, template: Any, layout: Mapping[str, Any], step: int) -> Any:
    """Checks `template` against the saved layout; returns the orbax restore target."""
    where = f"checkpoint step {step} in {self.directory}"
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    paths = [jax.tree_util.keystr(p) for p, _ in leaves]
    saved = list(layout["paths"])
    if paths != saved:
      saved_set, tmpl_set = set(saved), set(paths)
      for i, (a, b) in enumerate(zip(paths, saved)):
        if a != b:
          break
      else:
        i = min(len(paths), len(saved))
      if i < len(saved) and saved[i] not in tmpl_set:
        msg = f"key path {saved[i]} is in the checkpoint but not in the template"
      elif i < len(paths) and paths[i] not in saved_set:
        msg = f"key path {paths[i]} is in the template but not in the checkpoint"
      else:
        msg = (f"leaf order differs at key path {paths[i] if i < len(paths) else saved[i]} "
               f"(different container types?)")
      raise ValueError(f"state_template does not match the tree of {where}: {msg}.")
    target = []
    for (_, leaf), path, shape, dtype, impl in zip(
        leaves, paths, layout["shapes"], layout["dtypes"], layout["key_impls"]):
      if tuple(np.shape(leaf)) != tuple(shape):
        raise ValueError(f"state_template leaf {path} has shape {tuple(np.shape(leaf))}, "
                         f"{where} has {tuple(shape)}.")
      if _is_key(leaf) != (impl is not None):
        raise ValueError(f"state_template leaf {path} has dtype {leaf.dtype}, {where} has "
                         f"{dtype} (typed PRNG keys and raw key data do not mix).")
      if impl is not None:
        if str(leaf.dtype) != dtype:
          raise ValueError(f"state_template leaf {path} is a {leaf.dtype} key, {where} "
                           f"holds a {dtype} key.")
        if isinstance(leaf, jax.Array):
          data = jax.random.key_data(leaf)
          target.append(jax.ShapeDtypeStruct(data.shape, data.dtype, sharding=data.sharding))
        else:
          data_shape = jax.eval_shape(jax.random.key_data, leaf).shape
          target.append(jax.ShapeDtypeStruct(data_shape, np.uint32,
                                             sharding=_sharding_or_default(leaf)))
      elif isinstance(leaf, jax.Array):
        target.append(jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=leaf.sharding))
      elif isinstance(leaf, jax.ShapeDtypeStruct) and leaf.sharding is None:
        target.append(jax.ShapeDtypeStruct(leaf.shape, leaf.dtype,
                                           sharding=_sharding_or_default(leaf)))
      else:
        target.append(leaf)
    return jax.tree.unflatten(treedef, target)
