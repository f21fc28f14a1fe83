"""Tests for agentrl.losses: numpy references on ragged batches, hand cases, invariances."""

from __future__ import annotations

import functools
import math

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agentrl import losses

MODES = losses.AGGREGATIONS
B, T, K = 4, 9, 3


# ----------------------------------------------------------------------------- helpers


def ragged_batch(seed: int, b: int = B, t: int = T):
  """Random token arrays with a ragged mask; row 2 is all masked (when b > 2)."""
  rng = np.random.default_rng(seed)
  lengths = rng.integers(1, t + 1, size=b)
  mask = np.arange(t)[None, :] < lengths[:, None]
  mask &= rng.random((b, t)) < 0.8  # holes inside the sequence (observation tokens)
  mask[:, 0] |= lengths > 0
  if b > 2:
    mask[2] = False
  logprobs = -rng.random((b, t)).astype(np.float32) * 3.0
  behaviour = logprobs + rng.normal(0.0, 0.3, (b, t)).astype(np.float32)
  advantages = rng.normal(0.0, 1.0, (b, t)).astype(np.float32)
  return dict(logprobs=logprobs, behaviour=behaviour, advantages=advantages, mask=mask)


def turn_batch(seed: int, b: int = B, t: int = T, k: int = K):
  """Action mask and turn_index made of up to k ragged turns per row, observation gaps between."""
  rng = np.random.default_rng(seed)
  turn_index = -np.ones((b, t), np.int32)
  for i in range(b):
    pos = int(rng.integers(0, 2))
    for turn in range(int(rng.integers(0, k + 1))):
      length = int(rng.integers(1, 4))
      turn_index[i, pos:pos + length] = turn
      pos += length + int(rng.integers(0, 3))
      if pos >= t:
        break
  action_mask = turn_index >= 0
  return turn_index, action_mask


def agg_ref(per_token, mask, mode, max_tokens=None):
  per_token, mask = np.asarray(per_token, np.float64), np.asarray(mask, bool)
  if mode == "token-mean":
    s, w = sum(per_token[i, j] for i, j in zip(*np.nonzero(mask))), mask.sum()
    return (s / w if w else 0.0), s, w
  seq_values = []
  for i in range(per_token.shape[0]):
    vals = [per_token[i, j] for j in range(per_token.shape[1]) if mask[i, j]]
    if not vals:
      continue
    if mode == "seq-mean-token-mean":
      seq_values.append(sum(vals) / len(vals))
    else:
      seq_values.append(sum(vals) / (max_tokens or per_token.shape[1]))
  s, w = sum(seq_values), len(seq_values)
  return (s / w if w else 0.0), s, w


def ppo_ref(lp, blp, adv, mask, eps_low=0.2, eps_high=None, dual=None):
  eps_high = eps_low if eps_high is None else eps_high
  out = np.zeros(lp.shape, np.float64)
  for i, j in zip(*np.nonzero(mask)):
    r = math.exp(float(lp[i, j]) - float(blp[i, j]))
    a = float(adv[i, j])
    l = max(-a * r, -a * min(max(r, 1 - eps_low), 1 + eps_high))
    if dual is not None and a < 0:
      l = min(l, -a * dual)
    out[i, j] = l
  return out


def turn_ratio_ref(lp, blp, turn_index, action_mask, k):
  ratio = np.ones(lp.shape, np.float64)
  for i in range(lp.shape[0]):
    for turn in range(k):
      idx = [j for j in range(lp.shape[1]) if action_mask[i, j] and turn_index[i, j] == turn]
      if idx:
        mean = np.mean([float(lp[i, j]) - float(blp[i, j]) for j in idx])
        for j in idx:
          ratio[i, j] = math.exp(mean)
  return ratio


def assert_close(a, b, tol=1e-5):
  np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=tol, atol=tol)


# ----------------------------------------------------------------------------- aggregate


def test_aggregate_hand_case():
  per_token = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], np.float32)
  mask = np.array([[True, True, False], [True, False, False]])
  loss, s, w = losses.aggregate(per_token, mask, mode="token-mean")
  assert_close([loss, s, w], [7.0 / 3.0, 7.0, 3.0])
  loss, s, w = losses.aggregate(per_token, mask, mode="seq-mean-token-mean")
  assert_close([loss, s, w], [(1.5 + 4.0) / 2.0, 5.5, 2.0])
  loss, s, w = losses.aggregate(per_token, mask, mode="seq-mean-token-sum-norm")
  assert_close([loss, s, w], [(3.0 / 3.0 + 4.0 / 3.0) / 2.0, 7.0 / 3.0, 2.0])
  loss, s, w = losses.aggregate(per_token, mask, mode="seq-mean-token-sum-norm", max_tokens=10)
  assert_close([loss, s, w], [(0.3 + 0.4) / 2.0, 0.7, 2.0])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_aggregate_matches_reference(mode, seed):
  batch = ragged_batch(seed)
  x = batch["advantages"]
  got = losses.aggregate(x, batch["mask"], mode=mode, max_tokens=12)
  assert_close(got, agg_ref(x, batch["mask"], mode, 12))
  assert_close(got[0], got[1] / got[2])


