"""Critic-free group policy gradients: GRPO, Dr.GRPO, RLOO, REINFORCE++ and GiGPO.

On-policy (`data="rollout"`): the batch comes from `rollout.rollout(..., group_size=G)`, so the G
episodes of one task seed share a `group_id`. One `update` computes the advantages once, with no
value function, from the rewards of the batch, and then takes `epochs` x `minibatches` steps of
the clipped PPO surrogate (`losses.ppo_clip_loss`) against the sampler's
`batch.behaviour_logprobs`. With the default single epoch and one minibatch the ratio is 1 and
the step is a pure policy gradient.

Episode return Rᵢ = Σ_k rᵢ,ₖ over the valid turns (`turn_mask`). Estimators (`estimator=` of
`make`, overridden by `config.estimator`) are the entries of `advantages.GROUP_ESTIMATORS`; a
new one is one `advantages.register_group_estimator(name, normalize)` call away. Built in:

  grpo          Âᵢ = (Rᵢ − mean_g R) / (std_g R + ε)   (`advantages.grpo_advantages`); loss
                aggregation seq-mean-token-mean (Shao et al. 2024, Eq. 3).
  dr_grpo       Âᵢ = Rᵢ − mean_g R, no std; aggregation seq-mean-token-sum-norm (token sum over
                a constant length, default the batch width T; Liu et al. 2025).
  rloo          Âᵢ = Rᵢ − mean of the other members of the group (`rloo_advantages`).
  reinforce_pp  Âᵢ = batch z-score of Rᵢ (`reinforce_pp_advantages`); `group_baseline=True`
                subtracts the group mean first (REINFORCE++-baseline).
  gigpo         A_{i,k} = A^E_i + ω A^S_{i,k} (`credit.gigpo_advantages`): the episode
                advantage plus a step advantage of the discounted return-to-go within the
                anchor-state bucket (same group, same state).

Singleton groups give 0 (see `advantages`). Multi-turn credit (`config.credit`, computed by
`credit.group_turn_credit`). Each option says
which per-turn signal is normalised and over which group; the estimator supplies the
normalisation N (GRPO's z-score, Dr.GRPO's centring, RLOO's leave-one-out, REINFORCE++'s batch
whitening), so every option works with every estimator:

  grpo, dr_grpo, rloo, reinforce_pp, and any registered estimator with a normaliser:
    "none"   (default) the episode advantage Âᵢ = N(Rᵢ) over group g on every turn.
    "turn"   the discounted return-to-go G_{i,k} = Σ_{k' ≥ k} γ^{k'−k} r_{i,k'} of each turn
             replaces Rᵢ, and the group baseline runs over the turns at the same position k of
             the group's episodes (group key (g, k)): a time-dependent group baseline.
    "mars"   MARS's per-agent turn advantage: G_{i,k} normalised over every valid turn of
             the same (group, role) (a row is one role's view, so its turns are that agent's):
             `credit.mars_advantages` with N.
    "igpo"   IGPO's information-gain turn rewards: r_{i,k} = p_{i,k+1} − p_{i,k} with
             p = exp(mean log π(answer | context before turn k)) (`policy.answer_logprobs` on
             `batch.answer_tokens`), and the outcome Rᵢ on the last valid turn
             (`credit.igpo_turn_rewards`); A_{i,k} = Σ_{k' ≥ k} γ^{k'−k} N(r)_{i,k'} with N over
             all valid turn rewards of group g: `credit.igpo_advantages` with N.
    "a2tgpo" A²TGPO: IG_{i,k} = p_{i,k+1} − p_{i,k} (0 on the last valid turn, the answer),
             normalised per (g, k), accumulated with the variance rescaling 1/√(turns left),
             plus λ_o N(Rᵢ) on every turn (`outcome_on_all_turns`) or the last one, and
             adaptive clip ranges ε_{i,k} = ε (1 + β (2σ(ÎG_{i,k}) − 1)) on the turn's tokens:
             `credit.a2tgpo_advantages` with N.
  gigpo:
    "gigpo"             (default) the paper's mean_std_norm mode (divide by the group stds).
    "gigpo_mean_norm"   verl-agent's mean_norm mode (centre only).
Any other value raises a ValueError that lists the supported ones.

Information gain needs each row's ground-truth answer: `Algorithm.answer_length` > 0 asks the
rollout to record `env.reference_answer()` into `batch.answer_tokens`. The answer log-probs
are computed inside the update with the parameters before the step (the sampling policy when
the batch is fresh), at the sampler's temperature. Environments without an answer (navigation,
games) give p = 1 on every turn, hence no information gain: igpo and a2tgpo then reduce to
their outcome terms.

Anchor states (GiGPO). A text environment's state is the conversation so far, so the anchor id
of turn k is a hash of the tokens before turn k's first action token, computed inside the jitted
update (`anchor_ids`: a 32-bit rolling polynomial hash h ← h·M + token + 1 over the row, a
`lax.scan` over T). `anchor="history"` (default) hashes the whole conversation up to the turn
(an exact state for text MDPs: equal hashes mean the same prompt, the same earlier actions and the
same answers); `anchor="observation"` hashes only the tokens since the previous action (the
latest observation, verl-agent's choice, which fits environments whose observation is the full
state). A precomputed id cannot ride on `TrajectoryBatch`, so none is accepted; a hash collision
(probability about n²/2³² for n states in a group) merges two buckets.

KL. With `kl_coef` > 0 the initial policy is kept frozen as `state.frozen["reference"]` and
kl_coef · `losses.kl_loss` (k3 by default, GRPO Eq. 4) is added to the loss, with the same
aggregation as the surrogate.

Config (`config.algorithm`): the knobs of `Defaults` below (`PolicyGradient`'s are shared with
`self_play`).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp

from agentrl import advantages, credit, losses, policy, sources, turns
from agentrl._math import masked_mean
from agentrl.algorithms import defaults
from agentrl.algorithms.base import (Algorithm, Models, Term, TrainState, apply_gradients,
                                     epochs_scan, jit_update, objective_and_grad, optimizer,
                                     reduce_metrics, term)
from agentrl.algorithms.defaults import knob
from agentrl.types import TrajectoryBatch

Array = jax.Array

ANCHOR_MODES = ("history", "observation")
_HASH_MULT = 0x01000193  # The 32-bit FNV prime, as the multiplier of the polynomial hash.


# ----------------------------------------------------------------------------- advantages


episode_returns = credit.episode_returns  # Rᵢ = Σ_k rᵢ,ₖ over the valid turns: [B, K] -> [B].


def anchor_ids(batch: TrajectoryBatch, *, mode: str = "history") -> Array:
  """A 32-bit hash of the state before each agent turn, int32[B, K] (jittable).

  h ← h·M + (token + 1) mod 2³² over the real tokens of each row (M the FNV prime); the id of
  turn k is h just before turn k's first action token. mode="history" hashes every token
  before it; mode="observation" restarts at each action token, so it hashes only the tokens
  since the previous utterance (the latest observation and the assistant prefix). Turns
  without action tokens get 0 (they are masked out downstream).
  """
  if mode not in ANCHOR_MODES:
    raise ValueError(f"anchor mode {mode!r}; valid modes: {', '.join(ANCHOR_MODES)}.")
  real = batch.attention_mask.astype(bool)
  action = batch.action_mask.astype(bool) & real
  tokens = batch.tokens.astype(jnp.uint32) + jnp.uint32(1)
  mult = jnp.uint32(_HASH_MULT)

  def step(h, xs):
    tok, r, a = xs
    new = h * mult + tok
    if mode == "observation":
      new = jnp.where(a, jnp.zeros_like(h), new)
    return jnp.where(r, new, h), h  # Emits the hash of the tokens *before* this one.

  init = jnp.zeros(tokens.shape[:1], jnp.uint32)
  _, before = jax.lax.scan(step, init, (tokens.T, real.T, action.T))
  before = jax.lax.bitcast_convert_type(before.T, jnp.int32)
  first = turns.turn_starts(batch.turn_index, action)
  return turns.tokens_to_turns(before, first, batch.turn_index, batch.rewards.shape[1])


def group_turn_advantages(batch: TrajectoryBatch, *, estimator: str, credit_mode: str,
                          gamma: float = 1.0, eps: float | None = None,
                          unbiased_std: bool | None = None, group_baseline: bool = False,
                          omega: float = 1.0, anchor: str = "history",
                          episode_stats_over_steps: bool = True,
                          answer_logprob: Array | None = None, lambda_ig: float = 1.0,
                          lambda_outcome: float = 1.0, outcome_on_all_turns: bool = True,
                          clip_eps: float = 0.2, beta: float = 0.3) -> tuple[Array, Array]:
  """Per-turn advantages [B, K] of `estimator` with multi-turn credit `credit_mode`, and the
  per-turn PPO clip ε [B, K] (`clip_eps` everywhere except under a2tgpo).

  `credit.group_turn_credit` with the estimator's normaliser (see the module docstring); 0 on
  masked turns. `eps` and `unbiased_std` default per estimator (None). `answer_logprob`
  [B, K] (`policy.answer_logprobs`) is needed by the information-gain options.
  """
  check_options(estimator, credit_mode)
  norm = advantages.get_group_estimator(estimator).normalize
  if norm is not None:
    norm = functools.partial(norm, eps=eps, unbiased_std=unbiased_std,
                             group_baseline=group_baseline)
  anchor_id = (anchor_ids(batch, mode=anchor) if credit_mode in credit.ANCHOR_CREDITS
               else None)
  return credit.group_turn_credit(
      credit_mode, norm, batch.rewards.astype(jnp.float32), batch.turn_mask, batch.group_id,
      dones=batch.dones, role=batch.role[:, 0], answer_logprob=answer_logprob,
      anchor_id=anchor_id, gamma=gamma, eps=eps, unbiased_std=unbiased_std, omega=omega,
      episode_stats_over_steps=episode_stats_over_steps, lambda_ig=lambda_ig,
      lambda_outcome=lambda_outcome, outcome_on_all_turns=outcome_on_all_turns,
      clip_eps=clip_eps, beta=beta)


def credit_options(estimator: str) -> tuple[str, ...]:
  """The credit options `estimator` supports, its default first (ValueError if unknown)."""
  return advantages.get_group_estimator(estimator).credits or credit.GROUP_CREDITS


def check_options(estimator: str, credit_mode: str) -> None:
  """Raises a ValueError naming the supported values for an unknown estimator or credit."""
  valid = credit_options(estimator)
  if credit_mode not in valid:
    raise ValueError(f"{estimator}: unsupported credit option {credit_mode!r}; supported: "
                     f"{', '.join(valid)}.")


# ----------------------------------------------------------------------------- the update


@dataclasses.dataclass(frozen=True)
class PolicyGradient(defaults.Optimizer):
  """The knobs of `policy_gradient_update`, the optimisation half (group methods, self-play)."""

  epochs: int = knob(1, "Passes over each batch (1 with one minibatch: a pure PG step).")
  minibatches: int = knob(1, "Equal row slices per pass, shuffled per epoch when > 1.")
  micro_batch_size: int = knob(0, "Rows per gradient micro-batch, summed exactly (0: all).")
  clip_eps: float = knob(0.2, "PPO clip ε on the ratio to the sampler.")
  clip_high: float | None = knob(None, "Upper clip ε (DAPO's clip-higher); None: clip_eps.")
  dual_clip: float | None = knob(None, "Dual-clip constant c for negative advantages; None: off.")
  kl_coef: float = knob(0.0, "Weight of the KL to the frozen reference policy.")
  kl_estimator: str = knob("k3", "KL estimator (losses.KL_ESTIMATORS).")
  kl_clamp: float | None = knob(None, "Clamp of the per-token KL; None: none.")
  entropy_coef: float = knob(0.0, "Weight of an entropy bonus.")
  max_tokens: int | None = knob(None, "seq-mean-token-sum-norm's constant; None: batch width T.")
  temperature: float | None = knob(None, "Log-prob temperature; None: the sampler's (1 greedy).")


@dataclasses.dataclass(frozen=True)
class Defaults(PolicyGradient):
  """The group methods' knobs (the estimators' own defaults where None or "")."""

  estimator: str = knob("", "A registered group estimator; \"\": the algorithm name's.")
  credit: str = knob("", "Multi-turn credit (module docstring); \"\": the estimator's first.")
  gamma: float | None = knob(None, "Turn discount of the return-to-go; None: the estimator's.")
  eps: float | None = knob(None, "ε added to the stds; None: the estimator's.")
  unbiased_std: bool | None = knob(None, "n−1 stds; None: the estimator's (gigpo: True).")
  group_baseline: bool = knob(False, "reinforce_pp: subtract the group mean before whitening.")
  omega: float = knob(1.0, "gigpo: weight ω of the step (anchor-state) advantage.")
  anchor: str = knob("history", "gigpo anchor states: history or observation.")
  episode_stats_over_steps: bool = knob(True, "gigpo: weight episode stats by turn count.")
  answer_length: int = knob(32, "igpo, a2tgpo: tokens kept of each task's answer.")
  lambda_ig: float = knob(1.0, "a2tgpo: weight of the information-gain advantage.")
  lambda_outcome: float = knob(1.0, "a2tgpo: weight of the outcome advantage.")
  outcome_on_all_turns: bool = knob(True, "a2tgpo: outcome advantage on every turn, or last.")
  beta: float = knob(0.3, "a2tgpo: clip ranges ε(1 ± β) by the turn's information gain.")
  mask_truncated: bool = knob(False, "Mini-o3: episodes without a terminal get no loss.")
  aggregation: str = knob("", "Loss aggregation (losses.AGGREGATIONS); \"\": the estimator's.")


def policy_gradient_update(h: PolicyGradient, models: Models, tx, *, name: str,
                           aggregation: str) -> Callable:
  """The optimisation half of a critic-free update, shared with `self_play`.

  Returns `step(state, batch, token_advantages, rng, clip_scale=None, keep_rows=None) ->
  (params, opt_state, metrics)`, to be called inside a jitted update (`clip_scale` [B, T]
  multiplies the clip range token by token; rows where `keep_rows` [B] is false get no
  loss): `epochs` passes of `minibatches` equal row slices (`base.epochs_scan`), each one
  optimizer step on the clipped surrogate (+ kl_coef · KL to `state.frozen["reference"]`
  − entropy_coef · entropy), its gradient accumulated over micro-batches of
  `micro_batch_size` rows when set (`base.objective_and_grad`). Metrics are averaged over
  the steps; `nonfinite/<name>_loss` is the maximum (raised if any step was skipped).
  """
  epochs, minibatches, clip_eps, clip_high = h.epochs, h.minibatches, h.clip_eps, h.clip_high
  dual_clip, kl_coef, kl_estimator, kl_clamp = h.dual_clip, h.kl_coef, h.kl_estimator, h.kl_clamp
  entropy_coef, max_tokens, micro_batch_size = h.entropy_coef, h.max_tokens, h.micro_batch_size
  temperature = sampler_temperature(h, models)
  if epochs < 1 or minibatches < 1:
    raise ValueError(f"{name}: epochs={epochs} and minibatches={minibatches} must be >= 1.")
  loss_name = f"{name}_loss"
  cfg = models.policy_config

  def loss_fn(params, mb):
    out = policy.evaluate(params, cfg, mb["tokens"], mb["positions"], mb["attention_mask"],
                          temperature=temperature)
    kw = dict(aggregation=aggregation, max_tokens=max_tokens)
    low, high = clip_eps, clip_high
    if "clip_scale" in mb:  # Per-token clip ranges (A²TGPO): both ends scaled alike.
      low = clip_eps * mb["clip_scale"]
      high = None if clip_high is None else clip_high * mb["clip_scale"]
    pg, pgm = losses.ppo_clip_loss(out.logprobs, mb["behaviour"], mb["advantages"], mb["mask"],
                                   clip_low=low, clip_high=high, dual_clip=dual_clip, **kw)
    terms = {"pg": term(1.0, (pg, pgm))}
    metrics = {"pg_loss": pg, "clip_fraction": pgm["clip_fraction"],
               "approx_kl": pgm["approx_kl"], "ratio_mean": pgm["ratio_mean"]}
    if kl_coef:
      kl, klm = losses.kl_loss(out.logprobs, mb["reference"], mb["mask"], estimator=kl_estimator,
                               clamp=kl_clamp, **kw)
      terms["kl"] = term(kl_coef, (kl, klm))
      metrics.update(kl_loss=kl, kl=klm["kl"])
    if entropy_coef:
      # −H aggregated like `losses.entropy_loss`, from the entropies `evaluate` already has.
      neg_entropy = losses.aggregate(-out.entropy, mb["mask"], mode=aggregation,
                                     max_tokens=max_tokens)
      terms["entropy"] = Term(entropy_coef, neg_entropy[0], neg_entropy[2])
      metrics["entropy"] = -neg_entropy[0]
    return terms, metrics

  grad_fn = objective_and_grad(loss_fn, micro_batch_size=micro_batch_size)

  def minibatch_step(carry, mb):
    params, opt_state = carry
    (loss, _, metrics), grads = grad_fn(params, mb)
    params, opt_state, guard = apply_gradients(tx, params, opt_state, grads, loss,
                                               name=loss_name)
    return (params, opt_state), {**metrics, "loss": loss, **guard}

  def step(state: TrainState, batch: TrajectoryBatch, token_advantages: Array, rng: Array,
           clip_scale: Array | None = None, keep_rows: Array | None = None):
    mask = batch.action_mask.astype(bool) & batch.attention_mask.astype(bool)
    if keep_rows is not None:
      mask = credit.over_turn_mask(mask, ~keep_rows)
    data = {"tokens": batch.tokens, "positions": batch.positions,
            "attention_mask": batch.attention_mask, "mask": mask,
            "behaviour": batch.behaviour_logprobs, "advantages": token_advantages}
    if clip_scale is not None:
      data["clip_scale"] = clip_scale
    if kl_coef:
      ref = policy.evaluate(state.frozen["reference"], cfg, batch.tokens, batch.positions,
                            batch.attention_mask, temperature=temperature)
      data["reference"] = jax.lax.stop_gradient(ref.logprobs)

    (params, opt_state), metrics = epochs_scan(
        minibatch_step, (state.params["policy"], state.opt_states["policy"]), data, rng,
        epochs=epochs, minibatches=minibatches, name=name)
    return params, opt_state, reduce_metrics(metrics)

  return step


def sampler_temperature(h: PolicyGradient, models: Models) -> float:
  """The temperature of the log-probs: `h.temperature`, else the sampler's (1.0 when greedy)."""
  return float(models.sampling.temperature or 1.0) if h.temperature is None else h.temperature


