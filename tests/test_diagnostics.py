"""agentrl.diagnostics: the estimators' advantages on a hand-made batch, and gradient noise."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from agentrl import advantages, algorithms, diagnostics, sampling
from agentrl.algorithms import Models
from agentrl.models import decoder
from agentrl.types import TrajectoryBatch

VOCAB = 16


def hand_batch():
  """Two groups of two rows, two turns (row 3: one turn), returns 1, 3 | 0, 2.

  Row layout: t0 prompt, t1-t2 turn 0 (ends at t2), t3 observation, t4-t5 turn 1 (ends at t5),
  t6 observation, t7 padding.
  """
  b, t, k = 4, 8, 2
  batch = TrajectoryBatch.zeros(b, t, k)
  attention = np.zeros((b, t), bool)
  attention[:, :7] = True
  attention[3, 3:] = False
  action = np.zeros((b, t), bool)
  action[:, [1, 2, 4, 5]] = True
  action &= attention
  turn_index = np.where(action, np.array([-1, 0, 0, -1, 1, 1, -1, -1]), -1).astype(np.int32)
  turn_end = np.zeros((b, t), bool)
  turn_end[:, [2, 5]] = True
  turn_end &= action
  turn_mask = np.array([[1, 1], [1, 1], [1, 1], [1, 0]], bool)
  rewards = np.array([[0, 1], [1, 2], [0, 0], [2, 0]], np.float32)
  dones = np.array([[0, 1], [0, 1], [0, 1], [1, 0]], bool)
  tokens = np.where(attention, np.random.default_rng(0).integers(1, VOCAB, (b, t)), 0)
  positions = np.maximum(np.cumsum(attention, 1) - 1, 0)
  batch = batch.replace(
      tokens=tokens.astype(np.int32), positions=positions.astype(np.int32),
      attention_mask=attention, action_mask=action, turn_index=turn_index, turn_end=turn_end,
      rewards=rewards, turn_mask=turn_mask, dones=dones,
      group_id=np.array([0, 0, 1, 1], np.int32))
  return jax.tree.map(jnp.asarray, batch)


@pytest.mark.parametrize("name, estimator, hand", [
    ("grpo", advantages.grpo_advantages, [-1.0, 1.0, -1.0, 1.0]),
    ("rloo", advantages.rloo_advantages, [-2.0, 2.0, -2.0, 2.0])])
def test_group_advantages_are_the_estimator_on_every_action_token(name, estimator, hand):
  batch = hand_batch()
  token_adv, mask = diagnostics.group_advantages(batch, ml_collections.ConfigDict({"name": name}))
  returns = jnp.sum(jnp.where(batch.turn_mask, batch.rewards, 0.0), -1)
  per_row = estimator(returns, batch.group_id, jnp.ones(4, bool))
  np.testing.assert_allclose(per_row, hand, atol=1e-5)
  expected = np.where(np.asarray(batch.action_mask), np.asarray(per_row)[:, None], 0.0)
  np.testing.assert_allclose(np.where(mask, token_adv, 0.0), expected, atol=1e-5)
  np.testing.assert_array_equal(mask, np.asarray(batch.action_mask & batch.attention_mask))


def numpy_random_like(shapes, seed=0):
  """Random arrays of the shapes of `shapes` (drawn by numpy: no op of JAX to compile)."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda s: (0.3 * rng.normal(size=s.shape)).astype(s.dtype)
                      if jnp.issubdtype(s.dtype, jnp.floating) else np.zeros(s.shape, s.dtype),
                      shapes)


def test_critic_advantages_of_turn_ppo_are_turn_level():
  config = decoder.DecoderConfig.llama(vocab_size=VOCAB, hidden_size=16, num_layers=1,
                                       num_heads=2, num_kv_heads=1, mlp_dim=32)
  params = numpy_random_like(
      jax.eval_shape(functools.partial(decoder.init_params, config), jax.random.PRNGKey(0)))
  models = Models(config, params, sampling.SamplingConfig())
  batch = hand_batch()
  c = ml_collections.ConfigDict({"name": "turn_ppo", "lr": 1e-3})
  state = numpy_random_like(
      jax.eval_shape(algorithms.make("turn_ppo", c, models).init, jax.random.PRNGKey(1)), 1)
  adv, mask = diagnostics.critic_advantages(c, models)(state, batch)
  adv, mask = np.asarray(adv), np.asarray(mask)
  np.testing.assert_array_equal(mask, np.asarray(batch.action_mask & batch.attention_mask))
  # Turn-level GAE gives every action token of a turn one advantage (token-level GAE would
  # not), whitened over the action tokens.
  np.testing.assert_allclose(adv[:, 1], adv[:, 2], atol=1e-6)
  np.testing.assert_allclose(adv[:3, 4], adv[:3, 5], atol=1e-6)
  assert abs(adv[mask].mean()) < 1e-5 and adv[mask].std() == pytest.approx(1.0, abs=1e-3)
  assert np.all(adv[~mask] == 0)
  with pytest.raises(ValueError, match="valid: ppo, turn_ppo, hiper"):
    diagnostics.critic_advantages(ml_collections.ConfigDict({"name": "grpo"}), models)


def test_gradient_noise():
  g = np.array([1.0, 2.0, -1.0])
  cosine, ratio = diagnostics.gradient_noise([g, g, g])
  assert cosine == pytest.approx(1.0) and ratio == pytest.approx(0.0)
  cosine, ratio = diagnostics.gradient_noise([g, -g])
  assert cosine == pytest.approx(-1.0) and ratio == float("inf")
  # [1, 0] and [1, 1]: tr Var = 0.5, ‖ḡ‖² − tr Var / 2 = 1.25 − 0.25 = 1.
  cosine, ratio = diagnostics.gradient_noise([np.array([1.0, 0.0]), np.array([1.0, 1.0])])
  assert cosine == pytest.approx(2 ** -0.5) and ratio == pytest.approx(0.5)
