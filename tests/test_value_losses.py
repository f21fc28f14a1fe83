"""Value losses against slow numpy references and hand-computed cases."""

import chex
import jax
import numpy as np
import pytest

from agentrl import value_losses as vl

RNG = np.random.default_rng(0)


def _f32(x):
  return np.asarray(x, dtype=np.float32)


def _check_sum_weight(loss, metrics):
  assert np.isfinite(float(loss))
  np.testing.assert_allclose(
      float(loss), float(metrics["loss_sum"]) / max(float(metrics["loss_weight"]), 1.0),
      rtol=1e-6, atol=1e-7)
  for k, val in metrics.items():
    assert np.ndim(val) == 0, k
    assert np.isfinite(float(val)), k


def _turn_batch(b=3, t=12, k=4, seed=1):
  rng = np.random.default_rng(seed)
  logprobs = _f32(-rng.random((b, t)) * 3)
  turn_index = rng.integers(-1, k, size=(b, t)).astype(np.int32)
  turn_index[0, 3] = k + 2  # out of range: must be ignored
  action_mask = (turn_index >= 0) & (rng.random((b, t)) < 0.9)
  turn_mask = rng.random((b, k)) < 0.7
  turn_mask[0, 0] = True
  return logprobs, action_mask, turn_index, turn_mask


def _np_turn_weighted_sum(logprobs, action_mask, turn_index, turn_w, turn_mask):
  total = 0.0
  b, t = logprobs.shape
  k = turn_w.shape[1]
  for i in range(b):
    for j in range(t):
      kk = turn_index[i, j]
      if action_mask[i, j] and 0 <= kk < k and turn_mask[i, kk]:
        total += -turn_w[i, kk] * logprobs[i, j]
  return total / max(turn_mask.sum(), 1)


# ----------------------------------------------------------------------------- ArCHer critic


def _np_archer_critic(q, v, r, d, m, tv, tq, gamma, use_min):
  total, n = 0.0, 0
  for i in range(q.shape[1]):
    if not m[i]:
      continue
    n += 1
    for k in range(2):
      vn = tv[:, i].min() if use_min else tv[k, i]
      qp = tq[:, i].min() if use_min else tq[k, i]
      yq = r[i] + gamma * (1.0 - d[i]) * vn
      total += (q[k, i] - yq) ** 2 + (v[k, i] - qp) ** 2
  return total / max(n, 1)


def _critic_inputs(n=7, seed=2):
  rng = np.random.default_rng(seed)
  q, v, tv, tq = (_f32(rng.normal(size=(2, n))) for _ in range(4))
  r = _f32(rng.normal(size=n))
  d = rng.random(n) < 0.3
  m = rng.random(n) < 0.7
  return q, v, r, d, m, tv, tq


class ArcherCriticTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_matches_reference(self):
    q, v, r, d, m, tv, tq = _critic_inputs()
    for use_min in (False, True):
      fn = self.variant(lambda *a, use_min=use_min: vl.archer_critic_loss(
          a[0], a[1], reward=a[2], done=a[3], mask=a[4], target_v_next=a[5], target_q_pi=a[6],
          gamma=0.9, min_over_target_heads=use_min))
      loss, metrics = fn(q, v, r, d, m, tv, tq)
      _check_sum_weight(loss, metrics)
      np.testing.assert_allclose(loss, _np_archer_critic(q, v, r, d, m, tv, tq, 0.9, use_min),
                                 rtol=1e-5)
      np.testing.assert_allclose(metrics["q_loss"] + metrics["v_loss"], loss, rtol=1e-5)
      assert float(metrics["loss_weight"]) == m.sum()

  @chex.variants(with_jit=True, without_jit=True)
  def test_all_masked_is_zero(self):
    q, v, r, d, m, tv, tq = _critic_inputs()
    fn = self.variant(lambda *a: vl.archer_critic_loss(
        a[0], a[1], reward=a[2], done=a[3], mask=a[4], target_v_next=a[5], target_q_pi=a[6],
        gamma=0.9))
    loss, metrics = fn(q, v, r, d, np.zeros_like(m), tv, tq)
    assert float(loss) == 0.0
    _check_sum_weight(loss, metrics)


