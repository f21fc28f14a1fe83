"""Sharding rules: how parameters, train states and activations named by logical axes are laid
out on the ("data", "fsdp", "tensor") mesh of `agentrl.parallel`.

Parameters of ``agentrl.models.decoder`` carry logical axis names (``vocab``, ``embed``,
``heads``, ``kv``, ``mlp``, ``position``); a rule table (``DEFAULT_RULES``, the flax
``logical_axis_rules`` format, or ``mesh.rules`` of a config through `rules_from_config`)
maps them onto mesh axes. `logical_shardings` lays out a boxed parameter tree,
`state_shardings` a whole train state (optimizer moments and frozen copies mirror their
parameters), and `constrain` an activation inside `activation_layout`.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")  # mesh axes the leading (batch) dimension is split over

LogicalRules = Sequence[tuple[str, str | tuple[str, ...] | None]]

# Logical axis name -> mesh axis (or axes, or None for replicated). For each array
# dimension the first matching rule whose mesh axes are still unused by that array wins.
DEFAULT_RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
    # Activations' batch dimension: split over every data-parallel replica.
    ("batch", ("data", "fsdp")),
    # Hidden size of embeddings, norms and every projection: the FSDP split of weights.
    ("embed", "fsdp"),
    # MLP units: column-parallel up/gate, row-parallel down projection.
    ("mlp", "tensor"),
    # Attention heads (query and key/value): each tensor shard owns whole heads.
    ("heads", "tensor"),
    # Size of one head: kept whole (heads already use the tensor axis).
    ("kv", None),
    # Vocabulary of the embedding table and output layer.
    ("vocab", "tensor"),
    # Rows of the learned position table (GPT-2): replicated, they are few.
    ("position", None),
    # Sequence length of activations: replicated.
    ("length", None),
)


def _is_box(x: Any) -> bool:
  return isinstance(x, nn.meta.AxisMetadata)


def _check_rules(rules: LogicalRules, mesh: Mesh) -> None:
  for logical, axes in rules:
    for axis in (axes,) if isinstance(axes, str) or axes is None else axes:
      if axis is not None and axis not in mesh.axis_names:
        raise ValueError(f"Rule ({logical!r}, {axes!r}) names mesh axis {axis!r}; the mesh "
                         f"has {mesh.axis_names}.")


def _check_leaf(path, leaf: Any, sharding: NamedSharding, known: set[str]) -> None:
  """Every logical name must have a rule and every split dimension must divide evenly."""
  key = jax.tree_util.keystr(path)
  names = tuple(getattr(leaf, "names", ())) if _is_box(leaf) else ()
  missing = [n for n in names if isinstance(n, str) and n not in known]
  if missing:
    raise ValueError(f"Parameter {key}: logical axis {missing[0]!r} has no rule; the rules "
                     f"cover {sorted(known)}.")
  shape = getattr(leaf.unbox() if _is_box(leaf) else leaf, "shape", ())
  for dim, (size, axes) in enumerate(zip(shape, sharding.spec)):
    axes = (axes,) if isinstance(axes, str) else tuple(axes or ())
    parts = math.prod(sharding.mesh.shape[a] for a in axes)
    if size % parts:
      logical = f" ({names[dim]!r})" if dim < len(names) else ""
      raise ValueError(
          f"Parameter {key} of shape {tuple(shape)}: dimension {dim}{logical} of size {size} "
          f"cannot be split {parts} ways over mesh axes {axes}; change the mesh or map that "
          "logical axis to None in the rules.")


def logical_shardings(tree: Any, mesh: Mesh, rules: LogicalRules = DEFAULT_RULES) -> Any:
  """NamedShardings for a pytree of `nn.Partitioned` boxes.

  `tree` is a boxed parameter tree (``init_params(..., boxed=True)``) or its
  ``jax.eval_shape`` (boxes around ShapeDtypeStructs). Unboxed array leaves are
  replicated. The result has the structure of the unboxed tree.
  """
  rules = tuple(tuple(rule) for rule in rules)
  _check_rules(rules, mesh)
  logical_specs = nn.get_partition_spec(tree)
  shardings = nn.logical_to_mesh_sharding(logical_specs, mesh, rules)
  known = {logical for logical, _ in rules}
  jax.tree_util.tree_map_with_path(
      lambda path, leaf, sharding: _check_leaf(path, leaf, sharding, known), tree, shardings,
      is_leaf=_is_box)
  return shardings


def _key_name(key: Any) -> Any:
  """The plain name of one key-path entry: a dict key, attribute name or sequence index."""
  for attr in ("key", "name", "idx"):
    if hasattr(key, attr):
      return getattr(key, attr)
  return str(key)


def _path_names(path) -> tuple[Any, ...]:
  return tuple(_key_name(k) for k in path)


def _mirror_table(logical: Mapping[str, Any], mesh: Mesh, rules: LogicalRules
                  ) -> list[tuple[str, tuple[Any, ...], tuple[int, ...], NamedSharding]]:
  """(tree name, key path inside the tree, shape, sharding) of every leaf of the named trees."""
  table = []
  for name, tree in logical.items():
    shardings = logical_shardings(tree, mesh, rules)
    leaves = jax.tree_util.tree_leaves_with_path(tree, is_leaf=_is_box)
    for (path, leaf), sharding in zip(leaves, jax.tree.leaves(shardings)):
      shape = tuple(np.shape(leaf.unbox() if _is_box(leaf) else leaf))
      table.append((name, _path_names(path), shape, sharding))
  return table


def _mirrored(path: tuple[Any, ...], shape: tuple[int, ...], table) -> NamedSharding | None:
  """The sharding of the named parameter that the leaf at `path` mirrors: same shape, and
  `path` ends with that parameter's key path. A match whose tree name is on `path` wins."""
  matches = [(name in path, len(rel), sharding) for name, rel, rel_shape, sharding in table
             if rel_shape == shape and rel and path[-len(rel):] == rel]
  if not matches:
    return None
  return max(matches, key=lambda m: m[:2])[2]


