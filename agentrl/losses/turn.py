"""Turn- and sequence-level policy losses: ST-PPO's turn-level ratio, REFUEL's
relative-future regression, and SeeUPO's reverse-turn-order schedule.

Same conventions as `agentrl.losses.policy`: arrays in, arrays out, masked positions replaced
before any arithmetic, `(loss, metrics)` with `loss_sum` and `loss_weight` kept apart.
"""

from __future__ import annotations

from typing import Callable

import chex
import jax
import jax.numpy as jnp

from agentrl._math import masked_mean, safe_div
# pylint: disable=protected-access  (helpers shared with the token-level losses)
from agentrl.losses.policy import (_clipped_surrogate, _loss_metrics, _masked, _policy_metrics,
                                   aggregate)

Array = jax.Array


def turn_level_ratio(
    logprobs: Array,
    behaviour_logprobs: Array,
    turn_index: Array,
    action_mask: Array,
    num_turns: int,
) -> Array:
  """Turn-level importance ratio of Turn-PPO / ST-PPO (Li et al. 2025, arXiv 2511.20718).

    w_k = (π_θ(y^k|s_k) / π_old(y^k|s_k))^{1/|y^k|} = exp( (1/|y^k|) Σ_{j∈K_k} log ρ_j )
  the geometric mean of the token ratios over the action tokens K_k of turn k, broadcast to
  every action token of that turn. (The paper's exact form is not in its official code; the
  geometric mean is the form two independent sources give, see algorithms.md §3.)

  Args:
    logprobs: float[B, T], log π_θ (the result is differentiable in it).
    behaviour_logprobs: float[B, T], log π_old (constant).
    turn_index: int[B, T], agent turn of each token in [0, num_turns), −1 on non-action tokens.
    action_mask: bool[B, T], tokens that belong to a turn's utterance.
    num_turns: K, the static number of turn slots.

  Returns:
    float[B, T]: w_{turn(t)} on action tokens, 1 elsewhere.
  """
  chex.assert_rank([logprobs, behaviour_logprobs, turn_index, action_mask], 2)
  chex.assert_equal_shape([logprobs, behaviour_logprobs, turn_index, action_mask])
  valid = action_mask.astype(bool) & (turn_index >= 0) & (turn_index < num_turns)
  log_ratio = _masked(logprobs - jax.lax.stop_gradient(behaviour_logprobs), valid)
  onehot = jax.nn.one_hot(jnp.where(valid, turn_index, -1), num_turns, dtype=log_ratio.dtype)
  sum_per_turn = jnp.einsum("bt,btk->bk", log_ratio, onehot)  # [B, K]
  count_per_turn = jnp.sum(onehot, axis=1)  # [B, K]
  mean_per_turn = safe_div(sum_per_turn, count_per_turn)
  mean_per_token = jnp.einsum("bk,btk->bt", mean_per_turn, onehot)
  return jnp.where(valid, jnp.exp(mean_per_token), 1.0)


