"""PPO with a token-level critic (LMRL-Gym), and Turn-PPO with a turn-level critic (ST-PPO).

`ppo` follows LMRL-Gym's PPO (Abdulhai et al. 2023, `ppo/base_interface.py`): the MDP step is
one action token.

  value        V(s_t) = ValueHead(h_t), h_t the policy hidden state that predicts action
               token t (`policy.evaluate(...).hidden`). The head is its own parameter tree
               "value" with its own optimizer; the value loss does not reach the policy trunk
               (the head reads `stop_gradient(h)`) unless `shared_trunk`.
  reward       r_t = R_k·[t is the last action token of turn k] − β·(log π_old − log π_ref)(y_t)
               on every action token; π_old is the sampler (`batch.behaviour_logprobs`), π_ref
               the frozen initial policy (`state.frozen["reference"]`), β = `kl_coef`.
  advantage    GAE over the action tokens only (`advantages.gae` with the action mask skips the
               environment tokens): δ_t = r_t + γ(1 − d_t)V(s_t') − V(s_t), t' the next action
               token of the row; d_t is the episode's terminal flag on its last action token.
               Returns R_t = Â_t + V(s_t); then global whitening of Â over the action tokens.
  loss         clipped PPO surrogate with ρ = π_θ / π_old (`losses.ppo_clip_loss`) + value_coef ·
               clipped value loss (`losses.clipped_value_loss`) − entropy_coef · entropy.

`turn_ppo` makes the MDP step one agent turn (Turn-PPO / ST-PPO, Li et al. 2025):

  value        V(s_k) read at the first action token of turn k: its hidden state is the one at
               the position before that token, i.e. the decoder's state after the turn's
               observation and assistant prefix and BEFORE any token of turn k's action.
  reward       r_k = R_k − β·Σ_{t∈turn k}(log π_old − log π_ref)(y_t).
  advantage    turn-level GAE (`advantages.turn_level_gae` over rewards [B, K], dones,
               turn_mask), broadcast to each turn's action tokens; then the same token-level
               whitening as `ppo`. Returns R_k = Â_k + V(s_k) train the critic on valid turns.
  loss         ST-PPO's turn-level ratio w_k = geometric mean of the token ratios of turn k
               (`losses.turn_ppo_loss`) + the clipped value loss on turns − entropy bonus.

One `update` does everything for one fresh rollout batch: the reference log-probs, the value
estimates and advantages once (with the parameters at the start of the update), then `epochs`
passes over `minibatches` equal slices of the rows (shuffled per epoch when `minibatches` > 1),
each slice one step of the policy optimizer and one of the value optimizer. `state.step`
counts updates; the `<name>/optimizer_steps` metric is epochs × minibatches.

Deviations from LMRL-Gym: the value head has its own parameter tree and optimizer and, by
default, does not train the trunk (theirs shares the trunk); the KL coefficient is fixed
(no adaptive controller); no BC term. A row that ends without a terminal (turn limit,
context cut) bootstraps from 0: the environment's last observation is not in the batch.

Config (`config.algorithm`): the knobs of `Defaults` below; `value_*` are the value head's
optimizer, each falling back to the policy optimizer's key when None.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from agentrl import advantages, losses, policy, sources, turns
from agentrl.algorithms import defaults
from agentrl.algorithms.base import (Algorithm, Models, Term, TrainState, apply_gradients,
                                     epochs_scan, jit_update, objective_and_grad, optimizer,
                                     reduce_metrics, term)
from agentrl.algorithms.defaults import knob
from agentrl.models import heads
from agentrl.models.decoder import DecoderConfig
from agentrl.types import TrajectoryBatch

Array = jax.Array

# ----------------------------------------------------------------------------- pure helpers


def shaped_token_rewards(rewards: Array, turn_index: Array, turn_end: Array, action_mask: Array,
                         behaviour_logprobs: Array, ref_logprobs: Array, *,
                         kl_coef: float) -> Array:
  """Token rewards of LMRL-Gym's PPO: the turn reward on the turn's last action token, minus
  the per-token KL penalty kl_coef·(log π_old − log π_ref) on every action token.

  Args:
    rewards: [B, K] reward after each agent turn.
    turn_index, turn_end, action_mask: the batch's token arrays [B, T].
    behaviour_logprobs, ref_logprobs: [B, T] log π_old and log π_ref of the taken tokens.
    kl_coef: β.

  Returns:
    float32[B, T], 0 off the action tokens.
  """
  mask = action_mask.astype(bool)
  placed = turns.turns_to_tokens(rewards.astype(jnp.float32), turn_index,
                                 mask & turn_end.astype(bool))
  kl = jnp.where(mask, behaviour_logprobs - ref_logprobs, 0.0)
  return jnp.where(mask, placed - kl_coef * kl, 0.0)


def token_dones(dones: Array, turn_index: Array, turn_end: Array, action_mask: Array) -> Array:
  """The turn's terminal flag on its last action token: bool[B, T]."""
  end = action_mask.astype(bool) & turn_end.astype(bool)
  return turns.turns_to_tokens(dones.astype(jnp.float32), turn_index, end) > 0