def state_shardings(state: Any, mesh: Mesh, rules: LogicalRules = DEFAULT_RULES, *,
                    logical: Mapping[str, Any] | None = None) -> Any:
  """NamedShardings for a whole train state (parameters, optimizer states, frozen copies).

  `state` may be concrete or abstract (``jax.eval_shape(algo.init, rng)``). Each leaf gets:

  * an `nn.Partitioned` box (critic, encoder and head parameters, and the optimizer moments
    and target copies optax and Polyak averaging build from them): its logical names mapped
    by `rules`;
  * an unboxed array that mirrors a parameter of one of the boxed trees in `logical` (e.g.
    ``{"policy": jax.eval_shape(lambda: decoder.init_params(cfg, rng, boxed=True))}`` for a
    policy stored unboxed): that parameter's sharding. A leaf mirrors a parameter when it
    has its shape and its key path ends with the parameter's key path inside its tree, as
    Adam's ``mu``/``nu``, a frozen reference copy or the parameter itself do; among several
    matches, one whose tree name is on the leaf's path wins, then the longest;
  * anything else (step counters, scalars, unnamed arrays): replicated.

  Returns a pytree of the same structure as `state` (boxes keep their place and hold their
  sharding), usable as jit `in_shardings` / `out_shardings`, for `jax.device_put`, or zipped
  leaf by leaf with the state (restore templates).
  """
  named = logical_shardings(state, mesh, rules)  # Validates every box against the mesh.
  table = _mirror_table(logical or {}, mesh, rules)

  def place(path, sharding, leaf):
    if _is_box(leaf):
      return leaf.replace_boxed(sharding)
    mirrored = _mirrored(_path_names(path), tuple(np.shape(leaf)), table)
    return sharding if mirrored is None else mirrored

  return jax.tree_util.tree_map_with_path(place, named, state)


def count_sharded(tree: Any) -> int:
  """Leaves of `tree` (arrays or shardings) whose layout is not fully replicated."""
  def sharded(x):
    sharding = getattr(x, "sharding", x)
    return isinstance(sharding, jax.sharding.Sharding) and not sharding.is_fully_replicated
  return sum(sharded(x) for x in jax.tree.leaves(tree))


_ACTIVATION_LAYOUT: contextvars.ContextVar = contextvars.ContextVar("activation_layout",
                                                                    default=None)


@contextlib.contextmanager
def activation_layout(mesh: Mesh, rules: LogicalRules = DEFAULT_RULES):
  """While tracing inside this context, `constrain` lays activations out on `mesh`."""
  token = _ACTIVATION_LAYOUT.set((mesh, tuple(tuple(rule) for rule in rules)))
  try:
    yield
  finally:
    _ACTIVATION_LAYOUT.reset(token)


def constrain(x: jax.Array, names: tuple[str | None, ...]) -> jax.Array:
  """Sharding constraint on an activation by logical axis names (e.g. ("batch", "length",
  "embed")), under the rules of the enclosing `activation_layout`; a no-op outside one.

  Without it XLA's propagation is free to follow the FSDP-split weights instead of the
  batch: the contraction over `embed` then leaves [B, L, vocab] logits whole on every
  device. A dimension that its mesh axes do not divide stays unsplit.
  """
  layout = _ACTIVATION_LAYOUT.get()
  if layout is None:
    return x
  mesh, rules = layout
  spec = nn.logical_to_mesh_axes(names, rules)
  dims = []
  for size, axes in zip(x.shape, tuple(spec) + (None,) * (x.ndim - len(spec))):
    group = (axes,) if isinstance(axes, str) else tuple(axes or ())
    dims.append(axes if group and size % math.prod(mesh.shape[a] for a in group) == 0
                else None)
  return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, PartitionSpec(*dims)))


def rules_from_config(rules: Any) -> tuple[tuple[str, Any], ...]:
  """`mesh.rules` (pairs of logical axis name and mesh axis, axes or None; JSON lists
  allowed) as a rule table; () or None means `DEFAULT_RULES`."""
  if not rules:
    return DEFAULT_RULES
  out = []
  for rule in rules:
    if len(rule) != 2 or not isinstance(rule[0], str):
      raise ValueError(f"mesh.rules entry {rule!r} must be a (logical name, mesh axes) pair.")
    axes = rule[1]
    axes = tuple(axes) if isinstance(axes, (list, tuple)) else axes
    for axis in (axes,) if axes is None or isinstance(axes, str) else axes:
      if axis is not None and axis not in MESH_AXES:
        raise ValueError(f"mesh.rules entry {rule!r} names mesh axis {axis!r}; the axes are "
                         f"{MESH_AXES}.")
    out.append((rule[0], axes))
  return tuple(out)