@pytest.mark.parametrize("mode", MODES)
def test_aggregate_all_masked_is_zero(mode):
  x = jnp.full((2, 3), jnp.nan)
  loss, s, w = losses.aggregate(x, jnp.zeros((2, 3), bool), mode=mode)
  assert float(loss) == 0.0 and float(s) == 0.0 and float(w) == 0.0
  g = jax.grad(lambda y: losses.aggregate(y, jnp.zeros((2, 3), bool), mode=mode)[0])(jnp.ones((2, 3)))
  assert np.all(np.isfinite(g))


def test_aggregate_unknown_mode():
  with pytest.raises(ValueError, match="token-mean"):
    losses.aggregate(jnp.ones((2, 3)), jnp.ones((2, 3), bool), mode="mean")


# ----------------------------------------------------------------------------- PPO


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("clip_high,dual", [(None, None), (0.28, None), (None, 3.0)])
@pytest.mark.parametrize("seed", [0, 1])
def test_ppo_matches_reference(mode, clip_high, dual, seed):
  b = ragged_batch(seed)
  b["behaviour"] = b["logprobs"] + np.random.default_rng(seed).normal(0, 1.0, (B, T)).astype(np.float32)
  loss, m = losses.ppo_clip_loss(
      b["logprobs"], b["behaviour"], b["advantages"], b["mask"], clip_high=clip_high,
      dual_clip=dual, aggregation=mode)
  per_token = ppo_ref(b["logprobs"], b["behaviour"], b["advantages"], b["mask"], 0.2, clip_high, dual)
  ref = agg_ref(per_token, b["mask"], mode)
  assert_close([loss, m["loss_sum"], m["loss_weight"]], ref)
  assert_close(loss, m["loss_sum"] / m["loss_weight"])
  r = np.exp(b["logprobs"] - b["behaviour"])[b["mask"]]
  assert_close(m["ratio_mean"], r.mean())
  assert_close(m["approx_kl"], (r - 1 - np.log(r)).mean())
  assert float(m["approx_kl"]) >= 0.0


def test_ppo_ratio_one_gives_minus_advantage():
  adv = np.array([[1.5, -2.0, 0.5]], np.float32)
  lp = np.array([[-1.0, -2.0, -0.3]], np.float32)
  mask = np.ones((1, 3), bool)
  loss, m = losses.ppo_clip_loss(lp, lp, adv, mask, dual_clip=3.0)
  assert_close(loss, -adv.mean())
  assert float(m["clip_fraction"]) == 0.0
  assert_close(m["ratio_mean"], 1.0)
  assert_close(m["approx_kl"], 0.0)
  # The gradient of the surrogate at ratio 1 is -A (per token, divided by the token count).
  g = jax.grad(lambda x: losses.ppo_clip_loss(x, lp, adv, mask)[0])(jnp.asarray(lp))
  assert_close(g, -adv / 3.0)


@pytest.mark.parametrize("adv", [1.0, -1.0])
def test_ppo_clipping_activates_exactly_beyond_eps(adv):
  eps = 0.2
  ratios = np.array([1 - eps - 0.05, 1 - eps + 0.05, 1.0, 1 + eps - 0.05, 1 + eps + 0.05])
  lp = np.log(ratios).astype(np.float32)[None]
  blp = np.zeros_like(lp)
  a = np.full_like(lp, adv)
  mask = np.ones_like(lp, bool)
  per_token = [
      float(losses.ppo_clip_loss(lp[:, i:i + 1], blp[:, i:i + 1], a[:, i:i + 1], mask[:, i:i + 1])[0])
      for i in range(5)]
  grads = [
      float(jax.grad(lambda x: losses.ppo_clip_loss(x, blp[:, i:i + 1], a[:, i:i + 1], mask[:, i:i + 1])[0])(
          jnp.asarray(lp[:, i:i + 1]))[0, 0]) for i in range(5)]
  if adv > 0:  # clipped (no gradient) only above 1 + eps
    assert_close(per_token, -np.minimum(ratios, 1 + eps), 1e-5)
    expected_clipped = [False, False, False, False, True]
  else:  # clipped only below 1 - eps
    assert_close(per_token, np.maximum(ratios, 1 - eps), 1e-5)
    expected_clipped = [True, False, False, False, False]
  assert [g == 0.0 for g in grads] == expected_clipped
  _, m = losses.ppo_clip_loss(lp, blp, a, mask)
  assert_close(m["clip_fraction"], 1.0 / 5.0)


