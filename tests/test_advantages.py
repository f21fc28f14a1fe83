"""Advantage estimators against slow numpy loops, identities, padding invariance, jit parity."""

import functools

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentrl import advantages as adv

B, K = 5, 7
GAMMA, LAMBDA = 0.9, 0.8


# ----------------------------------------------------------------------------- references


def ref_returns(rewards, dones, mask, gamma, boot=None):
  b, n = rewards.shape
  out = np.zeros((b, n))
  for i in range(b):
    g = 0.0 if boot is None else boot[i]
    for t in reversed(range(n)):
      if not mask[i, t]:
        continue
      g = rewards[i, t] + gamma * (1.0 - dones[i, t]) * g
      out[i, t] = g
  return out


def ref_gae(rewards, values, dones, mask, gamma, lam, boot=None):
  b, n = rewards.shape
  a_out, r_out = np.zeros((b, n)), np.zeros((b, n))
  for i in range(b):
    idx = [t for t in range(n) if mask[i, t]]
    a_next = 0.0
    v_next = 0.0 if boot is None else boot[i]
    for t in reversed(idx):
      c = 1.0 - dones[i, t]
      delta = rewards[i, t] + gamma * c * v_next - values[i, t]
      a_next = delta + gamma * lam * c * a_next
      v_next = values[i, t]
      a_out[i, t] = a_next
      r_out[i, t] = a_next + values[i, t]
  return a_out, r_out


def ref_group(rewards, group_id, mask, kind, eps=1e-6, unbiased=False):
  out = np.zeros(len(rewards))
  for i in range(len(rewards)):
    if not mask[i]:
      continue
    members = [j for j in range(len(rewards)) if mask[j] and group_id[j] == group_id[i]]
    k = len(members)
    if k == 1:
      continue
    rg = rewards[members]
    if kind == "rloo":
      out[i] = rewards[i] - (rg.sum() - rewards[i]) / (k - 1)
    elif kind == "dr_grpo":
      out[i] = rewards[i] - rg.mean()
    else:
      out[i] = (rewards[i] - rg.mean()) / (rg.std(ddof=1 if unbiased else 0) + eps)
  return out


def ref_whiten(x, mask, eps=1e-8):
  v = x[mask]
  out = np.zeros_like(x, dtype=np.float64)
  out[mask] = (v - v.mean()) / np.sqrt(v.var() + eps)
  return out


# ----------------------------------------------------------------------------- data


def ragged_batch(seed, b=B, n=K, holes=False):
  rng = np.random.RandomState(seed)
  lengths = rng.randint(0, n + 1, size=b)
  lengths[0], lengths[1] = 0, 1
  mask = np.arange(n)[None, :] < lengths[:, None]
  if holes:
    mask &= rng.rand(b, n) < 0.7
  rewards = rng.randn(b, n).astype(np.float32)
  values = rng.randn(b, n).astype(np.float32)
  dones = rng.rand(b, n) < 0.3
  boot = rng.randn(b).astype(np.float32)
  return rewards, values, dones, mask, boot


def group_batch(seed, b=8):
  rng = np.random.RandomState(seed)
  rewards = rng.randn(b).astype(np.float32)
  group_id = rng.randint(0, 3, size=b).astype(np.int32)
  group_id[-1] = b - 1  # a singleton group with the largest allowed id
  mask = rng.rand(b) < 0.85
  mask[-1] = True
  return rewards, group_id, mask


def close(a, b, tol=1e-4):
  np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=tol,
                             atol=tol)


# Jitted once per function (hyperparameters closed over).
returns_j = jax.jit(functools.partial(adv.discounted_returns, gamma=GAMMA))
gae_j = jax.jit(functools.partial(adv.gae, gamma=GAMMA, lambda_=LAMBDA))
turn_gae_j = jax.jit(functools.partial(adv.turn_level_gae, gamma=GAMMA, lambda_=LAMBDA))


# ----------------------------------------------------------------------------- returns / GAE


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("holes", [False, True])
def test_returns_match_reference(seed, holes):
  r, _, d, m, boot = ragged_batch(seed, holes=holes)
  close(returns_j(r, d, m), ref_returns(r, d, m, GAMMA))
  close(returns_j(r, d, m, bootstrap_value=boot), ref_returns(r, d, m, GAMMA, boot))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("holes", [False, True])
