"""Token <-> turn indexing against slow numpy loops: ragged, split and out-of-range turns,
padding, a single turn, everything masked, and jit parity."""

import chex
import jax
import numpy as np
import pytest

from agentrl import _math, turns

K = 4


# ----------------------------------------------------------------------------- references


def ref_tokens_to_turns(values, marks, turn_index, k):
  out = np.zeros((values.shape[0], k), values.dtype)
  for b, t in zip(*np.nonzero(marks)):
    if 0 <= turn_index[b, t] < k:
      out[b, turn_index[b, t]] = values[b, t]
  return out


def ref_turns_to_tokens(x, turn_index, action_mask):
  out = np.zeros(turn_index.shape, x.dtype)
  for b, t in np.ndindex(*turn_index.shape):
    if action_mask[b, t] and 0 <= turn_index[b, t] < x.shape[1]:
      out[b, t] = x[b, turn_index[b, t]]
  return out


def ref_turn_sums(x, turn_index, action_mask, k):
  out = np.zeros((x.shape[0], k), np.float64)
  for b, t in np.ndindex(*x.shape):
    if action_mask[b, t] and 0 <= turn_index[b, t] < k:
      out[b, turn_index[b, t]] += x[b, t]
  return out


def ref_first_position(cond, turn_index, k):
  b_size, t_size = cond.shape
  out = np.full((b_size, k), t_size, np.int32)
  for b, t in np.ndindex(b_size, t_size):
    if cond[b, t] and 0 <= turn_index[b, t] < k:
      out[b, turn_index[b, t]] = min(out[b, turn_index[b, t]], t)
  return out


def ref_gather_positions(x, positions):
  out = np.zeros(positions.shape + x.shape[2:], x.dtype)
  for b, k in np.ndindex(*positions.shape):
    out[b, k] = x[b, min(max(positions[b, k], 0), x.shape[1] - 1)]
  return out


def ref_turn_starts(turn_index, action_mask):
  out = np.zeros(turn_index.shape, bool)
  for b, t in np.ndindex(*turn_index.shape):
    if not action_mask[b, t] or turn_index[b, t] < 0:
      continue
    prev_same = t > 0 and action_mask[b, t - 1] and turn_index[b, t - 1] == turn_index[b, t]
    out[b, t] = not prev_same
  return out


def ref_valid_turn_tokens(action_mask, turn_index, turn_mask):
  out = np.zeros(action_mask.shape, bool)
  for b, t in np.ndindex(*action_mask.shape):
    i = turn_index[b, t]
    out[b, t] = bool(action_mask[b, t] and 0 <= i < turn_mask.shape[1] and turn_mask[b, i])
  return out


# ----------------------------------------------------------------------------- data


def ragged_layout(seed, b=5, t=30, k=K):
  """Rows of prompt, then turns of 1-4 action tokens between observations, then padding.

  Per row a random number of turns in [0, k + 1] (k + 1: one turn index out of range); one
  row has a turn split by an observation in the middle (its action tokens are not
  contiguous). turn_end marks each turn's last action token.
  """
  rng = np.random.default_rng(seed)
  turn_index = np.full((b, t), -1, np.int32)
  turn_end = np.zeros((b, t), bool)
  for row in range(b):
    pos = int(rng.integers(1, 4))  # Prompt.
    for turn in range(int(rng.integers(0, k + 2))):
      length = int(rng.integers(1, 5))
      if pos + length > t:
        break
      turn_index[row, pos:pos + length] = turn
      if row == 0 and turn == 0 and length > 2:
        turn_index[row, pos + 1] = -1  # An observation token inside turn 0.
      turn_end[row, pos + length - 1] = True
      pos += length + int(rng.integers(1, 4))  # Observation.
  action_mask = turn_index >= 0
  # Padding tokens hold a garbage turn index, and one stray index on a non-action token.
  turn_index[:, -1] = 1
  action_mask[:, -1] = False
  turn_end[:, -1] = False
  return turn_index, turn_end, action_mask


def hand_case():
  # Row 0: prompt(2) turn0(3 tokens) obs(1) turn1(2 tokens) pad(2).
  # Row 1: prompt(1) turn0(2 tokens) obs(2) turn1(1) obs(1) turn2(2) pad(1).
  turn_index = np.array([[-1, -1, 0, 0, 0, -1, 1, 1, -1, -1],
                         [-1, 0, 0, -1, -1, 1, -1, 2, 2, -1]], np.int32)
  turn_end = np.array([[0, 0, 0, 0, 1, 0, 0, 1, 0, 0],
                       [0, 0, 1, 0, 0, 1, 0, 0, 1, 0]], bool)
  return turn_index, turn_end, turn_index >= 0


