"""Critic and value-weighted actor losses: ArCHer, offline ArCHer (IQL + AWR), ILQL, MC returns.

Pure functions in the rlax style: arrays in, `(loss, metrics)` out, keyword-only
hyperparameters, no model. The train step owns the forward pass and hands in Q/V values,
rewards and masks.

Conventions shared by every loss here:

- `metrics["loss_sum"]` and `metrics["loss_weight"]` satisfy `loss == loss_sum / loss_weight`
  (a weight of 0 gives a loss of 0, never NaN). The weight is the number of valid entries
  (transitions, turns or tokens, as each docstring says), so summing both over micro-batches
  or devices and dividing once gives the exact full-batch loss.
- Regression targets are wrapped in `jax.lax.stop_gradient`: the gradient of every loss with
  respect to a target (a target-network output, a bootstrap value, a return or an advantage)
  is exactly zero, whatever the caller passes.
- Double critics carry the head as a leading axis of size 2 (`q[k]` is head k).
- Masks are boolean (or 0/1) arrays; masked entries contribute nothing to sums or weights
  (they are selected away with `jnp.where`, so finite garbage there is harmless).
"""

from __future__ import annotations

from typing import Callable

import chex
import jax
import jax.numpy as jnp

from agentrl import registry, turns
from agentrl._math import masked_mean, safe_div

Array = jax.Array
Metrics = dict[str, Array]

_sg = jax.lax.stop_gradient


def _finish(loss_sum: Array, loss_weight: Array, **extra: Array) -> tuple[Array, Metrics]:
  loss = safe_div(loss_sum, loss_weight)
  metrics = {"loss": loss, "loss_sum": loss_sum, "loss_weight": loss_weight}
  metrics.update(extra)
  return loss, metrics


def _head_sum_weighted(per_entry: Array, mask: Array) -> tuple[Array, Array]:
  """Sum `per_entry` over any leading head axes and over valid entries; return (sum, count)."""
  mask = mask.astype(bool)
  chex.assert_equal_shape_suffix([per_entry, mask], mask.ndim)
  summed = jnp.sum(jnp.where(mask, per_entry, 0.0))
  return summed, jnp.sum(mask.astype(jnp.float32))


# ---------------------------------------------------------------------------------------------
# ArCHer (Zhou, Zanette, Pan, Levine, Kumar; ICML 2024): online hierarchical actor-critic.
# ---------------------------------------------------------------------------------------------