# ppo's names for the turn indexing of `agentrl.turns` (V(s_k) is read at the turn's first
# action token: the hidden state there is the one before turn k's action).
turn_starts = turns.turn_starts
turn_values = turns.turn_start_values
turn_sums = turns.turn_sums


# ----------------------------------------------------------------------------- the algorithm


@dataclasses.dataclass(frozen=True)
class ActorCritic(defaults.Optimizer,
                  defaults.prefixed_optimizer("value_", "Value head", fallback=True)):
  """The knobs of `epochs_update`, PPO's loop shared with HiPER."""

  gamma: float = knob(1.0, "Discount (per action token for ppo, per turn for turn_ppo, HiPER).")
  kl_coef: float = knob(0.001, "β of the KL penalty against the reference policy.")
  clip_eps: float = knob(0.2, "ε of the ratio clip.")
  value_clip_eps: float = knob(0.2, "ε of the value clip.")
  value_coef: float = knob(1.0, "Weight of the value loss.")
  entropy_coef: float = knob(0.0, "Weight of the entropy bonus.")
  epochs: int = knob(4, "Optimisation passes over each rollout batch.")
  minibatches: int = knob(1, "Row slices per pass, one optimizer step each.")
  micro_batch_size: int = knob(0, "Rows per gradient micro-batch, summed exactly (0: all).")
  shuffle: bool = knob(True, "Permute the rows each epoch (minibatches > 1).")
  whiten: bool = knob(True, "Advantage whitening (ppo: over the action tokens; HiPER: per head).")
  shared_trunk: bool = knob(False, "Let the value loss train the policy trunk.")
  value_hidden_dims: tuple = knob((), "Hidden layers of the value head(s) (): linear.")


@dataclasses.dataclass(frozen=True)
class Defaults(ActorCritic):
  """PPO's and Turn-PPO's knobs (LMRL-Gym's PPO defaults where it has them)."""

  lam: float = knob(0.95, "GAE λ.")
  token_gradient: bool = knob(False, "turn_ppo: GSPO-style per-token gradient of the turn ratio.")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings(Defaults):
  """The knobs of one PPO / Turn-PPO instance with its modules."""

  policy_config: DecoderConfig
  value_head: heads.ValueHead
  turn_level: bool = False
  temperature: float = 1.0


def settings(config, models: Models, *, turn_level: bool = False) -> Settings:
  """`config`'s knobs (`Defaults`) with the policy's modules."""
  name = "turn_ppo" if turn_level else "ppo"
  h = defaults.read(Defaults, config, name)
  s = Settings(**defaults.values(h), policy_config=models.policy_config,
               value_head=heads.ValueHead(hidden_dims=tuple(h.value_hidden_dims)),
               turn_level=turn_level, temperature=float(models.sampling.temperature or 1.0))
  if s.epochs < 1 or s.minibatches < 1:
    raise ValueError(f"{name}: epochs={s.epochs} and minibatches={s.minibatches} must be >= 1")
  return s


def _evaluate(params, s: Settings, data) -> policy.PolicyOutput:
  return policy.evaluate(params, s.policy_config, data["tokens"], data["positions"],
                         data["attention_mask"], temperature=s.temperature)


def _action_mask(data) -> Array:
  return data["action_mask"].astype(bool) & data["attention_mask"].astype(bool)


