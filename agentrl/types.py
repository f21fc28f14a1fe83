"""The batch every algorithm consumes: B padded conversations, T tokens, at most K agent turns.

Token-level arrays describe the conversation as the policy saw it; turn-level arrays hold
what the environment returned after each agent turn. `turn_index` links the two: token t of
row b belongs to agent turn `turn_index[b, t]` (-1 on prompt, observation and padding tokens),
and `turn_end[b, t]` marks the last token of each agent utterance, where utterance-level
critics are read.

`answer_tokens` holds, per row, the tokenized ground-truth final action of the row's task (the
environment's `reference_answer()`, end-of-turn included), right-padded with -1. Information-
gain credit (IGPO, A2TGPO) scores the policy's probability of it after each turn. Its width L
is fixed by whoever builds the batch (0 when no answers are recorded, the default).

`dones` is a true terminal (the episode ended: no bootstrapping); a turn-limit truncation is
`turn_mask` true with `dones` false on the last turn, and estimators bootstrap there.
"""

from __future__ import annotations

import chex
import jax.numpy as jnp
import numpy as np


@chex.dataclass(frozen=True)
class TrajectoryBatch:
  """Padded multi-turn trajectories. See the module docstring for the conventions."""

  tokens: chex.Array  # int32[B, T]
  positions: chex.Array  # int32[B, T]
  attention_mask: chex.Array  # bool[B, T]: real tokens
  action_mask: chex.Array  # bool[B, T]: tokens the policy generated (the actor loss sees these)
  turn_index: chex.Array  # int32[B, T]: agent turn of each action token, -1 elsewhere
  turn_end: chex.Array  # bool[B, T]: last token of each agent utterance
  rewards: chex.Array  # float32[B, K]: reward after each agent turn
  turn_mask: chex.Array  # bool[B, K]: turns that happened
  dones: chex.Array  # bool[B, K]: true terminal after this turn (not a time-limit truncation)
  behaviour_logprobs: chex.Array  # float32[B, T]: log-probs of the sampler, 0 off actions
  group_id: chex.Array  # int32[B]: same task / prompt -> same group
  role: chex.Array  # int32[B, T]: acting player in self-play (0 when single-agent)
  answer_tokens: chex.Array  # int32[B, L]: ground-truth answer tokens, -1 = padding (L may be 0)

  @property
  def batch_size(self) -> int:
    return self.tokens.shape[0]

  @property
  def num_tokens(self) -> int:
    return self.tokens.shape[1]

  @property
  def max_turns(self) -> int:
    return self.rewards.shape[1]

  def validate(self) -> "TrajectoryBatch":
    """Checks ranks, shapes and dtypes; raises naming the offending field."""
    b, t = self.tokens.shape
    k = self.rewards.shape[-1]
    expected = {
        "tokens": ((b, t), "int"), "positions": ((b, t), "int"),
        "attention_mask": ((b, t), "bool"), "action_mask": ((b, t), "bool"),
        "turn_index": ((b, t), "int"), "turn_end": ((b, t), "bool"),
        "rewards": ((b, k), "float"), "turn_mask": ((b, k), "bool"), "dones": ((b, k), "bool"),
        "behaviour_logprobs": ((b, t), "float"), "group_id": ((b,), "int"),
        "role": ((b, t), "int"), "answer_tokens": ((b, self.answer_tokens.shape[-1]), "int"),
    }
    kinds = {"int": jnp.integer, "bool": jnp.bool_, "float": jnp.floating}
    for name, (shape, kind) in expected.items():
      value = getattr(self, name)
      if tuple(value.shape) != shape:
        raise ValueError(f"TrajectoryBatch.{name} has shape {tuple(value.shape)}, "
                         f"expected {shape} (B={b}, T={t}, K={k}).")
      if not jnp.issubdtype(value.dtype, kinds[kind]):
        raise TypeError(f"TrajectoryBatch.{name} has dtype {value.dtype}, expected {kind}.")
    return self

  @classmethod
  def zeros(cls, batch_size: int, num_tokens: int, max_turns: int,
            answer_length: int = 0) -> "TrajectoryBatch":
    """An all-padding batch of the given shape (useful for shapes and compilation)."""
    b, t, k = batch_size, num_tokens, max_turns
    return cls(
        tokens=np.zeros((b, t), np.int32), positions=np.zeros((b, t), np.int32),
        attention_mask=np.zeros((b, t), bool), action_mask=np.zeros((b, t), bool),
        turn_index=np.full((b, t), -1, np.int32), turn_end=np.zeros((b, t), bool),
        rewards=np.zeros((b, k), np.float32), turn_mask=np.zeros((b, k), bool),
        dones=np.zeros((b, k), bool), behaviour_logprobs=np.zeros((b, t), np.float32),
        group_id=np.zeros((b,), np.int32), role=np.zeros((b, t), np.int32),
        answer_tokens=np.full((b, answer_length), -1, np.int32))
