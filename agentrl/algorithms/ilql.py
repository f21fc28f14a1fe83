"""ILQL (Snell et al., 2023) as in LMRL-Gym: token-level Q/V heads on the BC policy's trunk.

Offline: the batch is a `TrajectoryBatch` of dataset episodes. The policy LM is the behaviour
policy π_β (usually behaviour-cloned); value heads read its hidden states
(`policy.evaluate(...).hidden`, the state h_t that predicts token t):

  Q_1, Q_2   MLP d → d → |V| "Q-logits": Q_k(s_t, a) for every next token a
  Q̄_1, Q̄_2   target copies, Polyak-averaged after every step (optax.incremental_update, `tau`)
  V          MLP d → d → 1

At every action token t (a_t = tokens[t], taken with `value_losses.ilql_loss`):

  r_t   = the turn's reward on the last action token of each turn (`turn_end`), 0 elsewhere
  y_t   = r_t + γ·(1 − d_t)·V(s_t'),  t' the next action token of the row (across the
          observation tokens that follow a turn), γ per action token (LMRL-Gym's choice)
  L     = Σ_k ½(Q_k(s_t, a_t) − y_t)² + L₂^τ(min_k Q̄_k(s_t, a_t) − V(s_t))
          + cql_weight · Σ_k CE(Q_k-logits, a_t)

The last action token of a row has no next state in the batch: it is not bootstrapped (a
true terminal, or a truncated episode treated as ended, as LMRL-Gym's data does).

The trunk. With `train_trunk=False` (default) the heads see `stop_gradient(hidden)`: they are
trained on a frozen BC trunk and `params["policy"]` stays π_β. LMRL-Gym instead fine-tunes a
separate copy of the base LM under the value loss (and decodes with two models and two KV
caches); here `train_trunk=True` trains the shared policy trunk with the value loss *plus*
`bc_weight` × the BC loss on the same batch, so that the LM head still models π_β and Q-guided
decoding (`value_decoding.guided_generate`) remains one decoder forward per token.

Decoding: `value_decoding.GuidedPolicy(params["policy"], params["value"], ..., beta)` samples
from π_β·exp(β·(min_k Q_k − V)) (LMRL-Gym: β = 4 dialogue, 8 maze, 16 20Q).

State: params {"policy", "value"}, opt_states {"value"} (+ {"policy"} when training the
trunk), frozen {"target_value"} (the whole head tree; its V part is unused).

Config (`config.algorithm`): the knobs of `Defaults` below (shared with `mc_returns`, whose
own defaults differ; `tau` and `expectile` are ILQL's only).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from agentrl import losses, policy, sources, value_losses
from agentrl.algorithms import defaults, value_decoding as vd
from agentrl.algorithms.base import (Algorithm, Models, TrainState, apply_gradients,
                                     epochs_scan, jit_update, objective_and_grad, optimizer,
                                     reduce_metrics, term)
from agentrl.algorithms.defaults import knob
from agentrl.types import TrajectoryBatch

_sg = jax.lax.stop_gradient

# (q [num_q, B, T, |V|], v [B, T], target_q_taken [num_q, B, T] or None, batch) -> (loss, metrics)
TokenLoss = Callable[..., tuple[jax.Array, dict]]


@dataclasses.dataclass(frozen=True)
class Defaults(defaults.Optimizer):
  """ILQL's knobs (LMRL-Gym's defaults); the optimizer trains the heads (and the trunk)."""

  batch_size: int | None = knob(None, "Episodes per update (required by the data source).")
  gamma: float = knob(0.99, "Discount per action token.")
  expectile: float = knob(0.7, "ILQL: τ of the V expectile regression.")
  cql_weight: float = knob(0.01, "Weight of the CE (CQL-style) term on the Q-logits.")
  tau: float = knob(0.005, "ILQL: Polyak rate of the target heads, per optimizer step.")
  head_dim: int | None = knob(None, "Width of the heads' hidden layer; None: the policy's.")
  train_trunk: bool = knob(False, "Train the policy trunk by the value loss.")
  bc_weight: float = knob(1.0, "BC loss weight on the trunk when train_trunk.")
  epochs: int = knob(1, "Passes over each batch.")
  minibatches: int = knob(1, "Row slices per pass, one optimizer step each.")
  micro_batch_size: int = knob(0, "Rows per gradient micro-batch, summed exactly (0: all).")
  beta: float = knob(4.0, "Q-guidance strength of the acting (evaluation) policy.")


def ilql_terms(q: jax.Array, v: jax.Array, target_q_taken: jax.Array, batch: TrajectoryBatch, *,
               gamma: float, expectile: float, cql_weight: float):
  """`value_losses.ilql_loss` on a batch: token rewards, next-action-token bootstrap, masks.

  q [2, B, T, |V|] Q-logits at each token's state, v [B, T], target_q_taken [2, B, T] target
  Q̄_k(s_t, a_t) at the taken tokens.
  """
  mask = vd.action_token_mask(batch)
  rewards, dones = vd.token_rewards(batch)
  nxt, has_next = vd.next_action_index(mask)
  next_v = jnp.where(has_next, jnp.take_along_axis(v, nxt, axis=1), 0.0)
  return value_losses.ilql_loss(q[0], q[1], batch.tokens, v, next_v, target_q_taken[0],
                                target_q_taken[1], rewards, dones, mask, gamma=gamma,
                                expectile=expectile, cql_weight=cql_weight)


def make_token_value(h: Defaults, models: Models, *, name: str, heads: vd.TokenValueHeads,
                     loss_terms: TokenLoss, use_target: bool) -> Algorithm:
  """The shared update of ILQL and MC returns: token-level heads on the policy's hidden states.

  `loss_terms(q, v, target_q_taken, batch)` gives the value loss (target_q_taken is None
  without a target network).
  """
  cfg = models.policy_config
  tx = optimizer(h)
  tau, train_trunk, bc_weight = h.tau, h.train_trunk, h.bc_weight
  epochs, minibatches, beta = h.epochs, h.minibatches, h.beta

  def init(rng):
    policy_params = jax.tree.map(jnp.copy, models.policy_params)  # The update donates it.
    value = vd.init_heads(heads, rng, cfg.hidden_size)
    params = {"policy": policy_params, "value": value}
    opt_states = {"value": tx.init(value)}
    if train_trunk:
      opt_states["policy"] = tx.init(policy_params)
    frozen = {"target_value": jax.tree.map(jnp.copy, value)} if use_target else {}
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_states=opt_states,
                      frozen=frozen)

  def loss_fn(trained, policy_params, target, batch: TrajectoryBatch):
    policy_params = trained.get("policy", policy_params)
    out = policy.evaluate(policy_params, cfg, batch.tokens, batch.positions,
                          batch.attention_mask)
    hidden = out.hidden if train_trunk else _sg(out.hidden)
    q, v = heads.apply({"params": trained["value"]}, hidden)
    target_taken = None
    if use_target:
      tq, _ = heads.apply({"params": target}, _sg(hidden))
      target_taken = _sg(vd.taken(tq, batch.tokens))
    loss, metrics = loss_terms(q, v, target_taken, batch)
    terms = {"value": term(1.0, (loss, metrics))}
    if train_trunk:
      bc, bc_metrics = losses.bc_loss(out.logprobs, batch.action_mask & batch.attention_mask,
                                      max_tokens=batch.tokens.shape[1])
      metrics = {**metrics, "bc_loss": bc}
      terms["bc"] = term(bc_weight, (bc, bc_metrics))
    return terms, metrics

  grad_fn = objective_and_grad(loss_fn, micro_batch_size=h.micro_batch_size)

  def step(state: TrainState, batch: TrajectoryBatch):
    trained = {"value": state.params["value"]}
    if train_trunk:
      trained["policy"] = state.params["policy"]
    target = state.frozen.get("target_value")
    (loss, _, metrics), grads = grad_fn(trained, state.params["policy"], target, batch)
    params, opt_states = dict(state.params), dict(state.opt_states)
    params["value"], opt_states["value"], guard = apply_gradients(
        tx, state.params["value"], state.opt_states["value"], grads["value"], loss,
        name=f"{name}_loss")
    if train_trunk:
      params["policy"], opt_states["policy"], guard_trunk = apply_gradients(
          tx, state.params["policy"], state.opt_states["policy"], grads["policy"], loss,
          name=f"{name}_trunk")
      guard = {**guard, **guard_trunk}
    frozen = dict(state.frozen)
    if use_target:
      frozen["target_value"] = optax.incremental_update(params["value"], target, tau)
    state = state.replace(step=state.step + 1, params=params, opt_states=opt_states,
                          frozen=frozen)
    return state, {**{f"{name}/{k}": v for k, v in metrics.items()}, **guard}

  def update(state: TrainState, batch: TrajectoryBatch, rng):
    # In order (no shuffle): each step also moves the Polyak target.
    state, steps = epochs_scan(step, state, batch, rng, epochs=epochs, minibatches=minibatches,
                               shuffle=False, name=name)
    return state, reduce_metrics(steps)

  def acting_policy(state: TrainState, lm_policy):
    """Q-guided decoding with the current heads (`value_decoding.guided_generate`)."""
    value_params = state.params["value"]

    def generate(params, cache, tokens, mask, rng, *, config, sampling, active):
      return vd.guided_generate(params, value_params, cache, tokens, mask, rng, config=config,
                                sampling=sampling, heads=heads, beta=beta, active=active)

    return dataclasses.replace(lm_policy, params=state.params["policy"], generate_fn=generate)

  return Algorithm(name=name, source=sources.Offline(h.batch_size), init=init,
                   update=jit_update(update),
                   acting_policy=acting_policy)


def make(config, models: Models, *, name: str = "ilql") -> Algorithm:
  h = defaults.read(Defaults, config, name)
  heads = value_heads(h, models)
  gamma, expectile, cql_weight = h.gamma, h.expectile, h.cql_weight

  def loss_terms(q, v, target_taken, batch):
    return ilql_terms(q, v, target_taken, batch, gamma=gamma, expectile=expectile,
                      cql_weight=cql_weight)

  return make_token_value(h, models, name=name, heads=heads, loss_terms=loss_terms,
                          use_target=True)


def value_heads(config, models: Models) -> vd.TokenValueHeads:
  """The heads module of `make` (for `value_decoding.GuidedPolicy`); `config` a `Defaults` or
  a config block."""
  h = config if isinstance(config, Defaults) else defaults.read(Defaults, config, "ilql")
  cfg = models.policy_config
  return vd.TokenValueHeads(cfg.vocab_size, h.head_dim or cfg.hidden_size,
                            num_q=2, with_v=True)
