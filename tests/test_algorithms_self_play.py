"""Self-play with SPIRAL's role-conditioned advantages, on the toy Nim game."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from agentrl import algorithms, encoding, envs, policy, rollout, sampling
from agentrl.algorithms import self_play
from agentrl.models import decoder
from agentrl.tokenizer import Tokenizer
from tests import toy_envs

MAX_TOKENS, MAX_TURNS = 192, 8


def random_nim(env, rng):
  return f"take {int(rng.integers(1, 3))}"


def games(seeds, rng=0):
  """Optimal player 0 against a random player 1 (the winner varies with the seed)."""
  out = []
  for s in seeds:
    out += envs.play(toy_envs.Nim(max_turns=MAX_TURNS), [toy_envs.nim_policy, random_nim], s,
                     rng=rng + s)
  return out


@functools.lru_cache(maxsize=None)
def setup():
  text = []
  for ep in games(range(20)):
    text += [ep.system] + [m["content"] for m in ep.messages]
  tok = Tokenizer.train_bpe(text * 3, vocab_size=300)
  config = decoder.DecoderConfig.llama(vocab_size=tok.vocab_size, hidden_size=32, num_layers=1,
                                       num_heads=4, num_kv_heads=2, mlp_dim=64)
  params = decoder.init_params(config, jax.random.PRNGKey(0))
  models = algorithms.Models(config, params, sampling.SamplingConfig(
      max_new_tokens=4, stop_token=tok.end_of_turn_id, pad_token=tok.pad_id), pad_id=tok.pad_id)
  return tok, models


def nim_batch(seeds):
  """Scripted Nim games as a batch whose behaviour log-probs are the initial policy's."""
  tok, m = setup()
  b = encoding.encode_episodes(tok, games(seeds), max_tokens=MAX_TOKENS, max_turns=MAX_TURNS)
  lp = policy.evaluate(m.policy_params, m.policy_config, b.tokens, b.positions,
                       b.attention_mask).logprobs
  return dataclasses.replace(b, behaviour_logprobs=np.where(b.action_mask, np.asarray(lp), 0.0)
                             .astype(np.float32))


def rae_reference(returns, roles, valid, baselines, alpha):
  """Sequential numpy loop of SPIRAL's RAE (read, then update)."""
  b = np.array(baselines, np.float64)
  adv = np.zeros(len(returns))
  for i, (r, p, v) in enumerate(zip(returns, roles, valid)):
    if v:
      adv[i] = r - b[p]
      b[p] = alpha * b[p] + (1 - alpha) * r
  return adv, b


def test_role_advantages_by_hand():
  rewards = np.array([[0, 0, 1], [0, -1, 0], [0, 0, 0], [-1, 0, 0], [0, 0, 0]], np.float32)
  turn_mask = np.array([[1, 1, 1], [1, 1, 0], [0, 0, 0], [1, 0, 0], [1, 1, 0]], bool)
  roles = np.array([0, 1, 0, 1, 0])
  base = np.array([0.5, -0.2], np.float32)
  adv, new, ret = self_play.role_advantages(rewards, turn_mask, roles, base, alpha=0.9)
  # Row 0 (role 0): 1 - 0.5 = 0.5; b0 = 0.9*0.5 + 0.1*1 = 0.55. Row 1 (role 1): -1 + 0.2 = -0.8;
  # b1 = -0.18 - 0.1 = -0.28. Row 2 is padding. Row 3 (role 1): -1 + 0.28 = -0.72;
  # b1 = -0.252 - 0.1 = -0.352. Row 4 (role 0): 0 - 0.55 = -0.55; b0 = 0.495.
  np.testing.assert_allclose(ret, [1, -1, 0, -1, 0])
  expected = np.array([0.5, -0.8, 0.0, -0.72, -0.55])
  np.testing.assert_allclose(np.asarray(adv), expected[:, None] * turn_mask, atol=1e-6)
  np.testing.assert_allclose(new, [0.495, -0.352], atol=1e-6)
  # One shared baseline: every row reads and updates slot 0.
  adv, new, _ = self_play.role_advantages(rewards, turn_mask, roles, base, alpha=0.9,
                                          role_conditioned=False)
  ref_adv, ref_b = rae_reference([1, -1, 0, -1, 0], [0] * 5, turn_mask.any(1), base, 0.9)
  np.testing.assert_allclose(np.asarray(adv)[:, 0], ref_adv, atol=1e-6)
  np.testing.assert_allclose(new, ref_b, atol=1e-6)


