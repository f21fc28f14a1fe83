"""Credit-assignment estimators against slow numpy loops, hand cases, padding invariance, jit."""

import functools

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentrl import advantages, credit

B, K = 6, 5


# ----------------------------------------------------------------------------- helpers


def ragged(seed, b=B, k=K, holes=False):
  """Random ragged turn batch: 2-3 groups, one 1-turn row, optional holes."""
  rng = np.random.RandomState(seed)
  lengths = rng.randint(1, k + 1, size=b)
  lengths[0] = 1
  mask = np.arange(k)[None, :] < lengths[:, None]
  if holes:
    mask &= rng.rand(b, k) > 0.2
    mask[np.arange(b), 0] = True
  groups = rng.randint(0, rng.randint(2, 4), size=b)
  rewards = rng.randn(b, k)
  return rng, mask, groups.astype(np.int32), rewards


def ref_disc(rewards, mask, gamma):
  out = np.zeros(rewards.shape)
  for i in range(rewards.shape[0]):
    g = 0.0
    for t in reversed(range(rewards.shape[1])):
      if mask[i, t]:
        g = rewards[i, t] + gamma * g
        out[i, t] = g
  return out


def stats(values, weights=None, unbiased=False):
  v = np.asarray(values, float)
  w = np.ones_like(v) if weights is None else np.asarray(weights, float)
  n = w.sum()
  mean = (w * v).sum() / n
  var = (w * (v - mean) ** 2).sum() / max(n - (1 if unbiased else 0), 1)
  return mean, np.sqrt(var)


@functools.lru_cache(maxsize=None)
def J(fn):
  """fn jitted once per static keyword configuration (compiles stay cached across tests)."""
  code = fn.__code__
  kwonly = code.co_varnames[code.co_argcount:code.co_argcount + code.co_kwonlyargcount]
  return jax.jit(fn, static_argnames=kwonly)


def close(a, b, tol=1e-5):
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


# ----------------------------------------------------------------------------- GiGPO


def ref_gigpo(ret, gid, rew, mask, anchor, gamma, omega, norm, unbiased, over_steps, eps):
  b, k = rew.shape
  valid = mask.any(1)
  steps = ref_disc(rew, mask, gamma)
  out = np.zeros((b, k))
  for i in range(b):
    if not valid[i]:
      continue
    mem = [j for j in range(b) if valid[j] and gid[j] == gid[i]]
    a_e = 0.0
    if len(mem) > 1:
      w = [mask[j].sum() for j in mem] if over_steps else None
      m, s = stats(ret[mem], w, unbiased)
      a_e = (ret[i] - m) / ((s + eps) if norm else 1.0)
    for t in range(k):
      if not mask[i, t]:
        continue
      bucket = [steps[j, u] for j in mem for u in range(k)
                if mask[j, u] and anchor[j, u] == anchor[i, t]]
      a_s = 0.0
      if len(bucket) > 1:
        m, s = stats(bucket, None, unbiased)
        a_s = (steps[i, t] - m) / ((s + eps) if norm else 1.0)
      out[i, t] = a_e + omega * a_s
  return out


def gigpo_inputs(seed, holes=False):
  rng, mask, gid, rew = ragged(seed, holes=holes)
  anchor = rng.randint(0, 3, size=mask.shape).astype(np.int32)
  ret = rng.randn(mask.shape[0])
  return ret, gid, rew, mask, anchor


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("norm,unbiased,over_steps", [(True, True, True), (False, False, False),
                                                      (True, False, False)])
def test_gigpo_matches_reference(seed, norm, unbiased, over_steps):
  ret, gid, rew, mask, anchor = gigpo_inputs(seed, holes=seed % 2 == 1)
  kw = dict(gamma=0.9, omega=0.7, normalize_std=norm, unbiased_std=unbiased,
            episode_stats_over_steps=over_steps, eps=1e-6)
  got = J(credit.gigpo_advantages)(ret, gid, rew, mask, anchor, **kw)
  close(got, ref_gigpo(ret, gid, rew, mask, anchor, 0.9, 0.7, norm, unbiased, over_steps, 1e-6))


