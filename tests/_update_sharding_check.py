"""Algorithm updates on meshes of 8 fake CPU devices vs. one device.

Run as a script, ``python tests/_update_sharding_check.py [archer] [ppo]`` (default: both;
``tests/test_parallel.py`` runs one per test in a subprocess, so that the main test process
keeps its single device). For ArCHer (replay transitions, fresh actions sampled inside
the update) and PPO (a rollout batch): the same initial state and batch are updated once on one
device and once on each of the (8, 1, 1), (2, 2, 2) and (1, 4, 2) meshes (on (2, 2, 2) with
gradients accumulated over micro-batches of half the rows: `micro_batch_size`), the state initialised
directly into the layout of `parallel.state_shardings` (policy, critic and optimizer moments
split over fsdp/tensor by their logical axis names) and the batch split over ("data", "fsdp").
Prints one JSON object on the last line of stdout: ``{algorithm: {mesh: {"params": d,
"frozen": d, "metrics": d, "fractions": d, "batch_sharded": bool, "out_devices": n,
"sharded_state": n, "layout_kept": bool, ("micro_batch_size": m)}}}``, d the max difference from the one-device update
(relative above 1 in magnitude), n a count of leaves.
"""

import os
import sys

# 8 fake CPU devices; cheap LLVM optimization keeps the many small compiles fast (the
# reference and the sharded runs are compiled alike).
os.environ["XLA_FLAGS"] = " ".join([
    os.environ.get("XLA_FLAGS", ""), "--xla_force_host_platform_device_count=8",
    "--xla_backend_optimization_level=0", "--xla_llvm_disable_expensive_passes=true"]).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import dataclasses  # noqa: E402
import json  # noqa: E402

import jax  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402

from agentrl import algorithms, parallel  # noqa: E402
from agentrl.models import decoder  # noqa: E402
from tests import algo_harness as h  # noqa: E402
from tests import test_algorithms_archer as archer_tests  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")


def max_diff(a, b) -> float:
  """Max abs difference, relative for entries above 1 in magnitude (counts, sums)."""
  def diff(x, y):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return float(np.max(np.abs(x - y) / np.maximum(1.0, np.abs(y)), initial=0.0))
  return max(jax.tree.leaves(jax.tree.map(diff, a, b)), default=0.0)


MESHES = {"8x1x1": (8, 1, 1), "2x2x2": (2, 2, 2), "1x4x2": (1, 4, 2)}


def compare(algo, policy_config, batch, batch_axis: int, mesh, reference) -> dict:
  rng = jax.random.PRNGKey(3)
  ref_state, ref_metrics = reference
  logical = {"policy": jax.eval_shape(
      lambda: decoder.init_params(policy_config, jax.random.PRNGKey(0), boxed=True))}
  state, shardings = parallel.init_state(algo.init, jax.random.PRNGKey(0), mesh,
                                         logical=logical)
  sharded_state = parallel.count_sharded(state)
  update = parallel.jit_sharded_update(algo.update, shardings, mesh)
  sharded = parallel.shard_batch(batch, mesh, axis=batch_axis)
  new_state, metrics = update(state, sharded, rng)
  leaves = [x for x in jax.tree.leaves(sharded) if x.ndim > batch_axis]
  layout = jax.tree.map(lambda x, s: x.sharding.is_equivalent_to(s, x.ndim), new_state,
                        shardings)
  # Clip fractions count threshold crossings: one value sitting on a clip boundary may flip
  # under a different summation order, so they are compared separately.
  smooth = [k for k in ref_metrics if "fraction" not in k]
  worst = max(smooth, key=lambda k: max_diff(metrics[k], ref_metrics[k]), default=None)
  return {"params": max_diff(new_state.params, ref_state.params),
          "worst_metric": worst,
          "frozen": max_diff(new_state.frozen, ref_state.frozen),
          "metrics": max_diff({k: metrics[k] for k in smooth},
                              {k: ref_metrics[k] for k in smooth}),
          "fractions": max_diff({k: metrics[k] for k in ref_metrics if k not in smooth},
                                {k: ref_metrics[k] for k in ref_metrics if k not in smooth}),
          "batch_sharded": all(not x.sharding.is_fully_replicated for x in leaves),
          "out_devices": len(jax.tree.leaves(new_state.params)[0].sharding.device_set),
          "sharded_state": sharded_state,
          "sharded_out": parallel.count_sharded(new_state),
          "layout_kept": all(jax.tree.leaves(layout))}