def init_state(h: PolicyGradient, models: Models, tx, frozen: dict[str, Any] | None = None
               ) -> TrainState:
  """A fresh state: a copy of the policy (the update donates it), its optimizer state, and the
  frozen reference when `kl_coef` > 0."""
  params = jax.tree.map(jnp.copy, models.policy_params)
  frozen = dict(frozen or {})
  if h.kl_coef:
    frozen["reference"] = jax.tree.map(jnp.copy, models.policy_params)
  return TrainState(step=jnp.zeros((), jnp.int32), params={"policy": params},
                    opt_states={"policy": tx.init(params)}, frozen=frozen)


def _masked_stats(x: Array, mask: Array) -> tuple[Array, Array]:
  m = mask.astype(jnp.float32)
  n = jnp.maximum(m.sum(), 1.0)
  mean = masked_mean(x, mask)
  var = jnp.sum(m * jnp.square(jnp.where(mask, x, 0.0) - mean)) / n
  return mean, jnp.sqrt(var)


def advantage_options(config, estimator: str, name: str = "grpo") -> dict[str, Any]:
  """The keyword arguments of `group_turn_advantages` that `config` (a `Defaults` or a config
  block) asks for: `estimator` unless the config names one; unset options get the
  estimator's defaults (its first credit option, its γ: 0.95 for gigpo, 1.0 for the others)."""
  h = config if isinstance(config, Defaults) else defaults.read(Defaults, config, name)
  estimator = h.estimator or estimator
  credit_mode = h.credit or credit_options(estimator)[0]
  check_options(estimator, credit_mode)
  if credit_mode in credit.ANCHOR_CREDITS and h.anchor not in ANCHOR_MODES:
    raise ValueError(f"{name}: anchor={h.anchor!r}; valid: {', '.join(ANCHOR_MODES)}.")
  return dict(
      estimator=estimator, credit_mode=credit_mode,
      gamma=advantages.get_group_estimator(estimator).gamma if h.gamma is None else h.gamma,
      eps=h.eps, unbiased_std=h.unbiased_std, group_baseline=h.group_baseline,
      omega=h.omega, anchor=h.anchor, episode_stats_over_steps=h.episode_stats_over_steps,
      lambda_ig=h.lambda_ig, lambda_outcome=h.lambda_outcome,
      outcome_on_all_turns=h.outcome_on_all_turns, clip_eps=h.clip_eps, beta=h.beta)


