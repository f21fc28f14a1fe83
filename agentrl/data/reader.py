"""Reading offline episode datasets back: random-access episodes and `TrajectoryBatch` streams.

  episodes = load_episodes("wordle", "train", episodes=20_000)      # builds on first use
  for batch in trajectory_batches(episodes, tokenizer, batch_size=32, max_tokens=512,
                                  max_turns=8, seed=0, epochs=1):
    ...                                                             # numpy TrajectoryBatch

Reading goes through TFDS's ArrayRecord data source (`builder.as_data_source()`), which
needs neither TensorFlow nor tf.data. Batches are built by `agentrl.encoding.encode_episodes`,
so offline and online batches share one encoding (chat template, truncation, reward
placement).
"""

from __future__ import annotations

import collections.abc
import os
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import tensorflow_datasets as tfds

from agentrl import encoding
from agentrl.data import episodes_builder
from agentrl.envs.base import Episode
from agentrl.types import TrajectoryBatch


class EpisodeSource(collections.abc.Sequence):
  """Random access to the episodes of one split; decodes a record on each `[i]`."""

  def __init__(self, builder: tfds.core.DatasetBuilder, split: str = "train"):
    sources = builder.as_data_source()
    if split not in sources:
      raise ValueError(f"dataset {builder.info.full_name} has no split {split!r}; "
                       f"valid: {', '.join(sorted(sources))}")
    self.builder = builder
    self.split = split
    self._source = sources[split]

  @property
  def metadata(self) -> Mapping[str, Any]:
    """The dataset's metadata (env, kwargs, mixture, seeds, per-split statistics)."""
    return self.builder.info.metadata

  def __len__(self) -> int:
    return len(self._source)

  def record(self, index: int) -> tuple[Episode, str]:
    """`(episode, name of the policy that played it)` of record `index`."""
    if not -len(self) <= index < len(self):
      raise IndexError(f"record {index} out of range for {len(self)} records")
    return episodes_builder.example_to_episode(self._source[index % len(self)])

  def __getitem__(self, index):
    if isinstance(index, slice):
      return [self[i] for i in range(*index.indices(len(self)))]
    return self.record(index)[0]


def open_dataset(path: str | os.PathLike) -> tfds.core.DatasetBuilder:
  """A read-only builder of a prepared dataset directory (`.../<config>/1.0.0`)."""
  return tfds.builder_from_directory(os.fspath(path))


def load_episodes(env_name: str, split: str = "train", *, episodes: int,
                  mixture: Mapping[str, float] | None = None,
                  data_dir: str | os.PathLike | None = None,
                  env_kwargs: Mapping[str, Any] | None = None, seed: int = 0,
                  test_fraction: float = 0.1, role: int | None = None) -> list[Episode]:
  """All episodes of one split of the dataset these arguments name (built if missing).

  The arguments are those of `episodes_builder.build_dataset`; `role` keeps only that
  role's examples of multi-role environments. Examples come in storage order (TFDS shuffles
  at write time); `trajectory_batches` reshuffles per epoch.
  """
  builder = episodes_builder.build_dataset(
      env_name, episodes=episodes, mixture=mixture, data_dir=data_dir, env_kwargs=env_kwargs,
      seed=seed, test_fraction=test_fraction)
  loaded = list(EpisodeSource(builder, split))
  return loaded if role is None else [e for e in loaded if e.role == role]


def trajectory_batches(episodes: Sequence[Episode], tokenizer, *, batch_size: int,
                       max_tokens: int, max_turns: int, seed: int, epochs: int | None = None,
                       drop_remainder: bool = True) -> Iterator[TrajectoryBatch]:
  """Yields `TrajectoryBatch`es (numpy) of `episodes`, reshuffled every epoch.

  Args:
    episodes: A list of episodes or an `EpisodeSource`.
    tokenizer: An `agentrl.tokenizer.Tokenizer`.
    batch_size: Episodes per batch.
    max_tokens: T, tokens per row (longer episodes keep their first turns that fit).
    max_turns: K, agent turns per row.
    seed: Seed of the shuffles; epoch e uses the permutation of `default_rng([seed, e])`,
      so the stream is a pure function of its arguments.
    epochs: Passes over the data; None repeats forever.
    drop_remainder: Drop each epoch's last partial batch (so every batch has `batch_size`
      rows); otherwise it is yielded smaller.
  """
  n = len(episodes)
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  if epochs is not None and epochs < 0:
    raise ValueError(f"epochs must be >= 0 or None, got {epochs}")
  if n == 0 or (drop_remainder and n < batch_size):
    raise ValueError(f"{n} episodes cannot fill one batch of {batch_size}"
                     + (" (drop_remainder=True)" if n else ""))
  epoch = 0
  while epochs is None or epoch < epochs:
    order = np.random.default_rng([seed, epoch]).permutation(n)
    stop = n - n % batch_size if drop_remainder else n
    for start in range(0, stop, batch_size):
      chunk = [episodes[int(i)] for i in order[start:start + batch_size]]
      yield encoding.encode_episodes(tokenizer, chunk, max_tokens=max_tokens,
                                     max_turns=max_turns)
    epoch += 1
