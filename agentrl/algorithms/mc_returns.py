"""MC returns (LMRL-Gym): token-level Q-logit head regressed onto Monte-Carlo returns.

Offline: the batch is a `TrajectoryBatch` of dataset episodes. One Q head (MLP d → d → |V|,
"Q-logits" over the vocabulary) reads the behaviour policy's hidden states
(`policy.evaluate(...).hidden`). At every action token t with a_t = tokens[t]:

  r_t  = the turn's reward on the last action token of each turn, 0 elsewhere
  R_t  = Σ_{i ≥ t} γ^(i − t) r_i      over the row's action tokens (γ per action token)
  L    = mean_t ½(Q(s_t, a_t) − R_t)² + cql_weight · mean_t CE(Q-logits(s_t), a_t)

(`value_losses.mc_returns_loss` plus LMRL-Gym's CQL-style cross-entropy term). No target
network and no bootstrap: a truncated row's return is the rewards it contains.

The trunk, the optimizer steps and the state follow `ilql.py` (`train_trunk`, `bc_weight`,
`epochs`, `minibatches`; params {"policy", "value"}, no frozen target). Decoding:
`value_decoding.GuidedPolicy` with these heads samples from π_β·exp(β·Q) (the heads have no V;
a per-state constant would not change the distribution anyway).

Config (`config.algorithm`): the knobs of `Defaults` below (ILQL's, with MC returns'
defaults; `tau` and `expectile` are unused).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from agentrl import value_losses
from agentrl.algorithms import defaults, ilql, value_decoding as vd
from agentrl.algorithms.base import Algorithm, Models
from agentrl.algorithms.defaults import knob
from agentrl.algorithms.ilql import make_token_value
from agentrl.types import TrajectoryBatch


def mc_terms(q: jax.Array, batch: TrajectoryBatch, *, gamma: float, cql_weight: float):
  """MC-returns loss on a batch: q [1, B, T, |V|] Q-logits at each token's state."""
  mask = vd.action_token_mask(batch)
  rewards, _ = vd.token_rewards(batch)
  returns = vd.reward_to_go(rewards, mask, gamma)
  logits = q[0]
  q_taken = vd.taken(logits, batch.tokens)
  loss, metrics = value_losses.mc_returns_loss(q_taken, returns, mask)
  ce = jax.nn.logsumexp(logits, axis=-1) - q_taken
  cql_sum = jnp.sum(jnp.where(mask, ce, 0.0))
  weight = metrics["loss_weight"]
  total_sum = metrics["loss_sum"] + cql_weight * cql_sum
  total = total_sum / jnp.maximum(weight, 1.0)
  metrics = {**metrics, "mc_loss": loss, "cql_loss": cql_sum / jnp.maximum(weight, 1.0),
             "loss": total, "loss_sum": total_sum}
  return total, metrics


@dataclasses.dataclass(frozen=True)
class Defaults(ilql.Defaults):
  """MC returns' knobs: ILQL's with LMRL-Gym's MC-returns defaults."""

  cql_weight: float = knob(0.001, "Weight of the CE term on the Q-logits (LMRL-Gym dialogue).")
  beta: float = knob(16.0, "Q-guidance strength of the acting (evaluation) policy.")


def value_heads(config, models: Models) -> vd.TokenValueHeads:
  """The heads module of `make` (for `value_decoding.GuidedPolicy`); `config` a `Defaults` or
  a config block."""
  h = config if isinstance(config, Defaults) else defaults.read(Defaults, config, "mc_returns")
  cfg = models.policy_config
  return vd.TokenValueHeads(cfg.vocab_size, h.head_dim or cfg.hidden_size,
                            num_q=1, with_v=False)


def make(config, models: Models, *, name: str = "mc_returns") -> Algorithm:
  h = defaults.read(Defaults, config, name)
  gamma, cql_weight = h.gamma, h.cql_weight

  def loss_terms(q, v, target_taken, batch):
    del v, target_taken
    return mc_terms(q, batch, gamma=gamma, cql_weight=cql_weight)

  return make_token_value(h, models, name=name, heads=value_heads(h, models),
                          loss_terms=loss_terms, use_target=False)