def test_gae_matches_reference(seed, holes):
  r, v, d, m, boot = ragged_batch(seed, holes=holes)
  a, ret = gae_j(r, v, d, m, bootstrap_value=boot)
  a_ref, ret_ref = ref_gae(r, v, d, m, GAMMA, LAMBDA, boot)
  close(a, a_ref)
  close(ret, ret_ref)
  assert (np.asarray(a)[~m] == 0).all() and (np.asarray(ret)[~m] == 0).all()


def test_gae_lambda_one_is_return_minus_value():
  r, v, d, m, boot = ragged_batch(3, holes=True)
  a, _ = adv.gae(r, v, d, m, gamma=GAMMA, lambda_=1.0, bootstrap_value=boot)
  g = adv.discounted_returns(r, d, m, gamma=GAMMA, bootstrap_value=boot)
  close(a, np.where(m, np.asarray(g) - v, 0.0))


def test_gae_lambda_zero_is_td_error():
  r, v, d, _, boot = ragged_batch(4)
  m = np.ones_like(d)
  a, _ = adv.gae(r, v, d, m, gamma=GAMMA, lambda_=0.0, bootstrap_value=boot)
  v_next = np.concatenate([v[:, 1:], boot[:, None]], axis=1)
  close(a, r + GAMMA * (1.0 - d) * v_next - v)


def test_truncation_bootstraps_terminal_does_not():
  # Three steps, rewards 1, values 0.5, gamma 0.5, lambda 1, bootstrap value 4.
  r = np.ones((2, 3), np.float32)
  v = np.full((2, 3), 0.5, np.float32)
  m = np.ones((2, 3), bool)
  d = np.array([[0, 0, 1], [0, 0, 0]], bool)  # row 0 terminal, row 1 truncated
  boot = np.array([4.0, 4.0], np.float32)
  g = adv.discounted_returns(r, d, m, gamma=0.5, bootstrap_value=boot)
  # Terminal: 1 + .5 + .25 = 1.75. Truncated: 1.75 + .125 * 4 = 2.25.
  close(g, [[1.75, 1.5, 1.0], [2.25, 2.5, 3.0]])
  a, ret = adv.gae(r, v, d, m, gamma=0.5, lambda_=1.0, bootstrap_value=boot)
  close(a, np.asarray(g) - 0.5)
  close(ret, g)
  # Without a bootstrap value truncation behaves like a terminal.
  g0 = adv.discounted_returns(r, d, m, gamma=0.5)
  close(g0, [[1.75, 1.5, 1.0], [1.75, 1.5, 1.0]])


def test_jit_and_eager_agree():
  r, v, d, m, boot = ragged_batch(5, holes=True)
  cases = [(functools.partial(adv.gae, gamma=GAMMA, lambda_=LAMBDA), (r, v, d, m)),
           (functools.partial(adv.discounted_returns, gamma=GAMMA), (r, d, m))]
  for f, args in cases:
    eager = f(*args, bootstrap_value=boot)
    jitted = jax.jit(f)(*args, bootstrap_value=boot)
    jax.tree.map(lambda x, y: close(x, y, 1e-6), eager, jitted)
  rw, gid, gm = group_batch(5)
  for name in ("grpo", "dr_grpo", "rloo", "reinforce_pp_baseline"):
    f = adv.get_estimator(name)
    close(f(rw, gid, gm), jax.jit(f)(rw, gid, gm), 1e-6)
  close(adv.reinforce_pp_advantages(rw, gm), jax.jit(adv.reinforce_pp_advantages)(rw, gm), 1e-6)