def archer_critic_loss(
    q: Array,
    v: Array,
    *,
    reward: Array,
    done: Array,
    mask: Array,
    target_v_next: Array,
    target_q_pi: Array,
    gamma: float,
    min_over_target_heads: bool = False,
) -> tuple[Array, Metrics]:
  """ArCHer's utterance-level double critic TD loss.

  ArCHer (Zhou et al., 2024), §4 critic objectives, as implemented in the official code
  (`archer/algorithms/archer/trainer.py::critic_loss`). For a transition (s, a, r, s', d) and
  head k ∈ {1, 2}:

    y_Q,k = r + γ·(1 − d)·V̄_k(s')
    y_V,k = Q̄_k(s, ã),   ã ~ π_θ(·|s) freshly sampled (not the stored action)
    L = Σ_k (Q_k(s, a) − y_Q,k)² + Σ_k (V_k(s) − y_V,k)²

  averaged over valid transitions (the per-head MSEs are summed over the two heads, not
  averaged). Each head regresses onto its *own* target head: the official code takes no min
  over heads inside the targets (the min appears only in the actor's advantage). The paper's
  single-critic form, J_Q = E[(Q − r − γV̄(s'))²] and J_V = E[(V − Q̄(s, ã))²], is the same loss
  per head. `min_over_target_heads=True` instead uses min_k V̄_k(s') and min_k Q̄_k(s, ã) as the
  (shared) target of both heads, a clipped-double-Q variant that is *not* the official one.

  Normalisation: the official code sums the losses of its micro-batches (its effective
  learning rate scales with gradient accumulation); here the loss is the mean over valid
  transitions, with `loss_sum`/`loss_weight` kept apart for exact accumulation.

  Args:
    q: [2, N] online Q_k(s, a) at the stored utterance.
    v: [2, N] online V_k(s).
    reward: [N] utterance reward r.
    done: [N] true terminal (no bootstrap); a time-limit truncation must be `False` here.
    mask: [N] valid transitions; the loss weight is their count.
    target_v_next: [2, N] target-network V̄_k(s'). Treated as a constant (stop_gradient).
    target_q_pi: [2, N] target-network Q̄_k(s, ã). Treated as a constant (stop_gradient).
    gamma: utterance-level discount γ.
    min_over_target_heads: see above; False follows the official code.

  Returns:
    `(loss, metrics)` with `q_loss`, `v_loss` (each per valid transition, summed over heads),
    `q_mean`, `v_mean`, `target_q_mean`, `loss_sum`, `loss_weight`.
  """
  chex.assert_rank([q, v, target_v_next, target_q_pi], 2)
  chex.assert_rank([reward, done, mask], 1)
  chex.assert_equal_shape([q, v, target_v_next, target_q_pi])
  chex.assert_equal_shape([reward, done, mask])
  chex.assert_axis_dimension(q, 0, 2)
  chex.assert_equal_shape_suffix([q, reward], 1)

  target_v_next = _sg(target_v_next)
  target_q_pi = _sg(target_q_pi)
  if min_over_target_heads:
    target_v_next = jnp.broadcast_to(jnp.min(target_v_next, axis=0), q.shape)
    target_q_pi = jnp.broadcast_to(jnp.min(target_q_pi, axis=0), q.shape)
  not_done = 1.0 - done.astype(q.dtype)
  y_q = _sg(reward[None] + gamma * not_done[None] * target_v_next)
  y_v = target_q_pi

  q_sum, weight = _head_sum_weighted(jnp.square(q - y_q), mask)
  v_sum, _ = _head_sum_weighted(jnp.square(v - y_v), mask)
  mask2 = jnp.broadcast_to(mask.astype(bool), q.shape)
  return _finish(
      q_sum + v_sum, weight,
      q_loss=safe_div(q_sum, weight),
      v_loss=safe_div(v_sum, weight),
      q_mean=masked_mean(q, mask2),
      v_mean=masked_mean(v, mask2),
      target_q_mean=masked_mean(y_q, mask2),
  )


def archer_advantage(q: Array, v: Array) -> Array:
  """ArCHer's utterance advantage A(s, ã) = min(Q₁, Q₂)(s, ã) − min(V₁, V₂)(s).

  ArCHer (Zhou et al., 2024), actor update; the official code reads it from the *online*
  critic without gradient. `q` and `v` have the head as a leading axis of size 2 and any
  equal trailing shape ([2, N], [2, B, K], ...); the result has the trailing shape. The
  output is wrapped in stop_gradient: it is a weight for the actor, never a critic loss.
  """
  chex.assert_equal_shape([q, v])
  chex.assert_axis_dimension(q, 0, 2)
  return _sg(jnp.min(q, axis=0) - jnp.min(v, axis=0))


def archer_actor_loss(
    logprobs: Array,
    action_mask: Array,
    turn_index: Array,
    *,
    turn_advantages: Array,
    turn_mask: Array,
) -> tuple[Array, Metrics]:
  """ArCHer's token-level REINFORCE actor with the utterance advantage as terminal reward.

  ArCHer (Zhou et al., 2024), actor objective (official `actor_loss`): with token discount 1,
  every token of utterance ã receives the utterance advantage A(s, ã) (see `archer_advantage`):

    L = − 1/|valid turns| · Σ_turns A(s, ã) · Σ_{h=1}^{|ã|} log π_θ(ã^h | s, ã^{<h})

  No importance ratio, no clipping, no KL, no entropy. Normalisation: the official code takes
  the batch mean per micro-batch and sums micro-batches; here the loss is defined as the mean
  over valid turns of the per-utterance sum of −A·log π (`loss_weight` = number of valid turns,
  including a valid turn that happens to have no action tokens).

  Args:
    logprobs: [B, T] log π_θ of each token (only action tokens are read).
    action_mask: [B, T] tokens the policy generated.
    turn_index: [B, T] agent turn of each token, −1 (or any value outside [0, K)) elsewhere.
    turn_advantages: [B, K] A per turn. Treated as a constant (stop_gradient).
    turn_mask: [B, K] valid turns. Action tokens of invalid turns are ignored.

  Returns:
    `(loss, metrics)` with `advantage_mean` (over valid turns), `num_tokens`, `loss_sum`,
    `loss_weight`.
  """
  chex.assert_rank([logprobs, action_mask, turn_index, turn_advantages, turn_mask], 2)
  chex.assert_equal_shape([logprobs, action_mask, turn_index])
  chex.assert_equal_shape([turn_advantages, turn_mask])
  chex.assert_equal_shape_prefix([logprobs, turn_advantages], 1)

  tok_mask = turns.valid_turn_tokens(action_mask, turn_index, turn_mask)
  adv_tok = turns.turns_to_tokens(_sg(turn_advantages), turn_index, tok_mask)
  loss_sum = jnp.sum(jnp.where(tok_mask, -adv_tok * logprobs, 0.0))
  weight = jnp.sum(turn_mask.astype(jnp.float32))
  return _finish(
      loss_sum, weight,
      advantage_mean=masked_mean(turn_advantages, turn_mask),
      num_tokens=jnp.sum(tok_mask.astype(jnp.float32)),
  )