def test_archer_critic_hand_computed():
  # One transition, non-terminal: head k regresses onto its own target head (official code).
  q = _f32([[1.0], [2.0]])
  v = _f32([[0.0], [0.5]])
  tv = _f32([[3.0], [1.0]])
  tq = _f32([[2.0], [4.0]])
  kw = dict(reward=_f32([1.0]), done=np.array([False]), mask=np.array([True]),
            target_v_next=tv, target_q_pi=tq, gamma=0.5)
  loss, m = vl.archer_critic_loss(q, v, **kw)
  # y_Q = [1 + 0.5*3, 1 + 0.5*1] = [2.5, 1.5]; y_V = [2, 4].
  expected_q = (1 - 2.5) ** 2 + (2 - 1.5) ** 2
  expected_v = (0 - 2) ** 2 + (0.5 - 4) ** 2
  np.testing.assert_allclose(loss, expected_q + expected_v, rtol=1e-6)
  # With the min over target heads, y_Q = 1 + 0.5*1 = 1.5 and y_V = 2 for both heads.
  loss_min, _ = vl.archer_critic_loss(q, v, **kw, min_over_target_heads=True)
  np.testing.assert_allclose(loss_min, (1 - 1.5) ** 2 + (2 - 1.5) ** 2 + 2 ** 2 + 1.5 ** 2,
                             rtol=1e-6)
  # A terminal transition does not bootstrap: y_Q = r.
  kw["done"] = np.array([True])
  loss_t, m_t = vl.archer_critic_loss(q, v, **kw)
  np.testing.assert_allclose(m_t["q_loss"], (1 - 1) ** 2 + (2 - 1) ** 2, rtol=1e-6)


def test_archer_critic_no_grad_into_targets():
  q, v, r, d, m, tv, tq = _critic_inputs()

  def f(q, v, tv, tq):
    return vl.archer_critic_loss(q, v, reward=r, done=d, mask=m, target_v_next=tv,
                                 target_q_pi=tq, gamma=0.9)[0]

  gq, gv, gtv, gtq = jax.grad(f, argnums=(0, 1, 2, 3))(q, v, tv, tq)
  assert np.all(np.asarray(gtv) == 0) and np.all(np.asarray(gtq) == 0)
  assert np.any(np.asarray(gq) != 0) and np.any(np.asarray(gv) != 0)
  # Masked transitions get no gradient.
  assert np.all(np.asarray(gq)[:, ~m] == 0)


# ----------------------------------------------------------------------------- ArCHer actor


def test_archer_advantage_min_over_heads():
  q = _f32([[1.0, 5.0], [3.0, 2.0]])
  v = _f32([[0.5, 1.0], [0.0, 4.0]])
  np.testing.assert_allclose(vl.archer_advantage(q, v), [1.0 - 0.0, 2.0 - 1.0])
  g = jax.grad(lambda q: vl.archer_advantage(q, v).sum())(q)
  assert np.all(np.asarray(g) == 0)


class ArcherActorTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_matches_reference(self):
    logprobs, action_mask, turn_index, turn_mask = _turn_batch()
    adv = _f32(RNG.normal(size=turn_mask.shape))
    fn = self.variant(lambda lp, am, ti, a, tm: vl.archer_actor_loss(
        lp, am, ti, turn_advantages=a, turn_mask=tm))
    loss, metrics = fn(logprobs, action_mask, turn_index, adv, turn_mask)
    _check_sum_weight(loss, metrics)
    np.testing.assert_allclose(
        loss, _np_turn_weighted_sum(logprobs, action_mask, turn_index, adv, turn_mask), rtol=1e-5)
    assert float(metrics["loss_weight"]) == turn_mask.sum()
    loss0, m0 = fn(logprobs, action_mask, turn_index, adv, np.zeros_like(turn_mask))
    assert float(loss0) == 0.0
    _check_sum_weight(loss0, m0)

  @chex.variants(with_jit=True, without_jit=True)
  def test_token_baseline_matches_reference(self):
    logprobs, action_mask, turn_index, turn_mask = _turn_batch(seed=5)
    adv = _f32(RNG.normal(size=turn_mask.shape))
    values = _f32(RNG.normal(size=logprobs.shape))
    fn = self.variant(lambda lp, am, ti, tv, a, tm: vl.archer_token_baseline_actor_loss(
        lp, am, ti, tv, turn_advantages=a, turn_mask=tm, baseline_weight=0.3))
    loss, metrics = fn(logprobs, action_mask, turn_index, values, adv, turn_mask)
    _check_sum_weight(loss, metrics)
    pg, bl = 0.0, 0.0
    for i in range(logprobs.shape[0]):
      for j in range(logprobs.shape[1]):
        kk = turn_index[i, j]
        if action_mask[i, j] and 0 <= kk < adv.shape[1] and turn_mask[i, kk]:
          res = adv[i, kk] - values[i, j]
          pg += -res * logprobs[i, j]
          bl += res ** 2
    n = turn_mask.sum()
    np.testing.assert_allclose(loss, (pg + 0.3 * bl) / n, rtol=1e-5)
    np.testing.assert_allclose(metrics["pg_loss"], pg / n, rtol=1e-5)


def test_archer_actor_hand_computed_and_grads():
  # Two turns in one row; tokens 1,2 -> turn 0 (A=2), token 4 -> turn 1 (A=-1), rest off.
  logprobs = _f32([[-9.0, -1.0, -2.0, -9.0, -0.5]])
  turn_index = np.array([[-1, 0, 0, -1, 1]], np.int32)
  action_mask = turn_index >= 0
  adv = _f32([[2.0, -1.0]])
  turn_mask = np.array([[True, True]])
  loss, _ = vl.archer_actor_loss(logprobs, action_mask, turn_index, turn_advantages=adv,
                                 turn_mask=turn_mask)
  np.testing.assert_allclose(loss, (-2.0 * (-3.0) + 1.0 * (-0.5)) / 2, rtol=1e-6)

  glp, gadv = jax.grad(lambda lp, a: vl.archer_actor_loss(
      lp, action_mask, turn_index, turn_advantages=a, turn_mask=turn_mask)[0],
                       argnums=(0, 1))(logprobs, adv)
  np.testing.assert_allclose(glp, [[0.0, -1.0, -1.0, 0.0, 0.5]])
  assert np.all(np.asarray(gadv) == 0)

  values = _f32(RNG.normal(size=logprobs.shape))
  gadv, gval = jax.grad(lambda a, tv: vl.archer_token_baseline_actor_loss(
      logprobs, action_mask, turn_index, tv, turn_advantages=a, turn_mask=turn_mask)[0],
                        argnums=(0, 1))(adv, values)
  assert np.all(np.asarray(gadv) == 0)
  # Only the squared term reaches the baseline: d/db (A - b)^2 / n = -2 (A - b) / n.
  res = np.array([[0.0, 2.0, 2.0, 0.0, -1.0]]) - values
  np.testing.assert_allclose(gval, np.where(action_mask, -2 * res / 2, 0.0), rtol=1e-5)


# ----------------------------------------------------------------------------- IQL / AWR


def _np_expectile(diff, mask, tau):
  w = np.where(diff < 0, 1 - tau, tau)
  per = w * diff ** 2
  full = np.broadcast_to(mask, diff.shape)
  return per[full].sum() / max(mask.sum(), 1)


class IqlTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_expectile_matches_reference(self):
    diff = _f32(RNG.normal(size=(2, 9)))
    mask = RNG.random(9) < 0.6
    fn = self.variant(lambda d, m: vl.expectile_loss(d, mask=m, expectile=0.8))
    loss, metrics = fn(diff, mask)
    _check_sum_weight(loss, metrics)
    np.testing.assert_allclose(loss, _np_expectile(diff, mask, 0.8), rtol=1e-5)
    loss0, m0 = fn(diff, np.zeros_like(mask))
    assert float(loss0) == 0.0
    _check_sum_weight(loss0, m0)

  @chex.variants(with_jit=True, without_jit=True)
  def test_iql_value_and_q(self):
    v, tq, qv, nv = (_f32(RNG.normal(size=(2, 8))) for _ in range(4))
    r = _f32(RNG.normal(size=8))
    d = RNG.random(8) < 0.3
    m = RNG.random(8) < 0.7
    fv = self.variant(lambda v, tq, m: vl.iql_value_loss(v, tq, m, expectile=0.9))
    loss, metrics = fv(v, tq, m)
    _check_sum_weight(loss, metrics)
    np.testing.assert_allclose(loss, _np_expectile(tq - v, m, 0.9), rtol=1e-5)
    fq = self.variant(lambda q, r, d, nv, m: vl.iql_q_loss(q, r, d, nv, m, gamma=0.9))
    loss, metrics = fq(qv, r, d, nv, m)
    _check_sum_weight(loss, metrics)
    y = r + 0.9 * (1 - d) * nv
    np.testing.assert_allclose(loss, ((qv - y) ** 2)[:, m].sum() / m.sum(), rtol=1e-5)

  @chex.variants(with_jit=True, without_jit=True)
  def test_awr_actor_matches_reference(self):
    logprobs, action_mask, turn_index, turn_mask = _turn_batch(seed=3)
    adv = _f32(RNG.normal(size=turn_mask.shape) * 3)
    fn = self.variant(lambda *a: vl.awr_actor_loss(*a, temperature=0.5, max_weight=20.0))
    loss, metrics = fn(logprobs, action_mask, turn_index, adv, turn_mask)
    _check_sum_weight(loss, metrics)
    w = np.minimum(np.exp(adv / 0.5), 20.0)
    np.testing.assert_allclose(
        loss, _np_turn_weighted_sum(logprobs, action_mask, turn_index, w, turn_mask), rtol=1e-5)


def test_expectile_half_is_half_mse():
  diff = _f32(RNG.normal(size=10))
  mask = RNG.random(10) < 0.8
  loss, _ = vl.expectile_loss(diff, mask=mask, expectile=0.5)
  np.testing.assert_allclose(loss, 0.5 * np.mean(diff[mask] ** 2), rtol=1e-6)


def test_expectile_asymmetry_hand_computed():
  loss, _ = vl.expectile_loss(_f32([2.0, -2.0]), mask=np.array([True, True]), expectile=0.7)
  np.testing.assert_allclose(loss, (0.7 * 4 + 0.3 * 4) / 2, rtol=1e-6)
  loss, _ = vl.expectile_loss(_f32([2.0, -2.0]), mask=np.array([True, False]), expectile=0.9)
  np.testing.assert_allclose(loss, 0.9 * 4, rtol=1e-6)


def test_iql_no_grad_into_targets_and_terminal():
  v, tq = _f32([1.0, 2.0]), _f32([3.0, 0.0])
  m = np.array([True, True])
  gv, gt = jax.grad(lambda v, t: vl.iql_value_loss(v, t, m, expectile=0.7)[0],
                    argnums=(0, 1))(v, tq)
  assert np.all(np.asarray(gt) == 0) and np.all(np.asarray(gv) != 0)
  q, r, nv = _f32([1.0, 1.0]), _f32([0.5, 0.5]), _f32([10.0, 10.0])
  d = np.array([True, False])
  gq, gnv, gr = jax.grad(lambda q, nv, r: vl.iql_q_loss(q, r, d, nv, m, gamma=0.5)[0],
                         argnums=(0, 1, 2))(q, nv, r)
  assert np.all(np.asarray(gnv) == 0) and np.all(np.asarray(gr) == 0)
  loss, _ = vl.iql_q_loss(q, r, d, nv, m, gamma=0.5)
  # Terminal: y = 0.5; non-terminal: y = 0.5 + 0.5 * 10 = 5.5.
  np.testing.assert_allclose(loss, ((1 - 0.5) ** 2 + (1 - 5.5) ** 2) / 2, rtol=1e-6)


