"""Algorithm updates on a data-parallel mesh of 8 fake CPU devices vs. one device.

Run as a script (``tests/test_parallel.py`` runs it in a subprocess, so that the main test
process keeps its single device). For ArCHer (replay transitions, fresh actions sampled inside
the update) and PPO (a rollout batch): the same initial state and batch are updated once on one
device and once with the state replicated and the batch split over ("data", "fsdp") of an
(8, 1, 1) mesh. Prints one JSON object on the last line of stdout:
``{algorithm: {"params": d, "metrics": d, "batch_sharded": bool, "out_devices": n}}``, d the
max difference from the one-device update (relative above 1 in magnitude).
"""

import os
import sys

os.environ["XLA_FLAGS"] = " ".join([
    os.environ.get("XLA_FLAGS", ""), "--xla_force_host_platform_device_count=8"]).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import json  # noqa: E402

import jax  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402

from agentrl import algorithms, parallel  # noqa: E402
from tests import algo_harness as h  # noqa: E402
from tests import test_algorithms_archer as archer_tests  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")


def max_diff(a, b) -> float:
  """Max abs difference, relative for entries above 1 in magnitude (counts, sums)."""
  def diff(x, y):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return float(np.max(np.abs(x - y) / np.maximum(1.0, np.abs(y)), initial=0.0))
  return max(jax.tree.leaves(jax.tree.map(diff, a, b)), default=0.0)


def compare(algo, batch, batch_axis: int, mesh) -> dict:
  rng = jax.random.PRNGKey(3)
  ref_state, ref_metrics = algo.update(algo.init(jax.random.PRNGKey(0)), batch, rng)
  state = jax.device_put(algo.init(jax.random.PRNGKey(0)), parallel.replicated(mesh))
  sharded = parallel.shard_batch(batch, mesh, axis=batch_axis)
  new_state, metrics = algo.update(state, sharded, rng)
  leaves = [x for x in jax.tree.leaves(sharded) if x.ndim > batch_axis]
  # Clip fractions count threshold crossings: one value sitting on a clip boundary may flip
  # under a different summation order, so they are compared separately.
  smooth = [k for k in ref_metrics if "fraction" not in k]
  worst = max(smooth, key=lambda k: max_diff(metrics[k], ref_metrics[k]))
  return {"params": max_diff(new_state.params, ref_state.params),
          "worst_metric": worst,
          "frozen": max_diff(new_state.frozen, ref_state.frozen),
          "metrics": max_diff({k: metrics[k] for k in smooth},
                              {k: ref_metrics[k] for k in smooth}),
          "fractions": max_diff({k: metrics[k] for k in ref_metrics if k not in smooth},
                                {k: ref_metrics[k] for k in ref_metrics if k not in smooth}),
          "batch_sharded": all(not x.sharding.is_fully_replicated for x in leaves),
          "out_devices": len(jax.tree.leaves(new_state.params)[0].sharding.device_set)}


def main():
  assert jax.device_count() == 8, jax.devices()
  mesh = parallel.make_mesh(data=8)
  report = {}
  # ArCHer: critic fields are [critic_steps, batch, ...], the batch axis is 1.
  archer = archer_tests.algo(warmup_updates=0)
  report["archer"] = compare(archer, archer_tests.fake_batch(0, c=2, a=1, n=8), 1, mesh)
  # PPO on a rollout batch of the toy task (16 rows).
  m = h.models()
  ppo = algorithms.make("ppo", ml_collections.ConfigDict({"lr": 1e-3, "epochs": 2}), m)
  batch = h.play(m.policy_params, range(8), group_size=2, rng=0).batch
  report["ppo"] = compare(ppo, batch, 0, mesh)
  print(json.dumps(report))


if __name__ == "__main__":
  main()