def archer_token_baseline_actor_loss(
    logprobs: Array,
    action_mask: Array,
    turn_index: Array,
    token_values: Array,
    *,
    turn_advantages: Array,
    turn_mask: Array,
    baseline_weight: float = 1.0,
) -> tuple[Array, Metrics]:
  """ArCHer with a token-level baseline ("ArCHer w/ baseline", official `use_baseline`).

  ArCHer (Zhou et al., 2024), token-level baseline variant: a per-token value b_h (a head on
  the policy LM) is regressed onto the utterance advantage A, and the policy gradient uses the
  baselined advantage A − b_h:

    L = 1/|valid turns| · Σ_turns Σ_h [ −sg(A − b_h)·log π_θ(ã^h|…) + c·(A − b_h)² ]

  with c = `baseline_weight`. In the policy term A − b_h is a constant (stop_gradient); the
  squared term trains b_h only (A itself is a stop_gradient). Normalisation differs from the
  official code, which averages the squared term over all B×T entries including padding; here
  both terms are per-utterance token sums averaged over valid turns, so the loss does not depend
  on padding and `loss == loss_sum / loss_weight` with one weight.

  Args:
    logprobs: [B, T] log π_θ per token.
    action_mask: [B, T] tokens the policy generated.
    turn_index: [B, T] agent turn of each token (−1 elsewhere).
    token_values: [B, T] baseline b_h per token (gradient flows into it via the squared term).
    turn_advantages: [B, K] utterance advantage A. Constant (stop_gradient).
    turn_mask: [B, K] valid turns.
    baseline_weight: c above.

  Returns:
    `(loss, metrics)` with `pg_loss`, `baseline_loss`, `loss_sum`, `loss_weight`.
  """
  chex.assert_rank([logprobs, action_mask, turn_index, token_values, turn_advantages,
                    turn_mask], 2)
  chex.assert_equal_shape([logprobs, action_mask, turn_index, token_values])
  chex.assert_equal_shape([turn_advantages, turn_mask])
  chex.assert_equal_shape_prefix([logprobs, turn_advantages], 1)

  tok_mask = turns.valid_turn_tokens(action_mask, turn_index, turn_mask)
  adv_tok = turns.turns_to_tokens(_sg(turn_advantages), turn_index, tok_mask)
  residual = adv_tok - token_values
  pg_sum = jnp.sum(jnp.where(tok_mask, -_sg(residual) * logprobs, 0.0))
  bl_sum = jnp.sum(jnp.where(tok_mask, jnp.square(residual), 0.0))
  weight = jnp.sum(turn_mask.astype(jnp.float32))
  return _finish(
      pg_sum + baseline_weight * bl_sum, weight,
      pg_loss=safe_div(pg_sum, weight),
      baseline_loss=safe_div(bl_sum, weight),
  )


# ---------------------------------------------------------------------------------------------
# Offline ArCHer: IQL critic (Kostrikov, Nair, Levine; ICLR 2022) + AWR actor.
# ---------------------------------------------------------------------------------------------