def test_gigpo_hand_case():
  # Two episodes of one group; both start in state 0, episode 0 then visits state 1.
  ret = np.array([1.0, 0.0])
  gid = np.array([0, 0], np.int32)
  rew = np.array([[0.0, 1.0], [0.0, 0.0]])
  mask = np.array([[True, True], [True, False]])
  anchor = np.array([[0, 1], [0, 5]], np.int32)
  got = J(credit.gigpo_advantages)(ret, gid, rew, mask, anchor, gamma=0.5, omega=1.0,
                                     normalize_std=False, episode_stats_over_steps=False)
  # A^E = ±0.5. Step returns: ep0 = [0.5, 1.0], ep1 = [0.0]. Bucket state 0: {0.5, 0.0},
  # mean 0.25 -> ±0.25; state 1 is a singleton -> 0.
  close(got, [[0.5 + 0.25, 0.5 + 0.0], [-0.5 - 0.25, 0.0]])


def test_gigpo_singletons_and_separate_groups():
  # Same anchor id in different episode groups must not share a bucket.
  ret = np.array([1.0, 3.0, 5.0])
  gid = np.array([0, 0, 1], np.int32)
  rew = np.array([[1.0], [2.0], [9.0]])
  mask = np.ones((3, 1), bool)
  anchor = np.zeros((3, 1), np.int32)
  got = J(credit.gigpo_advantages)(ret, gid, rew, mask, anchor, gamma=1.0,
                                     normalize_std=False)
  close(got, [[-1.0 - 0.5], [1.0 + 0.5], [0.0]])


_GIGPO_JIT = jax.jit(functools.partial(credit.gigpo_advantages, gamma=0.9))


def test_gigpo_extreme_anchor_ids():
  # Hash-like ids (negative, near the int32 limits) only matter through equality.
  ret, gid, rew, mask, anchor = gigpo_inputs(5)
  table = np.array([-2**31, 2**31 - 1, 7], np.int32)
  got = _GIGPO_JIT(ret, gid, rew, mask, table[anchor])
  close(got, _GIGPO_JIT(ret, gid, rew, mask, anchor))


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_gigpo_padding_invariant(seed):
  # Fixed padded shapes so the jitted function compiles once; the garbage varies.
  ret, gid, rew, mask, anchor = gigpo_inputs(seed, holes=True)
  f = _GIGPO_JIT
  base = f(ret, gid, rew, mask, anchor)
  rng = np.random.RandomState(seed + 1)
  b, k = mask.shape
  pad_b, pad_k = 2, 2
  kb, kk = b + pad_b, k + pad_k
  big_mask = np.zeros((kb, kk), bool)
  big_mask[:b, :k] = mask
  big_rew = rng.randn(kb, kk) * 100
  big_rew[:b, :k] = np.where(mask, rew, big_rew[:b, :k])
  big_anchor = rng.randint(0, 3, size=(kb, kk)).astype(np.int32)
  big_anchor[:b, :k] = np.where(mask, anchor, big_anchor[:b, :k])
  big_ret = np.concatenate([ret, rng.randn(pad_b) * 100])
  big_gid = np.concatenate([gid, rng.randint(0, kb, size=pad_b)]).astype(np.int32)
  got = f(big_ret, big_gid, big_rew, big_mask, big_anchor)
  close(got[:b, :k], base)
  close(got[b:], 0.0)
  close(got[:, k:], 0.0)


def test_gigpo_jit():
  ret, gid, rew, mask, anchor = gigpo_inputs(3, holes=True)
  f = lambda *a: credit.gigpo_advantages(*a, gamma=0.9, omega=0.5)
  close(jax.jit(f)(ret, gid, rew, mask, anchor), f(ret, gid, rew, mask, anchor))


# ----------------------------------------------------------------------------- A²TGPO


def ref_turn_group(x, gid, mask, eps, unbiased=False):
  b, k = x.shape
  out = np.zeros((b, k))
  for i in range(b):
    for t in range(k):
      if not mask[i, t]:
        continue
      peers = [x[j, t] for j in range(b) if mask[j, t] and gid[j] == gid[i]]
      if len(peers) < 2:
        continue
      m, s = stats(peers, None, unbiased)
      if s > 0:
        out[i, t] = (x[i, t] - m) / (s + eps)
  return out