# The mesh whose update accumulates micro-batches; the reference is the whole-batch update.
MICRO_MESH = "2x2x2"


def compare_meshes(make, policy_config, batch, batch_axis: int, micro_batch_size: int) -> dict:
  """`make(micro_batch_size)` -> the algorithm; its one-device whole-batch update is the
  reference of every mesh."""
  rng = jax.random.PRNGKey(3)
  algo = make(0)
  reference = algo.update(algo.init(jax.random.PRNGKey(0)), batch, rng)
  out = {name: compare(make(micro_batch_size) if name == MICRO_MESH else algo, policy_config,
                       batch, batch_axis, parallel.make_mesh(*sizes), reference)
         for name, sizes in MESHES.items()}
  out[MICRO_MESH]["micro_batch_size"] = micro_batch_size
  return out


def tiny_models(max_new_tokens: int) -> algorithms.Models:
  """The harness's policy shrunk to one layer (compiles dominate this check's time); two
  query and two key/value heads, so that the tensor axis splits them."""
  m = h.models(max_new_tokens=max_new_tokens)
  config = decoder.DecoderConfig.llama(vocab_size=m.policy_config.vocab_size, hidden_size=16,
                                       num_layers=1, num_heads=2, num_kv_heads=2, mlp_dim=32)
  return dataclasses.replace(m, policy_config=config,
                             policy_params=decoder.init_params(config, jax.random.PRNGKey(0)))


def check_archer() -> dict:
  # Critic fields are [critic_steps, batch, ...]: the batch axis is 1.
  m = tiny_models(archer_tests.ACTION)
  config = archer_tests.config(warmup_updates=0, critic=dict(
      hidden_size=16, num_layers=1, num_heads=2, mlp_dim=32, head_dims=(16,)))
  make = lambda micro: algorithms.make(  # noqa: E731
      "archer", ml_collections.ConfigDict({**config.to_dict(), "micro_batch_size": micro}), m)
  return compare_meshes(make, m.policy_config, archer_tests.fake_batch(0, c=2, a=1, n=8), 1, 4)


def check_ppo() -> dict:
  # A rollout batch of the toy task (16 rows).
  m = tiny_models(6)
  make = lambda micro: algorithms.make("ppo", ml_collections.ConfigDict(  # noqa: E731
      {"lr": 1e-3, "epochs": 2, "micro_batch_size": micro}), m)
  batch = h.play(m.policy_params, range(8), group_size=2, rng=0, m=m).batch
  return compare_meshes(make, m.policy_config, batch, 0, 8)


def check_micro() -> dict:
  """The other loops, micro-batched on the (2, 2, 2) mesh only: {name: {"params": d,
  "moved": how far the one-device update moved them}}."""
  m = tiny_models(6)
  batch = h.play(m.policy_params, range(8), group_size=2, rng=0, m=m).batch
  # GRPO takes four Adam steps: at lr 1e-3, as its first steps are near lr·sign(g).
  cases = {"bc": {}, "grpo": {"epochs": 2, "minibatches": 2, "kl_coef": 0.1, "lr": 1e-3},
           "ilql": {"train_trunk": True}, "archer_offline": {"critic_lr": 1e-2}}
  mesh, out = parallel.make_mesh(*MESHES[MICRO_MESH]), {}
  for name, extra in cases.items():
    make = lambda micro: algorithms.make(name, ml_collections.ConfigDict(  # noqa: E731
        {"lr": 1e-2, "micro_batch_size": micro, **extra}), m)
    algo, rng = make(0), jax.random.PRNGKey(3)
    initial = algo.init(jax.random.PRNGKey(0))
    start = jax.device_get(initial.params)
    reference, _ = algo.update(initial, batch, rng)
    report = compare(make(4), m.policy_config, batch, 0, mesh, (reference, {}))
    out[name] = {"params": report["params"], "moved": max_diff(reference.params, start),
                 "batch_sharded": report["batch_sharded"]}
  return out


CHECKS = {"archer": check_archer, "ppo": check_ppo, "micro": check_micro}


def main(names):
  assert jax.device_count() == 8, jax.devices()
  print(json.dumps({name: CHECKS[name]() for name in names or CHECKS}))


if __name__ == "__main__":
  main(sys.argv[1:])
