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

from typing import Callable

import chex
import distrax
import jax
import jax.numpy as jnp

Array = jax.Array

AGGREGATIONS = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm")
KL_ESTIMATORS = ("k1", "k2", "k3")


def _safe_div(num: Array, den: Array) -> Array:
  """num / den, and 0 where den == 0 (no NaN, and no NaN gradient)."""
  return jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), 0.0)


def _masked(x: Array, mask: Array, fill: float = 0.0) -> Array:
  """x on the unmasked entries, `fill` elsewhere (garbage in padding cannot leak)."""
  return jnp.where(mask, x, jnp.asarray(fill, x.dtype))


def _token_mean(x: Array, mask: Array) -> Array:
  """Token mean over the unmasked entries, for logging; 0 if none."""
  mask = mask.astype(bool)
  return _safe_div(jnp.sum(_masked(x, mask)), jnp.sum(mask).astype(jnp.float32))


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
    loss_sum = jnp.sum(_safe_div(sum_per_seq, tokens_per_seq))
    loss_weight = jnp.sum(tokens_per_seq > 0).astype(jnp.float32)
  elif mode == "seq-mean-token-sum-norm":
    norm = per_token.shape[-1] if max_tokens is None else max_tokens
    if norm <= 0:
      raise ValueError(f"aggregate: max_tokens={max_tokens} must be > 0.")
    loss_sum = jnp.sum(sum_per_seq) / norm
    loss_weight = jnp.sum(tokens_per_seq > 0).astype(jnp.float32)
  else:
    raise ValueError(f"aggregate: unknown mode {mode!r}; valid modes: {', '.join(AGGREGATIONS)}.")
  return _safe_div(loss_sum, loss_weight), loss_sum, loss_weight


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


def _policy_metrics(
    loss, loss_sum, loss_weight, log_ratio, ratio, is_clipped, is_dual, mask
) -> dict[str, Array]:
  sg = jax.lax.stop_gradient
  return {
      "loss": sg(loss),
      "loss_sum": sg(loss_sum),
      "loss_weight": sg(loss_weight),
      "clip_fraction": sg(_token_mean(is_clipped.astype(jnp.float32), mask)),
      "dual_clip_fraction": sg(_token_mean(is_dual.astype(jnp.float32), mask)),
      # KL(π_old ‖ π_θ) by k3 on behaviour samples: r − 1 − log r with r = π_θ/π_old.
      "approx_kl": sg(_token_mean(jnp.expm1(log_ratio) - log_ratio, mask)),
      "ratio_mean": sg(_token_mean(ratio, mask)),
      "num_tokens": sg(jnp.sum(mask).astype(jnp.float32)),
  }


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
  metrics = _policy_metrics(loss, loss_sum, loss_weight, log_ratio, ratio, is_clipped, is_dual, mask)
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
  sg = jax.lax.stop_gradient
  metrics = {
      "loss": sg(loss),
      "loss_sum": sg(loss_sum),
      "loss_weight": sg(loss_weight),
      "vf_clip_fraction": sg(_token_mean((err_clipped > err).astype(jnp.float32), mask)),
      "value_mean": sg(_token_mean(values, mask)),
      "return_mean": sg(_token_mean(returns, mask)),
  }
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
    raise ValueError(f"kl_penalty: unknown estimator {estimator!r}; valid: {', '.join(KL_ESTIMATORS)}.")
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
  sg = jax.lax.stop_gradient
  metrics = {
      "loss": sg(loss),
      "loss_sum": sg(loss_sum),
      "loss_weight": sg(loss_weight),
      "kl": sg(_token_mean(per_token, mask)),
  }
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
  sg = jax.lax.stop_gradient
  metrics = {
      "loss": sg(loss),
      "loss_sum": sg(loss_sum),
      "loss_weight": sg(loss_weight),
      "entropy": sg(_token_mean(entropy, mask)),
  }
  return loss, metrics


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
  mean_per_turn = _safe_div(sum_per_turn, count_per_turn)
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
  clip_fraction = jax.lax.stop_gradient(_token_mean(is_clipped.astype(jnp.float32), mask))
  norm = jnp.asarray(1.0, jnp.float32)
  if clip_normalizer is not None:
    norm = jax.lax.stop_gradient(jnp.asarray(clip_normalizer(clip_fraction), jnp.float32))
    loss, loss_sum = loss / norm, loss_sum / norm
  log_ratio = logprobs - behaviour_logprobs
  metrics = _policy_metrics(
      loss, loss_sum, loss_weight, log_ratio, jnp.exp(log_ratio), is_clipped, is_dual, mask)
  metrics["clip_normalizer"] = norm
  metrics["turn_ratio_mean"] = jax.lax.stop_gradient(_token_mean(w, mask))
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
  sg = jax.lax.stop_gradient
  metrics = {
      "loss": sg(loss),
      "loss_sum": sg(loss_sum),
      "loss_weight": sg(loss_weight),
      "nll": sg(_token_mean(nll, mask)),
  }
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
  loss = _safe_div(loss_sum, loss_weight)
  metrics = {
      "loss": sg(loss),
      "loss_sum": sg(loss_sum),
      "loss_weight": sg(loss_weight),
      "log_ratio_diff": sg(_safe_div(jnp.sum(_masked(delta, valid)), loss_weight)),
      "reward_diff": sg(_safe_div(jnp.sum(reward_diff), loss_weight)),
      "residual_abs": sg(_safe_div(jnp.sum(_masked(jnp.abs(residual), valid)), loss_weight)),
      "num_pairs": sg(loss_weight),
  }
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


LOSSES: dict[str, Callable[..., tuple[Array, dict[str, Array]]]] = {
    "ppo_clip": ppo_clip_loss,
    "turn_ppo": turn_ppo_loss,
    "clipped_value": clipped_value_loss,
    "kl": kl_loss,
    "entropy": entropy_loss,
    "bc": bc_loss,
    "refuel": refuel_loss,
}


def get_loss(name: str) -> Callable[..., tuple[Array, dict[str, Array]]]:
  """The loss registered under `name`; ValueError listing the valid names otherwise."""
  if name not in LOSSES:
    raise ValueError(f"Unknown loss {name!r}; valid names: {', '.join(sorted(LOSSES))}.")
  return LOSSES[name]
