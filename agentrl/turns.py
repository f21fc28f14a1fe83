"""Moving quantities between tokens and agent turns: the one home of that indexing.

Layouts are batch-major: token arrays are [B, T], turn arrays are [B, K]. The batch's token
arrays say where the turns are (`agentrl.types.TrajectoryBatch`):

  turn_index   int[B, T]  the agent turn of each token; −1 off agent turns (any value outside
                          [0, K) is treated as "no turn")
  action_mask  bool[B, T] the tokens the policy generated
  turn_end     bool[B, T] the last token of each agent utterance
  turn_mask    bool[B, K] the turns that happened

Every function is pure and jittable (`num_turns` is static). Masking: an output entry that no
valid (token, turn) pair reaches is 0 (False for masks, T for positions), so padding tokens,
padding turns and out-of-range turn indices are inert.

  token -> turn   `tokens_to_turns` (read at one marked token), `turn_sums` (sum over the
                  marked tokens), `first_position` (first marked position), `gather_positions`
                  (read at given positions), `turn_start_values` (read at the turn's first
                  action token)
  turn -> token   `turns_to_tokens` (broadcast over the marked tokens)
  token masks     `turn_starts` (first action token of each turn), `valid_turn_tokens` (action
                  tokens of valid turns)
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

Array = jax.Array


def _in_range(turn_index: Array, num_turns: int) -> Array:
  return (turn_index >= 0) & (turn_index < num_turns)


# ----------------------------------------------------------------------------- token -> turn


def tokens_to_turns(values_t: Array, turn_end: Array, turn_index: Array, num_turns: int) -> Array:
  """Reads a token-level quantity at the end token of each agent turn.

  out[b, k] = values_t[b, t] for the token t with turn_end[b, t] and turn_index[b, t] == k;
  0 where turn k has no such token (padding turns, turns that never happened). Any token mask
  can stand in for `turn_end` (e.g. `turn_starts`); with several marked tokens in one turn,
  one of them is read.

  Args:
    values_t: [B, T] per-token values (e.g. a critic read at every position), any dtype.
    turn_end: bool[B, T], the token to read in each turn (the last token of each utterance).
    turn_index: int[B, T], the agent turn of each token, −1 off agent turns.
    num_turns: K, the number of turn slots.

  Returns:
    [B, K] per-turn values, of values_t's dtype.
  """
  chex.assert_rank([values_t, turn_end, turn_index], 2)
  chex.assert_equal_shape([values_t, turn_end, turn_index])
  b, _ = values_t.shape
  valid = turn_end.astype(bool) & _in_range(turn_index, num_turns)
  # Tokens that are not a valid turn end scatter to slot K, which is out of range and dropped.
  idx = jnp.where(valid, turn_index, num_turns)
  rows = jnp.broadcast_to(jnp.arange(b)[:, None], idx.shape)
  out = jnp.zeros((b, num_turns), values_t.dtype)
  return out.at[rows, idx].set(values_t, mode="drop")


def turn_sums(x: Array, turn_index: Array, action_mask: Array, num_turns: int) -> Array:
  """Sums a token quantity over the action tokens of each turn.

  out[b, k] = Σ_t x[b, t] over the tokens t with action_mask[b, t] and turn_index[b, t] == k;
  0 for turns without such tokens. Masked tokens are selected away first (garbage is inert).

  Args:
    x: [B, T] per-token quantity (e.g. a log-ratio, or a 0/1 mask to count tokens).
    turn_index: int[B, T], the agent turn of each token, −1 off agent turns.
    action_mask: bool[B, T], the tokens to sum.
    num_turns: K.

  Returns:
    float32[B, K].
  """
  chex.assert_rank([x, turn_index, action_mask], 2)
  chex.assert_equal_shape([x, turn_index, action_mask])
  b = x.shape[0]
  valid = action_mask.astype(bool) & _in_range(turn_index, num_turns)
  idx = jnp.where(valid, turn_index, num_turns)
  rows = jnp.broadcast_to(jnp.arange(b)[:, None], idx.shape)
  out = jnp.zeros((b, num_turns), jnp.float32)
  return out.at[rows, idx].add(jnp.where(valid, x, 0.0).astype(jnp.float32), mode="drop")


def first_position(cond: Array, turn_index: Array, num_turns: int) -> Array:
  """The first token of each turn where `cond` holds.

  out[b, k] = min{t : cond[b, t] and turn_index[b, t] == k}; T where there is none.

  Args:
    cond: bool[B, T], the tokens to look at (e.g. `action_mask`: each turn's first action
      token, the position its utterance starts at).
    turn_index: int[B, T], the agent turn of each token, −1 off agent turns.
    num_turns: K.

  Returns:
    int32[B, K] positions in [0, T]; T marks "no such token".
  """
  chex.assert_rank([cond, turn_index], 2)
  chex.assert_equal_shape([cond, turn_index])
  b, t = cond.shape
  valid = cond.astype(bool) & _in_range(turn_index, num_turns)
  idx = jnp.where(valid, turn_index, num_turns)
  rows = jnp.broadcast_to(jnp.arange(b)[:, None], idx.shape)
  pos = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32)[None, :], idx.shape)
  out = jnp.full((b, num_turns), t, jnp.int32)
  return out.at[rows, idx].min(jnp.where(valid, pos, t), mode="drop")


def gather_positions(x: Array, positions: Array) -> Array:
  """Reads a token-level array at one position per turn (e.g. from `first_position`).

  out[b, k] = x[b, positions[b, k]], with the position clipped into [0, T): a "no such token"
  position T reads the last token, so callers mask those turns.

  Args:
    x: [B, T, ...] per-token array (e.g. hidden states [B, T, E]).
    positions: int[B, K] token positions.

  Returns:
    [B, K, ...], of x's dtype.
  """
  chex.assert_rank(positions, 2)
  chex.assert_equal_shape_prefix([x, positions], 1)
  t = x.shape[1]
  idx = jnp.clip(positions, 0, t - 1)
  return jnp.take_along_axis(x, idx.reshape(idx.shape + (1,) * (x.ndim - 2)), axis=1)


def turn_start_values(values_t: Array, turn_index: Array, action_mask: Array,
                      num_turns: int) -> Array:
  """Reads a token-level quantity at the first action token of each turn.

  With values_t a value head over the hidden state that predicts each token, this is V(s_k):
  the state after turn k's observation (and assistant prefix), before any token of its action.
  out[b, k] = values_t[b, t] at the `turn_starts` token t of turn k; 0 for turns without
  action tokens.

  Args:
    values_t: [B, T] per-token values.
    turn_index: int[B, T], the agent turn of each token, −1 off agent turns.
    action_mask: bool[B, T], the tokens the policy generated.
    num_turns: K.

  Returns:
    [B, K], of values_t's dtype.
  """
  return tokens_to_turns(values_t, turn_starts(turn_index, action_mask), turn_index, num_turns)


# ----------------------------------------------------------------------------- turn -> token


def turns_to_tokens(x: Array, turn_index: Array, action_mask: Array) -> Array:
  """Broadcasts a per-turn quantity over the action tokens of that turn.

  out[b, t] = x[b, turn_index[b, t]] where action_mask[b, t] and 0 <= turn_index[b, t] < K;
  0 (False for a bool x) elsewhere: prompt, observation and padding tokens.

  Args:
    x: [B, K] per-turn quantity (e.g. a turn-level advantage), any dtype.
    turn_index: int[B, T], the agent turn of each token, −1 off agent turns.
    action_mask: bool[B, T], the tokens that receive their turn's value.

  Returns:
    [B, T] per-token quantity, of x's dtype.
  """
  chex.assert_rank([x, turn_index, action_mask], 2)
  chex.assert_equal_shape([turn_index, action_mask])
  chex.assert_equal_shape_prefix([x, turn_index], 1)
  k = x.shape[1]
  valid = action_mask.astype(bool) & _in_range(turn_index, k)
  gathered = jnp.take_along_axis(x, jnp.clip(turn_index, 0, k - 1), axis=1)
  return jnp.where(valid, gathered, jnp.zeros_like(gathered))


# ----------------------------------------------------------------------------- token masks


def turn_starts(turn_index: Array, action_mask: Array) -> Array:
  """Marks the first action token of each agent turn.

  out[b, t] is true iff token t is an action token of a turn (turn_index >= 0) and token t − 1
  is not an action token of the same turn. A turn whose action tokens are interrupted starts
  again after the gap.

  Args:
    turn_index: int[B, T], the agent turn of each token, −1 off agent turns.
    action_mask: bool[B, T], the tokens the policy generated.

  Returns:
    bool[B, T].
  """
  chex.assert_rank([turn_index, action_mask], 2)
  chex.assert_equal_shape([turn_index, action_mask])
  mask = action_mask.astype(bool)
  prev_turn = jnp.pad(jnp.where(mask, turn_index, -1), ((0, 0), (1, 0)), constant_values=-1)
  return mask & (turn_index >= 0) & (prev_turn[:, :-1] != turn_index)


def valid_turn_tokens(action_mask: Array, turn_index: Array, turn_mask: Array) -> Array:
  """Marks the action tokens that belong to a valid turn.

  out[b, t] = action_mask[b, t] and 0 <= turn_index[b, t] < K and turn_mask[b, turn_index].

  Args:
    action_mask: bool[B, T], the tokens the policy generated.
    turn_index: int[B, T], the agent turn of each token, −1 off agent turns.
    turn_mask: bool[B, K], the turns that happened.

  Returns:
    bool[B, T].
  """
  return turns_to_tokens(turn_mask.astype(bool), turn_index, action_mask)
