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

`answer_logprobs` scores a batch's ground-truth answers (`batch.answer_tokens`) as the reply
the policy would give at the start of each agent turn: the quantity behind information-gain
credit (IGPO, A2TGPO).

`distrax.Categorical` gives the log-probs and entropies, at `temperature` (the sampler
reports log-probs at its temperature, so ratios against behaviour log-probs use the same).
"""

from __future__ import annotations

import distrax
import flax
import chex
import jax
import jax.numpy as jnp

from agentrl import turns
from agentrl.models.decoder import Decoder, DecoderConfig

Array = jax.Array


@flax.struct.dataclass
class PolicyOutput:
  """Per-token quantities aligned with the input tokens (entry 0 has no context: zeros)."""

  logprobs: Array  # float32[B, T]
  entropy: Array  # float32[B, T]
  hidden: Array  # [B, T, E]: the state that predicts token t (value heads read it)


def evaluate(params, config: DecoderConfig, tokens: Array, positions: Array, mask: Array, *,
             temperature: float = 1.0, score_from: int = 1) -> PolicyOutput:
  """Teacher-forced log-probs and entropies of `tokens` under the decoder `params`.

  Args:
    params: Decoder parameters.
    config: Their `DecoderConfig`.
    tokens: int32[B, T] token ids (any padding, as long as `mask` marks real tokens).
    positions: int32[B, T] positions of the tokens.
    mask: bool[B, T] real tokens.
    temperature: Divides the logits first (1.0: the model's own distribution).
    score_from: First token whose log-prob and entropy are computed (static, >= 1); the
      entries before it are 0. Scoring only an utterance after a long state skips the output
      layer over the state (`Decoder(logits_from=...)`).

  Returns:
    `PolicyOutput`; entries at padding, at t = 0 and before `score_from` are 0 (hidden states
    at padding are garbage).
  """
  if not 1 <= score_from <= max(tokens.shape[1], 1):
    raise ValueError(f"score_from={score_from} must lie in [1, {tokens.shape[1]}] (tokens "
                     "has that many positions).")
  f = score_from - 1  # Position whose logits predict token `score_from`.
  out = Decoder(config).apply({"params": params}, tokens, positions, mask, logits_from=f)
  logits = out.logits[:, :-1] / temperature
  dist = distrax.Categorical(logits=logits)
  next_tokens = tokens[:, score_from:]
  real = mask[:, score_from:] & mask[:, f:-1]
  logprobs = jnp.where(real, dist.log_prob(next_tokens), 0.0)
  entropy = jnp.where(real, dist.entropy(), 0.0)
  pad = lambda x: jnp.pad(x, ((0, 0), (score_from, 0)))  # noqa: E731
  hidden = jnp.pad(out.hidden[:, :-1], ((0, 0), (1, 0), (0, 0)))
  return PolicyOutput(logprobs=pad(logprobs), entropy=pad(entropy), hidden=hidden)


def sequence_logprob(logprobs: Array, action_mask: Array) -> Array:
  """Sum of token log-probs over each row's action tokens: log pi(utterance) [B]."""
  return jnp.sum(jnp.where(action_mask, logprobs, 0.0), axis=-1)


def answer_logprobs(params, config: DecoderConfig, tokens: Array, positions: Array, mask: Array,
                    action_mask: Array, turn_index: Array, answer_tokens: Array, num_turns: int, *,
                    temperature: float = 1.0) -> Array:
  """Length-averaged log-prob of the ground-truth answer at the start of every agent turn.

  For turn k of row b the context is the row's tokens before the turn's first action token
  (the observation and the assistant prefix included); the answer a is placed right after it,
  and (1/L_b) Σ_j log π(a_j | context, a_<j) is returned: log p_{b,k} of IGPO's
  p = exp(mean log π(a | q, o_≤t)) (Wang et al. 2025, arXiv 2510.14967, §3). One teacher-forced
  pass per turn over T + L tokens (a `lax.map` over K, so memory is that of one pass).

  Args:
    params, config: the decoder.
    tokens, positions, mask, action_mask, turn_index: the batch's token arrays [B, T].
    answer_tokens: int32[B, L] answer tokens, -1 padding (a row of -1: no answer).
    num_turns: K.
    temperature: divides the logits (the sampler's temperature).

  Returns:
    float32[B, K]; 0 for turns without action tokens and rows without an answer.
  """
  chex.assert_rank([tokens, positions, mask, action_mask, turn_index, answer_tokens], 2)
  chex.assert_equal_shape([tokens, positions, mask, action_mask, turn_index])
  b, t = tokens.shape
  length = answer_tokens.shape[1]
  answer_ok = answer_tokens >= 0
  num_answer = answer_ok.sum(axis=1)
  starts = turns.first_position(action_mask, turn_index, num_turns)  # T: the turn has none.
  idx = jnp.arange(t + length)[None, :]
  pad = lambda x: jnp.pad(x, ((0, 0), (0, length)))  # noqa: E731
  ext_tokens, ext_positions, ext_mask = pad(tokens), pad(positions), pad(mask.astype(bool))

  def one_turn(start):  # start: int32[B]
    offset = idx - start[:, None]
    j = jnp.clip(offset, 0, length - 1)
    in_prefix = offset < 0
    in_answer = (offset >= 0) & (offset < length) & jnp.take_along_axis(answer_ok, j, axis=1)
    first_position = turns.gather_positions(positions, start[:, None])
    seq = jnp.where(in_prefix, ext_tokens,
                    jnp.where(in_answer, jnp.take_along_axis(answer_tokens, j, axis=1), 0))
    pos = jnp.where(in_prefix, ext_positions, first_position + offset)
    out = evaluate(params, config, seq, pos, jnp.where(in_prefix, ext_mask, in_answer),
                   temperature=temperature)
    return jnp.sum(jnp.where(in_answer, out.logprobs, 0.0), axis=1)

  total = jax.lax.map(one_turn, starts.T).T  # [B, K]
  ok = (starts < t) & (num_answer > 0)[:, None]
  return jnp.where(ok, total / jnp.maximum(num_answer, 1)[:, None], 0.0)