# ----------------------------------------------------------------------------- tests


def test_tokens_to_turns_and_back_hand_case():
  turn_index, turn_end, action_mask = hand_case()
  values_t = np.arange(20, dtype=np.float32).reshape(2, 10)
  got = jax.jit(turns.tokens_to_turns, static_argnums=3)(values_t, turn_end, turn_index, 4)
  np.testing.assert_array_equal(got, [[4, 7, 0, 0], [12, 15, 18, 0]])
  x = np.array([[1, 2, 3, 4], [5, 6, 7, 8]], np.float32)
  tok = jax.jit(turns.turns_to_tokens)(x, turn_index, action_mask)
  np.testing.assert_array_equal(tok, [[0, 0, 1, 1, 1, 0, 2, 2, 0, 0],
                                      [0, 5, 5, 0, 0, 6, 0, 7, 7, 0]])
  np.testing.assert_array_equal(turns.turn_starts(turn_index, action_mask),
                                [[0, 0, 1, 0, 0, 0, 1, 0, 0, 0], [0, 1, 0, 0, 0, 1, 0, 1, 0, 0]])
  np.testing.assert_array_equal(turns.first_position(action_mask, turn_index, 4),
                                [[2, 6, 10, 10], [1, 5, 7, 10]])
  np.testing.assert_array_equal(turns.turn_start_values(values_t, turn_index, action_mask, 4),
                                [[2, 6, 0, 0], [11, 15, 17, 0]])
  np.testing.assert_array_equal(  # Position T (no such token) reads the last token.
      turns.gather_positions(values_t, np.array([[2, 6, 10, 10], [1, 5, 7, 10]])),
      [[2, 6, 9, 9], [11, 15, 17, 19]])
  np.testing.assert_array_equal(turns.turn_sums(values_t, turn_index, action_mask, 4),
                                [[2 + 3 + 4, 6 + 7, 0, 0], [11 + 12, 15, 17 + 18, 0]])
  turn_mask = np.array([[1, 0, 0, 0], [1, 1, 1, 0]], bool)
  np.testing.assert_array_equal(turns.valid_turn_tokens(action_mask, turn_index, turn_mask),
                                action_mask & ((turn_index == 0) | (np.arange(2) == 1)[:, None]))


@pytest.mark.parametrize("seed", range(6))
def test_each_function_equals_its_loop(seed):
  turn_index, turn_end, action_mask = ragged_layout(seed)
  rng = np.random.default_rng(100 + seed)
  b, t = turn_index.shape
  values = rng.normal(size=(b, t)).astype(np.float32)
  values[~action_mask] = np.nan  # Garbage off the action tokens stays out of every output.
  x = rng.normal(size=(b, K)).astype(np.float32)
  turn_mask = rng.random((b, K)) < 0.7
  cond = action_mask & (rng.random((b, t)) < 0.5)
  starts = ref_turn_starts(turn_index, action_mask)
  np.testing.assert_array_equal(turns.tokens_to_turns(values, turn_end, turn_index, K),
                                ref_tokens_to_turns(values, turn_end, turn_index, K))
  np.testing.assert_array_equal(turns.turns_to_tokens(x, turn_index, action_mask),
                                ref_turns_to_tokens(x, turn_index, action_mask))
  np.testing.assert_allclose(turns.turn_sums(values, turn_index, action_mask, K),
                             ref_turn_sums(values, turn_index, action_mask, K), rtol=1e-6)
  np.testing.assert_array_equal(turns.first_position(cond, turn_index, K),
                                ref_first_position(cond, turn_index, K))
  np.testing.assert_array_equal(turns.turn_starts(turn_index, action_mask), starts)
  positions = ref_first_position(action_mask, turn_index, K)  # T where a turn has none.
  hidden = rng.normal(size=(b, t, 3)).astype(np.float32)
  np.testing.assert_array_equal(turns.gather_positions(hidden, positions),
                                ref_gather_positions(hidden, positions))
  np.testing.assert_array_equal(turns.gather_positions(values, positions),
                                ref_gather_positions(values, positions))
  np.testing.assert_array_equal(turns.turn_start_values(values, turn_index, action_mask, K),
                                ref_tokens_to_turns(values, starts, turn_index, K))
  np.testing.assert_array_equal(turns.valid_turn_tokens(action_mask, turn_index, turn_mask),
                                ref_valid_turn_tokens(action_mask, turn_index, turn_mask))