def prepare(policy_params, value_params, ref_params, batch: TrajectoryBatch, s: Settings
            ) -> tuple[dict[str, Array], dict[str, Array]]:
  """The fixed targets of one update: per-row arrays for the minibatches, and metrics.

  Returns `(data, metrics)`; `data` holds the batch fields the loss reads plus `advantages`
  [B, T], `returns` and `old_values` ([B, T] for `ppo`, [B, K] for `turn_ppo`).
  """
  data = {k: getattr(batch, k) for k in ("tokens", "positions", "attention_mask", "action_mask",
                                         "turn_index", "behaviour_logprobs", "turn_mask")}
  mask = _action_mask(data)
  out = _evaluate(policy_params, s, data)
  ref = _evaluate(ref_params, s, data).logprobs
  values_t = s.value_head.apply({"params": value_params}, out.hidden)
  kl_t = jnp.where(mask, batch.behaviour_logprobs - ref, 0.0)
  num_turns = batch.rewards.shape[1]
  if s.turn_level:
    old_values = turn_values(values_t, batch.turn_index, mask, num_turns)
    turn_rewards = jnp.where(
        batch.turn_mask, batch.rewards - s.kl_coef * turn_sums(kl_t, batch.turn_index, mask,
                                                                num_turns), 0.0)
    adv, _, returns = advantages.turn_level_gae(
        turn_rewards, old_values, batch.dones, batch.turn_mask, batch.turn_index, mask,
        gamma=s.gamma, lambda_=s.lam)
    value_mask = batch.turn_mask.astype(bool)
  else:
    old_values = jnp.where(mask, values_t, 0.0)
    rewards_t = shaped_token_rewards(batch.rewards, batch.turn_index, batch.turn_end, mask,
                                     batch.behaviour_logprobs, ref, kl_coef=s.kl_coef)
    dones_t = token_dones(batch.dones, batch.turn_index, batch.turn_end, mask)
    adv, returns = advantages.gae(rewards_t, old_values, dones_t, mask, gamma=s.gamma,
                                  lambda_=s.lam)
    value_mask = mask
  raw_adv = adv
  if s.whiten:
    adv = advantages.whiten(adv, mask)
  data.update(advantages=adv, returns=returns, old_values=old_values)
  n = jnp.maximum(jnp.sum(mask), 1).astype(jnp.float32)
  nv = jnp.maximum(jnp.sum(value_mask), 1).astype(jnp.float32)
  metrics = {
      "kl_ref": jnp.sum(kl_t) / n,
      "advantage_mean": jnp.sum(jnp.where(mask, raw_adv, 0.0)) / n,
      "advantage_std": jnp.sqrt(jnp.sum(jnp.where(mask, raw_adv, 0.0) ** 2) / n),
      "old_value_mean": jnp.sum(jnp.where(value_mask, old_values, 0.0)) / nv,
      "episode_return": jnp.mean(jnp.sum(jnp.where(batch.turn_mask, batch.rewards, 0.0), -1)),
      "action_tokens": jnp.sum(mask).astype(jnp.float32),
  }
  return data, metrics


def minibatch_loss(policy_params, value_params, data: dict[str, Array], s: Settings
                   ) -> tuple[dict[str, Term], dict[str, Array]]:
  """The objective of one minibatch: policy surrogate + value_coef·value loss − entropy bonus.

  Returns `(terms, metrics)`: the `Term`s "pg", "value" and "entropy" (see
  `base.objective_and_grad`) and the minibatch's metrics.
  """
  mask = _action_mask(data)
  out = _evaluate(policy_params, s, data)
  hidden = out.hidden if s.shared_trunk else jax.lax.stop_gradient(out.hidden)
  values_t = s.value_head.apply({"params": value_params}, hidden)
  if s.turn_level:
    num_turns = data["turn_mask"].shape[1]
    values = turn_values(values_t, data["turn_index"], mask, num_turns)
    value_mask = data["turn_mask"].astype(bool)
    pg, pg_metrics = losses.turn_ppo_loss(
        out.logprobs, data["behaviour_logprobs"], data["advantages"], data["turn_index"], mask,
        num_turns=num_turns, clip_low=s.clip_eps, token_gradient=s.token_gradient)
  else:
    values, value_mask = values_t, mask
    pg, pg_metrics = losses.ppo_clip_loss(out.logprobs, data["behaviour_logprobs"],
                                          data["advantages"], mask, clip_low=s.clip_eps)
  vf, vf_metrics = losses.clipped_value_loss(values, data["old_values"], data["returns"],
                                             value_mask, clip=s.value_clip_eps)
  neg_entropy = losses.aggregate(-out.entropy, mask, mode="token-mean")
  terms = {"pg": term(1.0, (pg, pg_metrics)), "value": term(s.value_coef, (vf, vf_metrics)),
           "entropy": Term(s.entropy_coef, neg_entropy[0], neg_entropy[2])}
  metrics = {"pg_loss": pg, "value_loss": vf, "entropy": -neg_entropy[0],
             **{k: pg_metrics[k] for k in ("approx_kl", "clip_fraction", "ratio_mean")},
             **{k: vf_metrics[k] for k in ("vf_clip_fraction", "value_mean", "return_mean")}}
  if "turn_ratio_mean" in pg_metrics:
    metrics["turn_ratio_mean"] = pg_metrics["turn_ratio_mean"]
  return terms, jax.lax.stop_gradient(metrics)