def ref_a2tgpo(ig, outcome, gid, mask, gamma, lig, lout, all_turns, clip, beta, eps):
  b, k = ig.shape
  z = ref_turn_group(ig, gid, mask, eps)
  acc = ref_disc(z, mask, gamma)
  valid = mask.any(1)
  adv = np.zeros((b, k))
  clips = np.zeros((b, k))
  for i in range(b):
    mem = [j for j in range(b) if valid[j] and gid[j] == gid[i]]
    a_out = 0.0
    if len(mem) > 1:
      m, s = stats(outcome[mem])
      a_out = (outcome[i] - m) / (s + eps)
    idx = [t for t in range(k) if mask[i, t]]
    for t in idx:
      n = sum(1 for u in idx if u >= t)
      adv[i, t] = lig * acc[i, t] / np.sqrt(n)
      if all_turns or t == idx[-1]:
        adv[i, t] += lout * a_out
      clips[i, t] = clip * (1 + beta * (2 / (1 + np.exp(-z[i, t])) - 1))
  return adv, clips


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("all_turns", [True, False])
def test_a2tgpo_matches_reference(seed, all_turns):
  rng, mask, gid, ig = ragged(seed, holes=seed == 1)
  outcome = rng.randn(mask.shape[0])
  kw = dict(gamma=0.9, lambda_ig=0.7, lambda_outcome=1.3, outcome_on_all_turns=all_turns,
            clip_eps=0.2, beta=0.3, eps=1e-6)
  adv, clips = J(credit.a2tgpo_advantages)(ig, outcome, gid, mask, **kw)
  ref_adv, ref_clips = ref_a2tgpo(ig, outcome, gid, mask, 0.9, 0.7, 1.3, all_turns, 0.2, 0.3,
                                  1e-6)
  close(adv, ref_adv)
  close(clips, ref_clips)
  valid = clips[mask]
  assert np.all((valid > 0.2 * 0.7) & (valid < 0.2 * 1.3))


def test_a2tgpo_hand_case():
  # One group of two rollouts; rollout 1 has a single turn, so turn 1 has one peer (-> 0).
  ig = np.array([[1.0, 3.0], [-1.0, 0.0]])
  mask = np.array([[True, True], [True, False]])
  gid = np.array([0, 0], np.int32)
  outcome = np.array([1.0, 1.0])  # equal outcomes -> A^out = 0
  adv, clips = J(credit.a2tgpo_advantages)(ig, outcome, gid, mask, gamma=1.0, eps=1e-7)
  # Turn 0: z = ±1. Row 0: (1 + 0) / √2 at t=0, 0 at t=1. Row 1: -1 / √1.
  close(adv, [[1 / np.sqrt(2), 0.0], [-1.0, 0.0]])
  s = 2 / (1 + np.exp(-1.0)) - 1
  close(clips, [[0.2 * (1 + 0.3 * s), 0.2], [0.2 * (1 - 0.3 * s), 0.0]])


def test_turn_group_normalize_jit():
  rng, mask, gid, x = ragged(7, holes=True)
  f = lambda *a: credit.turn_group_normalize(*a, eps=1e-6)
  close(jax.jit(f)(x, gid, mask), f(x, gid, mask))
  close(f(x, gid, mask), ref_turn_group(x, gid, mask, 1e-6))


# ----------------------------------------------------------------------------- IGPO


def ref_igpo(r, gid, mask, gamma, eps):
  b, k = r.shape
  z = np.zeros((b, k))
  for i in range(b):
    pool = [r[j, t] for j in range(b) for t in range(k) if mask[j, t] and gid[j] == gid[i]]
    if len(pool) < 2:
      continue
    m, s = stats(pool)
    for t in range(k):
      if mask[i, t]:
        z[i, t] = (r[i, t] - m) / (s + eps)
  return ref_disc(z, mask, gamma)


@pytest.mark.parametrize("seed", range(3))
def test_igpo_matches_reference(seed):
  rng, mask, gid, _ = ragged(seed, holes=seed == 2)
  before = -rng.rand(*mask.shape) * 3
  after = -rng.rand(*mask.shape) * 3
  outcome = rng.rand(mask.shape[0])
  rew = J(credit.igpo_turn_rewards)(before, after, outcome, mask)
  got = J(credit.igpo_advantages)(rew, gid, mask, gamma=0.8, eps=1e-6)
  ref_r = np.zeros(mask.shape)
  for i in range(mask.shape[0]):
    idx = [t for t in range(mask.shape[1]) if mask[i, t]]
    for t in idx:
      ref_r[i, t] = np.exp(after[i, t]) - np.exp(before[i, t])
    ref_r[i, idx[-1]] = outcome[i]
  close(rew, ref_r)
  close(got, ref_igpo(ref_r, gid, mask, 0.8, 1e-6))