def make(config, models: Models, *, estimator: str = "grpo", name: str = "grpo") -> Algorithm:
  """Builds the group method `estimator` (see the module docstring for the config keys)."""
  h = defaults.read(Defaults, config, name)
  adv_kwargs = advantage_options(h, estimator, name)
  credit_mode = adv_kwargs["credit_mode"]
  needs_answers = credit_mode in credit.ANSWER_CREDITS
  answer_length = h.answer_length if needs_answers else 0
  if needs_answers and answer_length < 1:
    raise ValueError(f"{name}: credit={credit_mode!r} needs answer_length >= 1; got "
                     f"{answer_length}.")
  temperature, mask_truncated = sampler_temperature(h, models), h.mask_truncated
  aggregation = h.aggregation or advantages.get_group_estimator(
      adv_kwargs["estimator"]).aggregation
  if aggregation not in losses.AGGREGATIONS:
    raise ValueError(f"{name}: aggregation={aggregation!r}; valid: "
                     f"{', '.join(losses.AGGREGATIONS)}.")
  tx = optimizer(h)
  pg_step = policy_gradient_update(h, models, tx, name=name, aggregation=aggregation)

  def init(rng):
    del rng
    return init_state(h, models, tx)

  def update(state: TrainState, batch: TrajectoryBatch, rng):
    turn_mask = batch.turn_mask.astype(bool)
    extra, answer_lp = {}, None
    if needs_answers:
      if batch.answer_tokens.shape[1] == 0:
        raise ValueError(f"{name}: credit={credit_mode!r} needs batch.answer_tokens; roll out "
                         f"with answer_length={answer_length} (Algorithm.answer_length).")
      answer_lp = jax.lax.stop_gradient(policy.answer_logprobs(
          state.params["policy"], models.policy_config, batch.tokens, batch.positions,
          batch.attention_mask, batch.action_mask, batch.turn_index, batch.answer_tokens,
          turn_mask.shape[1], temperature=temperature))
      before, after = credit.information_gain_logprobs(answer_lp, turn_mask)
      extra[f"{name}/answer_prob"] = _masked_stats(jnp.exp(before), turn_mask)[0]
      extra[f"{name}/info_gain"] = _masked_stats(jnp.exp(after) - jnp.exp(before), turn_mask)[0]
    turn_adv, turn_clip = group_turn_advantages(batch, answer_logprob=answer_lp, **adv_kwargs)
    to_tokens = lambda x: turns.turns_to_tokens(x, batch.turn_index, batch.action_mask)  # noqa: E731
    token_adv = to_tokens(turn_adv)
    clip_scale = None
    if credit_mode == "a2tgpo":
      clip_scale = to_tokens(turn_clip / adv_kwargs["clip_eps"])
      extra[f"{name}/clip_range"] = _masked_stats(turn_clip, turn_mask)[0]
    keep_rows = None
    if mask_truncated:  # Mini-o3: over-budget rollouts count in the groups, not in the loss.
      keep_rows = batch.dones.astype(bool).any(axis=1) | ~turn_mask.any(axis=1)
      extra[f"{name}/masked_truncated_fraction"] = _masked_stats(
          (~keep_rows).astype(jnp.float32), turn_mask.any(axis=1))[0]
    params, opt_state, metrics = pg_step(state, batch, token_adv, rng, clip_scale, keep_rows)
    adv_mean, adv_std = _masked_stats(turn_adv, turn_mask)
    ret_mean, _ = _masked_stats(episode_returns(batch.rewards, turn_mask), turn_mask.any(1))
    metrics = {**{f"{name}/{k}": v for k, v in metrics.items() if "/" not in k},
               **{k: v for k, v in metrics.items() if "/" in k},
               f"{name}/adv_mean": adv_mean, f"{name}/adv_std": adv_std,
               f"{name}/return_mean": ret_mean,
               f"{name}/zero_adv_fraction": _masked_stats(
                   (turn_adv == 0).astype(jnp.float32), turn_mask)[0], **extra}
    state = state.replace(step=state.step + 1, params={**state.params, "policy": params},
                          opt_states={**state.opt_states, "policy": opt_state})
    return state, metrics

  return Algorithm(name=name, source=sources.Rollout(), init=init, update=jit_update(update),
                   answer_length=answer_length)
