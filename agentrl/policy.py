"""The token policy's quantities on a batch: per-token log-probs, entropies and hidden states.

One teacher-forced forward pass of the decoder over a `TrajectoryBatch` (or any tokens with
positions and a mask) gives, for every position t, the log-probability of token t given the
tokens before it. The arrays are aligned with the batch: entry t belongs to token t, so
`action_mask`, `turn_index` and `behaviour_logprobs` index them directly; entry 0 (no
context) is 0.

  out = policy.evaluate(params, config, batch.tokens, batch.positions, batch.attention_mask)
  out.logprobs   # float32[B, T]: log pi(token_t | tokens_<t)
  out.entropy    # float32[B, T]: entropy of the distribution token t was drawn from
  out.hidden     # [B, T, E]: hidden state *before* token t is read (for value heads)

`distrax.Categorical` gives the log-probs and entropies, at `temperature` (the sampler
reports log-probs at its temperature, so ratios against behaviour log-probs use the same).
"""

from __future__ import annotations

import distrax
import flax
import jax
import jax.numpy as jnp

from agentrl.models.decoder import Decoder, DecoderConfig

Array = jax.Array


@flax.struct.dataclass
class PolicyOutput:
  """Per-token quantities aligned with the input tokens (entry 0 has no context: zeros)."""

  logprobs: Array  # float32[B, T]
  entropy: Array  # float32[B, T]
  hidden: Array  # [B, T, E]: the state that predicts token t (value heads read it)


def evaluate(params, config: DecoderConfig, tokens: Array, positions: Array, mask: Array, *,
             temperature: float = 1.0) -> PolicyOutput:
  """Teacher-forced log-probs and entropies of `tokens` under the decoder `params`.

  Args:
    params: Decoder parameters.
    config: Their `DecoderConfig`.
    tokens: int32[B, T] token ids (any padding, as long as `mask` marks real tokens).
    positions: int32[B, T] positions of the tokens.
    mask: bool[B, T] real tokens.
    temperature: Divides the logits first (1.0: the model's own distribution).

  Returns:
    `PolicyOutput`; entries at padding or at t = 0 are 0 (their hidden states are garbage).
  """
  out = Decoder(config).apply({"params": params}, tokens, positions, mask)
  logits = out.logits[:, :-1] / temperature
  dist = distrax.Categorical(logits=logits)
  next_tokens = tokens[:, 1:]
  real = mask[:, 1:] & mask[:, :-1]
  logprobs = jnp.where(real, dist.log_prob(next_tokens), 0.0)
  entropy = jnp.where(real, dist.entropy(), 0.0)
  pad = lambda x: jnp.pad(x, ((0, 0), (1, 0)))  # noqa: E731
  hidden = jnp.pad(out.hidden[:, :-1], ((0, 0), (1, 0), (0, 0)))
  return PolicyOutput(logprobs=pad(logprobs), entropy=pad(entropy), hidden=hidden)


def sequence_logprob(logprobs: Array, action_mask: Array) -> Array:
  """Sum of token log-probs over each row's action tokens: log pi(utterance) [B]."""
  return jnp.sum(jnp.where(action_mask, logprobs, 0.0), axis=-1)