def test_igpo_hand_case():
  # p goes 0.2 -> 0.5 at turn 0, then the answer turn scores F1 = 1.
  before = np.log(np.array([[0.2, 0.5]]))
  after = np.log(np.array([[0.5, 0.9]]))
  mask = np.ones((1, 2), bool)
  r = credit.igpo_turn_rewards(before, after, np.array([1.0]), mask)
  close(r, [[0.3, 1.0]])
  # Group pool {0.3, 1.0}: mean 0.65, std 0.35 -> z = [-1, 1]; γ = 0.5: A = [-0.5, 1].
  close(credit.igpo_advantages(r, np.array([0], np.int32), mask, gamma=0.5, eps=0.0),
        [[-0.5, 1.0]])
  # A singleton trajectory with one turn has no peers -> 0.
  close(credit.igpo_advantages(np.array([[2.0]]), np.array([0], np.int32),
                               np.ones((1, 1), bool), gamma=1.0), [[0.0]])


# ----------------------------------------------------------------------------- SPIRAL / MARS


def test_spiral_rae_matches_sequential_loop():
  rng = np.random.RandomState(0)
  r = rng.choice([-1.0, 0.0, 1.0, -1.5, 0.5], size=8)
  ids = rng.randint(0, 4, size=8).astype(np.int32)
  mask = rng.rand(8) > 0.2
  base0 = rng.randn(4)
  adv, base = jax.jit(lambda *a: credit.spiral_rae_advantages(*a, alpha=0.9))(r, ids, mask,
                                                                              base0)
  ref_b, ref_a = base0.copy(), np.zeros(8)
  for i in range(8):
    if mask[i]:
      ref_a[i] = r[i] - ref_b[ids[i]]
      ref_b[ids[i]] = 0.9 * ref_b[ids[i]] + 0.1 * r[i]
  close(adv, ref_a)
  close(base, ref_b)


def test_spiral_rae_hand_case():
  # Two wins for role 0 from a zero baseline: A = 1, then 1 − 0.05 = 0.95.
  adv, base = credit.spiral_rae_advantages(np.array([1.0, 1.0, -1.0]),
                                           np.array([0, 0, 1], np.int32),
                                           np.ones(3, bool), np.zeros(2), alpha=0.95)
  close(adv, [1.0, 0.95, -1.0])
  close(base, [0.05 + 0.95 * 0.05, -0.05])


def ref_mars(r, role, gid, mask, nroles, gamma, norm, eps):
  b, k = r.shape
  g = np.zeros((b, k))
  for p in range(nroles):
    g += ref_disc(r, mask & (role == p), gamma)
  out = np.zeros((b, k))
  for i in range(b):
    for t in range(k):
      if not mask[i, t]:
        continue
      pool = [g[j, u] for j in range(b) for u in range(k)
              if mask[j, u] and gid[j] == gid[i] and role[j, u] == role[i, t]]
      if len(pool) < 2:
        continue
      m, s = stats(pool)
      out[i, t] = (g[i, t] - m) / ((s + eps) if norm else 1.0)
  return out


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("norm", [True, False])
def test_mars_matches_reference(seed, norm):
  rng, mask, gid, r = ragged(seed, holes=seed == 1)
  role = np.broadcast_to(np.arange(mask.shape[1]) % 2, mask.shape).astype(np.int32)
  got = J(credit.mars_advantages)(r, role, gid, mask, num_roles=2, gamma=0.9,
                                  normalize_std=norm, eps=1e-6)
  close(got, ref_mars(r, role, gid, mask, 2, 0.9, norm, 1e-6))


def test_mars_hand_case():
  # Alternating players, γ = 1: player 0 turns {0, 2}, player 1 turn {1}.
  r = np.array([[1.0, 5.0, 2.0], [0.0, 1.0, 0.0]])
  role = np.array([[0, 1, 0], [0, 1, 0]], np.int32)
  mask = np.array([[True, True, True], [True, True, False]])
  gid = np.array([0, 0], np.int32)
  got = J(credit.mars_advantages)(r, role, gid, mask, num_roles=2, normalize_std=False)
  # Player 0 returns: row 0 = [3, ·, 2], row 1 = [0]; mean 5/3. Player 1: [5], [1]; mean 3.
  close(got, [[3 - 5 / 3, 2.0, 2 - 5 / 3], [-5 / 3, -2.0, 0.0]])