def expectile_loss(diff: Array, *, mask: Array, expectile: float = 0.7) -> tuple[Array, Metrics]:
  """Asymmetric squared loss L_τ(u) = |τ − 1(u < 0)|·u², averaged over valid entries.

  IQL (Kostrikov et al., 2022), Eq. 5 (L₂^τ). `diff` is u = target − prediction, so with
  τ > 0.5 the prediction is pushed towards an upper expectile of the target. τ = 0.5 gives
  0.5·MSE. `mask` has the shape of `diff` or a suffix of it (leading axes, e.g. critic heads,
  are summed, not averaged); the weight is the count of valid entries of `mask`. `diff` is not
  stop-gradiented here (callers that build it from a target do so).
  """
  chex.assert_rank(diff, {mask.ndim, mask.ndim + 1})
  weight = jnp.where(diff < 0, 1.0 - expectile, expectile)
  loss_sum, count = _head_sum_weighted(weight * jnp.square(diff), mask)
  return _finish(loss_sum, count)


def iql_value_loss(v: Array, target_q: Array, mask: Array, *,
                   expectile: float = 0.7) -> tuple[Array, Metrics]:
  """IQL value loss: V(s) ← expectile_τ of Q̄(s, a_data).

  IQL (Kostrikov et al., 2022), Eq. 5: L_V = E[L₂^τ(Q̄(s, a) − V(s))], as in offline ArCHer
  (`andreazanette/OfflineArcher`), where head k regresses onto target head Q̄_k (weight τ when
  Q̄ > V, 1 − τ otherwise). `v` and `target_q` are [N] or [H, N] (heads summed); `mask` is [N];
  the weight is the number of valid transitions. `target_q` is a constant (stop_gradient).
  """
  chex.assert_equal_shape([v, target_q])
  chex.assert_rank(mask, 1)
  loss, metrics = expectile_loss(_sg(target_q) - v, mask=mask, expectile=expectile)
  full_mask = jnp.broadcast_to(mask.astype(bool), v.shape)
  metrics["v_mean"] = masked_mean(v, full_mask)
  return loss, metrics


def iql_q_loss(q: Array, reward: Array, done: Array, next_v: Array, mask: Array, *,
               gamma: float) -> tuple[Array, Metrics]:
  """IQL Q loss: Q(s, a) ← r + γ·(1 − d)·V̄(s').

  IQL (Kostrikov et al., 2022), Eq. 6: L_Q = E[(r + γ V(s') − Q(s, a))²] (no ½), per head
  (offline ArCHer uses the target V̄_k for head k). `q` and `next_v` are [N] or [H, N] (heads
  summed); `reward`, `done` (true terminal: no bootstrap) and `mask` are [N]; weight = number
  of valid transitions. `next_v` and the whole target are constants (stop_gradient).
  """
  chex.assert_equal_shape([q, next_v])
  chex.assert_rank([reward, done, mask], 1)
  chex.assert_equal_shape([reward, done, mask])
  chex.assert_equal_shape_suffix([q, reward], 1)
  target = _sg(reward + gamma * (1.0 - done.astype(q.dtype)) * _sg(next_v))
  loss_sum, weight = _head_sum_weighted(jnp.square(q - target), mask)
  full_mask = jnp.broadcast_to(mask.astype(bool), q.shape)
  return _finish(loss_sum, weight, q_mean=masked_mean(q, full_mask),
                 target_q_mean=masked_mean(target, full_mask))


def awr_actor_weights(advantages: Array, *, temperature: float = 1.0,
                      max_weight: float | None = None) -> Array:
  """Advantage-weighted regression weights w = min(exp(A / temperature), max_weight).

  AWR (Peng et al., 2019) / IQL policy extraction (Kostrikov et al., 2022, Eq. 7) with
  inverse temperature β = 1/temperature. Offline ArCHer uses β = 1 and no clipping
  (`max_weight=None`). The exponent is clipped at log(max_weight) before `exp`, so large
  advantages cannot overflow. Returned as a constant (stop_gradient).
  """
  scaled = _sg(advantages) / temperature
  if max_weight is not None:
    scaled = jnp.minimum(scaled, jnp.log(max_weight))
  return _sg(jnp.exp(scaled))