def winner_loser_logprob(params, batch):
  _, m = setup()
  lp = np.asarray(policy.evaluate(params, m.policy_config, batch.tokens, batch.positions,
                                  batch.attention_mask).logprobs)
  per_row = np.where(batch.action_mask, lp, 0.0).sum(1) / batch.action_mask.sum(1)
  ret = np.where(batch.turn_mask, batch.rewards, 0).sum(1)
  return per_row[ret > 0].mean(), per_row[ret < 0].mean()


@pytest.mark.parametrize("role_conditioned", [True, False])
def test_update_moves_towards_the_winner_and_updates_baselines(role_conditioned):
  _, m = setup()
  cfg = ml_collections.ConfigDict({"lr": 3e-3, "alpha": 0.8, "role_conditioned": role_conditioned})
  algo = algorithms.make("self_play", cfg, m)
  state = algo.init(jax.random.PRNGKey(0))
  batch = nim_batch(range(12))
  ret = np.where(batch.turn_mask, batch.rewards, 0).sum(1)
  roles = batch.role[:, 0]
  assert set(np.unique(ret)) == {-1.0, 1.0} and set(roles) == {0, 1}
  assert (batch.group_id[0::2] == batch.group_id[1::2]).all()  # Rows (game, role).
  win0, lose0 = winner_loser_logprob(m.policy_params, batch)
  state, metrics = algo.update(state, batch, jax.random.PRNGKey(0))
  slots = roles if role_conditioned else np.zeros_like(roles)
  _, ref_b = rae_reference(ret, slots, np.ones(len(ret), bool), [0.0, 0.0], 0.8)
  np.testing.assert_allclose(state.frozen["role_baselines"], ref_b, atol=1e-5)
  assert float(metrics["self_play/baseline_0"]) == pytest.approx(ref_b[0], abs=1e-5)
  assert float(metrics["self_play/ratio_mean"]) == pytest.approx(1.0, abs=1e-4)
  assert algorithms.nonfinite_losses(metrics) == [] and int(state.step) == 1
  win1, lose1 = winner_loser_logprob(state.params["policy"], batch)
  # The winners' moves gain log-probability relative to the losers' (tokens both play, like
  # "take", get opposite pushes from the two sides; what is left favours the winners).
  assert win1 - win0 > lose1 - lose0 + 0.05, (win0, win1, lose0, lose1)


def test_rollout_batch_of_a_two_player_game():
  tok, m = setup()
  res = rollout.rollout(rollout.LMPolicy(m.policy_params, m.policy_config, m.sampling),
                        lambda: toy_envs.Nim(max_turns=4), [0, 1], tokenizer=tok,
                        max_tokens=MAX_TOKENS, group_size=2, rng=jax.random.PRNGKey(0))
  batch = res.batch
  algo = algorithms.make("self_play", ml_collections.ConfigDict({"lr": 1e-3}), m)
  state = algo.init(jax.random.PRNGKey(0))
  state, metrics = algo.update(state, batch, jax.random.PRNGKey(1))
  ret = np.where(batch.turn_mask, batch.rewards, 0).sum(1)
  _, ref_b = rae_reference(ret, batch.role[:, 0], batch.turn_mask.any(1), [0.0, 0.0], 0.95)
  np.testing.assert_allclose(state.frozen["role_baselines"], ref_b, atol=1e-6)
  assert np.isfinite(float(metrics["self_play/loss"]))
  assert jnp.asarray(state.frozen["role_baselines"]).shape == (2,)