def test_dual_clip_bounds_negative_advantage():
  lp = np.log(np.array([[10.0, 10.0, 0.5]], np.float32))
  blp = np.zeros_like(lp)
  adv = np.array([[-2.0, 2.0, -2.0]], np.float32)
  mask = np.ones_like(lp, bool)
  _, m0 = losses.ppo_clip_loss(lp, blp, adv, mask, aggregation="token-mean")
  loss, m = losses.ppo_clip_loss(lp, blp, adv, mask, dual_clip=3.0)
  # token 0: A<0, ratio 10 -> unbounded 20, dual clip -> 3*2 = 6; token 1: A>0 clipped at 1.2
  # -> -2.4; token 2: A<0, ratio 0.5 -> clipped at 0.8 -> 1.6 (below the bound, untouched).
  assert_close(float(m0["loss_sum"]), 20.0 - 2.4 + 1.6)
  assert_close(float(m["loss_sum"]), 6.0 - 2.4 + 1.6)
  assert_close(m["dual_clip_fraction"], 1.0 / 3.0)
  g = jax.grad(lambda x: losses.ppo_clip_loss(x, blp, adv, mask, dual_clip=3.0)[0])(jnp.asarray(lp))
  assert float(g[0, 0]) == 0.0
  with pytest.raises(ValueError):
    losses.ppo_clip_loss(lp, blp, adv, mask, dual_clip=0.5)


# ----------------------------------------------------------------------------- value


def value_ref(v, old, ret, clip):
  out = np.zeros(v.shape, np.float64)
  for idx in np.ndindex(v.shape):
    vc = old[idx] + min(max(v[idx] - old[idx], -clip), clip)
    out[idx] = 0.5 * max((v[idx] - ret[idx]) ** 2, (vc - ret[idx]) ** 2)
  return out


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("seed", [0, 3])
def test_clipped_value_matches_reference(mode, seed):
  b = ragged_batch(seed)
  rng = np.random.default_rng(seed + 100)
  v, old, ret = (rng.normal(size=(B, T)).astype(np.float32) for _ in range(3))
  loss, m = losses.clipped_value_loss(v, old, ret, b["mask"], clip=0.2, aggregation=mode)
  ref = agg_ref(value_ref(v.astype(np.float64), old, ret, 0.2), b["mask"], mode)
  assert_close([loss, m["loss_sum"], m["loss_weight"]], ref)


def test_clipped_value_hand_case():
  v, old, ret = (np.array([[x]], np.float32) for x in (1.0, 0.0, 1.0))
  mask = np.ones((1, 1), bool)
  loss, m = losses.clipped_value_loss(v, old, ret, mask, clip=0.2)
  assert_close(loss, 0.5 * 0.8 ** 2)  # clipped prediction 0.2 is worse than 1.0
  assert_close(m["vf_clip_fraction"], 1.0)


# ----------------------------------------------------------------------------- KL


def test_kl_estimators_hand_values():
  lp, ref = jnp.array([-1.0, -2.0, -0.5]), jnp.array([-1.5, -1.0, -0.5])
  d = np.array([0.5, -1.0, 0.0])  # log p - log q
  assert_close(losses.kl_penalty(lp, ref, estimator="k1"), d)
  assert_close(losses.kl_penalty(lp, ref, estimator="k2"), 0.5 * d ** 2)
  k3 = losses.kl_penalty(lp, ref, estimator="k3")
  assert_close(k3, np.exp(-d) - 1 + d)
  assert np.all(np.asarray(k3) >= 0)
  assert_close(losses.kl_penalty(lp, ref, estimator="k3", clamp=0.1), np.minimum(np.exp(-d) - 1 + d, 0.1))
  with pytest.raises(ValueError, match="k3"):
    losses.kl_penalty(lp, ref, estimator="k4")


def test_kl_estimators_unbiased_on_samples():
  # KL between two categoricals estimated by k1 and k3 on exact expectation over p.
  p = np.array([0.5, 0.3, 0.2])
  q = np.array([0.2, 0.3, 0.5])
  true_kl = float(np.sum(p * np.log(p / q)))
  for est in ("k1", "k3"):
    vals = np.asarray(losses.kl_penalty(jnp.log(p), jnp.log(q), estimator=est))
    assert_close(np.sum(p * vals), true_kl)


@pytest.mark.parametrize("estimator", losses.KL_ESTIMATORS)
@pytest.mark.parametrize("mode", MODES)
def test_kl_loss_matches_reference(estimator, mode):
  b = ragged_batch(5)
  loss, m = losses.kl_loss(b["logprobs"], b["behaviour"], b["mask"], estimator=estimator, aggregation=mode)
  d = (b["logprobs"] - b["behaviour"]).astype(np.float64)
  per = {"k1": d, "k2": 0.5 * d ** 2, "k3": np.exp(-d) - 1 + d}[estimator]
  assert_close([loss, m["loss_sum"], m["loss_weight"]], agg_ref(per, b["mask"], mode))


# ----------------------------------------------------------------------------- entropy / BC