# ----------------------------------------------------------------------------- padding property


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), pad=st.integers(1, 3), nan=st.booleans())
def test_padding_never_changes_results(seed, pad, nan):
  r, v, d, m, boot = ragged_batch(seed, holes=seed % 2 == 1)
  rng = np.random.RandomState(seed + 1)
  garbage = np.full((B, pad), np.nan, np.float32) if nan else rng.randn(B, pad) * 1e3
  rp = np.concatenate([r, garbage], 1).astype(np.float32)
  vp = np.concatenate([v, garbage[:, ::-1]], 1).astype(np.float32)
  dp = np.concatenate([d, rng.rand(B, pad) < 0.5], 1)
  mp = np.concatenate([m, np.zeros((B, pad), bool)], 1)
  a, ret = gae_j(r, v, d, m, bootstrap_value=boot)
  ap, retp = gae_j(rp, vp, dp, mp, bootstrap_value=boot)
  close(ap[:, :K], a, 1e-6)
  close(retp[:, :K], ret, 1e-6)
  assert not np.isnan(np.asarray(ap)).any()
  g = returns_j(r, d, m, bootstrap_value=boot)
  gp = returns_j(rp, dp, mp, bootstrap_value=boot)
  close(gp[:, :K], g, 1e-6)
  # Extra masked trajectories do not change any group baseline.
  rw, gid, gm = group_batch(seed)
  n = len(rw)
  rwp = np.concatenate([rw, garbage[:pad, 0]]).astype(np.float32)
  gidp = np.concatenate([gid, np.zeros(pad, np.int32)])
  gmp = np.concatenate([gm, np.zeros(pad, bool)])
  for name in ("grpo", "rloo", "reinforce_pp_baseline"):
    f = adv.get_estimator(name)
    close(f(rwp, gidp, gmp)[:n], f(rw, gid, gm), 1e-5)


# ----------------------------------------------------------------------------- token <-> turn


def hand_case():
  # Row 0: prompt(2) turn0(3 tokens) obs(1) turn1(2 tokens) pad(2).
  # Row 1: prompt(1) turn0(2 tokens) obs(2) turn1(1) obs(1) turn2(2) pad(1).
  turn_index = np.array([[-1, -1, 0, 0, 0, -1, 1, 1, -1, -1],
                         [-1, 0, 0, -1, -1, 1, -1, 2, 2, -1]], np.int32)
  turn_end = np.array([[0, 0, 0, 0, 1, 0, 0, 1, 0, 0],
                       [0, 0, 1, 0, 0, 1, 0, 0, 1, 0]], bool)
  action_mask = turn_index >= 0
  return turn_index, turn_end, action_mask


def test_turn_level_gae_broadcasts_turn_gae():
  turn_index, _, action_mask = hand_case()
  rng = np.random.RandomState(0)
  r = rng.randn(2, 4).astype(np.float32)
  v = rng.randn(2, 4).astype(np.float32)
  d = np.array([[0, 0, 0, 0], [0, 0, 1, 0]], bool)
  m = np.array([[1, 1, 0, 0], [1, 1, 1, 0]], bool)
  boot = np.array([2.0, 3.0], np.float32)
  tok, ta, tr = turn_gae_j(r, v, d, m, turn_index, action_mask, bootstrap_value=boot)
  a_ref, r_ref = ref_gae(r, v, d, m, GAMMA, LAMBDA, boot)
  close(ta, a_ref)
  close(tr, r_ref)
  expected = np.where(action_mask, a_ref[np.arange(2)[:, None], np.clip(turn_index, 0, 3)], 0)
  close(tok, expected)


# ----------------------------------------------------------------------------- group baselines


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_group_baselines_match_reference(seed):
  rw, gid, gm = group_batch(seed)
  close(adv.grpo_advantages(rw, gid, gm), ref_group(rw, gid, gm, "grpo"))
  close(adv.grpo_advantages(rw, gid, gm, unbiased_std=True),
        ref_group(rw, gid, gm, "grpo", unbiased=True))
  close(adv.get_estimator("dr_grpo")(rw, gid, gm), ref_group(rw, gid, gm, "dr_grpo"))
  close(adv.rloo_advantages(rw, gid, gm), ref_group(rw, gid, gm, "rloo"))


