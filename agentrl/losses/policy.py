"""Policy, value, KL, entropy and imitation losses as pure functions of rollout arrays.

Every loss takes arrays (log-probs, values, advantages, masks), never a model: the train
step owns the forward pass. Token arrays are [B, T]; `mask` is true on the tokens the loss
sees (normally `action_mask`: the tokens the policy generated). Masked positions may hold
anything (padding garbage, inf, NaN): they are replaced before any arithmetic, so padding
never changes a result.

Each loss returns `(loss, metrics)`. `metrics` holds scalars ready to log, and always
`loss_sum` and `loss_weight` with `loss == loss_sum / loss_weight` (0 when the weight is 0):
summing both over micro-batches or devices and dividing once gives the exact full-batch loss.
The weight is the count of unmasked tokens for `token-mean`, and the number of sequences with
at least one unmasked token for the two sequence-level modes.

Loss aggregation (the mode the papers disagree on, see `aggregate`):
  token-mean               Σ_{b,t} m·ℓ / Σ_{b,t} m                       (verl default)
  seq-mean-token-mean      mean_b [ Σ_t m·ℓ / Σ_t m ]                      (GRPO, GSPO)
  seq-mean-token-sum-norm  mean_b [ Σ_t m·ℓ / L_max ]                      (Dr.GRPO)
"""

from __future__ import annotations

import chex
import distrax
import jax
import jax.numpy as jnp

from agentrl._math import masked_mean, safe_div

Array = jax.Array

AGGREGATIONS = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm")
KL_ESTIMATORS = ("k1", "k2", "k3")


def _masked(x: Array, mask: Array, fill: float = 0.0) -> Array:
  """x on the unmasked entries, `fill` elsewhere (garbage in padding cannot leak)."""
  return jnp.where(mask, x, jnp.asarray(fill, x.dtype))


def aggregate(
    per_token: Array,
    mask: Array,
    *,
    mode: str,
    max_tokens: int | None = None,
) -> tuple[Array, Array, Array]:
  """Reduces a per-token loss to a scalar; returns `(loss, loss_sum, loss_weight)`.

  Modes, with m the mask and ℓ the per-token loss:
    `token-mean`:              Σ_{b,t} m ℓ / Σ_{b,t} m; weight = number of unmasked tokens.
    `seq-mean-token-mean`:     (1/|V|) Σ_{b∈V} (Σ_t m ℓ / Σ_t m) (Shao et al. 2024, GRPO
                               Eq. 3); weight = |V|.
    `seq-mean-token-sum-norm`: (1/|V|) Σ_{b∈V} Σ_t m ℓ / L_max with the constant
                               L_max = `max_tokens` (default T) (Liu et al. 2025, Dr.GRPO
                               Eq. 2); weight = |V|.
  V is the set of rows with at least one unmasked token: an empty row (a padding sequence)
  is left out of sequence means. Everything masked gives loss = sum = weight = 0, no NaN.

  Args:
    per_token: float[B, T].
    mask: bool[B, T], true on the tokens that count.
    mode: one of `AGGREGATIONS`.
    max_tokens: the Dr.GRPO constant (only for `seq-mean-token-sum-norm`).

  Returns:
    `(loss, loss_sum, loss_weight)`, float32 scalars with loss == loss_sum / loss_weight.
  """
  chex.assert_rank([per_token, mask], 2)
  chex.assert_equal_shape([per_token, mask])
  mask = mask.astype(bool)
  per_token = _masked(per_token.astype(jnp.float32), mask)
  tokens_per_seq = jnp.sum(mask, axis=-1).astype(jnp.float32)
  sum_per_seq = jnp.sum(per_token, axis=-1)
  if mode == "token-mean":
    loss_sum = jnp.sum(sum_per_seq)
    loss_weight = jnp.sum(tokens_per_seq)
  elif mode == "seq-mean-token-mean":
    loss_sum = jnp.sum(safe_div(sum_per_seq, tokens_per_seq))
    loss_weight = jnp.sum(tokens_per_seq > 0).astype(jnp.float32)
  elif mode == "seq-mean-token-sum-norm":
    norm = per_token.shape[-1] if max_tokens is None else max_tokens
    if norm <= 0:
      raise ValueError(f"aggregate: max_tokens={max_tokens} must be > 0.")
    loss_sum = jnp.sum(sum_per_seq) / norm
    loss_weight = jnp.sum(tokens_per_seq > 0).astype(jnp.float32)
  else:
    raise ValueError(f"aggregate: unknown mode {mode!r}; valid modes: {', '.join(AGGREGATIONS)}.")
  return safe_div(loss_sum, loss_weight), loss_sum, loss_weight