def test_awr_weights_clip_and_no_overflow():
  adv = _f32([0.0, 1.0, 1e4])
  w = vl.awr_actor_weights(adv, temperature=1.0, max_weight=5.0)
  np.testing.assert_allclose(w, [1.0, np.e, 5.0], rtol=1e-6)
  w = vl.awr_actor_weights(_f32([1.0]), temperature=2.0)
  np.testing.assert_allclose(w, [np.exp(0.5)], rtol=1e-6)
  g = jax.grad(lambda a: vl.awr_actor_weights(a, temperature=1.0).sum())(_f32([0.3, -0.2]))
  assert np.all(np.asarray(g) == 0)


# ----------------------------------------------------------------------------- ILQL / MC


def _ilql_inputs(b=2, t=6, vocab=5, seed=7):
  rng = np.random.default_rng(seed)
  q1l, q2l = (_f32(rng.normal(size=(b, t, vocab))) for _ in range(2))
  actions = rng.integers(0, vocab, size=(b, t)).astype(np.int32)
  v, nv, tq1, tq2, r = (_f32(rng.normal(size=(b, t))) for _ in range(5))
  d = rng.random((b, t)) < 0.2
  m = rng.random((b, t)) < 0.7
  return q1l, q2l, actions, v, nv, tq1, tq2, r, d, m


def _np_ilql(q1l, q2l, a, v, nv, tq1, tq2, r, d, m, gamma, tau, cw):
  def lse(x):
    mx = x.max()
    return mx + np.log(np.exp(x - mx).sum())

  qs = vs = cs = 0.0
  for i in range(a.shape[0]):
    for j in range(a.shape[1]):
      if not m[i, j]:
        continue
      y = r[i, j] + gamma * (1 - d[i, j]) * nv[i, j]
      q1, q2 = q1l[i, j, a[i, j]], q2l[i, j, a[i, j]]
      qs += 0.5 * (q1 - y) ** 2 + 0.5 * (q2 - y) ** 2
      u = min(tq1[i, j], tq2[i, j]) - v[i, j]
      vs += (tau if u >= 0 else 1 - tau) * u ** 2
      cs += lse(q1l[i, j]) - q1 + lse(q2l[i, j]) - q2
  n = max(m.sum(), 1)
  return (qs + vs + cw * cs) / n, qs / n, vs / n, cs / n


class IlqlTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_matches_reference(self):
    args = _ilql_inputs()
    fn = self.variant(lambda *a: vl.ilql_loss(*a, gamma=0.9, expectile=0.7, cql_weight=0.1))
    loss, metrics = fn(*args)
    _check_sum_weight(loss, metrics)
    ref, q_ref, v_ref, c_ref = _np_ilql(*args, 0.9, 0.7, 0.1)
    np.testing.assert_allclose(loss, ref, rtol=1e-5)
    np.testing.assert_allclose(metrics["q_loss"], q_ref, rtol=1e-5)
    np.testing.assert_allclose(metrics["v_loss"], v_ref, rtol=1e-5)
    np.testing.assert_allclose(metrics["cql_loss"], c_ref, rtol=1e-5)
    masked = list(args)
    masked[-1] = np.zeros_like(args[-1])
    loss0, m0 = fn(*masked)
    assert float(loss0) == 0.0
    _check_sum_weight(loss0, m0)

  @chex.variants(with_jit=True, without_jit=True)
  def test_mc_returns(self):
    values, returns = (_f32(RNG.normal(size=(3, 5))) for _ in range(2))
    mask = RNG.random((3, 5)) < 0.6
    fn = self.variant(vl.mc_returns_loss)
    loss, metrics = fn(values, returns, mask)
    _check_sum_weight(loss, metrics)
    np.testing.assert_allclose(loss, 0.5 * ((values - returns) ** 2)[mask].mean(), rtol=1e-5)
    loss0, m0 = fn(values, returns, np.zeros_like(mask))
    assert float(loss0) == 0.0
    _check_sum_weight(loss0, m0)


