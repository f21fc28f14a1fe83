"""PPO (token-level critic) and Turn-PPO (turn-level critic): targets by hand, first-step
identities, value fitting and improvement of the toy task."""

import dataclasses

import jax
import ml_collections
import numpy as np
import pytest

from agentrl import algorithms, policy
from agentrl.algorithms import ppo
from agentrl.types import TrajectoryBatch
from tests import algo_harness as h


def layout():
  """One row, T = 10: obs(2) act(2) obs(2) act(3) pad(1); K = 2 turns."""
  turn = np.array([[-1, -1, 0, 0, -1, -1, 1, 1, 1, -1]], np.int32)
  act = turn >= 0
  end = np.zeros_like(act)
  end[0, [3, 8]] = True
  return turn, act, end


def test_shaped_rewards_dones_and_turn_reads_by_hand():
  turn, act, end = layout()
  rewards = np.array([[-1.0, 2.0]], np.float32)
  behaviour = np.linspace(-1.0, -0.1, 10, dtype=np.float32)[None]
  ref = np.full((1, 10), -0.5, np.float32)
  shaped = np.asarray(ppo.shaped_token_rewards(rewards, turn, end, act, behaviour, ref,
                                               kl_coef=0.1))
  kl = np.where(act, behaviour - ref, 0.0)
  expected = -0.1 * kl
  expected[0, 3] += -1.0
  expected[0, 8] += 2.0
  np.testing.assert_allclose(shaped, expected, rtol=1e-6, atol=1e-7)

  dones = np.asarray(ppo.token_dones(np.array([[False, True]]), turn, end, act))
  assert dones[0].tolist() == [False] * 8 + [True, False]
  starts = np.asarray(ppo.turn_starts(turn, act))
  assert np.flatnonzero(starts[0]).tolist() == [2, 6]
  values_t = np.arange(10, dtype=np.float32)[None]
  np.testing.assert_array_equal(np.asarray(ppo.turn_values(values_t, turn, act, 2)), [[2, 6]])
  np.testing.assert_allclose(np.asarray(ppo.turn_sums(values_t, turn, act, 2)),
                             [[2 + 3, 6 + 7 + 8]])


@pytest.mark.parametrize("name", ["ppo", "turn_ppo"])
def test_first_update_starts_on_policy(name):
  """At the start the policy is the reference and the sampler: ratio 1, KL 0, and the first
  minibatch's surrogate is −mean(whitened A) = 0 over the action tokens."""
  m, batch = h.warm()
  config = ml_collections.ConfigDict({"lr": 1e-3, "epochs": 1, "kl_coef": 0.1})
  algo = algorithms.make(name, config, m)
  state, metrics = algo.update(algo.init(jax.random.PRNGKey(0)), batch, jax.random.PRNGKey(0))
  assert algorithms.nonfinite_losses(metrics) == []
  assert float(metrics[f"{name}/kl_ref"]) == pytest.approx(0.0, abs=1e-4)
  assert float(metrics[f"{name}/ratio_mean"]) == pytest.approx(1.0, abs=1e-4)
  if name == "ppo":  # token-mean of −Â·1 with Â whitened over the same tokens.
    assert float(metrics["ppo/first_pg_loss"]) == pytest.approx(0.0, abs=1e-5)
  assert float(metrics[f"{name}/optimizer_steps"]) == 1


def test_value_head_fits_the_returns_of_a_fixed_batch():
  # λ = γ = 1: the targets are the batch's Monte-Carlo returns-to-go, fixed across updates. The
  # value head is linear in the frozen policy's hidden states, so least squares on the batch is
  # the best it can reach, and the targets' variance is what a constant (the mean) reaches.
  m, batch = h.warm()
  config = ml_collections.ConfigDict({"lr": 0.0, "value_lr": 3e-2, "epochs": 16, "lam": 1.0,
                                      "value_clip_eps": 100.0})
  s = ppo.settings(config, m)
  algo = algorithms.make("ppo", config, m)
  state = algo.init(jax.random.PRNGKey(0))
  mask = np.asarray(batch.action_mask & batch.attention_mask, bool)
  data, _ = ppo.prepare(m.policy_params, state.params["value"], m.policy_params, batch, s)
  returns = np.asarray(data["returns"])[mask]
  hidden = np.asarray(policy.evaluate(m.policy_params, m.policy_config, batch.tokens,
                                      batch.positions, batch.attention_mask).hidden)[mask]
  features = np.concatenate([hidden, np.ones((len(hidden), 1))], axis=1)
  w, *_ = np.linalg.lstsq(features, returns, rcond=None)
  least_squares = 0.5 * np.mean((features @ w - returns) ** 2)
  constant = 0.5 * np.var(returns)
  assert least_squares < 0.9 * constant  # The batch's returns depend on the context.
  first = None
  for i in range(6):
    state, metrics = algo.update(state, batch, jax.random.PRNGKey(i))
    first = float(metrics["ppo/first_value_loss"]) if first is None else first
  # lr = 0: the policy (and so the returns' inputs) is unchanged; only the value head learns.
  jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, state.params["policy"]),
               m.policy_params)
  data, _ = ppo.prepare(m.policy_params, state.params["value"], m.policy_params, batch, s)
  np.testing.assert_allclose(np.asarray(data["returns"])[mask], returns, atol=1e-5)
  final = 0.5 * np.mean((np.asarray(data["old_values"])[mask] - returns) ** 2)
  assert final < 0.5 * first, (first, final)
  # Past the mean, at least 40% of the way to the best linear fit, and never below it.
  assert least_squares - 1e-4 <= final < constant - 0.4 * (constant - least_squares), (
      least_squares, final, constant)