def _clipped_surrogate(
    ratio: Array,
    advantages: Array,
    mask: Array,
    *,
    clip_low: float,
    clip_high: float | None,
    dual_clip: float | None,
) -> tuple[Array, Array, Array]:
  """Per-token clipped PPO loss; returns (loss, clipped indicator, dual-clipped indicator)."""
  clip_high = clip_low if clip_high is None else clip_high
  if dual_clip is not None and dual_clip <= 1.0:
    raise ValueError(f"dual_clip={dual_clip} must be > 1 (Ye et al. 2020 use c = 3).")
  unclipped = -advantages * ratio
  clipped = -advantages * jnp.clip(ratio, 1.0 - clip_low, 1.0 + clip_high)
  per_token = jnp.maximum(unclipped, clipped)
  is_clipped = (clipped > unclipped) & mask
  is_dual = jnp.zeros_like(mask)
  if dual_clip is not None:
    bound = -advantages * dual_clip
    is_dual = (advantages < 0) & (per_token > bound) & mask
    per_token = jnp.where(advantages < 0, jnp.minimum(per_token, bound), per_token)
  return per_token, is_clipped, is_dual


def _loss_metrics(loss: Array, loss_sum: Array, loss_weight: Array,
                  **extra: Array) -> dict[str, Array]:
  """The metrics every loss returns (loss, loss_sum, loss_weight) plus `extra`, all without
  gradient."""
  return jax.lax.stop_gradient(
      {"loss": loss, "loss_sum": loss_sum, "loss_weight": loss_weight, **extra})


def _policy_metrics(
    loss, loss_sum, loss_weight, log_ratio, ratio, is_clipped, is_dual, mask
) -> dict[str, Array]:
  return _loss_metrics(
      loss, loss_sum, loss_weight,
      clip_fraction=masked_mean(is_clipped.astype(jnp.float32), mask),
      dual_clip_fraction=masked_mean(is_dual.astype(jnp.float32), mask),
      # KL(π_old ‖ π_θ) by k3 on behaviour samples: r − 1 − log r with r = π_θ/π_old.
      approx_kl=masked_mean(jnp.expm1(log_ratio) - log_ratio, mask),
      ratio_mean=masked_mean(ratio, mask),
      num_tokens=jnp.sum(mask).astype(jnp.float32))


def ppo_clip_loss(
    logprobs: Array,
    behaviour_logprobs: Array,
    advantages: Array,
    mask: Array,
    *,
    clip_low: float = 0.2,
    clip_high: float | None = None,
    dual_clip: float | None = None,
    aggregation: str = "token-mean",
    max_tokens: int | None = None,
) -> tuple[Array, dict[str, Array]]:
  """Token-level clipped PPO surrogate (Schulman et al. 2017, Eq. 7), as a loss to minimise.

    ρ = exp(log π_θ − log π_old)
    ℓ = max(−A·ρ, −A·clip(ρ, 1 − ε_low, 1 + ε_high))
  With `dual_clip` = c (Ye et al. 2020, "Mastering Complex Control in MOBA Games with Deep
  RL", Eq. 5), tokens with A < 0 are further bounded: ℓ = min(ℓ, −c·A), so a huge ratio on a
  negative advantage cannot blow the loss up. `clip_high` ≠ `clip_low` is DAPO's clip-higher.

  Args:
    logprobs: float[B, T], log π_θ of the taken tokens (differentiated).
    behaviour_logprobs: float[B, T], log π_old from the sampler (treated as constant).
    advantages: float[B, T], per-token advantages (treated as constant).
    mask: bool[B, T], the action tokens (prompt, observation and padding are false).
    clip_low, clip_high: ε_low, ε_high (clip_high defaults to clip_low).
    dual_clip: c > 1, or None for no dual clip.
    aggregation, max_tokens: see `aggregate`.

  Returns:
    (loss, metrics) with loss_sum, loss_weight, clip_fraction (tokens where the clipped branch
    is active), dual_clip_fraction, approx_kl (k3 of KL(π_old ‖ π_θ)), ratio_mean.
  """
  chex.assert_rank([logprobs, behaviour_logprobs, advantages, mask], 2)
  chex.assert_equal_shape([logprobs, behaviour_logprobs, advantages, mask])
  mask = mask.astype(bool)
  behaviour_logprobs = jax.lax.stop_gradient(behaviour_logprobs)
  advantages = jax.lax.stop_gradient(_masked(advantages, mask))
  log_ratio = _masked(logprobs - behaviour_logprobs, mask)
  ratio = jnp.exp(log_ratio)
  per_token, is_clipped, is_dual = _clipped_surrogate(
      ratio, advantages, mask, clip_low=clip_low, clip_high=clip_high, dual_clip=dual_clip)
  loss, loss_sum, loss_weight = aggregate(per_token, mask, mode=aggregation, max_tokens=max_tokens)
  metrics = _policy_metrics(loss, loss_sum, loss_weight, log_ratio, ratio, is_clipped, is_dual,
                            mask)
  return loss, metrics


