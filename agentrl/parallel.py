"""Device meshes and parameter/batch shardings for data, FSDP and tensor parallelism.

One mesh with three named axes covers every layout used here:

* ``data``: plain data parallelism; parameters are replicated along it.
* ``fsdp``: the batch is split along it as well, and parameters are split along their
  ``embed`` dimension (fully sharded data parallelism: XLA gathers a layer's weights
  where they are used).
* ``tensor``: Megatron-style tensor parallelism over MLP units, attention heads and
  the vocabulary.

Parameters of ``agentrl.models.decoder`` carry logical axis names (``vocab``, ``embed``,
``heads``, ``kv``, ``mlp``, ``position``); a rule table (``DEFAULT_RULES``, the flax
``logical_axis_rules`` format) maps them onto mesh axes. Typical use::

  mesh = parallel.make_mesh(fsdp=-1, tensor=2)
  params, shardings = parallel.sharded_init(
      lambda: decoder.init_params(config, rng, boxed=True), mesh)
  batch = parallel.shard_batch(batch, mesh)
  out = jax.jit(step)(params, batch)  # the layout follows the inputs' shardings
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

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


# ----------------------------------------------------------------------------------------
# Meshes
# ----------------------------------------------------------------------------------------


def mesh_shape(data: int = 1, fsdp: int = 1, tensor: int = 1, *,
               num_devices: int) -> tuple[int, int, int]:
  """Resolves the (data, fsdp, tensor) sizes for `num_devices`; one of them may be -1."""
  sizes = {"data": data, "fsdp": fsdp, "tensor": tensor}
  for name, size in sizes.items():
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or (
        size < 1 and size != -1):
      raise ValueError(f"Mesh axis {name}={size!r} must be a positive int or -1.")
  free = [name for name, size in sizes.items() if size == -1]
  if len(free) > 1:
    raise ValueError(f"Only one mesh axis may be -1; got {sizes}.")
  fixed = math.prod(size for size in sizes.values() if size != -1)
  if free:
    if num_devices % fixed:
      raise ValueError(f"Mesh sizes {sizes}: {num_devices} devices are not divisible by the "
                       f"product {fixed} of the fixed axes.")
    sizes[free[0]] = num_devices // fixed
  elif fixed != num_devices:
    raise ValueError(f"Mesh sizes {sizes} have product {fixed}, but there are "
                     f"{num_devices} devices.")
  return sizes["data"], sizes["fsdp"], sizes["tensor"]


def make_mesh(data: int = 1, fsdp: int = 1, tensor: int = 1,
              devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A ("data", "fsdp", "tensor") mesh over `devices` (default: all of them).

  Any one size may be -1, meaning "the rest of the devices". The axes are of the
  automatic (GSPMD) kind: shardings of inputs and outputs are given, XLA fills in the rest.
  """
  devices = list(jax.devices() if devices is None else devices)
  shape = mesh_shape(data, fsdp, tensor, num_devices=len(devices))
  return jax.make_mesh(shape, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES),
                       devices=devices)


def make_mesh_from_config(cfg: Any, devices: Sequence[jax.Device] | None = None) -> Mesh:
  """`make_mesh` from a mapping or ConfigDict with (a subset of) keys data/fsdp/tensor."""
  if not hasattr(cfg, "items"):
    raise TypeError(f"Mesh config must be a mapping or ConfigDict; got {type(cfg).__name__}.")
  items = dict(cfg.items())
  unknown = sorted(set(items) - set(MESH_AXES))
  if unknown:
    raise ValueError(f"Unknown mesh config key(s) {unknown}; valid keys are {list(MESH_AXES)}.")
  return make_mesh(**items, devices=devices)


# ----------------------------------------------------------------------------------------
# Parameter shardings
# ----------------------------------------------------------------------------------------


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


def sharded_init(init_fn: Callable[[], Any], mesh: Mesh,
                 rules: LogicalRules = DEFAULT_RULES) -> tuple[Any, Any]:
  """Initializes parameters directly in their sharded layout.

  `init_fn` takes no arguments and returns boxed parameters, e.g.
  ``lambda: decoder.init_params(config, rng, boxed=True)``. Each device only ever
  materializes its own shards. Returns (params, shardings): unboxed arrays, each laid out by its
  NamedSharding, and the pytree of those shardings (for jit's in/out_shardings).
  """
  abstract = jax.eval_shape(init_fn)
  shardings = logical_shardings(abstract, mesh, rules)
  params = jax.jit(lambda: nn.meta.unbox(init_fn()), out_shardings=shardings)()
  return params, shardings


# ----------------------------------------------------------------------------------------
# Batches
# ----------------------------------------------------------------------------------------


def replicated(mesh: Mesh) -> NamedSharding:
  """A full copy on every device of the mesh."""
  return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh, ndim: int, axis: int = 0) -> NamedSharding:
  """Dimension `axis` of an `ndim`-dimensional array split over ("data", "fsdp"); the rest
  replicated."""
  if not 0 <= axis < ndim:
    raise ValueError(f"A batch array of ndim={ndim} has no batch axis {axis}.")
  spec = [None] * ndim
  spec[axis] = BATCH_AXES
  return NamedSharding(mesh, PartitionSpec(*spec))


def shard_batch(tree: Any, mesh: Mesh, axis: int = 0) -> Any:
  """Places a pytree of host arrays on the mesh, split along their batch dimension `axis`
  (e.g. 1 for ArCHer's [steps, batch, ...] transitions); leaves with no such dimension are
  replicated."""
  replicas = math.prod(mesh.shape[a] for a in BATCH_AXES)

  def put(path, x):
    x = np.asarray(x) if not isinstance(x, jax.Array) else x
    if x.ndim <= axis:
      return jax.device_put(x, replicated(mesh))
    if x.shape[axis] % replicas:
      raise ValueError(f"Batch leaf {jax.tree_util.keystr(path)} of shape {x.shape}: its "
                       f"batch size {x.shape[axis]} (axis {axis}) is not divisible by "
                       f"data*fsdp={replicas}.")
    return jax.device_put(x, batch_sharding(mesh, x.ndim, axis))

  return jax.tree_util.tree_map_with_path(put, tree)