# ----------------------------------------------------------------------------- G-RA, masks


def test_gated_reward_accumulation():
  hi = np.array([1.0, 0.0, 0.5])
  low = np.array([[0.1, 0.2, 9.0], [0.3, 0.3, 0.3], [1.0, 0.0, 0.0]])
  mask = np.array([[True, True, False], [True, True, True], [True, False, False]])
  total, gated = jax.jit(lambda *a: credit.gated_reward_accumulation(*a, threshold=0.5))(
      hi, low, mask)
  close(total, [1.3, 0.0, 1.5])
  close(gated, [[0.1, 0.2, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])


def test_gated_multi_priority():
  r = np.array([[1.0, 1.0, 5.0], [1.0, 0.0, 5.0], [0.0, 1.0, 5.0]])
  got = credit.gated_multi_priority(r, thresholds=[1.0, 1.0, 0.0])
  close(got, [7.0, 1.0, 0.0])
  close(jax.jit(lambda x: credit.gated_multi_priority(x, thresholds=[1.0, 1.0, 0.0]))(r), got)


def test_void_and_over_turn_masks():
  loss = np.ones((3, 4), bool)
  void = np.array([[False, True], [False, False], [False, True]])
  tmask = np.array([[True, True], [True, True], [True, False]])  # row 2's void turn is padding
  close(credit.void_turn_filter(loss, void, tmask),
        np.array([[0] * 4, [1] * 4, [1] * 4], bool))
  close(credit.over_turn_mask(loss, np.array([False, True, False])),
        np.array([[1] * 4, [0] * 4, [1] * 4], bool))


# ----------------------------------------------------------------------------- group credit


GRPO_N = functools.partial(advantages.grpo_advantages, eps=1e-6)
CENTRE_N = functools.partial(advantages.grpo_advantages, normalize_std=False)


@pytest.mark.parametrize("seed", range(3))
def test_a_normaliser_replaces_the_z_score(seed):
  """With GRPO's z-score (or its centring) as N, the normalised estimators equal their own."""
  rng, mask, gid, r = ragged(seed, holes=seed == 1)
  role = np.broadcast_to(np.arange(mask.shape[1]) % 2, mask.shape).astype(np.int32)
  ig = rng.randn(*mask.shape) * mask
  ret = np.where(mask, r, 0.0).sum(1)
  close(credit.turn_group_normalize(ig, gid, mask, normalize=GRPO_N),
        credit.turn_group_normalize(ig, gid, mask), 1e-4)
  close(credit.igpo_advantages(r, gid, mask, gamma=0.9, normalize=GRPO_N),
        credit.igpo_advantages(r, gid, mask, gamma=0.9), 1e-4)
  for norm, n in ((True, GRPO_N), (False, CENTRE_N)):
    close(credit.mars_advantages(r, role, gid, mask, num_roles=2, gamma=0.9, normalize=n),
          credit.mars_advantages(r, role, gid, mask, num_roles=2, gamma=0.9,
                                 normalize_std=norm), 1e-4)
  got = credit.a2tgpo_advantages(ig, ret, gid, mask, gamma=0.9, lambda_ig=0.5, normalize=GRPO_N)
  want = credit.a2tgpo_advantages(ig, ret, gid, mask, gamma=0.9, lambda_ig=0.5)
  jax.tree.map(lambda a, b: close(a, b, 1e-4), got, want)


def test_group_turn_credit_by_hand():
  r = np.array([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]], np.float32)
  mask = np.array([[1, 1, 1], [1, 0, 0]], bool)
  dones = np.array([[0, 1, 0], [1, 0, 0]], bool)
  gid = np.array([0, 0], np.int32)
  identity = lambda v, g, m: np.where(m, v, 0.0)  # noqa: E731
  adv, clip = credit.group_turn_credit("none", identity, r, mask, gid, clip_eps=0.3)
  close(adv, [[6, 6, 6], [4, 0, 0]])
  close(clip, 0.3 * mask)
  adv, _ = credit.group_turn_credit("turn", identity, r, mask, gid, dones=dones)
  close(adv, [[3, 2, 3], [4, 0, 0]])  # The return-to-go stops at the terminal.
  anchor = np.zeros((2, 3), np.int32)
  adv, _ = credit.group_turn_credit("gigpo", None, r, mask, gid, anchor_id=anchor, gamma=0.5)
  close(adv, credit.gigpo_advantages(np.where(mask, r, 0.0).sum(1), gid, r, mask, anchor,
                                     gamma=0.5))
  with pytest.raises(ValueError, match="answer_logprob"):
    credit.group_turn_credit("igpo", identity, r, mask, gid)
  with pytest.raises(ValueError, match="group normaliser"):
    credit.group_turn_credit("mars", None, r, mask, gid, role=gid)
  with pytest.raises(ValueError, match="a2tgpo, gigpo"):
    credit.group_turn_credit("nope", identity, r, mask, gid)


