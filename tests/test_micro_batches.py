"""Micro-batched gradient accumulation equals the full-batch update.

One update of each algorithm that reads `micro_batch_size` is run twice from the same state on
the same batch, once whole and once in micro-batches, and the parameters must agree to 1e-5
(float32): the terms' sums are accumulated and divided once by the minibatch's weights, so
only the order of the additions differs.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from agentrl import algorithms, losses
from agentrl.algorithms import base
from agentrl.models import decoder
from tests import algo_harness as h
from tests import toy_envs

ROWS = 8


@functools.lru_cache(maxsize=None)
def tiny_models(max_new_tokens: int = 6):
  """The harness's policy shrunk to one small layer: compiles dominate these tests' time."""
  m = h.models(max_new_tokens=max_new_tokens)
  config = decoder.DecoderConfig.llama(vocab_size=m.policy_config.vocab_size, hidden_size=16,
                                       num_layers=1, num_heads=2, num_kv_heads=2, mlp_dim=32)
  return dataclasses.replace(m, policy_config=config,
                             policy_params=decoder.init_params(config, jax.random.PRNGKey(0)))


@pytest.fixture(scope="module")
def batch():
  b = h.offline_batch(toy_envs.random_policy, range(ROWS // 2))
  b = jax.tree.map(lambda x: np.concatenate([x, x]), b)  # Groups of two for the group methods.
  group = np.repeat(np.arange(ROWS // 2), 2).astype(np.int32)
  rewards = np.asarray(b.rewards) + np.linspace(-1, 1, ROWS)[:, None] * np.asarray(b.turn_mask)
  # Sampler log-probs near the policy's, so the ratios stay inside the clip range mostly.
  logprobs = np.where(np.asarray(b.action_mask), -3.0, 0.0).astype(np.float32)
  return b.replace(group_id=group, rewards=rewards.astype(np.float32),
                   behaviour_logprobs=logprobs)


def _update(name, config, batch, micro, models=None):
  """(initial parameters, parameters after one update, its metrics)."""
  cfg = ml_collections.ConfigDict(dict(config, micro_batch_size=micro))
  algo = algorithms.make(name, cfg, models or tiny_models())
  state = algo.init(jax.random.PRNGKey(0))
  initial = jax.device_get(state.params)
  state, metrics = algo.update(state, batch, jax.random.PRNGKey(1))
  return initial, jax.device_get(state.params), jax.device_get(metrics)


# One update of every loop that reads `micro_batch_size` (HiPER shares PPO's, self_play
# GRPO's, mc_returns ILQL's, CHAI ArCHer's); the aggregation modes are covered by
# `test_objective_and_grad_by_hand`. ArCHer's update on 8 devices with micro-batches:
# `tests/_update_sharding_check.py`.
CASES = {
    "bc": ("bc", {"lr": 1e-2}),
    "ilql": ("ilql", {"lr": 1e-2, "train_trunk": True, "minibatches": 2}),
    "archer_offline": ("archer_offline", {"lr": 1e-2, "critic_lr": 1e-2}),
    "ppo": ("ppo", {"lr": 1e-2, "epochs": 2, "minibatches": 2, "entropy_coef": 0.01}),
    "turn_ppo": ("turn_ppo", {"lr": 1e-2}),
    "grpo": ("grpo", {"lr": 1e-2, "epochs": 2, "minibatches": 2, "kl_coef": 0.1,
                      "entropy_coef": 0.01}),
}


def _largest(a, b):
  return max(jax.tree.leaves(jax.tree.map(lambda x, y: float(np.max(np.abs(x - y))), a, b)))


def _check(full_run, micro_run, moved=1e-3):
  (initial, full, full_metrics), (_, micro, micro_metrics) = full_run, micro_run
  assert _largest(full, initial) > moved  # The update did move the parameters.
  assert _largest(full, micro) < 1e-5
  for key, value in full_metrics.items():
    if key.startswith("nonfinite/"):
      assert value == micro_metrics[key] == 0.0


@pytest.mark.parametrize("case", sorted(CASES))
def test_micro_batches_equal_the_full_batch(batch, case):
  name, config = CASES[case]
  rows = ROWS // config.get("minibatches", 1)
  _check(_update(name, config, batch, 0), _update(name, config, batch, rows // 2))


def test_archer_critic_and_actor_micro_batches_equal_the_full_batch():
  """Fresh actions and advantages come from the whole step batch; the critic's and the
  actor's gradients are accumulated over micro-batches of 4 of its 8 transitions. At lr 1e-3:
  Adam's first step is about lr·g/(|g| + 1e-8), so where the encoder's gradient is near 0 the
  summation order's rounding moved parameters by 4.7e-5 at lr 1e-2."""
  from tests import test_algorithms_archer as archer_tests
  config = archer_tests.config(warmup_updates=0, lr=1e-3, critic_lr=1e-3, critic=dict(
      hidden_size=16, num_layers=1, num_heads=2, mlp_dim=32, head_dims=(16,))).to_dict()
  models = tiny_models(archer_tests.ACTION)
  batch = archer_tests.fake_batch(0, c=1, a=1, n=8)  # One critic step, one actor step.
  _check(_update("archer", config, batch, 0, models), _update("archer", config, batch, 4, models),
         moved=5e-4)


