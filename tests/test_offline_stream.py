"""Offline batches: length buckets, determinism, uniform coverage; offline filtered BC."""

import types

import ml_collections
import numpy as np
import pytest

from agentrl import algorithms
from agentrl import sources
from tests import algo_harness as h
from tests import toy_envs


def experiment(seed=0):
  config = ml_collections.ConfigDict({"seed": seed, "env": {"max_tokens": h.MAX_TOKENS,
                                                            "system_prompt": True}})
  return types.SimpleNamespace(config=config, tokenizer=h.tokenizer(), max_turns=h.MAX_TURNS)


@pytest.fixture(scope="module")
def episodes():
  return (h.episodes(toy_envs.bisect_policy, range(40))
          + h.episodes(toy_envs.random_policy, range(40, 80)))


def test_batches_are_deterministic_bucketed_and_cover_the_data(episodes):
  stream = sources.OfflineStream(episodes, experiment(), batch_size=8, stream=3)
  a, b = stream.batch(5), stream.batch(5)
  np.testing.assert_array_equal(a.tokens, b.tokens)
  assert not np.array_equal(stream.batch(6).tokens, a.tokens)
  assert sorted(np.concatenate(stream.buckets).tolist()) == list(range(len(episodes)))
  turns = np.array([e.num_turns for e in episodes])
  ranges = [(turns[bk].min(), turns[bk].max()) for bk in stream.buckets]
  assert all(hi <= lo for (_, hi), (lo, _) in zip(ranges, ranges[1:]))
  # The rows of a batch come from one bucket; over many batches the turn counts follow the
  # dataset's (buckets are drawn in proportion to their sizes).
  drawn = []
  for step in range(120):
    rows = stream.batch(step).turn_mask.sum(1)
    assert any(lo <= rows.min() and rows.max() <= hi for lo, hi in ranges), rows
    drawn += rows.tolist()
  assert abs(np.mean(drawn) - turns.mean()) < 0.1 * turns.mean()


def test_trimmed_width_fits_the_longest_row(episodes):
  stream = sources.OfflineStream(episodes, experiment(), batch_size=8, stream=1)
  for step in range(4):
    batch = stream.batch(step)
    longest = int(batch.attention_mask.sum(1).max())
    assert longest <= batch.tokens.shape[1] < longest + 64
    assert batch.tokens.shape[1] % 64 == 0 or batch.tokens.shape[1] == h.MAX_TOKENS


def test_empty_dataset_is_a_clear_error():
  with pytest.raises(ValueError, match="no episodes"):
    sources.OfflineStream([], experiment(), batch_size=8, stream=0)


def test_offline_filtered_bc_keeps_the_best_fraction(episodes):
  algo = algorithms.make("filtered_bc_offline",
                         ml_collections.ConfigDict({"lr": 1e-3, "top_fraction": 0.25}),
                         h.models())
  kept = algo.source.episode_filter(episodes)
  returns = sorted((e.episode_return for e in episodes), reverse=True)
  assert len(kept) == 20
  assert sorted((e.episode_return for e in kept), reverse=True) == returns[:20]
  assert algorithms.make("bc", ml_collections.ConfigDict({"lr": 1e-3}),
                         h.models()).source.episode_filter is None
