"""Offline value-based algorithms: ILQL, MC returns, offline ArCHer, and Q-guided decoding."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from agentrl import algorithms, policy, sampling, sources
from agentrl.algorithms import archer_offline, ilql, mc_returns
from agentrl.algorithms import value_decoding as vd
from agentrl.models import decoder
from agentrl.types import TrajectoryBatch
from tests import algo_harness as h
from tests import toy_envs


def _hand_batch() -> TrajectoryBatch:
  """One row, T=10, two turns: actions at 2-3 (turn 0) and 6-8 (turn 1, terminal)."""
  b = {k: np.array(v) for k, v in TrajectoryBatch.zeros(1, 10, 2).items()}
  b["tokens"][0] = np.arange(10) + 5
  b["positions"][0] = np.arange(10)
  b["attention_mask"][0] = True
  b["action_mask"][0, [2, 3, 6, 7, 8]] = True
  b["turn_index"][0, [2, 3]] = 0
  b["turn_index"][0, [6, 7, 8]] = 1
  b["turn_end"][0, [3, 8]] = True
  b["rewards"][0] = [-1.0, 2.0]
  b["turn_mask"][0] = True
  b["dones"][0, 1] = True
  return TrajectoryBatch(**b)


def test_token_level_targets_by_hand():
  batch = _hand_batch()
  rewards, dones = vd.token_rewards(batch)
  np.testing.assert_allclose(rewards[0], [0, 0, 0, -1, 0, 0, 0, 0, 2, 0])
  assert np.flatnonzero(dones[0]).tolist() == [8]
  nxt, has = vd.next_action_index(vd.action_token_mask(batch))
  assert nxt[0, 2] == 3 and nxt[0, 3] == 6 and nxt[0, 7] == 8 and has[0, 3]
  assert not has[0, 8]
  rtg = vd.reward_to_go(rewards, vd.action_token_mask(batch), 0.5)
  np.testing.assert_allclose(rtg[0], [0, 0, -0.375, -0.75, 0, 0, 0.5, 1.0, 2.0, 0], atol=1e-6)


def test_ilql_terms_match_numpy():
  batch = _hand_batch()
  rng = np.random.default_rng(0)
  vocab, gamma, tau, cql = 16, 0.9, 0.7, 0.1
  q = rng.normal(size=(2, 1, 10, vocab)).astype(np.float32)
  v = rng.normal(size=(1, 10)).astype(np.float32)
  tq = rng.normal(size=(2, 1, 10)).astype(np.float32)
  loss, _ = ilql.ilql_terms(q, v, tq, batch, gamma=gamma, expectile=tau, cql_weight=cql)
  acts, nxt = [2, 3, 6, 7, 8], {2: 3, 3: 6, 6: 7, 7: 8}
  reward, total = {3: -1.0, 8: 2.0}, 0.0
  for t in acts:
    a = batch.tokens[0, t]
    y = reward.get(t, 0.0) + (gamma * v[0, nxt[t]] if t in nxt else 0.0)
    total += sum(0.5 * (q[k, 0, t, a] - y) ** 2 for k in range(2))
    u = min(tq[0, 0, t], tq[1, 0, t]) - v[0, t]
    total += (tau if u > 0 else 1 - tau) * u ** 2
    lse = [np.log(np.sum(np.exp(q[k, 0, t]))) - q[k, 0, t, a] for k in range(2)]
    total += cql * sum(lse)
  np.testing.assert_allclose(float(loss), total / len(acts), rtol=1e-5)


def test_mc_terms_match_numpy():
  batch = _hand_batch()
  q = np.random.default_rng(1).normal(size=(1, 1, 10, 16)).astype(np.float32)
  loss, metrics = mc_returns.mc_terms(q, batch, gamma=0.5, cql_weight=0.2)
  rtg = {2: -0.375, 3: -0.75, 6: 0.5, 7: 1.0, 8: 2.0}
  total = 0.0
  for t, r in rtg.items():
    a = batch.tokens[0, t]
    total += 0.5 * (q[0, 0, t, a] - r) ** 2
    total += 0.2 * (np.log(np.sum(np.exp(q[0, 0, t]))) - q[0, 0, t, a])
  np.testing.assert_allclose(float(loss), total / 5, rtol=1e-5)
  np.testing.assert_allclose(float(metrics["loss_sum"] / metrics["loss_weight"]), float(loss),
                             rtol=1e-6)


@functools.lru_cache(maxsize=None)
def _data():
  """Four offline batches, each a 50/50 mix of bisect and random episodes, and held-out sets."""
  def mix(seeds):
    a = h.offline_batch(toy_envs.bisect_policy, seeds[::2])
    b = h.offline_batch(toy_envs.random_policy, seeds[1::2])
    return jax.tree.map(lambda x, y: np.concatenate([x, y]), a, b)
  train = [mix(list(range(i * 32, i * 32 + 32))) for i in range(4)]
  held = (h.offline_batch(toy_envs.bisect_policy, range(500, 532), 7),
          h.offline_batch(toy_envs.random_policy, range(500, 532), 7))
  return train, held


def _first_action_q(params, value_params, heads, batch) -> float:
  """Mean min_k Q_k(s, a) at the first token of each utterance."""
  out = policy.evaluate(params, h.models().policy_config, batch.tokens, batch.positions,
                        batch.attention_mask)
  q, _ = heads.apply({"params": value_params}, out.hidden)
  mask = vd.action_token_mask(batch)
  first = mask & ~jnp.pad(mask[:, :-1], ((0, 0), (1, 0)))
  qt = vd.taken(q, batch.tokens).min(0)
  return float(jnp.sum(jnp.where(first, qt, 0.0)) / jnp.sum(first))


def _train_value(module, name, cfg, updates):
  m = h.models()
  train, (bisect, random) = _data()
  algo = algorithms.make(name, cfg, m)
  state = algo.init(jax.random.PRNGKey(1))
  old = jax.tree.map(np.array, (state.params, state.frozen))
  state, metrics = algo.update(state, train[0], jax.random.PRNGKey(0))
  assert float(metrics[f"nonfinite/{name}_loss"]) == 0.0
  # The behaviour policy is not trained (train_trunk=False).
  jax.tree.map(np.testing.assert_array_equal, old[0]["policy"], state.params["policy"])
  if "target_value" in state.frozen:  # Polyak: target ← (1 − tau)·target + tau·online.
    expected = jax.tree.map(lambda t, o: (1 - cfg.tau) * t + cfg.tau * np.asarray(o),
                            old[1]["target_value"], state.params["value"])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
                 expected, state.frozen["target_value"])
  for i in range(1, updates):
    state, metrics = algo.update(state, train[i % 4], jax.random.PRNGKey(i))
  heads = module.value_heads(cfg, m)
  p, v = state.params["policy"], state.params["value"]
  return _first_action_q(p, v, heads, bisect), _first_action_q(p, v, heads, random)


def test_mc_returns_ranks_bisect_answers_above_random():
  cfg = ml_collections.ConfigDict({"lr": 3e-3})
  q_bisect, q_random = _train_value(mc_returns, "mc_returns", cfg, 40)
  assert q_bisect > q_random + 0.5, (q_bisect, q_random)


def test_ilql_ranks_bisect_answers_above_random():
  cfg = ml_collections.ConfigDict({"lr": 3e-3, "tau": 0.05})
  q_bisect, q_random = _train_value(ilql, "ilql", cfg, 40)
  assert q_bisect > q_random + 0.15, (q_bisect, q_random)


def _prompts():
  m = h.models()
  tok = h.tokenizer()
  prompts = [tok.encode_chat([{"role": "user", "content": f"Your guess {i}?"}],
                             add_generation_prompt=True).tokens.tolist() for i in range(3)]
  tokens, mask = sampling.left_pad(prompts, pad_token=tok.pad_id)
  return m, tokens, mask


def test_guided_generate_beta_zero_is_plain_sampling_and_large_beta_follows_q():
  m, tokens, mask = _prompts()
  heads = vd.TokenValueHeads(m.policy_config.vocab_size, 16, num_q=2, with_v=True)
  value = vd.init_heads(heads, jax.random.PRNGKey(3), m.policy_config.hidden_size)
  cfg, samp = m.policy_config, m.sampling
  length = tokens.shape[1] + samp.max_new_tokens
  key = jax.random.PRNGKey(5)
  plain = sampling.generate(m.policy_params, decoder.init_cache(cfg, 3, length), tokens, mask,
                            key, config=cfg, sampling=samp)
  guided = vd.guided_generate(m.policy_params, value, decoder.init_cache(cfg, 3, length), tokens,
                              mask, key, config=cfg, sampling=samp, heads=heads, beta=0.0)
  np.testing.assert_array_equal(plain.tokens, guided.tokens)
  np.testing.assert_array_equal(plain.logprobs, guided.logprobs)
  np.testing.assert_array_equal(plain.lengths, guided.lengths)

  strong = vd.guided_generate(m.policy_params, value, decoder.init_cache(cfg, 3, length), tokens,
                              mask, key, config=cfg, sampling=samp, heads=heads, beta=1e4)
  # Teacher-forced check: each generated token is argmax_a min_k Q_k(s, a) at its state.
  full = np.concatenate([tokens, np.asarray(strong.tokens)], axis=1)
  gen_mask = np.arange(samp.max_new_tokens)[None] < np.asarray(strong.lengths)[:, None]
  full_mask = np.concatenate([mask, gen_mask], axis=1)
  positions = np.maximum(np.cumsum(full_mask, axis=1) - 1, 0)
  out = policy.evaluate(m.policy_params, cfg, full, positions, full_mask)
  q, v = heads.apply({"params": value}, out.hidden)
  best = np.asarray(jnp.argmax(vd.advantage_logits(q, v), axis=-1))[:, tokens.shape[1]:]
  assert gen_mask.sum() > 3
  np.testing.assert_array_equal(np.where(gen_mask, best, -1),
                                np.where(gen_mask, np.asarray(strong.tokens), -1))
  assert not np.array_equal(np.asarray(strong.tokens), np.asarray(plain.tokens))


def test_archer_offline_turn_features_by_hand():
  batch = _hand_batch()
  hidden = jnp.broadcast_to(jnp.arange(10, dtype=jnp.float32)[None, :, None], (1, 10, 3))
  f = archer_offline.turn_features(hidden, batch)
  np.testing.assert_array_equal(f["state"][0, :, 0], [2, 6])  # before the first action token
  np.testing.assert_array_equal(f["action"][0, :, 0], [4, 9])  # after the turn_end token
  np.testing.assert_array_equal(f["next_state"][0, :, 0], [6, 0])
  np.testing.assert_array_equal(f["done"][0], [False, True])
  np.testing.assert_array_equal(f["mask"][0], [True, True])


def test_archer_offline_polyak_warmup_and_actor_update():
  m = h.models()
  batch = h.offline_batch(toy_envs.bisect_policy, range(4))
  cfg = ml_collections.ConfigDict({"lr": 1e-3, "critic_lr": 1e-3, "tau": 0.05,
                                   "critic_steps": 1, "warmup_updates": 1})
  algo = algorithms.make("archer_offline", cfg, m)
  assert isinstance(algo.source, sources.Offline)
  state = algo.init(jax.random.PRNGKey(0))
  old = jax.tree.map(np.array, (state.params, state.frozen))
  state, metrics = algo.update(state, batch, jax.random.PRNGKey(1))
  assert float(metrics["nonfinite/critic_loss"]) == 0.0
  expected = jax.tree.map(lambda t, o: 0.95 * t + 0.05 * np.asarray(o),
                          old[1]["target_critic"], state.params["critic"])
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
               expected, state.frozen["target_critic"])
  jax.tree.map(np.testing.assert_array_equal, old[0]["policy"], state.params["policy"])  # warmup
  state, metrics = algo.update(state, batch, jax.random.PRNGKey(2))
  assert float(metrics["archer_offline/weight_mean"]) > 0
  changed = jax.tree.leaves(jax.tree.map(lambda a, b: bool(np.any(a != np.asarray(b))),
                                         old[0]["policy"], state.params["policy"]))
  assert any(changed)
  # The frozen critic trunk stays the starting policy.
  jax.tree.map(np.testing.assert_array_equal, old[0]["policy"], state.frozen["critic_trunk"])