def epochs_update(s, policy_tx, value_tx, *, name: str, prepare_fn: Callable,
                  loss_fn: Callable) -> Callable:
  """The update of an actor-critic with its own value optimizer: `prepare_fn` once on the
  batch (advantages and targets under the current parameters), then `s.epochs` passes of
  `s.minibatches` row slices (shuffled when `s.shuffle`; `base.epochs_scan`), each a gradient
  step of `loss_fn` on the policy and on the value parameters, accumulated over
  micro-batches of `s.micro_batch_size` rows when set (PPO, Turn-PPO, HiPER).

  `prepare_fn(policy_params, value_params, reference_params, batch, s)` -> (data, metrics);
  `loss_fn(policy_params, value_params, data, s)` -> (terms, metrics) with "pg" and the value
  losses ("value", or one "value_<head>" each) among its `Term`s. The reference parameters are `state.frozen["reference"]`, or
  None where the state has none.
  """
  loss_name = f"{name}_loss"
  grad_fn = objective_and_grad(lambda p, v, mb: loss_fn(p, v, mb, s), argnums=(0, 1),
                               micro_batch_size=s.micro_batch_size)

  def opt_step(carry, mb):
    params, opt_states = carry
    (loss, terms, metrics), (g_policy, g_value) = grad_fn(params["policy"], params["value"],
                                                          mb)
    new_policy, policy_opt, guard_p = apply_gradients(
        policy_tx, params["policy"], opt_states["policy"], g_policy, loss, name=loss_name)
    value_loss = sum(v for k, v in terms.items() if k.startswith("value"))
    new_value, value_opt, guard_v = apply_gradients(
        value_tx, params["value"], opt_states["value"], g_value, value_loss,
        name="value_loss")
    carry = ({**params, "policy": new_policy, "value": new_value},
             {**opt_states, "policy": policy_opt, "value": value_opt})
    return carry, {**metrics, "loss": loss, "pg_loss": terms["pg"], "value_loss": value_loss,
                   **guard_p, **guard_v}

  def update(state: TrainState, batch: TrajectoryBatch, rng):
    data, prep_metrics = prepare_fn(state.params["policy"], state.params["value"],
                                    state.frozen.get("reference"), batch, s)
    data = jax.lax.stop_gradient(data)
    (params, opt_states), steps = epochs_scan(
        opt_step, (state.params, state.opt_states), data, rng, epochs=s.epochs,
        minibatches=s.minibatches, shuffle=s.shuffle, name=name)
    metrics = reduce_metrics(steps, name)
    # Loss metrics of the first minibatch step (before any update on this batch).
    metrics.update({f"{name}/first_{k}": steps[k][0, 0] for k in ("pg_loss", "value_loss")})
    metrics.update({f"{name}/{k}": v for k, v in prep_metrics.items()})
    metrics[f"{name}/optimizer_steps"] = jnp.asarray(s.epochs * s.minibatches, jnp.float32)
    state = state.replace(step=state.step + 1, params=params, opt_states=opt_states)
    return state, metrics

  return update


def make(config, models: Models, *, turn_level: bool = False, name: str = "ppo") -> Algorithm:
  s = settings(config, models, turn_level=turn_level)
  policy_tx, value_tx = optimizer(s), optimizer(s, "value_")

  def init(rng):
    params = jax.tree.map(jnp.copy, models.policy_params)  # The update donates it.
    value = s.value_head.init(rng, jnp.zeros((1, 1, s.policy_config.hidden_size)))["params"]
    return TrainState(
        step=jnp.zeros((), jnp.int32), params={"policy": params, "value": value},
        opt_states={"policy": policy_tx.init(params), "value": value_tx.init(value)},
        frozen={"reference": jax.tree.map(jnp.copy, models.policy_params)})

  update = epochs_update(s, policy_tx, value_tx, name=name, prepare_fn=prepare,
                         loss_fn=minibatch_loss)
  return Algorithm(name=name, source=sources.Rollout(), init=init, update=jit_update(update))
