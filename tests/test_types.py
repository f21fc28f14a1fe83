"""TrajectoryBatch: shapes, validation errors that name the field, pytree behaviour."""

import jax
import numpy as np
import pytest

from agentrl.types import TrajectoryBatch


def test_zeros_validates_and_reports_shapes():
  batch = TrajectoryBatch.zeros(3, 10, 4).validate()
  assert (batch.batch_size, batch.num_tokens, batch.max_turns) == (3, 10, 4)
  assert (batch.turn_index == -1).all()


def test_is_a_pytree_that_jit_accepts():
  batch = TrajectoryBatch.zeros(2, 5, 3)
  leaves = jax.tree_util.tree_leaves(batch)
  assert len(leaves) == 13
  total = jax.jit(lambda b: b.rewards.sum() + b.tokens.sum())(batch)
  assert float(total) == 0.0


def test_validate_names_the_bad_field():
  batch = TrajectoryBatch.zeros(2, 5, 3)
  with pytest.raises(ValueError, match="turn_end"):
    batch.replace(turn_end=np.zeros((2, 4), bool)).validate()
  with pytest.raises(TypeError, match="rewards"):
    batch.replace(rewards=np.zeros((2, 3), np.int32)).validate()


def test_answer_tokens_width_is_free_but_rows_must_match():
  assert TrajectoryBatch.zeros(2, 5, 3).answer_tokens.shape == (2, 0)
  batch = TrajectoryBatch.zeros(2, 5, 3, answer_length=4).validate()
  assert (batch.answer_tokens == -1).all()
  with pytest.raises(ValueError, match="answer_tokens"):
    batch.replace(answer_tokens=np.zeros((3, 4), np.int32)).validate()