def turn_ppo_loss(
    logprobs: Array,
    behaviour_logprobs: Array,
    advantages: Array,
    turn_index: Array,
    action_mask: Array,
    *,
    num_turns: int,
    clip_low: float = 0.2,
    clip_high: float | None = None,
    dual_clip: float | None = None,
    token_gradient: bool = False,
    clip_normalizer: Callable[[Array], Array] | None = None,
    aggregation: str = "token-mean",
    max_tokens: int | None = None,
) -> tuple[Array, dict[str, Array]]:
  """Turn-PPO / ST-PPO clipped surrogate with turn-level ratios (Li et al. 2025, arXiv 2511.20718).

    J = E[ (1/|y|) Σ_k Σ_{j∈K_k} min(w_k A_j, clip(w_k, 1 − ε, 1 + ε) A_j) ]
  with w_k from `turn_level_ratio` and the token-level (GAE) advantages A_j kept per token;
  the loss is −J, aggregated by `aggregation`.

  `token_gradient=True` uses the GSPO-style per-token surrogate
  s_j = sg[w_k] · π_θ(y_j) / sg[π_θ(y_j)] (same value, each token gets its own gradient);
  False differentiates through the geometric mean.

  Clipping-bias correction (S-PPO / ST-PPO; "Clipping-Triggered Normalization" in v2). The
  paper's exact normaliser (its Eq. 8/9) was not retrieved, so it is a flag:
  `clip_normalizer` maps the batch clip fraction (a stop-gradient scalar) to N and the loss
  becomes L_clip / sg[N]; None (the default) means N = 1, i.e. plain Turn-PPO. loss_sum is
  divided by the same N, so loss == loss_sum / loss_weight still holds. Note that N is
  computed per call, so accumulating micro-batches is exact only if N is.

  Args:
    logprobs, behaviour_logprobs, advantages: float[B, T] (only logprobs is differentiated).
    turn_index: int[B, T], turn of each token, −1 off the agent's utterances.
    action_mask: bool[B, T], the action tokens; the loss sees exactly these.
    num_turns: K (static).
    clip_low, clip_high, dual_clip: as in `ppo_clip_loss`, applied to w_k.
    token_gradient: see above.
    clip_normalizer: see above.
    aggregation, max_tokens: see `aggregate`.

  Returns:
    (loss, metrics) as in `ppo_clip_loss`, plus clip_normalizer (N) and turn_ratio_mean.
  """
  chex.assert_rank([logprobs, behaviour_logprobs, advantages, turn_index, action_mask], 2)
  chex.assert_equal_shape([logprobs, behaviour_logprobs, advantages, turn_index, action_mask])
  mask = action_mask.astype(bool) & (turn_index >= 0) & (turn_index < num_turns)
  behaviour_logprobs = jax.lax.stop_gradient(behaviour_logprobs)
  advantages = jax.lax.stop_gradient(_masked(advantages, mask))
  logprobs = _masked(logprobs, mask)
  behaviour_logprobs = _masked(behaviour_logprobs, mask)
  w = turn_level_ratio(logprobs, behaviour_logprobs, turn_index, mask, num_turns)
  if token_gradient:
    w = jax.lax.stop_gradient(w) * jnp.exp(logprobs - jax.lax.stop_gradient(logprobs))
  per_token, is_clipped, is_dual = _clipped_surrogate(
      w, advantages, mask, clip_low=clip_low, clip_high=clip_high, dual_clip=dual_clip)
  loss, loss_sum, loss_weight = aggregate(per_token, mask, mode=aggregation, max_tokens=max_tokens)
  clip_fraction = jax.lax.stop_gradient(masked_mean(is_clipped.astype(jnp.float32), mask))
  norm = jnp.asarray(1.0, jnp.float32)
  if clip_normalizer is not None:
    norm = jax.lax.stop_gradient(jnp.asarray(clip_normalizer(clip_fraction), jnp.float32))
    loss, loss_sum = loss / norm, loss_sum / norm
  log_ratio = logprobs - behaviour_logprobs
  metrics = _policy_metrics(
      loss, loss_sum, loss_weight, log_ratio, jnp.exp(log_ratio), is_clipped, is_dual, mask)
  metrics["clip_normalizer"] = norm
  metrics["turn_ratio_mean"] = jax.lax.stop_gradient(masked_mean(w, mask))
  return loss, metrics


REFUEL_FORMS = ("paper", "code")


def refuel_loss(
    logprobs: Array,
    ref_logprobs: Array,
    mask: Array,
    pair_logprobs: Array,
    pair_ref_logprobs: Array,
    pair_mask: Array,
    future_rewards: Array,
    pair_future_rewards: Array,
    *,
    eta: float,
    form: str = "paper",
) -> tuple[Array, dict[str, Array]]:
  """REFUEL relative-future regression (Gao et al. 2024, "Regressing the Relative Future",
  arXiv 2410.04612, the REFUEL objective; algorithms.md §8).

  Pair p is two trajectories τ, τ′ that share the prefix s_h and branch at turn h; the
  second member of the pair is the `pair_*` arrays. With the log-ratios summed over the
  unmasked tokens,
    Δ_p = Σ_t m_t (log π_θ − log π_t)(y_t) − Σ_t m′_t (log π_θ − log π_t)(y′_t)
    ΔR_p = R(τ) − R(τ′)          (Monte-Carlo estimates of Q^{π_t}(s_h, ·))
  and per pair
    `form="paper"`: ℓ_p = ((1/η) Δ_p − ΔR_p)²      (the paper's equation)
    `form="code"`:  ℓ_p = (Δ_p − η ΔR_p)²          (the official code) = η² × paper form
  Both have the same minimiser; they differ only by the constant factor η², which changes
  the effective learning rate (the reference's η = 1e3 is the code's convention). The loss
  is the mean over valid pairs. π_t (the policy that sampled the data) is constant; there
  is no clipping and no critic.

  Which tokens count is the caller's choice, through the masks: the official code keeps the
  tokens of turn h only, while the relative-future view sums from turn h to the end (the
  later turns are then included). Give masks restricted to the tokens from the branching
  turn on (or to turn h only, to match the code); never include the shared prefix.

  A pair is valid when at least one of its two masks has an unmasked token; a pair with
  both masks empty carries no signal about θ and is left out (loss_weight counts valid
  pairs, so loss == loss_sum / loss_weight and micro-batches accumulate exactly).

  Args:
    logprobs: float[P, T], log π_θ of the first member's tokens (differentiated).
    ref_logprobs: float[P, T], log π_t of the same tokens (constant).
    mask: bool[P, T], the first member's action tokens from the branching turn on.
    pair_logprobs, pair_ref_logprobs: float[P, T], the same for the second member.
    pair_mask: bool[P, T], the second member's action tokens from the branching turn on.
    future_rewards: float[P], R(τ), the first member's reward (constant).
    pair_future_rewards: float[P], R(τ′), the second member's reward (constant).
    eta: η > 0.
    form: "paper" or "code", see above.

  Returns:
    (loss, metrics) with loss_sum, loss_weight (number of valid pairs), log_ratio_diff
    (mean Δ_p), reward_diff (mean ΔR_p), residual_abs (mean |residual|), num_pairs.
  """
  chex.assert_rank([logprobs, ref_logprobs, mask, pair_logprobs, pair_ref_logprobs, pair_mask], 2)
  chex.assert_equal_shape(
      [logprobs, ref_logprobs, mask, pair_logprobs, pair_ref_logprobs, pair_mask])
  chex.assert_rank([future_rewards, pair_future_rewards], 1)
  chex.assert_equal_shape([future_rewards, pair_future_rewards])
  chex.assert_equal_shape_prefix([logprobs, future_rewards], 1)
  if eta <= 0:
    raise ValueError(f"refuel_loss: eta={eta} must be > 0.")
  if form not in REFUEL_FORMS:
    raise ValueError(f"refuel_loss: unknown form {form!r}; valid: {', '.join(REFUEL_FORMS)}.")
  sg = jax.lax.stop_gradient
  mask = mask.astype(bool)
  pair_mask = pair_mask.astype(bool)
  valid = jnp.any(mask, axis=-1) | jnp.any(pair_mask, axis=-1)  # [P]

  def summed_log_ratio(lp, ref, m):
    lp = _masked(lp.astype(jnp.float32), m)
    ref = sg(_masked(ref.astype(jnp.float32), m))
    return jnp.sum(lp - ref, axis=-1)

  delta = (summed_log_ratio(logprobs, ref_logprobs, mask)
           - summed_log_ratio(pair_logprobs, pair_ref_logprobs, pair_mask))  # [P]
  reward_diff = future_rewards.astype(jnp.float32) - pair_future_rewards.astype(jnp.float32)
  reward_diff = sg(_masked(reward_diff, valid))
  if form == "paper":
    residual = delta / eta - reward_diff
  else:
    residual = delta - eta * reward_diff
  per_pair = _masked(jnp.square(residual), valid)
  loss_sum = jnp.sum(per_pair)
  loss_weight = jnp.sum(valid).astype(jnp.float32)
  loss = safe_div(loss_sum, loss_weight)
  metrics = _loss_metrics(
      loss, loss_sum, loss_weight,
      log_ratio_diff=safe_div(jnp.sum(_masked(delta, valid)), loss_weight),
      reward_diff=safe_div(jnp.sum(reward_diff), loss_weight),
      residual_abs=safe_div(jnp.sum(_masked(jnp.abs(residual), valid)), loss_weight),
      num_pairs=loss_weight)
  return loss, metrics