def test_rloo_identity_and_singletons():
  rw, gid, gm = group_batch(7, b=12)
  a = np.asarray(adv.rloo_advantages(rw, gid, gm))
  dr = np.asarray(adv.grpo_advantages(rw, gid, gm, normalize_std=False))
  for i in np.flatnonzero(gm):
    k = int(((gid == gid[i]) & gm).sum())
    if k > 1:
      close(a[i], k / (k - 1) * dr[i])
  # The last trajectory is alone in its group: every group baseline gives it 0.
  for name in ("grpo", "dr_grpo", "rloo"):
    assert float(adv.get_estimator(name)(rw, gid, gm)[-1]) == 0.0
  assert (a[~gm] == 0).all()


def test_reinforce_pp():
  rw, gid, gm = group_batch(2, b=10)
  close(adv.reinforce_pp_advantages(rw, gm), ref_whiten(rw, gm))
  centred = rw - np.array([rw[gm & (gid == g)].mean() if (gm & (gid == g)).any() else 0.0
                           for g in gid])
  close(adv.reinforce_pp_advantages(rw, gm, group_id=gid), ref_whiten(centred, gm))
  close(adv.get_estimator("reinforce_pp_baseline")(rw, gid, gm), ref_whiten(centred, gm))


def test_whiten():
  rng = np.random.RandomState(0)
  x = rng.randn(4, 6).astype(np.float32) * 3 + 1
  m = rng.rand(4, 6) < 0.6
  w = np.asarray(adv.whiten(x, m))
  close(w, ref_whiten(x, m))
  close(w[m].mean(), 0.0)
  close(w[m].std(), 1.0)
  ws = np.asarray(adv.whiten(x, m, shift_mean=False))
  close(ws[m].mean(), x[m].mean())
  assert (w[~m] == 0).all() and (ws[~m] == 0).all()


def test_registry():
  assert set(adv.ESTIMATORS) == {"gae", "turn_gae", "grpo", "dr_grpo", "rloo", "reinforce_pp",
                                 "reinforce_pp_baseline"}
  assert adv.get_estimator("gae") is adv.gae
  with pytest.raises(ValueError, match="rloo"):
    adv.get_estimator("nope")


def test_group_estimators_wrap_the_group_baselines():
  rw, gid, gm = group_batch(3)
  est = adv.GROUP_ESTIMATORS
  assert set(est) == {"grpo", "dr_grpo", "rloo", "reinforce_pp", "gigpo"}
  opts = dict(eps=None, unbiased_std=None, group_baseline=False)
  close(est["grpo"].normalize(rw, gid, gm, **opts), ref_group(rw, gid, gm, "grpo"))
  close(est["dr_grpo"].normalize(rw, gid, gm, **opts), ref_group(rw, gid, gm, "dr_grpo"))
  close(est["rloo"].normalize(rw, gid, gm, **opts), ref_group(rw, gid, gm, "rloo"))
  close(est["grpo"].normalize(rw, gid, gm, **{**opts, "unbiased_std": True, "eps": 1e-3}),
        ref_group(rw, gid, gm, "grpo", eps=1e-3, unbiased=True))
  close(est["reinforce_pp"].normalize(rw, gid, gm, **opts),
        ref_whiten(np.where(gm, rw, 0.0), gm))
  close(est["reinforce_pp"].normalize(rw, gid, gm, **{**opts, "group_baseline": True}),
        adv.reinforce_pp_baseline_advantages(rw, gid, gm))
  assert est["gigpo"].normalize is None and est["gigpo"].gamma == 0.95
  assert (est["grpo"].aggregation, est["rloo"].aggregation) == ("seq-mean-token-mean",
                                                                "token-mean")


def test_register_group_estimator(monkeypatch):
  monkeypatch.setattr(adv, "GROUP_ESTIMATORS", dict(adv.GROUP_ESTIMATORS))
  fn = lambda values, group_id, mask, **_: values  # noqa: E731
  entry = adv.register_group_estimator("identity", fn, gamma=0.5)
  assert adv.get_group_estimator("identity") is entry and entry.normalize is fn
  assert entry.gamma == 0.5 and entry.credits is None
  with pytest.raises(ValueError, match="already registered"):
    adv.register_group_estimator("identity", fn)
  assert adv.register_group_estimator("identity", fn, replace=True).gamma == 1.0
  with pytest.raises(ValueError, match="dr_grpo, gigpo, grpo, identity"):
    adv.get_group_estimator("nope")
