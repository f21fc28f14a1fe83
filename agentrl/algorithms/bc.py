"""Behaviour cloning: maximise the log-likelihood of the demonstrated action tokens.

LMRL-Gym's BC baseline (and the warm start of every online method): the negative
log-likelihood of the tokens the agent produced in the data, observation tokens excluded
(`losses.bc_loss` over `action_mask`). Offline: the batch is a `TrajectoryBatch` of
dataset episodes.

Filtered BC (ArCHer's and LMRL-Gym's baseline) is the same loss on the best trajectories only:
`filtered_bc` online (`sources.Filtered`: the top `top_fraction` by return of every trajectory
collected so far, re-selected each iteration), `filtered_bc_offline` on the top `top_fraction`
of the offline dataset's episodes (`sources.Offline`'s `episode_filter`).

Config (`config.algorithm`): the knobs of `Defaults` below.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from agentrl import losses, policy, sources
from agentrl.algorithms import defaults
from agentrl.algorithms.base import (Algorithm, Models, TrainState, apply_gradients, jit_update,
                                     objective_and_grad, optimizer, term)
from agentrl.algorithms.defaults import knob
from agentrl.types import TrajectoryBatch


@dataclasses.dataclass(frozen=True)
class Defaults(defaults.Optimizer):
  """Behaviour cloning's knobs (`bc`, `filtered_bc`, `filtered_bc_offline`)."""

  batch_size: int | None = knob(None, "Episodes per update (required by the data source).")
  top_fraction: float = knob(0.1, "Filtered BC: share of trajectories kept, best by return.")
  aggregation: str = knob("token-mean", "How token losses reduce (losses.AGGREGATIONS).")
  micro_batch_size: int = knob(0, "Rows per gradient micro-batch, summed exactly (0: all).")


def make(config, models: Models, *, online: bool = False, name: str = "bc",
         filtered: bool = False) -> Algorithm:
  h = defaults.read(Defaults, config, name)
  tx = optimizer(h)
  top_fraction, aggregation, micro_batch_size = h.top_fraction, h.aggregation, h.micro_batch_size

  def init(rng):
    del rng
    params = jax.tree.map(jax.numpy.copy, models.policy_params)  # The update donates it.
    return TrainState(step=jax.numpy.zeros((), jax.numpy.int32), params={"policy": params},
                      opt_states={"policy": tx.init(params)}, frozen={})

  def loss_fn(params, batch: TrajectoryBatch):
    out = policy.evaluate(params, models.policy_config, batch.tokens, batch.positions,
                          batch.attention_mask)
    loss, metrics = losses.bc_loss(out.logprobs, batch.action_mask & batch.attention_mask,
                                   aggregation=aggregation, max_tokens=batch.tokens.shape[1])
    return {"bc": term(1.0, (loss, metrics))}, metrics

  grad_fn = objective_and_grad(loss_fn, micro_batch_size=micro_batch_size)

  def update(state: TrainState, batch: TrajectoryBatch, rng):
    del rng
    (loss, _, metrics), grads = grad_fn(state.params["policy"], batch)
    params, opt_state, guard = apply_gradients(tx, state.params["policy"],
                                               state.opt_states["policy"], grads, loss,
                                               name="bc_loss")
    state = state.replace(step=state.step + 1, params={**state.params, "policy": params},
                          opt_states={**state.opt_states, "policy": opt_state})
    return state, {**{f"bc/{k}": v for k, v in metrics.items()}, **guard}

  def episode_filter(episodes):
    """The best `top_fraction` of `episodes` by return."""
    keep = sources.top_fraction_mask([e.episode_return for e in episodes], top_fraction)
    return [e for e, k in zip(episodes, keep) if k]

  if online:
    source = sources.Filtered(h.batch_size, top_fraction)
  else:
    source = sources.Offline(h.batch_size, episode_filter if filtered else None)
  return Algorithm(name=name, source=source, init=init, update=jit_update(update))