def test_ilql_no_grad_into_targets():
  q1l, q2l, a, v, nv, tq1, tq2, r, d, m = _ilql_inputs()

  def f(q1l, v, nv, tq1, tq2):
    return vl.ilql_loss(q1l, q2l, a, v, nv, tq1, tq2, r, d, m, cql_weight=0.5)[0]

  g = jax.grad(f, argnums=(0, 1, 2, 3, 4))(q1l, v, nv, tq1, tq2)
  for gt in g[2:]:
    assert np.all(np.asarray(gt) == 0)
  assert np.any(np.asarray(g[0]) != 0) and np.any(np.asarray(g[1]) != 0)
  assert np.all(np.asarray(g[1])[~m] == 0)


def test_ilql_terminal_does_not_bootstrap():
  logits = np.zeros((1, 1, 3), np.float32)
  logits[0, 0, 1] = 2.0
  a = np.array([[1]], np.int32)
  one = lambda x: _f32([[x]])
  kw = dict(gamma=0.5, expectile=0.5, cql_weight=0.0)
  loss, m = vl.ilql_loss(logits, logits, a, one(0.0), one(100.0), one(0.0), one(0.0), one(1.0),
                         np.array([[True]]), np.array([[True]]), **kw)
  np.testing.assert_allclose(m["q_loss"], 2 * 0.5 * (2.0 - 1.0) ** 2, rtol=1e-6)
  np.testing.assert_allclose(m["v_loss"], 0.0, atol=1e-7)


def test_mc_returns_no_grad_into_returns():
  values, returns = _f32([1.0, 2.0]), _f32([0.0, 0.0])
  m = np.array([True, False])
  gv, gr = jax.grad(lambda v, r: vl.mc_returns_loss(v, r, m)[0], argnums=(0, 1))(values, returns)
  np.testing.assert_allclose(gv, [1.0, 0.0])
  assert np.all(np.asarray(gr) == 0)


# ----------------------------------------------------------------------------- registry


def test_registry():
  assert vl.get_value_loss("archer_critic") is vl.archer_critic_loss
  assert vl.get_value_loss("ilql") is vl.ilql_loss
  for name, fn in vl.VALUE_LOSSES.items():
    assert vl.get_value_loss(name) is fn
  with pytest.raises(ValueError, match="archer_critic"):
    vl.get_value_loss("nope")


def test_micro_batch_accumulation_is_exact():
  q, v, r, d, m, tv, tq = _critic_inputs(n=10, seed=11)

  def crit(sl):
    return vl.archer_critic_loss(q[:, sl], v[:, sl], reward=r[sl], done=d[sl], mask=m[sl],
                                 target_v_next=tv[:, sl], target_q_pi=tq[:, sl], gamma=0.9)

  full, _ = crit(slice(None))
  parts = [crit(slice(0, 4))[1], crit(slice(4, None))[1]]
  acc = sum(float(p["loss_sum"]) for p in parts) / sum(float(p["loss_weight"]) for p in parts)
  np.testing.assert_allclose(acc, full, rtol=1e-5)

  logprobs, action_mask, turn_index, turn_mask = _turn_batch(b=4, seed=12)
  adv = _f32(RNG.normal(size=turn_mask.shape))

  def actor(sl):
    return vl.archer_actor_loss(logprobs[sl], action_mask[sl], turn_index[sl],
                                turn_advantages=adv[sl], turn_mask=turn_mask[sl])

  full, _ = actor(slice(None))
  parts = [actor(slice(0, 1))[1], actor(slice(1, None))[1]]
  acc = sum(float(p["loss_sum"]) for p in parts) / sum(float(p["loss_weight"]) for p in parts)
  np.testing.assert_allclose(acc, full, rtol=1e-5)


def test_jit_and_eager_agree():
  args = _ilql_inputs(seed=21)
  eager_loss, eager_metrics = vl.ilql_loss(*args, cql_weight=0.2)
  jit_loss, jit_metrics = jax.jit(lambda *a: vl.ilql_loss(*a, cql_weight=0.2))(*args)
  np.testing.assert_allclose(jit_loss, eager_loss, rtol=1e-6)
  for k in eager_metrics:
    np.testing.assert_allclose(jit_metrics[k], eager_metrics[k], rtol=1e-5, atol=1e-7)