def clipped_value_loss(
    values: Array,
    old_values: Array,
    returns: Array,
    mask: Array,
    *,
    clip: float = 0.2,
    aggregation: str = "token-mean",
    max_tokens: int | None = None,
) -> tuple[Array, dict[str, Array]]:
  """PPO's clipped value loss (the `cliprange_value` of OpenAI baselines / verl).

    v_clip = old + clip(v − old, −ε, ε)
    ℓ = ½ · max((v − R)², (v_clip − R)²)

  Args:
    values: float[B, T], current value predictions (differentiated).
    old_values: float[B, T], the values at rollout time (constant).
    returns: float[B, T], regression targets R (constant).
    mask: bool[B, T], tokens where the value is trained.
    clip: ε.
    aggregation, max_tokens: see `aggregate`.

  Returns:
    (loss, metrics) with loss_sum, loss_weight, vf_clip_fraction (tokens where the clipped
    term is the larger one), value_mean, return_mean.
  """
  chex.assert_rank([values, old_values, returns, mask], 2)
  chex.assert_equal_shape([values, old_values, returns, mask])
  mask = mask.astype(bool)
  values = _masked(values, mask)
  old_values = jax.lax.stop_gradient(_masked(old_values, mask))
  returns = jax.lax.stop_gradient(_masked(returns, mask))
  v_clipped = old_values + jnp.clip(values - old_values, -clip, clip)
  err = jnp.square(values - returns)
  err_clipped = jnp.square(v_clipped - returns)
  per_token = 0.5 * jnp.maximum(err, err_clipped)
  loss, loss_sum, loss_weight = aggregate(per_token, mask, mode=aggregation, max_tokens=max_tokens)
  metrics = _loss_metrics(
      loss, loss_sum, loss_weight,
      vf_clip_fraction=masked_mean((err_clipped > err).astype(jnp.float32), mask),
      value_mean=masked_mean(values, mask),
      return_mean=masked_mean(returns, mask))
  return loss, metrics


def kl_penalty(
    logprobs: Array,
    ref_logprobs: Array,
    *,
    estimator: str,
    clamp: float | None = None,
) -> Array:
  """Per-token estimate of KL(π_θ ‖ π_ref) on tokens sampled from π_θ (Schulman 2020,
  "Approximating KL Divergence").

  With log r = log π_ref − log π_θ:
    k1 = −log r = log π_θ − log π_ref          (unbiased, high variance, can be < 0)
    k2 = ½ (log r)²                            (biased, low variance, ≥ 0)
    k3 = (r − 1) − log r                       (unbiased, low variance, ≥ 0; verl low_var_kl)

  Args:
    logprobs: float[...], log π_θ of the sampled tokens.
    ref_logprobs: float[...], log π_ref of the same tokens (same shape).
    estimator: "k1", "k2" or "k3".
    clamp: if given, the estimate is clipped to [−clamp, clamp] (verl clamps k3 at ±10).

  Returns:
    float[...], elementwise; no masking (see `kl_loss`).
  """
  chex.assert_equal_shape([logprobs, ref_logprobs])
  log_r = ref_logprobs - logprobs
  if estimator == "k1":
    kl = -log_r
  elif estimator == "k2":
    kl = 0.5 * jnp.square(log_r)
  elif estimator == "k3":
    kl = jnp.expm1(log_r) - log_r
  else:
    raise ValueError(f"kl_penalty: unknown estimator {estimator!r}; "
                     f"valid: {', '.join(KL_ESTIMATORS)}.")
  if clamp is not None:
    kl = jnp.clip(kl, -clamp, clamp)
  return kl


def kl_loss(
    logprobs: Array,
    ref_logprobs: Array,
    mask: Array,
    *,
    estimator: str = "k3",
    clamp: float | None = None,
    aggregation: str = "token-mean",
    max_tokens: int | None = None,
) -> tuple[Array, dict[str, Array]]:
  """KL-to-reference loss (GRPO, Shao et al. 2024, Eq. 4 uses k3): `kl_penalty` aggregated.

  Args:
    logprobs: float[B, T], log π_θ (differentiated).
    ref_logprobs: float[B, T], log π_ref (constant).
    mask: bool[B, T], the action tokens.
    estimator, clamp: see `kl_penalty`.
    aggregation, max_tokens: see `aggregate`.

  Returns:
    (loss, metrics) with loss_sum, loss_weight and kl (token mean of the estimate).
  """
  chex.assert_rank([logprobs, ref_logprobs, mask], 2)
  chex.assert_equal_shape([logprobs, ref_logprobs, mask])
  mask = mask.astype(bool)
  logprobs = _masked(logprobs, mask)
  ref_logprobs = jax.lax.stop_gradient(_masked(ref_logprobs, mask))
  per_token = kl_penalty(logprobs, ref_logprobs, estimator=estimator, clamp=clamp)
  loss, loss_sum, loss_weight = aggregate(per_token, mask, mode=aggregation, max_tokens=max_tokens)
  metrics = _loss_metrics(
      loss, loss_sum, loss_weight,
      kl=masked_mean(per_token, mask))
  return loss, metrics