def test_objective_and_grad_by_hand():
  """Two terms of different weights: the micro-batched gradient is Σ coef·Σ_m ∇sum_m / W."""
  x = jnp.arange(12.0).reshape(6, 2)
  mask = jnp.array([[1, 1], [1, 0], [0, 0], [1, 1], [0, 1], [1, 0]], bool)

  def loss_fn(w, mb):
    per = (mb["x"] * w) ** 2
    a = losses.aggregate(per, mb["mask"], mode="token-mean")
    b = losses.aggregate(per, mb["mask"], mode="seq-mean-token-mean")
    c = losses.aggregate(per, mb["mask"], mode="seq-mean-token-sum-norm", max_tokens=4)
    return {"a": base.Term(1.0, a[0], a[2]), "b": base.Term(0.5, b[0], b[2]),
            "c": base.Term(2.0, c[0], c[2])}, {}

  data = {"x": x, "mask": mask}
  w = jnp.float32(0.3)
  (full, full_terms, _), g_full = base.objective_and_grad(loss_fn)(w, data)
  (micro, micro_terms, _), g_micro = base.objective_and_grad(loss_fn, micro_batch_size=2)(
      w, data)
  m = np.asarray(mask, np.float32)
  per = (np.asarray(x) * 0.3) ** 2
  token_mean = (per * m).sum() / m.sum()
  rows = m.sum(1) > 0
  seq_mean = ((per * m).sum(1)[rows] / m.sum(1)[rows]).mean()
  sum_norm = ((per * m).sum(1)[rows] / 4).mean()
  np.testing.assert_allclose(full, token_mean + 0.5 * seq_mean + 2 * sum_norm, rtol=1e-6)
  np.testing.assert_allclose(micro, full, rtol=1e-6)
  for k, want in (("a", token_mean), ("b", seq_mean), ("c", sum_norm)):
    np.testing.assert_allclose(micro_terms[k], want, rtol=1e-6)
    np.testing.assert_allclose(full_terms[k], want, rtol=1e-6)
  # d/dw of Σ per = 2 per / w.
  dw = lambda v: v * 2 / 0.3  # noqa: E731
  np.testing.assert_allclose(g_full, dw(token_mean) + 0.5 * dw(seq_mean) + 2 * dw(sum_norm),
                             rtol=1e-5)
  np.testing.assert_allclose(g_micro, g_full, rtol=1e-6)
  with pytest.raises(ValueError, match="micro_batch_size=4 does not divide"):
    base.objective_and_grad(loss_fn, micro_batch_size=4)(w, data)