def awr_actor_loss(logprobs: Array, action_mask: Array, turn_index: Array,
                   turn_advantages: Array, turn_mask: Array, *, temperature: float = 1.0,
                   max_weight: float | None = None) -> tuple[Array, Metrics]:
  """Utterance-level AWR actor: L = −1/|valid turns| · Σ_turns w(A) · Σ_h log π_θ(a^h | s, a^{<h}).

  Offline ArCHer's actor (`andreazanette/OfflineArcher`, IQL + AWR): the dataset utterance's
  log-likelihood (sum over its tokens) weighted by w = `awr_actor_weights(A)`, A = min Q − min V
  per turn. Normalised as the mean over valid turns of the per-utterance weighted sum.

  Args:
    logprobs: [B, T]; action_mask: [B, T]; turn_index: [B, T] (−1 off turns).
    turn_advantages: [B, K] (constant); turn_mask: [B, K] valid turns.
    temperature, max_weight: see `awr_actor_weights`.

  Returns:
    `(loss, metrics)` with `weight_mean`, `weight_max` (over valid turns), `loss_sum`,
    `loss_weight`.
  """
  chex.assert_rank([logprobs, action_mask, turn_index, turn_advantages, turn_mask], 2)
  chex.assert_equal_shape([logprobs, action_mask, turn_index])
  chex.assert_equal_shape([turn_advantages, turn_mask])
  chex.assert_equal_shape_prefix([logprobs, turn_advantages], 1)
  w = awr_actor_weights(turn_advantages, temperature=temperature, max_weight=max_weight)
  tok_mask = turns.valid_turn_tokens(action_mask, turn_index, turn_mask)
  w_tok = turns.turns_to_tokens(w, turn_index, tok_mask)
  loss_sum = jnp.sum(jnp.where(tok_mask, -w_tok * logprobs, 0.0))
  weight = jnp.sum(turn_mask.astype(jnp.float32))
  tm = turn_mask.astype(bool)
  return _finish(loss_sum, weight, weight_mean=masked_mean(w, tm),
                 weight_max=jnp.max(jnp.where(tm, w, 0.0), initial=0.0))


# ---------------------------------------------------------------------------------------------
# LMRL-Gym (Abdulhai et al., 2023): token-level ILQL and MC returns.
# ---------------------------------------------------------------------------------------------


def _cross_entropy(logits: Array, actions: Array) -> Array:
  """logsumexp_a' Q(s, a') − Q(s, a): CE of `actions` under `logits` treated as logits."""
  taken = jnp.take_along_axis(logits, actions[..., None], axis=-1)[..., 0]
  return jax.nn.logsumexp(logits, axis=-1) - taken