def test_entropy_matches_definition():
  logits = np.random.default_rng(0).normal(size=(B, T, 7)).astype(np.float32) * 2
  p = np.exp(logits - logits.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  ref = -(p * np.log(p)).sum(-1)
  assert_close(losses.entropy_from_logits(logits), ref)
  mask = ragged_batch(0)["mask"]
  loss, m = losses.entropy_loss(logits, mask, aggregation="seq-mean-token-mean")
  assert_close([loss, m["loss_sum"], m["loss_weight"]], agg_ref(-ref, mask, "seq-mean-token-mean"))
  assert_close(m["entropy"], ref[mask].mean())
  uniform = losses.entropy_from_logits(jnp.zeros((1, 1, 7)))
  assert_close(uniform, [[np.log(7)]])


@pytest.mark.parametrize("mode", MODES)
def test_bc_loss_matches_reference(mode):
  b = ragged_batch(6)
  loss, m = losses.bc_loss(b["logprobs"], b["mask"], aggregation=mode)
  assert_close([loss, m["loss_sum"], m["loss_weight"]], agg_ref(-b["logprobs"], b["mask"], mode))


def test_filtered_bc_mask():
  returns = jnp.array([1.0, 3.0, 3.0, 0.0, 5.0, 2.0])
  valid = jnp.array([True, True, True, True, False, True])
  # 5 valid rows; top 40% -> ceil(2.0) = 2 rows: the two 3.0s (row 4 is padding).
  got = losses.filtered_bc_mask(returns, valid, top_fraction=0.4)
  np.testing.assert_array_equal(got, [False, True, True, False, False, False])
  # top 20% -> 1 row; tie between rows 1 and 2 goes to the lower index.
  got = losses.filtered_bc_mask(returns, valid, top_fraction=0.2)
  np.testing.assert_array_equal(got, [False, True, False, False, False, False])
  got = losses.filtered_bc_mask(returns, valid, top_fraction=1.0)
  np.testing.assert_array_equal(got, valid)
  got = losses.filtered_bc_mask(jnp.arange(10.0), jnp.ones(10, bool), top_fraction=0.3)
  assert int(got.sum()) == 3 and bool(got[7:].all())
  assert not losses.filtered_bc_mask(returns, jnp.zeros(6, bool), top_fraction=0.5).any()
  with pytest.raises(ValueError):
    losses.filtered_bc_mask(returns, valid, top_fraction=0.0)


# ----------------------------------------------------------------------------- ST-PPO


def test_turn_level_ratio_hand_case():
  # Row 0: turn 0 on tokens 0-1, an observation at 2, turn 1 on tokens 3-5, padding at 6.
  turn_index = np.array([[0, 0, -1, 1, 1, 1, -1]], np.int32)
  action_mask = turn_index >= 0
  log_ratio = np.array([[0.2, 0.4, 9.0, -0.3, 0.0, 0.6, 9.0]], np.float32)
  behaviour = np.full_like(log_ratio, -1.0)
  ratio = losses.turn_level_ratio(behaviour + log_ratio, behaviour, turn_index, action_mask, 2)
  e0, e1 = math.exp(0.3), math.exp(0.1)
  assert_close(ratio, [[e0, e0, 1.0, e1, e1, e1, 1.0]])


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_turn_level_ratio_matches_reference(seed):
  b = ragged_batch(seed)
  turn_index, action_mask = turn_batch(seed)
  got = losses.turn_level_ratio(b["logprobs"], b["behaviour"], turn_index, action_mask, K)
  assert_close(got, turn_ratio_ref(b["logprobs"], b["behaviour"], turn_index, action_mask, K))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("token_gradient", [False, True])
def test_turn_ppo_matches_reference(mode, token_gradient):
  b = ragged_batch(7)
  turn_index, action_mask = turn_batch(7)
  blp = b["logprobs"] + np.random.default_rng(7).normal(0, 0.6, (B, T)).astype(np.float32)
  w = turn_ratio_ref(b["logprobs"], blp, turn_index, action_mask, K)
  loss, m = losses.turn_ppo_loss(
      b["logprobs"], blp, b["advantages"], turn_index, action_mask, num_turns=K,
      token_gradient=token_gradient, aggregation=mode)
  per_token = ppo_ref(np.log(w), np.zeros_like(w), b["advantages"], action_mask)
  assert_close([loss, m["loss_sum"], m["loss_weight"]], agg_ref(per_token, action_mask, mode))
  assert float(m["clip_normalizer"]) == 1.0


def test_turn_ppo_single_token_turns_equal_token_ppo():
  b = ragged_batch(8)
  turn_index = np.where(b["mask"], np.arange(T)[None, :], -1).astype(np.int32)
  for mode in MODES:
    got = losses.turn_ppo_loss(b["logprobs"], b["behaviour"], b["advantages"], turn_index, b["mask"],
                               num_turns=T, aggregation=mode)[0]
    want = losses.ppo_clip_loss(b["logprobs"], b["behaviour"], b["advantages"], b["mask"], aggregation=mode)[0]
    assert_close(got, want)


def test_turn_ppo_gradients():
  turn_index = np.array([[0, 0, -1, 1, 1]], np.int32)
  mask = turn_index >= 0
  lp = jnp.array([[-1.0, -2.0, -3.0, -0.5, -0.7]])
  blp = jnp.array([[-1.1, -1.9, -3.0, -0.4, -0.7]])
  adv = jnp.array([[1.0, 2.0, 0.0, -1.0, 0.5]])
  def f(x, tg):
    return losses.turn_ppo_loss(x, blp, adv, turn_index, mask, num_turns=2, token_gradient=tg)[0]
  g_geo, g_tok = jax.grad(f)(lp, False), jax.grad(f)(lp, True)
  assert np.all(np.isfinite(g_geo)) and np.all(np.isfinite(g_tok))
  assert_close(f(lp, False), f(lp, True))
  w0 = math.exp(((-1.0 + 1.1) + (-2.0 + 1.9)) / 2)  # = 1, unclipped
  # GSPO form: d/dlp_j of -w0 A_j exp(lp_j - sg lp_j) / 4 tokens = -w0 A_j / 4.
  assert_close(g_tok[0, :2], [-w0 * 1.0 / 4, -w0 * 2.0 / 4])
  # Geometric-mean form: every token of turn 0 gets -(w0/2) * (A_0 + A_1) / 4.
  assert_close(g_geo[0, :2], [-w0 * 3.0 / 8, -w0 * 3.0 / 8])
  assert float(g_geo[0, 2]) == 0.0 and float(g_tok[0, 2]) == 0.0


def test_turn_ppo_clip_normalizer():
  b = ragged_batch(9)
  turn_index, action_mask = turn_batch(9)
  blp = b["logprobs"] + np.random.default_rng(9).normal(0, 1.0, (B, T)).astype(np.float32)
  args = (b["logprobs"], blp, b["advantages"], turn_index, action_mask)
  base, m0 = losses.turn_ppo_loss(*args, num_turns=K)
  loss, m = losses.turn_ppo_loss(*args, num_turns=K, clip_normalizer=lambda c: 1.0 + c)
  assert float(m["clip_fraction"]) > 0
  assert_close(loss, base / (1.0 + m0["clip_fraction"]))
  assert_close(loss, m["loss_sum"] / m["loss_weight"])
  assert_close(m["clip_normalizer"], 1.0 + m0["clip_fraction"])


# ----------------------------------------------------------------------------- shared properties


def all_losses(b, turn_index, action_mask, logits, max_tokens, mode="token-mean"):
  """Every loss on one batch, as {name: (loss, metrics)}."""
  lp, blp, adv, mask = b["logprobs"], b["behaviour"], b["advantages"], b["mask"]
  kw = dict(aggregation=mode, max_tokens=max_tokens)
  return {
      "ppo": losses.ppo_clip_loss(lp, blp, adv, mask, dual_clip=3.0, **kw),
      "value": losses.clipped_value_loss(adv, lp, blp, mask, **kw),
      "kl": losses.kl_loss(lp, blp, mask, **kw),
      "entropy": losses.entropy_loss(logits, mask, **kw),
      "bc": losses.bc_loss(lp, mask, **kw),
      "turn_ppo": losses.turn_ppo_loss(lp, blp, adv, turn_index, action_mask, num_turns=K, **kw),
  }


@pytest.mark.parametrize("mode", MODES)
def test_all_masked_gives_zero_and_finite_grads(mode):
  b = ragged_batch(0)
  b["mask"] = np.zeros_like(b["mask"])
  zero_turns = -np.ones((B, T), np.int32)
  logits = np.zeros((B, T, 5), np.float32)
  for name, (loss, m) in all_losses(b, zero_turns, zero_turns >= 0, logits, None, mode).items():
    assert float(loss) == 0.0, name
    assert all(np.isfinite(float(v)) for v in m.values()), name

  def total(lp):
    c = dict(b, logprobs=lp)
    return sum(l for l, _ in all_losses(c, zero_turns, zero_turns >= 0, logits, None, mode).values())
  g = jax.grad(total)(jnp.asarray(b["logprobs"]))
  assert np.all(np.isfinite(g)) and np.all(g == 0)


@pytest.mark.parametrize("mode", MODES)
def test_gradients_finite_and_sum_over_weight(mode):
  b = ragged_batch(11)
  turn_index, action_mask = turn_batch(11)
  logits = np.random.default_rng(11).normal(size=(B, T, 5)).astype(np.float32)

  def total(lp, lg):
    c = dict(b, logprobs=lp)
    return sum(l for l, _ in all_losses(c, turn_index, action_mask, lg, None, mode).values())
  g_lp, g_lg = jax.grad(total, argnums=(0, 1))(jnp.asarray(b["logprobs"]), jnp.asarray(logits))
  assert np.all(np.isfinite(g_lp)) and np.all(np.isfinite(g_lg))
  for name, (loss, m) in all_losses(b, turn_index, action_mask, logits, None, mode).items():
    assert_close(loss, m["loss_sum"] / m["loss_weight"])
    assert float(m["loss"]) == float(loss), name


def test_micro_batch_accumulation_is_exact():
  b = ragged_batch(12)
  for mode in MODES:
    full, _ = losses.ppo_clip_loss(b["logprobs"], b["behaviour"], b["advantages"], b["mask"], aggregation=mode)
    sums, weights = 0.0, 0.0
    for rows in (slice(0, 1), slice(1, 4)):
      _, m = losses.ppo_clip_loss(b["logprobs"][rows], b["behaviour"][rows], b["advantages"][rows],
                                  b["mask"][rows], aggregation=mode, max_tokens=T)
      sums, weights = sums + m["loss_sum"], weights + m["loss_weight"]
    assert_close(full, sums / weights)


@pytest.mark.parametrize("mode", MODES)
def test_jit_and_no_jit_agree(mode):
  b = ragged_batch(13)
  turn_index, action_mask = turn_batch(13)
  logits = np.random.default_rng(13).normal(size=(B, T, 5)).astype(np.float32)
  f = functools.partial(all_losses, max_tokens=None, mode=mode)
  eager = f(b, turn_index, action_mask, logits)
  jitted = jax.jit(f)(b, turn_index, action_mask, logits)
  for name in eager:
    assert_close(eager[name][0], jitted[name][0])
    for key in eager[name][1]:
      assert_close(eager[name][1][key], jitted[name][1][key])
  ratio = losses.turn_level_ratio(b["logprobs"], b["behaviour"], turn_index, action_mask, K)
  ratio_jit = jax.jit(losses.turn_level_ratio, static_argnums=4)(
      b["logprobs"], b["behaviour"], turn_index, action_mask, K)
  assert_close(ratio, ratio_jit)
  fb = functools.partial(losses.filtered_bc_mask, top_fraction=0.5)
  rets, valid = jnp.array([1.0, 2.0, 2.0, -1.0]), jnp.array([True, True, True, False])
  np.testing.assert_array_equal(fb(rets, valid), jax.jit(fb)(rets, valid))


PAD = 5  # extra masked columns; a fixed width keeps the property test fast


@hypothesis.settings(max_examples=25, deadline=None)
@hypothesis.given(
    seed=st.integers(0, 10_000),
    mode=st.sampled_from(MODES),
    garbage=st.sampled_from(["random", "huge", "nan"]),
)
def test_padding_never_changes_a_result(seed, mode, garbage):
  """Spreading a batch over a wider array with masked garbage in between changes nothing."""
  b = ragged_batch(seed)
  turn_index, action_mask = turn_batch(seed)
  logits = np.random.default_rng(seed).normal(size=(B, T, 5)).astype(np.float32)
  max_tokens = T + PAD  # the Dr.GRPO constant must not depend on the padded width
  before = all_losses(b, turn_index, action_mask, logits, max_tokens, mode)
  ratio_before = losses.turn_level_ratio(b["logprobs"], b["behaviour"], turn_index, action_mask, K)

  rng = np.random.default_rng(seed + 1)
  width = T + PAD

  def junk(shape):
    if garbage == "nan":
      return np.full(shape, np.nan, np.float32)
    scale = 1e4 if garbage == "huge" else 3.0
    return (rng.normal(size=shape) * scale).astype(np.float32)

  # Row i's T tokens go to sorted random columns cols[i]; every other column is masked junk,
  # and so is every token that neither mask looks at.
  cols = np.stack([np.sort(rng.choice(width, T, replace=False)) for _ in range(B)])
  rows = np.arange(B)[:, None]

  def spread(x, fill):
    out = np.array(fill)
    out[rows, cols] = x
    return out

  seen = b["mask"] | action_mask
  padded = {"mask": spread(b["mask"], np.zeros((B, width), bool))}
  for key in ("logprobs", "behaviour", "advantages"):
    padded[key] = spread(np.where(seen, b[key], junk((B, T))), junk((B, width)))
  p_turn = spread(turn_index, -np.ones((B, width), np.int32))
  p_action = spread(action_mask, np.zeros((B, width), bool))
  p_logits = spread(np.where(b["mask"][..., None], logits, junk((B, T, 5))), junk((B, width, 5)))
  after = all_losses(padded, p_turn, p_action, p_logits, max_tokens, mode)
  for name in before:
    assert_close(before[name][0], after[name][0])
    for key in before[name][1]:
      assert_close(before[name][1][key], after[name][1][key])
  ratio_after = np.asarray(losses.turn_level_ratio(padded["logprobs"], padded["behaviour"], p_turn, p_action, K))
  assert_close(ratio_before, ratio_after[rows, cols])
  assert np.all(ratio_after[~p_action] == 1.0)


def test_registry():
  assert losses.get_loss("ppo_clip") is losses.ppo_clip_loss
  for name, fn in losses.LOSSES.items():
    assert losses.get_loss(name) is fn
  with pytest.raises(ValueError) as err:
    losses.get_loss("nope")
  for name in losses.LOSSES:
    assert name in str(err.value)


# ----------------------------------------------------------------------------- REFUEL


def refuel_batch(seed: int, p: int = 5, t: int = T):
  """Random pairs with ragged masks; pair 1 has both members all masked."""
  rng = np.random.default_rng(seed)
  f = lambda *s: rng.normal(size=s).astype(np.float32)
  b = {
      "logprobs": f(p, t) - 1.0, "ref": f(p, t) - 1.0, "mask": rng.random((p, t)) < 0.6,
      "pair_logprobs": f(p, t) - 1.0, "pair_ref": f(p, t) - 1.0, "pair_mask": rng.random((p, t)) < 0.6,
      "rewards": f(p), "pair_rewards": f(p),
  }
  b["mask"][1] = False
  b["pair_mask"][1] = False
  b["mask"][[0, 3, 4], 0] = True
  b["mask"][2] = False  # one member empty: still a valid pair
  b["pair_mask"][2, 0] = True
  for k in ("logprobs", "ref", "pair_logprobs", "pair_ref"):  # garbage under the masks
    m = b["pair_mask"] if k.startswith("pair") else b["mask"]
    b[k] = np.where(m, b[k], np.nan).astype(np.float32)
  return b


def refuel_call(b, **kw):
  return losses.refuel_loss(b["logprobs"], b["ref"], b["mask"], b["pair_logprobs"], b["pair_ref"],
                            b["pair_mask"], b["rewards"], b["pair_rewards"], **kw)


def refuel_reference(b, eta, form):
  total, n = 0.0, 0
  for i in range(b["mask"].shape[0]):
    if not (b["mask"][i].any() or b["pair_mask"][i].any()):
      continue
    d = 0.0
    for t in range(b["mask"].shape[1]):
      if b["mask"][i, t]:
        d += float(b["logprobs"][i, t]) - float(b["ref"][i, t])
      if b["pair_mask"][i, t]:
        d -= float(b["pair_logprobs"][i, t]) - float(b["pair_ref"][i, t])
    dr = float(b["rewards"][i]) - float(b["pair_rewards"][i])
    r = d / eta - dr if form == "paper" else d - eta * dr
    total, n = total + r * r, n + 1
  return (total / n if n else 0.0), total, n


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("form", losses.REFUEL_FORMS)
@pytest.mark.parametrize("eta", [1.0, 3.0])
def test_refuel_matches_reference(seed, form, eta):
  b = refuel_batch(seed)
  loss, m = refuel_call(b, eta=eta, form=form)
  ref_loss, ref_sum, ref_n = refuel_reference(b, eta, form)
  assert_close(loss, ref_loss)
  assert_close(m["loss_sum"], ref_sum)
  assert float(m["loss_weight"]) == ref_n == 4
  assert_close(loss, m["loss_sum"] / m["loss_weight"])
  assert all(np.isfinite(float(v)) for v in m.values())


def test_refuel_hand_case():
  # Pair 0: Δ = (−1 − −2) + (−1 − −1) − ((−3 − −2)) = 1 + 0 + 1 = 2; ΔR = 1 − 0 = 1.
  # Pair 1: both masks empty -> left out.
  lp = np.array([[-1.0, -1.0, 9.0], [0.0, 0.0, 0.0]], np.float32)
  ref = np.array([[-2.0, -1.0, 9.0], [0.0, 0.0, 0.0]], np.float32)
  mask = np.array([[True, True, False], [False, False, False]])
  plp = np.array([[-3.0, 5.0, 5.0], [0.0, 0.0, 0.0]], np.float32)
  pref = np.array([[-2.0, 0.0, 0.0], [0.0, 0.0, 0.0]], np.float32)
  pmask = np.array([[True, False, False], [False, False, False]])
  r, pr = np.array([1.0, 7.0], np.float32), np.array([0.0, -7.0], np.float32)
  loss, m = losses.refuel_loss(lp, ref, mask, plp, pref, pmask, r, pr, eta=4.0)
  assert_close(loss, (2.0 / 4.0 - 1.0) ** 2)  # 0.25
  assert float(m["loss_weight"]) == 1.0
  loss, m = losses.refuel_loss(lp, ref, mask, plp, pref, pmask, r, pr, eta=4.0, form="code")
  assert_close(loss, (2.0 - 4.0) ** 2)  # η² × the paper form
  assert_close(m["log_ratio_diff"], 2.0)
  assert_close(m["reward_diff"], 1.0)
  empty = np.zeros_like(mask)
  loss, m = losses.refuel_loss(lp, ref, empty, plp, pref, empty, r, pr, eta=4.0)
  assert float(loss) == 0.0 and float(m["loss_weight"]) == 0.0
  with pytest.raises(ValueError):
    losses.refuel_loss(lp, ref, mask, plp, pref, pmask, r, pr, eta=0.0)
  with pytest.raises(ValueError):
    losses.refuel_loss(lp, ref, mask, plp, pref, pmask, r, pr, eta=1.0, form="nope")


def test_refuel_gradients_finite_and_jit():
  b = refuel_batch(7)
  eta = 2.0

  def f(lp, plp):
    return refuel_call(dict(b, logprobs=lp, pair_logprobs=plp), eta=eta)[0]
  g, pg = jax.grad(f, argnums=(0, 1))(jnp.asarray(b["logprobs"]), jnp.asarray(b["pair_logprobs"]))
  assert np.all(np.isfinite(g)) and np.all(np.isfinite(pg))
  assert np.all(np.asarray(g)[~b["mask"]] == 0) and np.all(np.asarray(pg)[~b["pair_mask"]] == 0)
  # d loss / d log π_θ(y_t) = (2/n) · residual / η on the first member, the negative on the second.
  _, ref_sum, n = refuel_reference(b, eta, "paper")
  for i in range(b["mask"].shape[0]):
    d = np.nansum(np.where(b["mask"][i], b["logprobs"][i] - b["ref"][i], 0.0))
    d -= np.nansum(np.where(b["pair_mask"][i], b["pair_logprobs"][i] - b["pair_ref"][i], 0.0))
    resid = d / eta - (b["rewards"][i] - b["pair_rewards"][i])
    if b["mask"][i].any() or b["pair_mask"][i].any():
      assert_close(np.asarray(g)[i][b["mask"][i]], 2.0 / n * resid / eta)
      assert_close(np.asarray(pg)[i][b["pair_mask"][i]], -2.0 / n * resid / eta)
  grad_ref = jax.grad(lambda r: refuel_call(dict(b, ref=r), eta=eta)[0])(jnp.asarray(b["ref"]))
  assert np.all(np.asarray(grad_ref) == 0)  # π_t is a constant
  eager = refuel_call(b, eta=eta)
  jitted = jax.jit(lambda c: refuel_call(c, eta=eta))(b)
  assert_close(eager[0], jitted[0])
  for key in eager[1]:
    assert_close(eager[1][key], jitted[1][key])
  assert losses.get_loss("refuel") is losses.refuel_loss


# ----------------------------------------------------------------------------- SeeUPO schedule


def test_seeupo_schedule_hand_case():
  # Ragged turns: row 0 has 3 turns, row 1 has 1 turn, row 2 has 2 turns with observation
  # tokens (−1) between them; row 3 is padding only.
  turn_index = np.array([
      [0, 0, -1, 1, -1, 2, 2],
      [-1, 0, 0, 0, -1, -1, -1],
      [0, -1, -1, 1, 1, 1, -1],
      [-1, -1, -1, -1, -1, -1, -1],
  ], np.int32)
  action_mask = turn_index >= 0
  action_mask[2, 5] = False  # a non-action token inside a turn is in no stage
  k = 3
  sched = np.asarray(losses.seeupo_schedule(turn_index, action_mask, num_turns=k))
  assert sched.shape == (k, 4, 7) and sched.dtype == bool
  expected_stage0 = np.zeros((4, 7), bool)
  expected_stage0[0, 5:7] = True  # turn 2 first
  expected_stage1 = np.zeros((4, 7), bool)
  expected_stage1[0, 3] = True
  expected_stage1[2, 3:5] = True
  expected_stage2 = np.zeros((4, 7), bool)
  expected_stage2[0, 0:2] = True
  expected_stage2[1, 1:4] = True
  expected_stage2[2, 0] = True
  np.testing.assert_array_equal(sched[0], expected_stage0)
  np.testing.assert_array_equal(sched[1], expected_stage1)
  np.testing.assert_array_equal(sched[2], expected_stage2)
  # Exact partition of the action tokens; stage s holds turn K−1−s only.
  np.testing.assert_array_equal(sched.sum(0), action_mask.astype(int))
  for s in range(k):
    assert np.all(turn_index[sched[s]] == k - 1 - s)
  jitted = jax.jit(functools.partial(losses.seeupo_schedule, num_turns=k))(turn_index, action_mask)
  np.testing.assert_array_equal(sched, jitted)
  assert losses.SCHEDULES["seeupo"] is losses.seeupo_schedule
  with pytest.raises(ValueError):
    losses.seeupo_schedule(turn_index, action_mask, num_turns=0)


@pytest.mark.parametrize("seed", [0, 1])
def test_seeupo_schedule_partitions_random_turns(seed):
  turn_index, action_mask = turn_batch(seed)
  sched = np.asarray(losses.seeupo_schedule(turn_index, action_mask, num_turns=K))
  valid = action_mask & (turn_index >= 0) & (turn_index < K)
  np.testing.assert_array_equal(sched.sum(0), valid.astype(int))
  for s in range(K):
    assert np.all(turn_index[sched[s]] == K - 1 - s)
