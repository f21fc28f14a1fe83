"""ArCHer's utterance-level double critic: one encoder, twin Q(s, a) and twin V(s) heads.

As in ArCHer's `DoubleCritic`: a shared encoder embeds the state (the conversation so far)
and the action (one utterance) *separately*; Q_k(s, a) = MLP_k([h(s); h(a)]) and
V_k(s) = MLP_k(h(s)) for k in {1, 2}. The official code uses RoBERTa-base and its pooler;
here the encoder is `agentrl.models.encoder.Encoder` (any size; mean pooling), reading token
ids of the policy's tokenizer, so states and sampled actions go from the sampler into the
critic without leaving the device.

  critic = UtteranceCritic(encoder_config, hidden_dims=(256, 256))
  q, v = critic.apply({"params": p}, state, state_mask, action, action_mask)   # [2, N] each
  v = critic.apply({"params": p}, state, state_mask, method=UtteranceCritic.value)
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from agentrl.models.encoder import Encoder, EncoderConfig
from agentrl.models.heads import UtteranceQHead, UtteranceVHead

Array = jax.Array


class UtteranceCritic(nn.Module):
  """Twin utterance-level Q and V on a shared encoder (see the module docstring)."""

  encoder: EncoderConfig
  hidden_dims: tuple[int, ...] = (256, 256)
  num_critics: int = 2

  def setup(self):
    self.backbone = Encoder(self.encoder)
    self.q_head = UtteranceQHead(self.hidden_dims, num_critics=self.num_critics)
    self.v_head = UtteranceVHead(self.hidden_dims, num_critics=self.num_critics)

  def embed(self, tokens: Array, mask: Array) -> Array:
    """Mean-pooled encoding [N, E] of token rows (any padding, `mask` marks real tokens)."""
    return self.backbone(tokens, mask).pooled

  def __call__(self, state: Array, state_mask: Array, action: Array, action_mask: Array
               ) -> tuple[Array, Array]:
    """(Q [k, N] at the action, V [k, N] at the state)."""
    s = self.embed(state, state_mask)
    return self.q_head(s, self.embed(action, action_mask)), self.v_head(s)

  def value(self, state: Array, state_mask: Array) -> Array:
    """V [k, N]."""
    return self.v_head(self.embed(state, state_mask))


def init_critic_params(critic: UtteranceCritic, rng: Array, *, state_len: int = 4,
                       action_len: int = 4):
  """Random parameters of `critic` (shapes do not depend on the lengths)."""
  s = jnp.zeros((1, state_len), jnp.int32)
  a = jnp.zeros((1, action_len), jnp.int32)
  return critic.init(rng, s, jnp.ones_like(s, bool), a, jnp.ones_like(a, bool))["params"]