def ilql_loss(
    q1_logits: Array,
    q2_logits: Array,
    actions: Array,
    v: Array,
    next_v: Array,
    target_q1: Array,
    target_q2: Array,
    rewards: Array,
    dones: Array,
    mask: Array,
    *,
    gamma: float = 0.99,
    expectile: float = 0.7,
    cql_weight: float = 0.0,
) -> tuple[Array, Metrics]:
  """Token-level ILQL as in LMRL-Gym (`ilql/base_interface.py::ilql_loss`).

  ILQL (Snell et al., 2023), Eqs. 1–3 with LMRL-Gym's implementation. At action token t with
  Q_k(s_t, a_t) read from the Q-logit head k at the taken token a_t:

    y_t   = r_t + γ·(1 − d_t)·V(s_{t+1})                          (constant)
    L_Q   = Σ_k ½·(Q_k(s_t, a_t) − y_t)²
    L_V   = L₂^τ(min(Q̄₁, Q̄₂)(s_t, a_t) − V(s_t))                  (expectile, no ½; Q̄ constant)
    L_CQL = Σ_k [logsumexp_a Q_k(s_t, a) − Q_k(s_t, a_t)]          (CE of a_t under Q-logits)
    L     = mean over valid tokens of L_Q + L_V + cql_weight·L_CQL

  `next_v` is V at the next action token of the same sequence (or at the last token of the
  next chain link's prefix), aligned by the caller; γ is per action token (LMRL-Gym's choice,
  unlike ArCHer's per-utterance γ).

  Args:
    q1_logits, q2_logits: [B, T, V] Q-logit heads over the vocabulary.
    actions: [B, T] int token taken at t (the next token).
    v: [B, T] V(s_t) (trained by the expectile term).
    next_v: [B, T] V(s_{t+1}), constant (stop_gradient).
    target_q1, target_q2: [B, T] target-network Q̄_k(s_t, a_t), constant (stop_gradient).
    rewards: [B, T] per-token reward; dones: [B, T] true terminal at t (no bootstrap).
    mask: [B, T] valid action tokens; weight = their count.
    gamma, expectile, cql_weight: hyperparameters (LMRL-Gym defaults γ = 0.99, τ = 0.7).

  Returns:
    `(loss, metrics)` with the components `q_loss`, `v_loss`, `cql_loss` (each per valid
    token), `q1_mean`, `q2_mean`, `v_mean`, `target_mean`, `loss_sum`, `loss_weight`.
  """
  chex.assert_rank([q1_logits, q2_logits], 3)
  chex.assert_rank([actions, v, next_v, target_q1, target_q2, rewards, dones, mask], 2)
  chex.assert_equal_shape([q1_logits, q2_logits])
  chex.assert_equal_shape([actions, v, next_v, target_q1, target_q2, rewards, dones, mask])
  chex.assert_equal_shape_prefix([q1_logits, actions], 2)

  q1 = jnp.take_along_axis(q1_logits, actions[..., None], axis=-1)[..., 0]
  q2 = jnp.take_along_axis(q2_logits, actions[..., None], axis=-1)[..., 0]
  y = _sg(rewards + gamma * (1.0 - dones.astype(v.dtype)) * _sg(next_v))
  m = mask.astype(bool)

  q_sum = jnp.sum(jnp.where(m, 0.5 * jnp.square(q1 - y) + 0.5 * jnp.square(q2 - y), 0.0))
  _, v_metrics = expectile_loss(_sg(jnp.minimum(target_q1, target_q2)) - v, mask=m,
                                expectile=expectile)
  v_sum = v_metrics["loss_sum"]
  cql = _cross_entropy(q1_logits, actions) + _cross_entropy(q2_logits, actions)
  cql_sum = jnp.sum(jnp.where(m, cql, 0.0))
  weight = jnp.sum(m.astype(jnp.float32))
  return _finish(
      q_sum + v_sum + cql_weight * cql_sum, weight,
      q_loss=safe_div(q_sum, weight),
      v_loss=safe_div(v_sum, weight),
      cql_loss=safe_div(cql_sum, weight),
      q1_mean=masked_mean(q1, m),
      q2_mean=masked_mean(q2, m),
      v_mean=masked_mean(v, m),
      target_mean=masked_mean(y, m),
  )


def mc_returns_loss(values: Array, returns: Array, mask: Array) -> tuple[Array, Metrics]:
  """LMRL-Gym's MC returns: regress Q/V onto Monte-Carlo returns, L = mean_valid ½(Q − R)².

  LMRL-Gym (Abdulhai et al., 2023), `mc_returns/base_interface.py::mc_loss`:
  L = Σ_t m_t·½(Q(s_t, a_t) − R_t)² / Σ_t m_t, with R_t = Σ_{i≥t} γ^{i−t} r_i the
  reward-to-go (computed by the caller). `values`, `returns` and `mask` share one shape (any
  rank); `returns` is a constant (stop_gradient). LMRL-Gym's optional CQL-style CE term on the
  Q-logits is not part of this function.
  """
  chex.assert_equal_shape([values, returns, mask])
  loss_sum, weight = _head_sum_weighted(0.5 * jnp.square(values - _sg(returns)), mask)
  return _finish(loss_sum, weight, value_mean=masked_mean(values, mask),
                 return_mean=masked_mean(returns, mask))


VALUE_LOSSES: dict[str, Callable[..., tuple[Array, Metrics]]] = {
    "archer_critic": archer_critic_loss,
    "archer_actor": archer_actor_loss,
    "archer_token_baseline_actor": archer_token_baseline_actor_loss,
    "expectile": expectile_loss,
    "iql_value": iql_value_loss,
    "iql_q": iql_q_loss,
    "awr_actor": awr_actor_loss,
    "ilql": ilql_loss,
    "mc_returns": mc_returns_loss,
}


def get_value_loss(name: str) -> Callable[..., tuple[Array, Metrics]]:
  """The loss registered under `name`; a ValueError lists the valid names."""
  return registry.lookup(VALUE_LOSSES, name, "value loss")