# ----------------------------------------------------------------------------- registry


def test_registry():
  assert credit.get_credit("gigpo") is credit.gigpo_advantages
  for name, fn in credit.CREDIT.items():
    assert callable(fn), name
  with pytest.raises(ValueError, match="gigpo"):
    credit.get_credit("nope")


# ----------------------------------------------------------------------------- HiPER


def ref_hiper(r, d, mask, switch, vl, vh, vt, gamma, lt, ls, boot):
  b, k = r.shape
  out = {n: np.zeros((b, k)) for n in ("low_adv", "low_ret", "high_adv", "high_ret",
                                       "term_adv", "term_ret")}
  for i in range(b):
    idx = [t for t in range(k) if mask[i, t]]
    segs = []
    for n, t in enumerate(idx):
      if n == 0 or switch[i, t]:
        segs.append([])
      segs[-1].append(t)
    a_high_next = 0.0
    for s_i in reversed(range(len(segs))):
      seg = segs[s_i]
      has_next = s_i + 1 < len(segs)
      vh_next = vh[i, segs[s_i + 1][0]] if has_next else 0.0
      a, g = 0.0, vh_next
      for j in reversed(range(len(seg))):
        t = seg[j]
        c = 1.0 - d[i, t]
        if j + 1 < len(seg):
          v_plus = vl[i, seg[j + 1]]
        elif has_next:
          v_plus = vh_next
        else:
          v_plus = vl[i, t] if boot else 0.0
        a = r[i, t] + gamma * c * v_plus - vl[i, t] + gamma * lt * c * a
        out["low_adv"][i, t], out["low_ret"][i, t] = a, a + vl[i, t]
        g = r[i, t] + gamma * c * g
        out["term_adv"][i, t], out["term_ret"][i, t] = g - vt[i, t], g
      gk = sum(gamma ** j * r[i, t] for j, t in enumerate(seg))
      dk, c = len(seg), 1.0 - d[i, seg[-1]]
      s0 = seg[0]
      a_high = gk + gamma ** dk * c * vh_next - vh[i, s0] + gamma ** dk * ls * c * a_high_next
      out["high_adv"][i, s0], out["high_ret"][i, s0] = a_high, a_high + vh[i, s0]
      a_high_next = a_high
  return out


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("boot", [False, True])
def test_hiper_matches_reference(seed, boot):
  rng, mask, _, r = ragged(seed, holes=seed % 2 == 1)
  switch = rng.rand(*mask.shape) > 0.5
  dones = np.zeros(mask.shape, bool)
  for i in range(mask.shape[0]):
    if rng.rand() > 0.5:
      dones[i, np.nonzero(mask[i])[0][-1]] = True
  vl, vh, vt = rng.randn(3, *mask.shape)
  got = J(credit.hiper_advantages)(r, dones, mask, switch, vl, vh, vt, gamma=0.9,
                                   lambda_turn=0.8, lambda_seg=0.95, bootstrap_truncated=boot)
  ref = ref_hiper(r, dones, mask, switch, vl, vh, vt, 0.9, 0.8, 0.95, boot)
  for name, val in ref.items():
    close(got[name], val)
  assert not np.any(np.asarray(got["boundary"]) & ~mask)


def test_hiper_hand_case():
  # Turns 0-1 form segment 0, turn 2 (SWITCH) segment 1, terminal; γ = λ = 1, zero values.
  r = np.array([[1.0, 2.0, 4.0]])
  z = np.zeros((1, 3))
  out = J(credit.hiper_advantages)(r, np.array([[False, False, True]]), np.ones((1, 3), bool),
                                np.array([[False, False, True]]), z, z, z, gamma=1.0,
                                lambda_turn=1.0, lambda_seg=1.0)
  close(out["low_adv"], [[3.0, 2.0, 4.0]])   # executor stops at the segment end (V_high = 0)
  close(out["high_adv"], [[7.0, 0.0, 4.0]])  # G_0 = 3, + A^high_1 = 4
  close(out["term_adv"], [[3.0, 2.0, 4.0]])