def entropy_from_logits(logits: Array) -> Array:
  """Entropy H = −Σ_v p_v log p_v of softmax(logits) at each position.

  Args:
    logits: float[B, T, V].

  Returns:
    float[B, T].
  """
  chex.assert_rank(logits, 3)
  return distrax.Softmax(logits.astype(jnp.float32)).entropy()


def entropy_loss(
    logits: Array,
    mask: Array,
    *,
    aggregation: str = "token-mean",
    max_tokens: int | None = None,
) -> tuple[Array, dict[str, Array]]:
  """Entropy bonus as a loss to minimise: ℓ = −H(π_θ(·|s_t)) (Mnih et al. 2016, A3C).

  Args:
    logits: float[B, T, V], the policy logits at the action positions.
    mask: bool[B, T], the action tokens.
    aggregation, max_tokens: see `aggregate`.

  Returns:
    (loss, metrics): loss is the aggregated negative entropy; metrics has loss_sum,
    loss_weight and entropy (token mean).
  """
  chex.assert_rank([logits, mask], [3, 2])
  chex.assert_equal_shape_prefix([logits, mask], 2)
  mask = mask.astype(bool)
  logits = jnp.where(mask[..., None], logits, 0.0)
  entropy = entropy_from_logits(logits)
  loss, loss_sum, loss_weight = aggregate(-entropy, mask, mode=aggregation, max_tokens=max_tokens)
  metrics = _loss_metrics(
      loss, loss_sum, loss_weight,
      entropy=masked_mean(entropy, mask))
  return loss, metrics


def bc_loss(
    logprobs: Array,
    mask: Array,
    *,
    aggregation: str = "token-mean",
    max_tokens: int | None = None,
) -> tuple[Array, dict[str, Array]]:
  """Behaviour cloning: negative log-likelihood −log π_θ(y_t | s_t) of the action tokens.

  Args:
    logprobs: float[B, T], log π_θ of the demonstrated tokens.
    mask: bool[B, T], the tokens to imitate (e.g. `action_mask & filtered_bc_mask[:, None]`).
    aggregation, max_tokens: see `aggregate`.

  Returns:
    (loss, metrics) with loss_sum, loss_weight and nll (token mean).
  """
  chex.assert_rank([logprobs, mask], 2)
  chex.assert_equal_shape([logprobs, mask])
  mask = mask.astype(bool)
  nll = -_masked(logprobs, mask)
  loss, loss_sum, loss_weight = aggregate(nll, mask, mode=aggregation, max_tokens=max_tokens)
  metrics = _loss_metrics(
      loss, loss_sum, loss_weight,
      nll=masked_mean(nll, mask))
  return loss, metrics


def filtered_bc_mask(returns: Array, mask: Array, *, top_fraction: float) -> Array:
  """Filtered BC (as in ArCHer's Filtered-BC baseline): keep the best trajectories by return.

  Among the n valid trajectories (mask true) keep the k = ceil(top_fraction · n) with the
  highest return (k ≥ 1 when n ≥ 1 and top_fraction > 0). Ties are broken deterministically:
  among equal returns the lower batch index wins, so exactly k rows are kept. The ceiling is
  taken with a 1e-6 tolerance so that e.g. 0.3 · 10 keeps 3, not 4.

  Args:
    returns: float[B], the return of each trajectory.
    mask: bool[B], valid trajectories (padding rows are never kept).
    top_fraction: in (0, 1].

  Returns:
    bool[B], true for the kept trajectories.
  """
  chex.assert_rank([returns, mask], 1)
  chex.assert_equal_shape([returns, mask])
  if not 0.0 < top_fraction <= 1.0:
    raise ValueError(f"filtered_bc_mask: top_fraction={top_fraction} must be in (0, 1].")
  mask = mask.astype(bool)
  n_valid = jnp.sum(mask).astype(jnp.float32)
  k = jnp.ceil(top_fraction * n_valid - 1e-6)
  k = jnp.where(n_valid > 0, jnp.maximum(k, 1.0), 0.0)
  # Valid rows first, by descending return; the stable sort keeps index order on ties.
  key = jnp.where(mask, -returns.astype(jnp.float32), jnp.inf)
  order = jnp.argsort(key, stable=True)
  rank = jnp.zeros_like(order).at[order].set(jnp.arange(order.shape[0]))
  return mask & (rank < k)