def seeupo_schedule(turn_index: Array, action_mask: Array, *, num_turns: int) -> Array:
  """SeeUPO's reverse-turn-order sequential update as token masks (Hu et al. 2026, arXiv
  2602.06554, "Sequence-level Sequential Update Policy Optimization"; algorithms.md §6).

  The K-turn interaction is treated as K agents (one per turn index, sharing parameters)
  updated one after another in reverse execution order, K−1, K−2, …, 0 (backward
  induction, HAML-style). Stage s = 0..K−1 updates turn k = K−1−s:
    S[s, b, t] = m[b, t] ∧ (turn[b, t] = K−1−s)
  Every action token with a turn index in [0, K) is in exactly one stage; tokens with
  turn −1 or ≥ K are in none. A trajectory with fewer than K turns has empty early stages
  (its last turn is not aligned to stage 0: stages index absolute turn positions).

  Per-stage objective (NOT in this function; the form below is unverified, no official
  code was retrieved, see algorithms.md §6 "Concrete form [UNVERIFIED]"): with the
  sequence-level turn ratio r_k (possibly length-normalised as in GSPO, e.g.
  `turn_level_ratio`), the HAPPO-style correction M_k = Π_{k′>k} r_{k′}(θ after stage of
  k′) from the turns already updated, and the group-relative advantage without std
  division A_i = R_i − mean_{g(i)} R (the same A for every stage),
    L_k = −E[ min(r_k M_k A, clip(r_k, 1 − ε, 1 + ε) M_k A) ]
  on the tokens of stage mask S[K−1−k]. Whether the ratio is length-normalised, whether a
  batch-level scale replaces the std, and how M_k is computed are all unverified: a
  training loop should expose them as options and use e.g. `turn_ppo_loss` with
  `action_mask=S[s]` for each stage.

  Args:
    turn_index: int[B, T], agent turn of each token, −1 off the agent's utterances.
    action_mask: bool[B, T], the action tokens.
    num_turns: K (static), the number of turn slots and of stages.

  Returns:
    bool[K, B, T]: the stage masks, stage 0 = last turn (K−1) first.
  """
  chex.assert_rank([turn_index, action_mask], 2)
  chex.assert_equal_shape([turn_index, action_mask])
  if num_turns <= 0:
    raise ValueError(f"seeupo_schedule: num_turns={num_turns} must be > 0.")
  turns = jnp.arange(num_turns - 1, -1, -1, dtype=turn_index.dtype)  # [K]: K−1, …, 0
  return action_mask.astype(bool)[None] & (turn_index[None] == turns[:, None, None])


SCHEDULES: dict[str, Callable[..., Array]] = {
    "seeupo": seeupo_schedule,
}
