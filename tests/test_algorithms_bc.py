"""Behaviour cloning improves the toy task; the non-finite guard keeps the state."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from agentrl import algorithms
from tests import algo_harness as h
from tests import toy_envs


def test_bc_learns_the_scripted_policy():
  m = h.models()
  algo = algorithms.make("bc", ml_collections.ConfigDict({"lr": 3e-3}), m)
  state = algo.init(jax.random.PRNGKey(0))
  before = h.mean_return(m.policy_params, greedy=True)
  data = h.offline_batch(toy_envs.bisect_policy, range(64))
  rng = np.random.default_rng(0)
  first = None
  for _ in range(150):
    rows = rng.choice(64, size=16, replace=False)
    batch = jax.tree.map(lambda x: x[rows], data)
    state, metrics = algo.update(state, batch, jax.random.PRNGKey(0))
    first = first if first is not None else float(metrics["bc/loss"])
  assert float(metrics["bc/loss"]) < 0.3 * first
  after = h.mean_return(state.params["policy"], greedy=True)
  assert after >= before + 2.0 and after >= -2.5, (before, after)
  assert int(state.step) == 150 and algorithms.nonfinite_losses(metrics) == []


def test_nonfinite_loss_skips_the_update_and_names_the_loss():
  m = h.models()
  algo = algorithms.make("bc", ml_collections.ConfigDict({"lr": 1e-3}), m)
  state = algo.init(jax.random.PRNGKey(0))
  batch = h.offline_batch(toy_envs.bisect_policy, range(4))
  # A NaN in the parameters makes the loss NaN: the step must be skipped, not applied.
  poisoned = jax.tree.map(np.array, state.params["policy"])
  poisoned["embed"]["embedding"][0, 0] = np.nan
  state = state.replace(params={"policy": jax.tree.map(jnp.asarray, poisoned)})
  state, metrics = algo.update(state, batch, jax.random.PRNGKey(0))
  assert algorithms.nonfinite_losses(metrics) == ["bc_loss"]
  kept = jax.tree.map(np.asarray, state.params["policy"])
  np.testing.assert_array_equal(kept["layer_0"]["attn"]["q_proj"]["kernel"],
                                poisoned["layer_0"]["attn"]["q_proj"]["kernel"])
  assert int(state.step) == 1  # The step counter still counts the attempt.
