"""Advantage estimators: recursions, whitening, group baselines and their registries.

Every function is pure: arrays in, arrays out, hyperparameters keyword-only. Layouts are
batch-major: token arrays are [B, T], turn arrays are [B, K], per-trajectory arrays are [B].
Masks are boolean (or 0/1) and mark the entries that exist; masked entries never influence a
valid output and always come out as 0, so padding (whatever garbage it holds) is inert.

Termination follows `agentrl.types`: `dones` is a true terminal (no bootstrapping past it); a
time-limit truncation is a valid last step whose `done` is false, and the recursion bootstraps
there from `bootstrap_value` (0 when none is given).

Group baselines take one scalar reward per trajectory and a `group_id` (same prompt / task ->
same id, any int in [0, B)); group statistics are segment sums over the valid trajectories.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Optional

import chex
import jax
import jax.numpy as jnp

from agentrl import registry
from agentrl._math import as_float
# Re-exported: the token <-> turn moves live in `agentrl.turns`.
from agentrl.turns import tokens_to_turns, turns_to_tokens  # noqa: F401

Array = jax.Array


# ----------------------------------------------------------------------------- recursions


def _bootstrap(bootstrap_value: Optional[Array], like: Array) -> Array:
  b = like.shape[0]
  if bootstrap_value is None:
    return jnp.zeros((b,), like.dtype)
  bootstrap_value = as_float(bootstrap_value)
  chex.assert_shape(bootstrap_value, (b,))
  return bootstrap_value.astype(like.dtype)


def discounted_returns(rewards: Array, dones: Array, mask: Array, *, gamma: float,
                       bootstrap_value: Optional[Array] = None) -> Array:
  """Per-step discounted returns over the valid steps of each row.

  Gₖ = rₖ + γ (1 − doneₖ) Gₖ₊₁, where k+1 is the next *valid* step (masked steps are
  skipped, so holes and trailing padding contribute nothing). After the last valid step the
  recursion continues from `bootstrap_value` (Sutton & Barto, eq. 3.9, with truncation
  bootstrapping): a true terminal (done) stops it, a time-limit truncation (valid, not done)
  bootstraps.

  Args:
    rewards: [B, K] rewards.
    dones: bool[B, K], true terminal after the step.
    mask: bool[B, K], steps that happened.
    gamma: discount γ.
    bootstrap_value: optional [B] value of the state after the last valid step; 0 if None.

  Returns:
    [B, K] returns, 0 on masked steps.
  """
  chex.assert_rank([rewards, dones, mask], 2)
  chex.assert_equal_shape([rewards, dones, mask])
  rewards = as_float(rewards)
  g0 = _bootstrap(bootstrap_value, rewards)
  mask = mask.astype(bool)
  cont = gamma * (1.0 - dones.astype(rewards.dtype))

  def step(g_next, xs):
    r, c, m = xs
    g = r + c * g_next
    g_next = jnp.where(m, g, g_next)
    return g_next, jnp.where(m, g, 0.0)

  xs = (rewards.T, cont.T, mask.T)
  _, out = jax.lax.scan(step, g0, xs, reverse=True)
  return out.T


def gae(rewards: Array, values: Array, dones: Array, mask: Array, *, gamma: float,
        lambda_: float, bootstrap_value: Optional[Array] = None) -> tuple[Array, Array]:
  """Generalized advantage estimation (Schulman et al. 2016, "High-Dimensional Continuous
  Control Using Generalized Advantage Estimation", eqs. 11–16).

  δₙ = rₙ + γ (1 − doneₙ) Vₙ₊₁ − Vₙ,   Âₙ = δₙ + γλ (1 − doneₙ) Âₙ₊₁,   Rₙ = Âₙ + Vₙ,

  where n+1 is the next *valid* step of the row (masked steps are skipped, so the mask may be
  a ragged prefix or have arbitrary holes). After the last valid step V = `bootstrap_value`
  and Â = 0: a true terminal (done) does not bootstrap, a time-limit truncation (valid step,
  done false) does. λ = 1 gives Monte-Carlo return minus value; λ = 0 gives the one-step TD
  error. Works on tokens (rewards placed on tokens) or on turns (see `turn_level_gae`).

  Args:
    rewards: [B, N] rewards.
    values: [B, N] value estimates V(sₙ).
    dones: bool[B, N], true terminal after step n.
    mask: bool[B, N], steps that exist.
    gamma: discount γ.
    lambda_: GAE λ.
    bootstrap_value: optional [B] value after the last valid step; 0 if None.

  Returns:
    (advantages [B, N], returns [B, N]), both 0 on masked steps.
  """
  chex.assert_rank([rewards, values, dones, mask], 2)
  chex.assert_equal_shape([rewards, values, dones, mask])
  rewards = as_float(rewards)
  values = as_float(values).astype(rewards.dtype)
  v0 = _bootstrap(bootstrap_value, rewards)
  mask = mask.astype(bool)
  cont = 1.0 - dones.astype(rewards.dtype)

  def step(carry, xs):
    v_next, a_next = carry
    r, v, c, m = xs
    delta = r + gamma * c * v_next - v
    a = delta + gamma * lambda_ * c * a_next
    carry = (jnp.where(m, v, v_next), jnp.where(m, a, a_next))
    return carry, (jnp.where(m, a, 0.0), jnp.where(m, a + v, 0.0))

  xs = (rewards.T, values.T, cont.T, mask.T)
  init = (v0, jnp.zeros_like(v0))
  _, (adv, ret) = jax.lax.scan(step, init, xs, reverse=True)
  return adv.T, ret.T


def turn_level_gae(rewards: Array, turn_values: Array, dones: Array, turn_mask: Array,
                   turn_index: Array, action_mask: Array, *, gamma: float, lambda_: float,
                   bootstrap_value: Optional[Array] = None) -> tuple[Array, Array, Array]:
  """GAE over agent turns, broadcast to each turn's action tokens.

  The MDP step is a whole utterance (ArCHer / Turn-PPO style): Âₖ is `gae` (Schulman et al.
  2016, eq. 16) over the turns k of each row, with turn values V(sₖ) read at the turn-end
  tokens upstream (`tokens_to_turns`). Every action token of turn k gets Âₖ.

  Args:
    rewards: [B, K] reward after each turn.
    turn_values: [B, K] V at each turn.
    dones: bool[B, K], true terminal after the turn.
    turn_mask: bool[B, K], turns that happened.
    turn_index: int[B, T], turn of each token, -1 off agent turns.
    action_mask: bool[B, T], tokens the policy generated.
    gamma: turn-level discount γ.
    lambda_: GAE λ.
    bootstrap_value: optional [B] value after the last valid turn (truncation); 0 if None.

  Returns:
    (token_advantages [B, T], turn_advantages [B, K], turn_returns [B, K]); 0 on masked
    turns and on tokens that are not action tokens of a valid turn.
  """
  chex.assert_rank([rewards, turn_values, dones, turn_mask, turn_index, action_mask], 2)
  chex.assert_equal_shape([rewards, turn_values, dones, turn_mask])
  chex.assert_equal_shape([turn_index, action_mask])
  turn_adv, turn_ret = gae(rewards, turn_values, dones, turn_mask, gamma=gamma, lambda_=lambda_,
                           bootstrap_value=bootstrap_value)
  # `gae` leaves masked turns at 0, so their tokens get 0 without a second gather.
  token_adv = turns_to_tokens(turn_adv, turn_index, action_mask)
  return token_adv, turn_adv, turn_ret


# ----------------------------------------------------------------------------- normalisation


def whiten(x: Array, mask: Array, *, eps: float = 1e-8, shift_mean: bool = True) -> Array:
  """Masked whitening: (x − μ) / √(σ² + ε) with μ, σ² the mean and population variance of the
  valid entries (any rank; the statistics pool every valid entry of the array).

  With shift_mean=False the mean is added back, so only the scale changes (as in verl's
  `masked_whiten`). Masked entries are returned as 0.

  Args:
    x: array of any shape.
    mask: bool array of the same shape, entries to include.
    eps: ε added to the variance.
    shift_mean: whether to centre the output.

  Returns:
    Array of x's shape.
  """
  chex.assert_equal_shape([x, mask])
  x = as_float(x)
  mask = mask.astype(bool)
  m = mask.astype(x.dtype)
  xm = jnp.where(mask, x, 0.0)
  n = jnp.maximum(m.sum(), 1.0)
  mean = xm.sum() / n
  var = jnp.sum(m * jnp.square(xm - mean)) / n
  out = (xm - mean) * jax.lax.rsqrt(var + eps)
  if not shift_mean:
    out = out + mean
  return jnp.where(mask, out, 0.0)


# ----------------------------------------------------------------------------- group baselines


def _group_stats(rewards: Array, group_id: Array, mask: Array):
  """Masked rewards, per-trajectory group count and group mean (gathered back to [B])."""
  chex.assert_rank([rewards, group_id, mask], 1)
  chex.assert_equal_shape([rewards, group_id, mask])
  rewards = as_float(rewards)
  b = rewards.shape[0]
  mask = mask.astype(bool)
  r = jnp.where(mask, rewards, 0.0)
  m = mask.astype(rewards.dtype)
  count_g = jax.ops.segment_sum(m, group_id, num_segments=b)
  sum_g = jax.ops.segment_sum(r, group_id, num_segments=b)
  mean_g = sum_g / jnp.maximum(count_g, 1.0)
  return r, mask, count_g[group_id], mean_g[group_id]


def grpo_advantages(rewards: Array, group_id: Array, mask: Array, *, eps: float = 1e-6,
                    normalize_std: bool = True, unbiased_std: bool = False) -> Array:
  """Group-relative advantage (GRPO: Shao et al. 2024, DeepSeekMath, §4.1.2, outcome
  supervision): Âᵢ = (Rᵢ − mean_g R) / (std_g R + ε).

  normalize_std=False gives Dr.GRPO (Liu et al. 2025, "Understanding R1-Zero-Like Training"):
  Âᵢ = Rᵢ − mean_g R. unbiased_std picks the n−1 (verl, `torch.std`) over the population std.

  Singleton groups (one valid member) get Âᵢ = 0: the member is its own baseline. (verl
  instead uses mean 0 / std 1 there, i.e. Âᵢ = Rᵢ; this function does not.)

  Args:
    rewards: [B] one scalar reward per trajectory.
    group_id: int[B] group of each trajectory, any value in [0, B).
    mask: bool[B] valid trajectories; invalid ones neither join a group nor get an advantage.
    eps: ε added to the std.
    normalize_std: divide by the group std (GRPO) or not (Dr.GRPO).
    unbiased_std: use the n−1 std.

  Returns:
    [B] advantages, 0 where mask is false.
  """
  r, mask, count, mean = _group_stats(rewards, group_id, mask)
  adv = r - mean
  if normalize_std:
    b = r.shape[0]
    sq = jax.ops.segment_sum(jnp.where(mask, jnp.square(adv), 0.0), group_id, num_segments=b)
    denom = jnp.maximum(count - (1.0 if unbiased_std else 0.0), 1.0)
    std = jnp.sqrt(sq[group_id] / denom)
    adv = adv / (std + eps)
  return jnp.where(mask & (count > 1), adv, 0.0)


def rloo_advantages(rewards: Array, group_id: Array, mask: Array) -> Array:
  """REINFORCE leave-one-out (Kool et al. 2019, "Buy 4 REINFORCE Samples, Get a Baseline for
  Free!"; Ahmadian et al. 2024):

  Âᵢ = Rᵢ − 1/(k−1) Σ_{j≠i} Rⱼ = k/(k−1) (Rᵢ − mean_g R), k = valid members of i's group.

  Singleton groups (k = 1) have no other member and get Âᵢ = 0.

  Args:
    rewards: [B] one scalar reward per trajectory.
    group_id: int[B] group of each trajectory, any value in [0, B).
    mask: bool[B] valid trajectories.

  Returns:
    [B] advantages, 0 where mask is false.
  """
  r, mask, count, mean = _group_stats(rewards, group_id, mask)
  k = count
  sum_g = mean * k
  loo_mean = (sum_g - r) / jnp.maximum(k - 1.0, 1.0)
  return jnp.where(mask & (k > 1), r - loo_mean, 0.0)


def reinforce_pp_advantages(rewards: Array, mask: Array, *, group_id: Optional[Array] = None,
                            eps: float = 1e-8) -> Array:
  """REINFORCE++ (Hu 2025, "REINFORCE++: A Simple and Efficient Approach for Aligning Large
  Language Models"): Âᵢ = whiten_batch(Rᵢ), a global z-score over the valid trajectories.

  With `group_id` given, REINFORCE++-baseline: Âᵢ = whiten_batch(Rᵢ − mean_g R), the group
  mean is subtracted first and the result whitened over the whole batch (no per-group std).

  Outcome rewards with γ = 1 and no in-reward KL give every token of a trajectory the same
  return, so this is the token-level estimator with each trajectory weighted once; to weight
  by token count, broadcast the rewards to tokens and call `whiten` there.

  Args:
    rewards: [B] one scalar reward per trajectory.
    mask: bool[B] valid trajectories.
    group_id: optional int[B] group ids in [0, B) for the baseline variant.
    eps: ε added to the batch variance.

  Returns:
    [B] advantages, 0 where mask is false.
  """
  chex.assert_rank([rewards, mask], 1)
  chex.assert_equal_shape([rewards, mask])
  if group_id is None:
    r = jnp.where(mask.astype(bool), as_float(rewards), 0.0)
  else:
    r, _, _, mean = _group_stats(rewards, group_id, mask)
    r = r - mean
  return whiten(r, mask, eps=eps)


def reinforce_pp_baseline_advantages(rewards: Array, group_id: Array, mask: Array, *,
                                     eps: float = 1e-8) -> Array:
  """REINFORCE++-baseline with the group-baseline signature: Âᵢ = whiten_batch(Rᵢ − mean_g R).

  Same as `reinforce_pp_advantages(rewards, mask, group_id=group_id, eps=eps)`; shapes [B].
  """
  return reinforce_pp_advantages(rewards, mask, group_id=group_id, eps=eps)


# ----------------------------------------------------------------------------- registry


ESTIMATORS: dict[str, Callable] = {
    "gae": gae,
    "turn_gae": turn_level_gae,
    "grpo": grpo_advantages,
    "dr_grpo": functools.partial(grpo_advantages, normalize_std=False),
    "rloo": rloo_advantages,
    "reinforce_pp": reinforce_pp_advantages,
    "reinforce_pp_baseline": reinforce_pp_baseline_advantages,
}


def get_estimator(name: str) -> Callable:
  """The estimator registered under `name`; ValueError listing the valid names otherwise."""
  return registry.lookup(ESTIMATORS, name, "advantage estimator")


# ----------------------------------------------------------------------------- group estimators


@dataclasses.dataclass(frozen=True)
class GroupEstimator:
  """A critic-free group estimator, as `agentrl.algorithms.group` runs it by name.

  Fields:
    normalize: the group normaliser N, called as

        normalize(values [N], group_id int[N], mask bool[N], *, eps, unbiased_std,
                  group_baseline) -> [N]

      with ids in [0, N) and the advantages 0 where mask is false. The options come from the
      config: `eps` and `unbiased_std` are None unless set (use your own default then),
      `group_baseline` is a bool; take `**options` to ignore the ones you do not use. The
      group methods apply N to the episode returns (credit "none") or to a per-turn signal,
      over the groups each credit option picks (`credit.group_turn_credit`). None for an
      estimator that builds its turn advantages itself (GiGPO).
    credits: the credit options it supports (`config.credit`), its default first. None: all
      of `credit.GROUP_CREDITS`, the ones that compose with `normalize`. GiGPO names its own
      two (`credit.ANCHOR_CREDITS`), which read anchor states instead of a normaliser.
    aggregation: its default loss aggregation (a `losses.aggregate` mode).
    gamma: its default turn discount γ.
  """

  normalize: Optional[Callable[..., Array]]
  credits: Optional[tuple[str, ...]] = None
  aggregation: str = "token-mean"
  gamma: float = 1.0


def _grpo_normalize(values: Array, group_id: Array, mask: Array, *, eps=None,
                    unbiased_std=None, normalize_std: bool = True, **_) -> Array:
  return grpo_advantages(values, group_id, mask, eps=1e-6 if eps is None else eps,
                         normalize_std=normalize_std, unbiased_std=bool(unbiased_std))


def _rloo_normalize(values: Array, group_id: Array, mask: Array, **_) -> Array:
  return rloo_advantages(values, group_id, mask)


def _reinforce_pp_normalize(values: Array, group_id: Array, mask: Array, *, eps=None,
                            group_baseline: bool = False, **_) -> Array:
  return reinforce_pp_advantages(values, mask, group_id=group_id if group_baseline else None,
                                 eps=1e-8 if eps is None else eps)


#: name -> `GroupEstimator`; `algorithms.group` looks `config.estimator` up here.
GROUP_ESTIMATORS: dict[str, GroupEstimator] = {
    "grpo": GroupEstimator(_grpo_normalize, aggregation="seq-mean-token-mean"),
    "dr_grpo": GroupEstimator(functools.partial(_grpo_normalize, normalize_std=False),
                              aggregation="seq-mean-token-sum-norm"),
    "rloo": GroupEstimator(_rloo_normalize),
    "reinforce_pp": GroupEstimator(_reinforce_pp_normalize),
    # GiGPO's advantages come from `credit.gigpo_advantages` over anchor-state buckets.
    "gigpo": GroupEstimator(None, credits=("gigpo", "gigpo_mean_norm"), gamma=0.95),
}


def register_group_estimator(name: str, normalize: Callable[..., Array], *,
                             replace: bool = False, **fields) -> GroupEstimator:
  """Registers the group normaliser `normalize` (see `GroupEstimator`) under `name`.

  `fields` set the other `GroupEstimator` fields (credits, aggregation, gamma). A taken name
  is a ValueError unless `replace`. Returns the entry; the group methods then accept `name`
  as their estimator (`config.estimator`).
  """
  if name in GROUP_ESTIMATORS and not replace:
    raise ValueError(f"group estimator {name!r} is already registered.")
  entry = GroupEstimator(normalize, **fields)
  GROUP_ESTIMATORS[name] = entry
  return entry


def get_group_estimator(name: str) -> GroupEstimator:
  """The group estimator registered under `name`; ValueError listing the valid names."""
  return registry.lookup(GROUP_ESTIMATORS, name, "group estimator")
