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
``logical_axis_rules`` format) maps them onto mesh axes (`agentrl.sharding_rules`, whose
names are re-exported here). This module makes the meshes, initialises and updates states
in their layout, places batches, and keeps the processes of a multi-host run in step.
Typical use::

  mesh = parallel.make_mesh(fsdp=-1, tensor=2)
  params, shardings = parallel.sharded_init(
      lambda: decoder.init_params(config, rng, boxed=True), mesh)
  batch = parallel.shard_batch(batch, mesh)
  out = jax.jit(step)(params, batch)  # the layout follows the inputs' shardings
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from agentrl.sharding_rules import (  # noqa: F401  (re-exported: the sharding rules)
    BATCH_AXES, DEFAULT_RULES, MESH_AXES, LogicalRules, activation_layout, constrain,
    count_sharded, logical_shardings, rules_from_config, state_shardings)


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
  items = {k: v for k, v in cfg.items() if k != "rules"}  # `rules`: see rules_from_config
  unknown = sorted(set(items) - set(MESH_AXES))
  if unknown:
    raise ValueError(f"Unknown mesh config key(s) {unknown}; valid keys are {list(MESH_AXES)}.")
  return make_mesh(**items, devices=devices)


# ----------------------------------------------------------------------------------------
# Initialising and updating in a layout
# ----------------------------------------------------------------------------------------

# Compiler options of the jits that initialise parameters and states. XLA's algebraic
# simplifier folds an initializer's scale into the sampler's own constants (`normal * 0.02`
# becomes one multiply by sqrt(2) * 0.02), which rounds differently from computing the
# initializer op by op; without it the jitted initialisation gives the values of an eager
# `init_fn()` (bit for bit on CPU, for every algorithm's state), on any mesh, one device
# included.
INIT_COMPILER_OPTIONS = {"xla_disable_hlo_passes": "algsimp"}


def sharded_init(init_fn: Callable[[], Any], mesh: Mesh,
                 rules: LogicalRules = DEFAULT_RULES) -> tuple[Any, Any]:
  """Initializes parameters directly in their sharded layout.

  `init_fn` takes no arguments and returns boxed parameters, e.g.
  ``lambda: decoder.init_params(config, rng, boxed=True)``. Each device only ever
  materializes its own shards; the values are those of an eager `init_fn()`
  (`INIT_COMPILER_OPTIONS`). Returns (params, shardings): unboxed arrays, each laid out by its
  NamedSharding, and the pytree of those shardings (for jit's in/out_shardings).
  """
  abstract = jax.eval_shape(init_fn)
  shardings = logical_shardings(abstract, mesh, rules)
  params = jax.jit(lambda: nn.meta.unbox(init_fn()), out_shardings=shardings,
                   compiler_options=INIT_COMPILER_OPTIONS)()
  return params, shardings


def init_state(init_fn: Callable[[Any], Any], rng: Any, mesh: Mesh,
               rules: LogicalRules = DEFAULT_RULES, *, logical: Mapping[str, Any] | None = None
               ) -> tuple[Any, Any]:
  """`init_fn(rng)` (e.g. an algorithm's `init`) run directly into its sharded layout.

  The layout comes from `state_shardings` of the state's `jax.eval_shape`; the state is built
  by one jit with those `out_shardings`, so no device ever holds more than its shards, and
  has the values of an eager `init_fn(rng)` (`INIT_COMPILER_OPTIONS`). Returns
  (state, shardings).
  """
  shardings = state_shardings(jax.eval_shape(init_fn, rng), mesh, rules, logical=logical)
  init = jax.jit(init_fn, out_shardings=shardings, compiler_options=INIT_COMPILER_OPTIONS)
  return init(replicate(rng, mesh)), shardings


def jit_sharded_update(update: Callable, shardings: Any, mesh: Mesh,
                       rules: LogicalRules = DEFAULT_RULES) -> Callable:
  """Jits `update(state, *args) -> (state, metrics)` so that the new state keeps the layout
  `shardings` (the input state is donated) and the metrics come back replicated (readable on
  every process). Inputs keep the shardings they arrive with (`shard_batch`); activations
  the models mark with `constrain` follow `rules` (batch split over data and fsdp)."""

  def traced(*args):
    with activation_layout(mesh, rules):
      return update(*args)

  return jax.jit(traced, out_shardings=(shardings, replicated(mesh)), donate_argnums=0)


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


def process_rows(mesh: Mesh, size: int) -> slice:
  """The rows of a batch of `size` rows (split over ("data", "fsdp")) that this process's
  devices hold: one contiguous block (`jax.make_mesh` orders devices process by process)."""
  index_map = batch_sharding(mesh, 1).addressable_devices_indices_map((size,))
  blocks = sorted({(idx[0].start or 0, size if idx[0].stop is None else idx[0].stop)
                   for idx in index_map.values()})
  start, stop = blocks[0][0], blocks[-1][1]
  if sum(b - a for a, b in blocks) != stop - start:
    raise ValueError(f"The mesh {dict(mesh.shape)} gives process {jax.process_index()} the "
                     f"batch rows {blocks}, not one block; build it with parallel.make_mesh.")
  return slice(start, stop)