def test_turn_ppo_critic_reads_before_the_action():
  """Turn-PPO's V(s_k) must not see turn k's action: changing the action tokens of turn k
  leaves V(s_k) unchanged (but may change V(s_{k+1}))."""
  m, batch = h.warm()
  algo = algorithms.make("turn_ppo", ml_collections.ConfigDict({"lr": 1e-3}), m)
  state = algo.init(jax.random.PRNGKey(0))
  s = ppo.settings(ml_collections.ConfigDict({}), m, turn_level=True)
  row = int(np.argmax(batch.turn_mask.sum(1)))
  one = jax.tree.map(lambda x: np.asarray(x)[row:row + 1], batch)
  first_turn = (one.turn_index == 0) & one.action_mask.astype(bool)
  changed = dataclasses.replace(one, tokens=np.where(first_turn, 7, one.tokens))

  def turn_values(b):
    data, _ = ppo.prepare(state.params["policy"], state.params["value"],
                          state.frozen["reference"], b, s)
    return np.asarray(data["old_values"])[0]

  before, after = turn_values(one), turn_values(changed)
  assert one.turn_mask[0, 1]
  assert before[0] == pytest.approx(after[0], abs=1e-6)  # V(s_0) reads before turn 0's action.
  assert abs(before[1] - after[1]) > 1e-6  # V(s_1) sees it.


@pytest.mark.parametrize("name,lr,epochs", [("ppo", 3e-3, 2), ("turn_ppo", 3e-3, 1)])
def test_improves_the_toy_task(name, lr, epochs):
  """After the critic is fitted (policy lr 0), three updates raise the policy's
  importance-weighted return on the batch. The toy task's return depends mostly on the hidden
  number, which no critic can see at the first turn, so a value baseline moves the policy
  less than the group baselines of `test_algorithms_group` do."""
  m, batch = h.warm()
  base = {"value_lr": 3e-3, "kl_coef": 0.0, "gamma": 1.0, "lam": 1.0}
  fit = algorithms.make(name, ml_collections.ConfigDict({**base, "lr": 0.0, "epochs": 4}), m)
  state = fit.init(jax.random.PRNGKey(0))
  for i in range(6):
    state, _ = fit.update(state, batch, jax.random.PRNGKey(i))
  algo = algorithms.make(name, ml_collections.ConfigDict({**base, "lr": lr, "epochs": epochs}),
                         m)
  before = h.is_return(m.policy_params, batch)
  for i in range(3):
    state, metrics = algo.update(state, batch, jax.random.PRNGKey(i))
  after = h.is_return(state.params["policy"], batch)
  assert algorithms.nonfinite_losses(metrics) == [] and int(state.step) == 9
  assert after > before + 0.03, (before, after)


def test_all_masked_batch_is_finite_and_leaves_the_policy():
  m, _ = h.warm()
  algo = algorithms.make("ppo", ml_collections.ConfigDict({"lr": 1e-3}), m)
  state = algo.init(jax.random.PRNGKey(0))
  empty = TrajectoryBatch.zeros(4, 16, 2)
  empty = dataclasses.replace(empty, attention_mask=np.ones((4, 16), bool))
  state, metrics = algo.update(state, empty, jax.random.PRNGKey(0))
  assert algorithms.nonfinite_losses(metrics) == []
  out = policy.evaluate(state.params["policy"], m.policy_config, np.ones((1, 4), np.int32),
                        np.arange(4)[None], np.ones((1, 4), bool))
  ref = policy.evaluate(m.policy_params, m.policy_config, np.ones((1, 4), np.int32),
                        np.arange(4)[None], np.ones((1, 4), bool))
  np.testing.assert_allclose(np.asarray(out.logprobs), np.asarray(ref.logprobs), atol=1e-6)
