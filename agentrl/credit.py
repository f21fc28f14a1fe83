"""Turn-level credit assignment for multi-turn agents: group-in-group, turn-group, information
gain, role-conditioned and gated estimators.

Every function is pure: arrays in, arrays out, hyperparameters keyword-only. Layouts are
batch-major: per-trajectory arrays are [B], per-turn arrays are [B, K]. A trajectory exists iff
it has at least one valid turn (`turn_mask.any(-1)`); masked turns never influence a valid output
and always come out as 0, so padding is inert. Groupings are explicit int id arrays (`group_id`
in [0, B), anchor-state ids, roles); group statistics are segment sums over valid entries.

Turn-level outputs reach the tokens through `turns.turns_to_tokens`.

The group-normalised estimators (IGPO, A²TGPO, MARS, and the turn-group z-score) take an
optional `normalize`: a group normaliser N(values [N], ids int[N] in [0, N), mask bool[N]) -> [N]
(e.g. an `advantages.GROUP_ESTIMATORS` entry's, with its options bound) that replaces their
z-score; `group_turn_credit` composes them into the credit options of `algorithms.group`, so
each runs with any group estimator's normalisation.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple, Optional

import chex
import jax
import jax.numpy as jnp

from agentrl import registry
from agentrl._math import as_float, safe_div
from agentrl.advantages import discounted_returns, grpo_advantages
from agentrl.hiper import hiper_advantages  # re-exported: registered below as "hiper"

Array = jax.Array
#: A group normaliser N(values [N], ids int[N] in [0, N), mask bool[N]) -> [N], 0 where masked.
Normalizer = Callable[[Array, Array, Array], Array]


def _segment_stats(x: Array, seg: Array, mask: Array, num_segments: int, *,
                   weights: Optional[Array] = None, unbiased: bool = False):
  """Per-element (mean, std, count) of the segment each element belongs to.

  Statistics pool the valid elements of a segment, each weighted by `weights` (1 if None);
  `count` is the summed weight. Any shape; seg holds ids in [0, num_segments).
  """
  x, seg, mask = x.reshape(-1), seg.reshape(-1), mask.reshape(-1).astype(bool)
  w = mask.astype(x.dtype)
  if weights is not None:
    w = w * weights.reshape(-1).astype(x.dtype)
  xm = jnp.where(mask, x, 0.0)
  n = jax.ops.segment_sum(w, seg, num_segments=num_segments)
  mean = jax.ops.segment_sum(w * xm, seg, num_segments=num_segments) / jnp.maximum(n, 1.0)
  dev = jnp.where(mask, xm - mean[seg], 0.0)
  sq = jax.ops.segment_sum(w * jnp.square(dev), seg, num_segments=num_segments)
  var = sq / jnp.maximum(n - (1.0 if unbiased else 0.0), 1.0)
  return mean[seg], jnp.sqrt(var)[seg], n[seg]


def pair_ids(a: Array, b: Array) -> Array:
  """Dense ids in [0, a.size) for the distinct (a, b) pairs of two int arrays of equal shape.

  Sort-based (a lexicographic sort, then a run-start cumsum), so it is jittable and never
  overflows the way a packed key a·M + b could.
  """
  shape = a.shape
  a, b = a.reshape(-1), b.reshape(-1)
  order = jnp.lexsort((b, a))
  a_s, b_s = a[order], b[order]
  new = jnp.concatenate([jnp.ones((1,), bool), (a_s[1:] != a_s[:-1]) | (b_s[1:] != b_s[:-1])])
  ids_sorted = jnp.cumsum(new.astype(jnp.int32)) - 1
  return jnp.zeros_like(ids_sorted).at[order].set(ids_sorted).reshape(shape)


def _normalize_flat(normalize: Normalizer, x: Array, seg: Array, mask: Array) -> Array:
  """`normalize` over the flattened entries of x (any shape) grouped by `seg`, reshaped back."""
  return normalize(x.reshape(-1), seg.reshape(-1), mask.reshape(-1)).reshape(x.shape)


def _turn_returns(rewards: Array, mask: Array, gamma: float) -> Array:
  """Σ_{k ≥ t, valid} γ^{(#valid steps from t to k)} r_k over the valid turns, no bootstrap."""
  return discounted_returns(rewards, jnp.zeros(rewards.shape, bool), mask, gamma=gamma)


# ----------------------------------------------------------------------------- GiGPO


def gigpo_advantages(episode_returns: Array, group_id: Array, turn_rewards: Array,
                     turn_mask: Array, anchor_id: Array, *, gamma: float = 0.95,
                     omega: float = 1.0, normalize_std: bool = True,
                     unbiased_std: bool = True, episode_stats_over_steps: bool = True,
                     eps: float = 1e-6) -> Array:
  """Group-in-Group Policy Optimization (Feng et al. 2025, arXiv 2505.10978, §4, verl-agent
  `core_gigpo.py`).

  Episode level (eq. for A^E):  A^E_i = (R(τᵢ) − mean_{g(i)} R) / F_g,
  step level:                   R_{i,t} = Σ_{k ≥ t} γ^{k−t} r_{i,k},
                                A^S_{i,t} = (R_{i,t} − mean_{s(i,t)} R) / F_s,
  combined:                     A_{i,t} = A^E_i + ω · A^S_{i,t},

  where g(i) is the episode group (same task / env seed) and s(i,t) the anchor-state bucket: the
  steps of the same episode group whose current state is identical (same `anchor_id`). F is the
  group std plus ε (`normalize_std=True`, the paper's mean_std_norm mode) or 1 (False, verl-agent's
  `mean_norm`, the yaml default).

  Flags for details the sources leave open:
    - episode_stats_over_steps (default True, as in the code's compute_mean_std_cross_steps):
      the episode statistics pool every valid step sample, so a trajectory weighs by its number
      of valid turns; False gives each trajectory weight 1.
    - unbiased_std (default True, `torch.std` in verl-agent): n−1 denominators.
    - Singletons: an episode group with one valid trajectory gets A^E = 0 (it is its own baseline,
      as `grpo_advantages`; verl instead uses mean 0 / std 1 there), and an anchor bucket with one
      step gets A^S = 0 (as the code).

  Args:
    episode_returns: [B] episode return R(τᵢ).
    group_id: int[B] episode group of each trajectory, in [0, B).
    turn_rewards: [B, K] reward after each step.
    turn_mask: bool[B, K], steps that happened (holes allowed; a row with none is padding).
    anchor_id: int[B, K] anchor-state id of each step; equal ids within the same episode group
      mean the same state (any int values; ids are only compared within a group).
    gamma: step discount γ.
    omega: step-advantage weight ω.
    normalize_std: divide by the group std (+ ε).
    unbiased_std: n−1 std.
    episode_stats_over_steps: weight episode statistics by step count.
    eps: ε added to the std.

  Returns:
    [B, K] advantages, 0 on masked steps.
  """
  chex.assert_rank([episode_returns, group_id, turn_rewards, turn_mask, anchor_id],
                   [1, 1, 2, 2, 2])
  chex.assert_equal_shape([turn_rewards, turn_mask, anchor_id])
  chex.assert_equal_shape_prefix([episode_returns, group_id, turn_rewards], 1)
  b, k = turn_rewards.shape
  turn_mask = turn_mask.astype(bool)
  traj_mask = turn_mask.any(axis=1)
  ret = as_float(episode_returns)

  # Episode level.
  weights = turn_mask.sum(axis=1) if episode_stats_over_steps else None
  mean_e, std_e, _ = _segment_stats(ret, group_id, traj_mask, b, weights=weights,
                                    unbiased=unbiased_std)
  _, _, n_traj = _segment_stats(ret, group_id, traj_mask, b)
  a_e = jnp.where(traj_mask, ret, 0.0) - mean_e
  if normalize_std:
    a_e = safe_div(a_e, std_e + eps)
  a_e = jnp.where(traj_mask & (n_traj > 1), a_e, 0.0)

  # Step level over (episode group, anchor state) buckets.
  step_ret = _turn_returns(as_float(turn_rewards), turn_mask, gamma)
  gid = jnp.broadcast_to(group_id[:, None], (b, k))
  # Masked steps are moved to a sentinel group so they never share a bucket with valid steps.
  gid = jnp.where(turn_mask, gid, b)
  seg = pair_ids(gid, jnp.where(turn_mask, anchor_id, 0))
  mean_s, std_s, n_s = _segment_stats(step_ret, seg, turn_mask, b * k, unbiased=unbiased_std)
  mean_s, std_s, n_s = (x.reshape(b, k) for x in (mean_s, std_s, n_s))
  a_s = step_ret - mean_s
  if normalize_std:
    a_s = safe_div(a_s, std_s + eps)
  a_s = jnp.where(n_s > 1, a_s, 0.0)

  return jnp.where(turn_mask, a_e[:, None] + omega * a_s, 0.0)


# ----------------------------------------------------------------------------- A²TGPO


def turn_group_normalize(x: Array, group_id: Array, turn_mask: Array, *, eps: float = 1e-6,
                         unbiased_std: bool = False,
                         normalize: Optional[Normalizer] = None) -> Array:
  """Turn-group z-score (A²TGPO, Chen et al. 2026, arXiv 2605.06200, §(i)):

  x̂_{i,t} = (x_{i,t} − μ_{q,t}) / (σ_{q,t} + ε),

  with μ, σ over the rollouts i of prompt group q that have a valid turn t (key
  group_id · K + t). Fewer than two peers, or zero variance, gives 0. With `normalize`, N
  over the same (q, t) groups replaces the z-score (eps and unbiased_std are then unused).

  Args:
    x: [B, K] per-turn signal (e.g. information gain).
    group_id: int[B] prompt group, in [0, B).
    turn_mask: bool[B, K] valid turns.
    eps: ε added to the std.
    unbiased_std: n−1 std (default population std, as the re-implementations).
    normalize: optional group normaliser N (see the module docstring).

  Returns:
    [B, K], 0 on masked turns.
  """
  chex.assert_rank([x, group_id, turn_mask], [2, 1, 2])
  chex.assert_equal_shape([x, turn_mask])
  b, k = x.shape
  x = as_float(x)
  turn_mask = turn_mask.astype(bool)
  seg = group_id[:, None] * k + jnp.arange(k)[None, :]
  if normalize is not None:
    return _normalize_flat(normalize, x, seg, turn_mask)
  mean, std, n = _segment_stats(x, seg, turn_mask, b * k, unbiased=unbiased_std)
  mean, std, n = (v.reshape(b, k) for v in (mean, std, n))
  xm = jnp.where(turn_mask, x, 0.0)
  out = safe_div(xm - mean, std + eps)
  return jnp.where(turn_mask & (n > 1) & (std > 0), out, 0.0)


def a2tgpo_advantages(info_gain: Array, outcome_rewards: Array, group_id: Array,
                      turn_mask: Array, *, gamma: float = 1.0, lambda_ig: float = 1.0,
                      lambda_outcome: float = 1.0, outcome_on_all_turns: bool = True,
                      clip_eps: float = 0.2, beta: float = 0.3, eps: float = 1e-6,
                      unbiased_std: bool = False,
                      normalize: Optional[Normalizer] = None) -> tuple[Array, Array]:
  """A²TGPO: turn-group normalisation, variance-rescaled discounted accumulation and adaptive
  turn-level clipping (Chen et al. 2026, arXiv 2605.06200, §(i)–(iii)).

  (i)   ÎG_{i,t} = (IG_{i,t} − μ_{q,t}) / (σ_{q,t} + ε)              (`turn_group_normalize`)
  (ii)  A^IG_{i,t} = (Σ_{k ≥ t} γ^{k−t} ÎG_{i,k}) / √(Tᵢ − t + 1)
        A_{i,t} = λ_IG · A^IG_{i,t} + λ_o · A^out_i,   A^out_i = GRPO z-score of Rᵢ in q
  (iii) c_{i,t} = 1 + β (2 σ(ÎG_{i,t}) − 1),   ε_{i,t} = ε · c_{i,t}  ∈ (ε(1−β), ε(1+β))

  Sums and counts run over valid turns only (Tᵢ − t + 1 is the number of valid turns from t on).
  Unverified details, as flags: λ_IG, λ_o (the re-implementation uses 1, 1, γ = 1), and where
  the outcome advantage goes: every valid turn (`outcome_on_all_turns=True`) or only the last
  valid (answer) turn. Pass IG = 0 on the answer turn if it carries no information gain.
  A^out uses `grpo_advantages` (singleton group → 0). With `normalize`, N replaces both
  z-scores: over the (q, t) groups in (i) and over the groups q for A^out.

  Args:
    info_gain: [B, K] per-turn information gain IG (e.g. from `igpo_turn_rewards`, without the
      outcome).
    outcome_rewards: [B] outcome (+ format) reward per trajectory.
    group_id: int[B] prompt group, in [0, B).
    turn_mask: bool[B, K] valid turns.
    gamma: discount γ.
    lambda_ig, lambda_outcome: mixing weights.
    outcome_on_all_turns: add A^out to every turn (True) or only the last valid one.
    clip_eps: base PPO clip ε.
    beta: clip adaptation strength β.
    eps: ε for the std.
    unbiased_std: n−1 std in both normalisations.
    normalize: optional group normaliser N (see the module docstring).

  Returns:
    (advantages [B, K], clip ranges ε_{i,t} [B, K]); both 0 on masked turns. Broadcast both to
    tokens with `turns_to_tokens`; the clip ranges can be passed as `clip_low`/`clip_high` to the
    PPO loss.
  """
  chex.assert_rank([info_gain, outcome_rewards, group_id, turn_mask], [2, 1, 1, 2])
  chex.assert_equal_shape([info_gain, turn_mask])
  turn_mask = turn_mask.astype(bool)
  traj_mask = turn_mask.any(axis=1)
  ig_hat = turn_group_normalize(info_gain, group_id, turn_mask, eps=eps,
                                unbiased_std=unbiased_std, normalize=normalize)
  acc = _turn_returns(ig_hat, turn_mask, gamma)
  remaining = jnp.cumsum(turn_mask[:, ::-1].astype(acc.dtype), axis=1)[:, ::-1]
  if normalize is None:
    a_out = grpo_advantages(outcome_rewards, group_id, traj_mask, eps=eps,
                            unbiased_std=unbiased_std)
  else:
    a_out = normalize(outcome_rewards, group_id, traj_mask)
  if outcome_on_all_turns:
    out_turn = turn_mask
  else:
    out_turn = turn_mask & (remaining == 1.0)
  adv = (lambda_ig * acc / jnp.sqrt(jnp.maximum(remaining, 1.0))
         + lambda_outcome * jnp.where(out_turn, a_out[:, None], 0.0))
  c = 1.0 + beta * (2.0 * jax.nn.sigmoid(ig_hat) - 1.0)
  return jnp.where(turn_mask, adv, 0.0), jnp.where(turn_mask, clip_eps * c, 0.0)


# ----------------------------------------------------------------------------- IGPO


def igpo_turn_rewards(gt_logprob_before: Array, gt_logprob_after: Array,
                      outcome_rewards: Array, turn_mask: Array) -> Array:
  """Information-gain turn rewards (IGPO, Wang et al. 2025, arXiv 2510.14967, §3, turn reward):

  p_{i,t} = π_θ(a | q, o_{i,≤t}) = exp((1/L) Σ_j log π_θ(a_j | q, o_{i,≤t}, a_{<j})),
  r_{i,t} = p_{i,t} − p_{i,t−1}   for non-final turns,   r_{i,Tᵢ} = outcome (F1 / format penalty).

  The inputs are the length-averaged log-probabilities of the ground-truth answer a before and
  after each turn (before_t = after_{t−1}, with before_1 conditioned on the question only), so a
  caller with a [B, K+1] sequence of p's passes its two shifted views. The last valid turn of each
  row gets `outcome_rewards` in place of its information gain.

  Args:
    gt_logprob_before: [B, K] mean GT-token log-prob before turn t.
    gt_logprob_after: [B, K] mean GT-token log-prob after turn t.
    outcome_rewards: [B] final-turn reward.
    turn_mask: bool[B, K] valid turns.

  Returns:
    [B, K] turn rewards, 0 on masked turns.
  """
  chex.assert_rank([gt_logprob_before, gt_logprob_after, outcome_rewards, turn_mask],
                   [2, 2, 1, 2])
  chex.assert_equal_shape([gt_logprob_before, gt_logprob_after, turn_mask])
  turn_mask = turn_mask.astype(bool)
  before = jnp.where(turn_mask, as_float(gt_logprob_before), 0.0)
  after = jnp.where(turn_mask, as_float(gt_logprob_after), 0.0)
  ig = jnp.exp(after) - jnp.exp(before)
  remaining = jnp.cumsum(turn_mask[:, ::-1].astype(jnp.int32), axis=1)[:, ::-1]
  last = turn_mask & (remaining == 1)
  r = jnp.where(last, as_float(outcome_rewards)[:, None].astype(ig.dtype), ig)
  return jnp.where(turn_mask, r, 0.0)


def igpo_advantages(turn_rewards: Array, group_id: Array, turn_mask: Array, *,
                    gamma: float = 1.0, eps: float = 1e-6, unbiased_std: bool = False,
                    normalize: Optional[Normalizer] = None) -> Array:
  """IGPO advantage (Wang et al. 2025, arXiv 2510.14967, §3, paper form):

  (1) r̃_{i,t} = (r_{i,t} − mean(R_q)) / (std(R_q) + ε),  R_q = {r_{i,t}: i ∈ q, t ≤ Tᵢ}
  (2) A_{i,t} = Σ_{k ≥ t} γ^{k−t} r̃_{i,k}

  The z-score pools every valid turn reward of the prompt group's rollouts. γ is not given in
  the sources retrieved (unverified; the released code has a variant with γ = 0.5), so it is a
  keyword. A group with fewer than two valid turn rewards gets r̃ = 0. The released code's
  per-token group-mean variant is not this function. With `normalize`, N over the same groups
  replaces the z-score in (1) (eps and unbiased_std are then unused).

  Args:
    turn_rewards: [B, K] per-turn rewards (`igpo_turn_rewards`).
    group_id: int[B] prompt group, in [0, B).
    turn_mask: bool[B, K] valid turns.
    gamma: discount γ.
    eps: ε added to the std.
    unbiased_std: n−1 std.
    normalize: optional group normaliser N (see the module docstring).

  Returns:
    [B, K] advantages, 0 on masked turns.
  """
  chex.assert_rank([turn_rewards, group_id, turn_mask], [2, 1, 2])
  chex.assert_equal_shape([turn_rewards, turn_mask])
  b, k = turn_rewards.shape
  turn_mask = turn_mask.astype(bool)
  r = as_float(turn_rewards)
  seg = jnp.broadcast_to(group_id[:, None], (b, k))
  if normalize is not None:
    return _turn_returns(_normalize_flat(normalize, r, seg, turn_mask), turn_mask, gamma)
  mean, std, n = _segment_stats(r, seg, turn_mask, b, unbiased=unbiased_std)
  mean, std, n = (v.reshape(b, k) for v in (mean, std, n))
  z = safe_div(jnp.where(turn_mask, r, 0.0) - mean, std + eps)
  z = jnp.where(turn_mask & (n > 1), z, 0.0)
  return _turn_returns(z, turn_mask, gamma)


# ----------------------------------------------------------------------------- SPIRAL / MARS


def spiral_rae_advantages(rewards: Array, baseline_id: Array, mask: Array, baselines: Array, *,
                          alpha: float = 0.95) -> tuple[Array, Array]:
  """Role-conditioned advantage estimation (SPIRAL, Liu et al. 2025, arXiv 2506.24119, RAE):

  A_{G,p}(τ) = R_p(τ) − b_{G,p},   then   b_{G,p} ← α b_{G,p} + (1 − α) R_p(τ).

  One exponential-moving-average baseline per (game G, role p); the caller flattens that pair into
  `baseline_id` (e.g. game · num_roles + role). As in the official code the baseline is read
  before it is updated with the sample's own reward, and samples are processed one at a time in
  batch order (a scan), so the batch result equals the sequential loop. The state is passed in
  and returned: start from zeros (the code's init). Invalid samples neither read nor update.
  Broadcast Â to every action token of that player's turns (γ = 1 in the paper).

  Args:
    rewards: [B] terminal reward R_p of each player-trajectory.
    baseline_id: int[B] baseline slot (game, role) of each sample, in [0, N).
    mask: bool[B] valid samples.
    baselines: [N] current baselines b.
    alpha: EMA decay α.

  Returns:
    (advantages [B], 0 where mask is false; updated baselines [N]).
  """
  chex.assert_rank([rewards, baseline_id, mask, baselines], [1, 1, 1, 1])
  chex.assert_equal_shape([rewards, baseline_id, mask])
  r = as_float(rewards)
  base = as_float(baselines).astype(r.dtype)

  def step(b, xs):
    ri, idx, m = xs
    a = ri - b[idx]
    b = jnp.where(m, b.at[idx].set(alpha * b[idx] + (1.0 - alpha) * ri), b)
    return b, jnp.where(m, a, 0.0)

  new_base, adv = jax.lax.scan(step, base, (r, baseline_id, mask.astype(bool)))
  return adv, new_base


def mars_advantages(turn_rewards: Array, turn_role: Array, group_id: Array, turn_mask: Array, *,
                    num_roles: int, gamma: float = 1.0, normalize_std: bool = True,
                    eps: float = 1e-6, unbiased_std: bool = False,
                    normalize: Optional[Normalizer] = None) -> Array:
  """Per-agent turn-level advantage with role-based group normalisation (MARS / MARSHAL, Yuan,
  Xu et al. 2025, arXiv 2510.15414, turn-level advantage):

  G^p_{i,t} = Σ_{t' ≥ t, role(t') = p} γ^{n(t, t')} r_{i,t'},   p = role(t),
  A_{i,t} = (G^p_{i,t} − mean_{q,p}) / (std_{q,p} + ε),

  the sum running over agent p's own later turns (summation before normalisation), with
  statistics over the valid turns of agent p in prompt group q (key (group, role), the code's
  `_p0` / `_p1` group suffix). n(t, t') counts agent p's own turns between t and t' (unverified;
  irrelevant at the paper's γ = 1). A (group, role) with one valid turn gives 0.
  normalize_std=False only centres. With `normalize`, N over the same (group, role) groups
  replaces the z-score (normalize_std, eps and unbiased_std are then unused). (The released
  pipeline's extra whitening passes are separate functions: `advantages.whiten`.)

  Args:
    turn_rewards: [B, K] reward of each turn to the agent who took it.
    turn_role: int[B, K] acting agent of each turn, in [0, num_roles).
    group_id: int[B] prompt group, in [0, B).
    turn_mask: bool[B, K] valid turns.
    num_roles: number of agents.
    gamma: discount γ over the agent's own turns.
    normalize_std: divide by the (group, role) std.
    eps: ε added to the std.
    unbiased_std: n−1 std.
    normalize: optional group normaliser N (see the module docstring).

  Returns:
    [B, K] advantages, 0 on masked turns.
  """
  chex.assert_rank([turn_rewards, turn_role, group_id, turn_mask], [2, 2, 1, 2])
  chex.assert_equal_shape([turn_rewards, turn_role, turn_mask])
  b, k = turn_rewards.shape
  turn_mask = turn_mask.astype(bool)
  r = as_float(turn_rewards)
  g = jnp.zeros_like(r)
  for p in range(num_roles):
    m = turn_mask & (turn_role == p)
    g = g + _turn_returns(r, m, gamma)
  role = jnp.clip(turn_role, 0, num_roles - 1)
  if normalize is not None:  # Dense (group, role) ids: N wants them in [0, B·K).
    seg = pair_ids(jnp.broadcast_to(group_id[:, None], (b, k)), role)
    return _normalize_flat(normalize, g, seg, turn_mask)
  seg = group_id[:, None] * num_roles + role
  mean, std, n = _segment_stats(g, seg, turn_mask, b * num_roles, unbiased=unbiased_std)
  mean, std, n = (v.reshape(b, k) for v in (mean, std, n))
  adv = g - mean
  if normalize_std:
    adv = safe_div(adv, std + eps)
  return jnp.where(turn_mask & (n > 1), adv, 0.0)


# ----------------------------------------------------------------------------- G-RA


def gated_reward_accumulation(high_reward: Array, low_rewards: Array, turn_mask: Array, *,
                              threshold: float) -> tuple[Array, Array]:
  """Gated reward accumulation (G-RA, Sun et al. 2025, arXiv 2508.10548):

  R_GRA(τ) = r_high(τ) + 1[r_high(τ) ≥ Δ] · Σ_t r_low_t,   r̃_t = 1[r_high(τ) ≥ Δ] · r_low_t.

  The gate is decided in hindsight from the episode's high-level (outcome) reward.

  Args:
    high_reward: [B] high-level reward.
    low_rewards: [B, K] low-level (step) rewards.
    turn_mask: bool[B, K] valid turns.
    threshold: gate Δ.

  Returns:
    (episode reward R_GRA [B], gated step rewards r̃ [B, K] with 0 on masked turns).
  """
  chex.assert_rank([high_reward, low_rewards, turn_mask], [1, 2, 2])
  chex.assert_equal_shape([low_rewards, turn_mask])
  hi = as_float(high_reward)
  gate = hi >= threshold
  low = jnp.where(turn_mask.astype(bool) & gate[:, None], as_float(low_rewards), 0.0)
  return hi + low.sum(axis=1), low


def gated_multi_priority(rewards: Array, *, thresholds) -> Array:
  """Multi-priority G-RA (Sun et al. 2025, arXiv 2508.10548, generalisation):

  R = Σ_c (Π_{j < c} 1[r_j ≥ δ_j]) · r_c,

  channels ordered by priority (column 0 highest): channel c counts only if every higher-priority
  channel meets its threshold. Column 0 always counts.

  Args:
    rewards: [B, C] reward channels, highest priority first.
    thresholds: [C] (or length-C sequence) thresholds δ; the last one is unused.

  Returns:
    [B] gated total reward.
  """
  chex.assert_rank(rewards, 2)
  r = as_float(rewards)
  th = jnp.asarray(thresholds, r.dtype)
  chex.assert_shape(th, (r.shape[1],))
  passed = (r >= th[None, :]).astype(r.dtype)
  gate = jnp.concatenate([jnp.ones_like(passed[:, :1]),
                          jnp.cumprod(passed[:, :-1], axis=1)], axis=1)
  return jnp.sum(gate * r, axis=1)


# ----------------------------------------------------------------------------- masking tricks


def void_turn_filter(loss_mask: Array, void_turn: Array, turn_mask: Array) -> Array:
  """SimpleTIR void-turn filter (Xue, Zheng et al. 2025, arXiv 2509.02479): a trajectory with
  any void valid turn (no complete code block and no final answer) has its whole loss mask
  zeroed; advantages are computed over the group before this mask is applied.

  Args:
    loss_mask: bool[B, T] tokens in the loss.
    void_turn: bool[B, K] void turns.
    turn_mask: bool[B, K] valid turns.

  Returns:
    bool[B, T] filtered loss mask.
  """
  chex.assert_rank([loss_mask, void_turn, turn_mask], 2)
  chex.assert_equal_shape([void_turn, turn_mask])
  bad = jnp.any(void_turn.astype(bool) & turn_mask.astype(bool), axis=1)
  return loss_mask.astype(bool) & ~bad[:, None]


def over_turn_mask(loss_mask: Array, exceeded: Array) -> Array:
  """Mini-o3 over-turn masking (arXiv 2509.07969): rollouts that hit the turn / image / context
  budget stay in the group statistics but get a zero loss mask (no gradient, neither rewarded
  nor penalised).

  Args:
    loss_mask: bool[B, T] tokens in the loss.
    exceeded: bool[B] over-budget rollouts.

  Returns:
    bool[B, T] masked loss mask.
  """
  chex.assert_rank([loss_mask, exceeded], [2, 1])
  return loss_mask.astype(bool) & ~exceeded.astype(bool)[:, None]


# ----------------------------------------------------------------------------- group credit


#: Credit options that compose with any group normaliser N (`group_turn_credit`).
GROUP_CREDITS = ("none", "turn", "mars", "igpo", "a2tgpo")
#: Credit options that read the answer log-probs (information gain).
ANSWER_CREDITS = ("igpo", "a2tgpo")
#: GiGPO's credit options: they read anchor-state ids and normalise over their own buckets.
ANCHOR_CREDITS = ("gigpo", "gigpo_mean_norm")


def episode_returns(turn_rewards: Array, turn_mask: Array) -> Array:
  """Rᵢ = Σ_k r_{i,k} over the valid turns: [B, K] -> float32[B]."""
  return jnp.sum(jnp.where(turn_mask.astype(bool), turn_rewards.astype(jnp.float32), 0.0),
                 axis=1)


def information_gain_logprobs(answer_logprob: Array, turn_mask: Array) -> tuple[Array, Array]:
  """(before, after) log-probs of the answer around each turn, [B, K] each.

  before_k = log p_k (context before turn k), after_k = log p_{k+1} for every valid turn but
  the last; the last valid turn gets after = before (no information gain: the episode ended
  with it). Feeds `igpo_turn_rewards`; exp(after) − exp(before) is A²TGPO's IG.
  """
  turn_mask = turn_mask.astype(bool)
  nxt = jnp.pad(answer_logprob[:, 1:], ((0, 0), (0, 1)))
  has_next = jnp.pad(turn_mask[:, 1:], ((0, 0), (0, 1)))
  before = jnp.where(turn_mask, answer_logprob, 0.0)
  return before, jnp.where(turn_mask & has_next, nxt, before)


class _Turns(NamedTuple):
  rewards: Array  # [B, K] float
  mask: Array  # bool[B, K]
  group_id: Array  # int[B]
  ret: Array  # [B] episode returns
  dones: Optional[Array]
  role: Optional[Array]
  answer_logprob: Optional[Array]
  anchor_id: Optional[Array]


# One function per credit option: (N, turns, options) -> (advantages [B, K], clip ε or None).
def _none(n: Normalizer, t: _Turns, **_):
  return n(t.ret, t.group_id, t.mask.any(axis=1))[:, None], None


def _turn(n: Normalizer, t: _Turns, *, gamma, **_):
  rtg = discounted_returns(t.rewards, t.dones, t.mask, gamma=gamma)
  return turn_group_normalize(rtg, t.group_id, t.mask, normalize=n), None


def _mars(n: Normalizer, t: _Turns, *, gamma, **_):
  # A row is one role's view, so its turns are that role's: the role joins the group id.
  ids = pair_ids(t.group_id, t.role)
  role = jnp.zeros(t.mask.shape, jnp.int32)
  return mars_advantages(t.rewards, role, ids, t.mask, num_roles=1, gamma=gamma,
                         normalize=n), None


def _igpo(n: Normalizer, t: _Turns, *, gamma, **_):
  before, after = information_gain_logprobs(t.answer_logprob, t.mask)
  r = igpo_turn_rewards(before, after, t.ret, t.mask)
  return igpo_advantages(r, t.group_id, t.mask, gamma=gamma, normalize=n), None


def _a2tgpo(n: Normalizer, t: _Turns, *, gamma, lambda_ig, lambda_outcome,
            outcome_on_all_turns, clip_eps, beta, **_):
  before, after = information_gain_logprobs(t.answer_logprob, t.mask)
  ig = jnp.where(t.mask, jnp.exp(after) - jnp.exp(before), 0.0)
  return a2tgpo_advantages(ig, t.ret, t.group_id, t.mask, gamma=gamma, lambda_ig=lambda_ig,
                           lambda_outcome=lambda_outcome,
                           outcome_on_all_turns=outcome_on_all_turns, clip_eps=clip_eps,
                           beta=beta, normalize=n)


def _gigpo(n: Optional[Normalizer], t: _Turns, *, gamma, eps, unbiased_std, omega,
           episode_stats_over_steps, normalize_std=True, **_):
  del n  # Unset eps / unbiased_std: GiGPO's own defaults.
  kw = {k: v for k, v in (("eps", eps), ("unbiased_std", unbiased_std)) if v is not None}
  return gigpo_advantages(t.ret, t.group_id, t.rewards, t.mask, t.anchor_id, gamma=gamma,
                          omega=omega, normalize_std=normalize_std,
                          episode_stats_over_steps=episode_stats_over_steps, **kw), None


_GROUP_CREDIT_FNS = {"none": _none, "turn": _turn, "mars": _mars, "igpo": _igpo,
                     "a2tgpo": _a2tgpo, "gigpo": _gigpo,
                     "gigpo_mean_norm": functools.partial(_gigpo, normalize_std=False)}
#: The optional input of `group_turn_credit` each option reads.
_GROUP_CREDIT_NEEDS = {"turn": "dones", "mars": "role", "igpo": "answer_logprob",
                       "a2tgpo": "answer_logprob", "gigpo": "anchor_id",
                       "gigpo_mean_norm": "anchor_id"}


def group_turn_credit(credit_mode: str, normalize: Optional[Normalizer], turn_rewards: Array,
                      turn_mask: Array, group_id: Array, *, dones: Optional[Array] = None,
                      role: Optional[Array] = None, answer_logprob: Optional[Array] = None,
                      anchor_id: Optional[Array] = None, gamma: float = 1.0,
                      eps: Optional[float] = None, unbiased_std: Optional[bool] = None,
                      omega: float = 1.0, episode_stats_over_steps: bool = True,
                      lambda_ig: float = 1.0, lambda_outcome: float = 1.0,
                      outcome_on_all_turns: bool = True, clip_eps: float = 0.2,
                      beta: float = 0.3) -> tuple[Array, Array]:
  """One multi-turn credit option of the group methods, with the group normaliser N.

  With Rᵢ = Σ_k r_{i,k} over the valid turns and N any group normaliser (GRPO's z-score,
  Dr.GRPO's centring, RLOO's leave-one-out, REINFORCE++'s whitening):

    none      A_{i,k} = N(R)ᵢ over the groups g (every turn of the row)
    turn      N of the return-to-go (stopping at `dones`) over the groups (g, k)
              (`turn_group_normalize`)
    mars      `mars_advantages` with N over (g, role of the row)
    igpo      `igpo_advantages` of `igpo_turn_rewards`, N over g
    a2tgpo    `a2tgpo_advantages` of IG = exp(after) − exp(before), N for both normalisations
    gigpo, gigpo_mean_norm   `gigpo_advantages` over the (g, `anchor_id`) buckets, with and
              without the std (N unused; eps and unbiased_std None: GiGPO's defaults)

  (before, after) come from `information_gain_logprobs(answer_logprob)`. With GRPO's z-score
  as N, mars, igpo and a2tgpo equal the papers' functions above without `normalize`.

  Args:
    credit_mode: a key of `GROUP_CREDITS` or `ANCHOR_CREDITS`.
    normalize: N, with its options bound (see the module docstring); None for the anchor ones.
    turn_rewards: [B, K] reward after each turn.
    turn_mask: bool[B, K] valid turns.
    group_id: int[B] episode group, in [0, B).
    dones: bool[B, K] true terminals ("turn").
    role: int[B] the role each row is the view of ("mars").
    answer_logprob: [B, K] mean log-prob of the answer before each turn ("igpo", "a2tgpo").
    anchor_id: int[B, K] anchor-state ids ("gigpo", "gigpo_mean_norm").
    gamma: turn discount γ. The others: the options of the functions above.

  Returns:
    (advantages [B, K], PPO clip ranges [B, K]: `clip_eps` on every valid turn, A²TGPO's
    adaptive ones under a2tgpo); both 0 on masked turns.
  """
  chex.assert_rank([turn_rewards, turn_mask, group_id], [2, 2, 1])
  chex.assert_equal_shape([turn_rewards, turn_mask])
  fn = registry.lookup(_GROUP_CREDIT_FNS, credit_mode, "credit option")
  inputs = dict(dones=dones, role=role, answer_logprob=answer_logprob, anchor_id=anchor_id)
  need = _GROUP_CREDIT_NEEDS.get(credit_mode)
  if need and inputs[need] is None:
    raise ValueError(f"credit={credit_mode!r} needs `{need}`.")
  if normalize is None and credit_mode not in ANCHOR_CREDITS:
    raise ValueError(f"credit={credit_mode!r} needs a group normaliser.")
  mask = turn_mask.astype(bool)
  r = as_float(turn_rewards)
  t = _Turns(r, mask, group_id, episode_returns(r, mask), dones, role, answer_logprob,
             anchor_id)
  adv, clip = fn(normalize, t, gamma=gamma, eps=eps, unbiased_std=unbiased_std, omega=omega,
                 episode_stats_over_steps=episode_stats_over_steps, lambda_ig=lambda_ig,
                 lambda_outcome=lambda_outcome, outcome_on_all_turns=outcome_on_all_turns,
                 clip_eps=clip_eps, beta=beta)
  return jnp.where(mask, adv, 0.0), jnp.where(mask, clip_eps if clip is None else clip, 0.0)


# ----------------------------------------------------------------------------- registry


CREDIT: dict[str, Callable] = {
    "gigpo": gigpo_advantages,
    "gigpo_mean_norm": functools.partial(gigpo_advantages, normalize_std=False),
    "a2tgpo": a2tgpo_advantages,
    "turn_group_normalize": turn_group_normalize,
    "igpo": igpo_advantages,
    "igpo_turn_rewards": igpo_turn_rewards,
    "spiral_rae": spiral_rae_advantages,
    "mars": mars_advantages,
    "hiper": hiper_advantages,
    "gra": gated_reward_accumulation,
    "gra_multi_priority": gated_multi_priority,
    "simpletir_void_filter": void_turn_filter,
    "mini_o3_over_turn": over_turn_mask,
}


def get_credit(name: str) -> Callable:
  """The credit-assignment function registered under `name`; ValueError listing valid names."""
  return registry.lookup(CREDIT, name, "credit estimator")