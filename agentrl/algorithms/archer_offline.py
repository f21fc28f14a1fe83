"""Offline ArCHer (`andreazanette/OfflineArcher`): utterance-level IQL critic + AWR actor.

Offline: the batch is a `TrajectoryBatch` of dataset episodes. Each agent turn k of a row is
one utterance-level transition (s_k, a_k, r_k, s_{k+1}, d_k). One update:

  critic, `critic_steps` times on the whole batch (double Q, double V, target critic):
    Q_j(s, a) ← r + γ(1 − d)·V̄_j(s')                  (`value_losses.iql_q_loss`, per head)
    V_j(s)    ← expectile_τ of Q̄_j(s, a_data)          (`value_losses.iql_value_loss`)
    then Polyak θ̄ ← (1 − tau)·θ̄ + tau·θ                (tau = 0.05 per critic step)
  actor, `actor_steps` times, after `warmup_updates` critic-only updates:
    A = min_j Q_j(s, a) − min_j V_j(s)                   (online critic, `archer_advantage`)
    L = −mean_turns exp(β·A) · Σ_h log π_θ(a^h | s, a^{<h})   (awr_actor_loss)

The critic's features. The official offline ArCHer critic is a RoBERTa encoder over the text
of the state and of the utterance (the online `archer` here also has its own encoder). This
module instead reads decoder hidden states of the policy LM at the utterance boundaries:
  state s_k          the hidden state before the turn's first action token (the whole
                     conversation up to the assistant prefix),
  state-action (s,a) the hidden state after the turn's last action token (`turn_end`) has
                     been read (at the following token; at the `turn_end` token itself when it
                     is the row's last),
with MLP heads (`heads.UtteranceQHead` on [s; (s,a)], `heads.UtteranceVHead` on s). By default
the features come from a frozen copy of the starting (BC) policy (`critic_trunk="frozen"`),
so they do not drift while the actor trains; `critic_trunk="policy"` reads the current
policy's hidden states instead (one forward less; stop-gradient either way).

The last turn of a row has no next state in the batch: it is not bootstrapped (a true
terminal, or a truncated episode treated as ended).

State: params {"policy", "critic"}, opt_states for both, frozen {"target_critic"} (+
{"critic_trunk"} with the frozen trunk).

Config (`config.algorithm`): the knobs of `Defaults` below.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from agentrl import policy, sources, value_losses
from agentrl.algorithms import defaults
from agentrl.algorithms.base import (Algorithm, Models, TrainState, apply_gradients, jit_update,
                                     objective_and_grad, optimizer, term)
from agentrl.algorithms.defaults import knob
from agentrl.models import heads
from agentrl.types import TrajectoryBatch

_sg = jax.lax.stop_gradient


class UtteranceCriticHeads(nn.Module):
  """Double Q on [state; state-action] features and double V on state features."""

  hidden_dims: tuple[int, ...] = ()

  def setup(self):
    self.q = heads.UtteranceQHead(self.hidden_dims, num_critics=2)
    self.v = heads.UtteranceVHead(self.hidden_dims, num_critics=2)

  def __call__(self, state, action):
    """(Q float32[2, ...], V float32[2, ...]) from features [..., E]."""
    return self.q(state, action), self.v(state)

  def value(self, state):
    return self.v(state)


def turn_features(hidden: jax.Array, batch: TrajectoryBatch) -> dict[str, jax.Array]:
  """Utterance-level transitions of a batch from decoder hidden states [B, T, E].

  Returns state / action / next_state [B, K, E] and reward, done, mask [B, K]: `mask` is a
  valid turn with action tokens; `done` is a true terminal or a turn with no next turn in
  the row (nothing to bootstrap from).
  """
  b, t = batch.tokens.shape
  k = batch.rewards.shape[1]
  in_turn = ((batch.turn_index[:, None, :] == jnp.arange(k)[None, :, None])
             & batch.action_mask[:, None, :] & batch.attention_mask[:, None, :])  # [B, K, T]
  has_action = jnp.any(in_turn, axis=-1)
  first = jnp.argmax(in_turn, axis=-1)
  end = jnp.argmax(in_turn & batch.turn_end[:, None, :], axis=-1)
  after = jnp.minimum(end + 1, t - 1)
  gather = lambda pos: jnp.take_along_axis(hidden, pos[..., None], axis=1)  # noqa: E731
  state, action = gather(first), gather(after)
  mask = batch.turn_mask & has_action
  next_state = jnp.concatenate([state[:, 1:], jnp.zeros_like(state[:, :1])], axis=1)
  has_next = jnp.concatenate([mask[:, 1:], jnp.zeros((b, 1), bool)], axis=1)
  return {"state": state, "action": action, "next_state": next_state,
          "reward": batch.rewards.astype(jnp.float32), "done": batch.dones | ~has_next,
          "mask": mask}


def critic_terms(critic: UtteranceCriticHeads, params, target, feats, *, gamma: float,
                 expectile: float):
  """IQL critic loss on `turn_features` output (flattened to N = B·K transitions)."""
  flat = lambda x: x.reshape((x.shape[0] * x.shape[1],) + x.shape[2:])  # noqa: E731
  f = {name: flat(value) for name, value in feats.items()}
  q, v = critic.apply({"params": params}, f["state"], f["action"])
  tq, _ = critic.apply({"params": target}, f["state"], f["action"])
  next_v = critic.apply({"params": target}, f["next_state"], method=UtteranceCriticHeads.value)
  q_loss, q_metrics = value_losses.iql_q_loss(q, f["reward"], f["done"], _sg(next_v), f["mask"],
                                              gamma=gamma)
  v_loss, v_metrics = value_losses.iql_value_loss(v, _sg(tq), f["mask"], expectile=expectile)
  metrics = {"q_loss": q_loss, "v_loss": v_loss, "q_mean": q_metrics["q_mean"],
             "target_q_mean": q_metrics["target_q_mean"], "v_mean": v_metrics["v_mean"]}
  return q_loss + v_loss, metrics


@dataclasses.dataclass(frozen=True)
class Defaults(defaults.Optimizer, defaults.prefixed_optimizer("critic_", "Critic")):
  """Offline ArCHer's knobs (OfflineArcher's launch script where it has them)."""

  batch_size: int | None = knob(None, "Episodes per update (required by the data source).")
  gamma: float = knob(0.99, "Utterance-level discount.")
  tau: float = knob(0.05, "Polyak rate of the target critic, per critic step.")
  expectile: float = knob(0.9, "τ of the V expectile regression.")
  inv_temp: float = knob(1.0, "β of the AWR weights exp(β·A).")
  max_weight: float | None = knob(None, "Clip of the AWR weights; None: none (OfflineArcher).")
  critic_steps: int = knob(1, "Critic optimizer steps per update on the whole batch.")
  actor_steps: int = knob(1, "Actor optimizer steps per update on the whole batch.")
  warmup_updates: int = knob(0, "Updates with the critic only.")
  critic_head_dims: tuple | None = knob(None, "Critic heads' hidden layers; None: 2 × hidden.")
  critic_trunk: str = knob("frozen", "Critic features: frozen (starting policy) or policy.")
  # The critic heads train on features computed once per update, so only the actor's
  # policy forward and backward pass is micro-batched.
  micro_batch_size: int = knob(0, "Actor rows per gradient micro-batch, summed exactly (0: all).")


def make(config, models: Models, *, name: str = "archer_offline") -> Algorithm:
  h = defaults.read(Defaults, config, name)
  cfg = models.policy_config
  actor_tx = optimizer(h)
  critic_tx = optimizer(h, "critic_")
  gamma, tau, expectile, max_weight = h.gamma, h.tau, h.expectile, h.max_weight
  temperature = 1.0 / h.inv_temp
  critic_steps, actor_steps, warmup = h.critic_steps, h.actor_steps, h.warmup_updates
  head_dims = h.critic_head_dims or (cfg.hidden_size, cfg.hidden_size)
  trunk_mode = h.critic_trunk
  if trunk_mode not in ("frozen", "policy"):
    raise ValueError(f"{name}: critic_trunk={trunk_mode!r}, expected 'frozen' or 'policy'.")
  critic = UtteranceCriticHeads(head_dims)

  def init(rng):
    pol = jax.tree.map(jnp.copy, models.policy_params)  # The update donates it.
    e = jnp.zeros((1, cfg.hidden_size), jnp.float32)
    critic_params = critic.init(rng, e, e)["params"]
    frozen = {"target_critic": jax.tree.map(jnp.copy, critic_params)}
    if trunk_mode == "frozen":
      frozen["critic_trunk"] = jax.tree.map(jnp.copy, models.policy_params)
    return TrainState(step=jnp.zeros((), jnp.int32),
                      params={"policy": pol, "critic": critic_params},
                      opt_states={"policy": actor_tx.init(pol),
                                  "critic": critic_tx.init(critic_params)},
                      frozen=frozen)

  def actor_loss(policy_params, mb):
    batch, advantages = mb
    out = policy.evaluate(policy_params, cfg, batch.tokens, batch.positions, batch.attention_mask)
    loss, metrics = value_losses.awr_actor_loss(
        out.logprobs, batch.action_mask & batch.attention_mask, batch.turn_index, advantages,
        batch.turn_mask, temperature=temperature, max_weight=max_weight)
    return {"actor": term(1.0, (loss, metrics))}, metrics

  actor_grad = objective_and_grad(actor_loss, micro_batch_size=h.micro_batch_size)

  def update(state: TrainState, batch: TrajectoryBatch, rng):
    del rng
    trunk = state.frozen.get("critic_trunk", state.params["policy"])
    hidden = _sg(policy.evaluate(trunk, cfg, batch.tokens, batch.positions,
                                 batch.attention_mask).hidden)
    feats = turn_features(hidden, batch)
    critic_params, critic_opt = state.params["critic"], state.opt_states["critic"]
    target = state.frozen["target_critic"]
    metrics = {}
    for _ in range(critic_steps):
      (loss, c_metrics), grads = jax.value_and_grad(critic_terms, argnums=1, has_aux=True)(
          critic, critic_params, target, feats, gamma=gamma, expectile=expectile)
      critic_params, critic_opt, guard = apply_gradients(critic_tx, critic_params, critic_opt,
                                                         grads, loss, name="critic_loss")
      target = optax.incremental_update(critic_params, target, tau)
    metrics.update({f"{name}/critic_loss": loss, **{f"{name}/{k}": v for k, v in c_metrics.items()},
                    **guard})

    q, v = critic.apply({"params": critic_params}, feats["state"], feats["action"])  # [2, B, K]
    advantages = value_losses.archer_advantage(q, v)
    pol, pol_opt = state.params["policy"], state.opt_states["policy"]
    train_actor = state.step >= warmup
    for _ in range(actor_steps):
      (loss, _, a_metrics), grads = actor_grad(pol, (batch, advantages))
      new_pol, new_opt, guard = apply_gradients(actor_tx, pol, pol_opt, grads, loss,
                                                name="actor_loss")
      pol, pol_opt = jax.tree.map(lambda n, o: jnp.where(train_actor, n, o),
                                  (new_pol, new_opt), (pol, pol_opt))
    metrics.update({f"{name}/actor_loss": loss, f"{name}/weight_mean": a_metrics["weight_mean"],
                    f"{name}/weight_max": a_metrics["weight_max"],
                    f"{name}/advantage_mean": jnp.sum(jnp.where(feats["mask"], advantages, 0.0))
                    / jnp.maximum(jnp.sum(feats["mask"]), 1), **guard})
    state = state.replace(step=state.step + 1,
                          params={**state.params, "policy": pol, "critic": critic_params},
                          opt_states={**state.opt_states, "policy": pol_opt, "critic": critic_opt},
                          frozen={**state.frozen, "target_critic": target})
    return state, metrics

  return Algorithm(name=name, source=sources.Offline(h.batch_size), init=init,
                   update=jit_update(update))