def global_batch(tree: Any, mesh: Mesh, axis: int = 0, *, local: bool = False) -> Any:
  """A host batch as global arrays split along `axis` over ("data", "fsdp") of `mesh`.

  With one process this is `shard_batch`. With several, each process passes either the
  whole batch (`local=False`: every process holds the same rows, e.g. sampled from
  identical replay buffers, and keeps its own block) or only its own block of rows
  (`local=True`, `process_rows` of the global batch: e.g. the episodes it played itself);
  `jax.make_array_from_process_local_data` assembles the global arrays.
  """
  if jax.process_count() == 1:
    return shard_batch(tree, mesh, axis)
  parts = jax.process_count() if local else 1

  def put(path, x):
    x = np.asarray(x)
    if x.ndim <= axis:
      return replicate(x, mesh)
    size = x.shape[axis] * parts
    rows = process_rows(mesh, size)
    if not local:
      x = np.take(x, np.arange(rows.start, rows.stop), axis=axis)
    elif x.shape[axis] != rows.stop - rows.start:
      raise ValueError(f"Batch leaf {jax.tree_util.keystr(path)}: this process holds "
                       f"{x.shape[axis]} rows, its devices take {rows.stop - rows.start}.")
    shape = x.shape[:axis] + (size,) + x.shape[axis + 1:]
    return jax.make_array_from_process_local_data(batch_sharding(mesh, x.ndim, axis), x, shape)

  return jax.tree_util.tree_map_with_path(put, tree)


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Host values (the same on every process, e.g. a PRNG key) copied to every device."""
  if jax.process_count() == 1:
    return jax.device_put(tree, replicated(mesh))
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(
      replicated(mesh), np.asarray(x), np.shape(x)), tree)


def local_copy(tree: Any, mesh: Mesh) -> Any:
  """A full copy of a tree of (possibly multi-process) arrays on this process's first local
  device: what a process-local computation (each host's own sampler) can read."""
  if jax.process_count() == 1:
    return tree
  full = jax.jit(lambda x: x, out_shardings=replicated(mesh))(tree)
  device = jax.local_devices()[0]
  return jax.tree.map(
      lambda x: next(s.data for s in x.addressable_shards if s.device == device), full)


# ----------------------------------------------------------------------------------------
# Processes
# ----------------------------------------------------------------------------------------


def is_main_process() -> bool:
  """True on process 0, which alone writes logs."""
  return jax.process_index() == 0


@contextlib.contextmanager
def process_zero_first(name: str = "process_zero_first"):
  """Runs the block on process 0 first, then on the others (e.g. building a dataset cache
  that they then read). The block must not run computations that need every process."""
  if jax.process_count() == 1:
    yield
    return
  if not is_main_process():
    multihost_utils.sync_global_devices(name)
  yield
  if is_main_process():
    multihost_utils.sync_global_devices(name)


def barrier(name: str) -> None:
  """Waits until every process gets here (nothing to do with one process)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def allgather(tree: Any) -> Any:
  """Host values of every process, stacked on a new leading axis in process order."""
  if jax.process_count() == 1:
    return jax.tree.map(lambda x: np.asarray(x)[None], tree)
  return jax.tree.map(np.asarray, multihost_utils.process_allgather(tree))


DISTRIBUTED_MODES = ("off", "auto", "on")


def _on_tpu_pod() -> bool:
  """A Cloud TPU VM that is one of several hosts of a slice."""
  hosts = os.environ.get("TPU_WORKER_HOSTNAMES", "")
  return len([h for h in hosts.split(",") if h]) > 1


def initialize_distributed(cfg: Any) -> bool:
  """`jax.distributed.initialize` as the `distributed` config block says; call it before
  anything else touches JAX. Returns whether this is a multi-process run.

  Keys: `mode` ("off": one process; "on": initialise with the keys below, any left empty
  coming from the environment (TPU VM, SLURM, ...); "auto": "on" when
  `coordinator_address` is set or this is a host of a multi-host TPU slice, where
  ``jax.distributed.initialize()`` needs no arguments, else "off"), `coordinator_address`
  ("host:port" of process 0), `num_processes` (0: from the environment), `process_id` (-1:
  from the environment), `local_device_ids` (() : all visible devices).
  """
  if cfg is None:
    return False
  mode = cfg.get("mode", "auto")
  if mode not in DISTRIBUTED_MODES:
    raise ValueError(f"distributed.mode={mode!r}; expected one of {DISTRIBUTED_MODES}.")
  address = cfg.get("coordinator_address", "") or None
  if mode == "off" or (mode == "auto" and address is None and not _on_tpu_pod()):
    return False
  if jax.distributed.is_initialized():
    return True
  num = int(cfg.get("num_processes", 0) or 0)
  pid = int(cfg.get("process_id", -1))
  ids = tuple(cfg.get("local_device_ids", ()) or ())
  if address is not None and (num < 1 or pid < 0):
    raise ValueError(f"distributed.coordinator_address={address!r} needs "
                     f"distributed.num_processes (got {num}) and distributed.process_id "
                     f"(got {pid}).")
  jax.distributed.initialize(coordinator_address=address, num_processes=num or None,
                             process_id=None if pid < 0 else pid,
                             local_device_ids=list(ids) or None)
  return True