# ----------------------------------------------------------------------------- jit parity


def _parity_cases():
  rng, mask, gid, r = ragged(11, holes=True)
  b, k = mask.shape
  x = rng.randn(b, k)
  role = (np.arange(k)[None, :] % 2 + np.zeros((b, 1), int)).astype(np.int32)
  vals = rng.randn(3, b, k)
  return {
      "a2tgpo": (credit.a2tgpo_advantages, (r, rng.randn(b), gid, mask), dict(gamma=0.9)),
      "igpo": (credit.igpo_advantages, (r, gid, mask), dict(gamma=0.9)),
      "igpo_turn_rewards": (credit.igpo_turn_rewards, (-np.abs(r), -np.abs(x), rng.randn(b),
                                                       mask), {}),
      "mars": (credit.mars_advantages, (r, role, gid, mask), dict(num_roles=2)),
      "spiral_rae": (credit.spiral_rae_advantages, (r[:, 0], role[:, 1], mask[:, 1],
                                                    np.zeros(2)), dict(alpha=0.9)),
      "hiper": (credit.hiper_advantages, (r, np.zeros((b, k), bool), mask, x > 0, *vals),
                dict(gamma=0.9, lambda_turn=0.9)),
      "gra": (credit.gated_reward_accumulation, (x[:, 0], r, mask), dict(threshold=0.0)),
  }


@pytest.mark.parametrize("name", sorted(_parity_cases()))
def test_jit_matches_eager(name):
  fn, args, kw = _parity_cases()[name]
  jax.tree_util.tree_map(close, J(fn)(*args, **kw), fn(*args, **kw))


@pytest.mark.parametrize("name", ["a2tgpo", "igpo", "mars", "hiper"])
def test_padding_does_not_change_turn_estimators(name):
  rng, mask, gid, r = ragged(21, holes=True)
  b, k = mask.shape
  pb, pk = b + 1, k + 2
  big_mask = np.zeros((pb, pk), bool)
  big_mask[:b, :k] = mask

  def pad(x, fill=None):  # [B, K] -> [B+1, K+2] with garbage on padding
    g = rng.randn(pb, pk) * 50 if fill is None else np.full((pb, pk), fill)
    g = g.astype(x.dtype)
    g[:b, :k] = np.where(mask, x, g[:b, :k])
    return g

  big_gid = np.concatenate([gid, [gid[0]]]).astype(np.int32)
  role = (np.arange(pk)[None, :] % 2 + np.zeros((pb, 1), int)).astype(np.int32)
  vals = rng.randn(3, b, k)
  sw = rng.rand(b, k) > 0.5
  outcome = rng.randn(pb)
  fn = {"a2tgpo": credit.a2tgpo_advantages, "igpo": credit.igpo_advantages,
        "mars": credit.mars_advantages, "hiper": credit.hiper_advantages}[name]
  if name == "a2tgpo":
    small = (r, outcome[:b], gid, mask)
    big = (pad(r), outcome, big_gid, big_mask)
    kw = dict(gamma=0.9)
  elif name == "igpo":
    small, big, kw = (r, gid, mask), (pad(r), big_gid, big_mask), dict(gamma=0.9)
  elif name == "mars":
    small = (r, role[:b, :k], gid, mask)
    big, kw = (pad(r), role, big_gid, big_mask), dict(num_roles=2)
  else:
    zeros = np.zeros((b, k), bool)
    small = (r, zeros, mask, sw, *vals)
    big = (pad(r), pad(zeros, True), big_mask, pad(sw, True), *(pad(v) for v in vals))
    kw = dict(gamma=0.9, lambda_turn=0.9)
  got_small, got_big = J(fn)(*small, **kw), J(fn)(*big, **kw)

  def check(s, g):
    close(np.asarray(g)[:b, :k], s)
    close(np.asarray(g)[b:], 0.0)
    close(np.asarray(g)[:, k:], 0.0)

  jax.tree_util.tree_map(check, got_small, got_big)