def test_a_split_turn_starts_twice_and_its_first_position_is_the_earliest():
  turn_index = np.array([[-1, 0, 0, -1, 0, 1, -1]], np.int32)  # Turn 1 follows turn 0 directly.
  action_mask = turn_index >= 0
  np.testing.assert_array_equal(turns.turn_starts(turn_index, action_mask),
                                [[0, 1, 0, 0, 1, 1, 0]])
  np.testing.assert_array_equal(turns.first_position(action_mask, turn_index, 3), [[1, 5, 7]])
  # Two marked tokens in one turn: tokens_to_turns reads one of them.
  got = turns.tokens_to_turns(np.arange(7, dtype=np.float32)[None], action_mask, turn_index, 3)
  assert float(got[0, 0]) in (1.0, 2.0, 4.0) and float(got[0, 1]) == 5.0


def test_one_turn_and_everything_masked():
  turn_index = np.array([[-1, 0, 0, 0, -1]], np.int32)
  action_mask = turn_index >= 0
  turn_end = np.array([[0, 0, 0, 1, 0]], bool)
  values = np.array([[9.0, 1.0, 2.0, 3.0, 9.0]], np.float32)
  assert turns.tokens_to_turns(values, turn_end, turn_index, 1).tolist() == [[3.0]]
  assert turns.turn_sums(values, turn_index, action_mask, 1).tolist() == [[6.0]]
  assert turns.first_position(action_mask, turn_index, 1).tolist() == [[1]]
  assert turns.turn_start_values(values, turn_index, action_mask, 1).tolist() == [[1.0]]
  assert turns.turns_to_tokens(np.array([[5.0]]), turn_index, action_mask).tolist() == [
      [0, 5, 5, 5, 0]]
  none = np.zeros_like(action_mask)
  assert not np.asarray(turns.turns_to_tokens(np.array([[5.0]]), turn_index, none)).any()
  assert not np.asarray(turns.tokens_to_turns(values, none, turn_index, K)).any()
  assert not np.asarray(turns.turn_sums(values, turn_index, none, K)).any()
  assert (np.asarray(turns.first_position(none, turn_index, K)) == 5).all()
  assert not np.asarray(turns.turn_starts(turn_index, none)).any()
  assert not np.asarray(turns.valid_turn_tokens(action_mask, turn_index,
                                                np.zeros((1, 1), bool))).any()


def test_dtypes_jit_parity_and_shape_checks():
  turn_index, turn_end, action_mask = ragged_layout(3)
  b, t = turn_index.shape
  values = np.arange(b * t, dtype=np.int32).reshape(b, t)
  x = np.ones((b, K), bool)
  assert turns.tokens_to_turns(values, turn_end, turn_index, K).dtype == np.int32
  assert turns.turns_to_tokens(x, turn_index, action_mask).dtype == bool
  assert turns.turn_sums(values, turn_index, action_mask, K).dtype == np.float32
  assert turns.first_position(action_mask, turn_index, K).dtype == np.int32
  assert turns.turn_starts(turn_index, action_mask).dtype == bool
  calls = [(turns.tokens_to_turns, (values, turn_end, turn_index, K)),
           (turns.turn_sums, (values, turn_index, action_mask, K)),
           (turns.first_position, (action_mask, turn_index, K)),
           (turns.turn_start_values, (values, turn_index, action_mask, K))]
  for f, args in calls:
    np.testing.assert_array_equal(f(*args), jax.jit(f, static_argnums=len(args) - 1)(*args))
  np.testing.assert_array_equal(turns.turns_to_tokens(x, turn_index, action_mask),
                                jax.jit(turns.turns_to_tokens)(x, turn_index, action_mask))
  with pytest.raises(AssertionError):
    turns.turns_to_tokens(x, turn_index[:, :-1], action_mask)
  with pytest.raises(AssertionError):
    turns.tokens_to_turns(values[0], turn_end[0], turn_index[0], K)
  chex.assert_shape(turns.first_position(action_mask, turn_index, 7), (b, 7))


def test_math_helpers():
  x = np.array([1.0, np.nan, 3.0, np.inf], np.float32)
  mask = np.array([True, False, True, False])
  assert float(_math.masked_mean(x, mask)) == 2.0
  assert float(_math.masked_mean(x, np.zeros(4, bool))) == 0.0
  np.testing.assert_array_equal(_math.safe_div(np.array([1.0, 2.0]), np.array([2.0, 0.0])),
                                [0.5, 0.0])
  grad = jax.grad(lambda d: _math.safe_div(1.0, d))(0.0)
  assert float(grad) == 0.0
  assert _math.as_float(np.array([1, 2])).dtype == np.float32
  assert _math.as_float(np.array([1, 2], np.float16)).dtype == np.float16
