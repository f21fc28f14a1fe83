"""Self-play policy gradient for two-player games with role-conditioned advantages (SPIRAL).

One shared policy plays every role (the role is in its instructions). The batch comes from
`rollout.rollout` on a multi-role environment (`agentrl.envs` kuhn_poker, tictactoe): each row is
one role's view of one game, `batch.role` is constant along a row, and the rows of one game share
a `group_id`. A row's return R_p = Σ_k r_k over its valid turns is that player's terminal reward
(±1, draw 0 in the games here).

Role-conditioned advantage estimation (SPIRAL, Liu et al. 2025, arXiv 2506.24119, RAE;
`credit.spiral_rae_advantages`):

  A_p(τ) = R_p(τ) − b_p,   then   b_p ← α b_p + (1 − α) R_p(τ),

one exponential-moving-average baseline per role, read before the row's own update and updated
row by row in batch order (the rows of a rollout batch are ordered (game, role)). The baselines
live in `state.frozen["role_baselines"]` (float32[num_roles], initialised to 0 as in the official
code) and are updated inside the jitted update. One algorithm instance trains one game, so the
paper's (game, role) key reduces to the role. `role_conditioned=False` is the ablation with one
plain baseline shared by all roles (slot 0 of the same array, the same EMA): in a zero-sum game it
stays near 0, so the update is close to vanilla REINFORCE and cannot remove a role's systematic
advantage (e.g. the first mover's).

Every action token of the player's turns gets A (γ = 1, as the paper). The loss is the clipped
surrogate against `batch.behaviour_logprobs` (`losses.ppo_clip_loss`) with SPIRAL's aggregation by
default: token sum over a constant length (`seq-mean-token-sum-norm`, the batch width T unless
`max_tokens` is set). The optimisation loop (epochs, minibatches, optional KL to a frozen
reference, entropy bonus) is `group.policy_gradient_update`. Deviations: SPIRAL drops turns with
A = 0 (`filter_zero_adv`); with a sum-over-constant aggregation their tokens add nothing to the loss
anyway, and they are kept. SPIRAL runs 2 epochs; the default here is 1 (set `epochs`).

Config (`config.algorithm`): the knobs of `Defaults` below (the optimisation ones are
`group.PolicyGradient`'s).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from agentrl import advantages, credit, losses, sources
from agentrl.algorithms import defaults
from agentrl.algorithms.base import Algorithm, Models, TrainState, jit_update, optimizer
from agentrl.algorithms.defaults import knob
from agentrl.algorithms.group import (PolicyGradient, episode_returns, init_state,
                                      policy_gradient_update)
from agentrl.types import TrajectoryBatch

Array = jax.Array


def role_advantages(rewards: Array, turn_mask: Array, row_role: Array, baselines: Array, *,
                    alpha: float = 0.95, role_conditioned: bool = True
                    ) -> tuple[Array, Array, Array]:
  """SPIRAL's RAE on a batch of player rows.

  Args:
    rewards: [B, K] rewards of each row's turns.
    turn_mask: bool[B, K] valid turns; a row without one is padding (no read, no update).
    row_role: int[B] the row's role.
    baselines: float[N] EMA baselines (N ≥ number of roles).
    alpha: EMA decay α.
    role_conditioned: per-role baselines (True) or baseline slot 0 for every row.

  Returns:
    (turn advantages [B, K] with A on every valid turn of the row, new baselines [N],
    row returns [B]).
  """
  turn_mask = turn_mask.astype(bool)
  returns = episode_returns(rewards, turn_mask)
  n = baselines.shape[0]
  slot = jnp.clip(row_role, 0, n - 1) if role_conditioned else jnp.zeros_like(row_role)
  adv, new = credit.spiral_rae_advantages(returns, slot, turn_mask.any(axis=1), baselines,
                                          alpha=alpha)
  return jnp.where(turn_mask, adv[:, None], 0.0), new, returns


@dataclasses.dataclass(frozen=True)
class Defaults(PolicyGradient):
  """Self-play's knobs (SPIRAL's defaults)."""

  alpha: float = knob(0.95, "EMA decay α of the role baselines.")
  role_conditioned: bool = knob(True, "One baseline per role (RAE); False: one shared.")
  num_roles: int = knob(2, "Size of the baseline array (roles are clipped into range).")
  aggregation: str = knob("seq-mean-token-sum-norm", "Loss aggregation (losses.AGGREGATIONS).")


def make(config, models: Models, *, name: str = "self_play") -> Algorithm:
  """Builds the self-play algorithm (see the module docstring for the config keys)."""
  h = defaults.read(Defaults, config, name)
  alpha, role_conditioned, num_roles = h.alpha, h.role_conditioned, h.num_roles
  aggregation = h.aggregation
  if aggregation not in losses.AGGREGATIONS:
    raise ValueError(f"{name}: aggregation={aggregation!r}; valid: "
                     f"{', '.join(losses.AGGREGATIONS)}.")
  if num_roles < 1:
    raise ValueError(f"{name}: num_roles={num_roles} must be >= 1.")
  tx = optimizer(h)
  pg_step = policy_gradient_update(h, models, tx, name=name, aggregation=aggregation)

  def init(rng):
    del rng
    return init_state(h, models, tx,
                      frozen={"role_baselines": jnp.zeros((num_roles,), jnp.float32)})

  def update(state: TrainState, batch: TrajectoryBatch, rng):
    turn_adv, baselines, returns = role_advantages(
        batch.rewards, batch.turn_mask, batch.role[:, 0], state.frozen["role_baselines"],
        alpha=alpha, role_conditioned=role_conditioned)
    token_adv = advantages.turns_to_tokens(turn_adv, batch.turn_index, batch.action_mask)
    params, opt_state, metrics = pg_step(state, batch, token_adv, rng)
    valid = batch.turn_mask.astype(bool).any(axis=1)
    n = jnp.maximum(valid.sum(), 1)
    row_adv = turn_adv.sum(axis=1) / jnp.maximum(batch.turn_mask.sum(axis=1), 1)
    out = {**{f"{name}/{k}": v for k, v in metrics.items() if "/" not in k},
           **{k: v for k, v in metrics.items() if "/" in k},
           f"{name}/adv_mean": jnp.sum(jnp.where(valid, row_adv, 0.0)) / n,
           f"{name}/return_mean": jnp.sum(jnp.where(valid, returns, 0.0)) / n}
    for r in range(num_roles):
      out[f"{name}/baseline_{r}"] = baselines[r]
    state = state.replace(step=state.step + 1, params={**state.params, "policy": params},
                          opt_states={**state.opt_states, "policy": opt_state},
                          frozen={**state.frozen, "role_baselines": baselines})
    return state, out

  return Algorithm(name=name, source=sources.Rollout(), init=init, update=jit_update(update))
