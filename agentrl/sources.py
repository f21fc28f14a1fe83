"""Where an algorithm's batches come from: rollouts, a replay buffer, a filtered store, a dataset.

An algorithm declares its source with a spec (`Algorithm.source`); the trainer opens it on the
experiment and draws one batch per iteration, never asking what kind of source it is:

  source = algorithm.source.open(exp, play)       # play(state, iteration) -> Played
  source.start()                                   # a fresh run (e.g. prefill the buffer)
  draw = source.draw(state, iteration)             # Draw(batch, batch_axis, local, ...)
  extras = source.state_dict()                     # into the checkpoint, and back with
  source.load_state_dict(extras)                   #   load_state_dict on resume

The four specs:
  Rollout()                    this iteration's on-policy episodes (PPO, GRPO, HiPER, ...)
  Replay(state_tokens, action_tokens, sample)
                               utterance transitions of every episode so far, in a ring
                               buffer (`agentrl.replay`, `config.replay`); `sample(buffer,
                               rng)` draws an update's batch (ArCHer, CHAI)
  Filtered(batch_size, top_fraction)
                               the best trajectories so far, re-selected each iteration
                               (online filtered BC)
  Offline(batch_size, episode_filter)
                               batches of the offline dataset (BC, ILQL, MC returns, ...)

Everything random is a pure function of (config.seed, stream, iteration), with the streams of
`STREAMS`, so a source restored from its `state_dict` continues exactly like one that was never
interrupted. With several processes, the replay buffer and the filtered store hold the rows of
every process (all-gathered), so every process draws the same batch.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from agentrl import data, encoding, losses, parallel, replay
from agentrl.envs.base import Episode
from agentrl.types import TrajectoryBatch

if TYPE_CHECKING:
  from agentrl.experiment import Experiment

# Offsets that keep the seed streams of different purposes apart.
STREAMS = {"rollout": 0, "update": 1, "replay": 2, "offline": 3, "eval": 4, "prefill": 5}


class Played(NamedTuple):
  """One iteration's episodes: this process's rows, the stats of all processes' episodes."""

  rows: TrajectoryBatch
  stats: dict[str, float]
  episodes: int


class Draw(NamedTuple):
  """One update's batch and what the trainer needs to place and log it."""

  batch: Any
  batch_axis: int = 0  # The axis of the rows (a replay batch is [steps, rows, ...]).
  local: bool = False  # The batch holds only this process's rows.
  metrics: dict[str, float] = {}
  episodes: int = 0  # Episodes played for it.


PlayFn = Callable[[Any, int], Played]


def rollout_metrics(played: Played) -> dict[str, float]:
  """The rollout stats as logged: timings under time/, the rest under rollout/."""
  return {f"time/{k}" if k.endswith("_seconds") else f"rollout/{k}": v
          for k, v in played.stats.items()}


def all_rows(batch: TrajectoryBatch) -> TrajectoryBatch:
  """Every process's rows of a batch (process order), on every process."""
  if jax.process_count() == 1:
    return batch
  return jax.tree.map(lambda x: x.reshape(x.shape[0] * x.shape[1], *x.shape[2:]),
                      parallel.allgather(batch))


class _Stateless:
  """A source with nothing to checkpoint."""

  def start(self) -> None:
    pass

  def state_dict(self) -> dict[str, np.ndarray] | None:
    return None

  def load_state_dict(self, state) -> None:
    del state


# --------------------------------------------------------------------------- rollout


@dataclasses.dataclass(frozen=True)
class Rollout:
  """On-policy: the batch is this iteration's episodes."""

  def open(self, exp: Experiment, play: PlayFn) -> RolloutSource:
    del exp
    return RolloutSource(play)


class RolloutSource(_Stateless):

  def __init__(self, play: PlayFn):
    self.play = play

  def draw(self, state, iteration: int) -> Draw:
    played = self.play(state, iteration)
    return Draw(played.rows, local=True, metrics=rollout_metrics(played),
                episodes=played.episodes)


# --------------------------------------------------------------------------- replay


@dataclasses.dataclass(frozen=True)
class Replay:
  """Utterance transitions of every episode so far; `sample(buffer, rng)` draws a batch of
  shape [steps, rows, ...]. The buffer's size and prefill are `config.replay`."""

  state_tokens: int
  action_tokens: int
  sample: Callable[[replay.ReplayBuffer, np.random.Generator], Any]

  def transitions(self, batch: TrajectoryBatch, pad_id: int) -> dict[str, np.ndarray]:
    return replay.utterance_transitions(batch, max_state_tokens=self.state_tokens,
                                        max_action_tokens=self.action_tokens, pad_id=pad_id)

  def open(self, exp: Experiment, play: PlayFn) -> ReplaySource:
    return ReplaySource(self, exp, play)


class ReplaySource:

  def __init__(self, spec: Replay, exp: Experiment, play: PlayFn):
    self.spec, self.exp, self.play = spec, exp, play
    self.buffer = replay.ReplayBuffer(
        replay.transition_spec(spec.state_tokens, spec.action_tokens),
        exp.config.replay.capacity)

  def start(self, chunk: int = 256) -> None:
    """Seeds the buffer with the transitions of `config.replay.prefill_episodes` offline
    dataset episodes (drawn without replacement, a function of the seed)."""
    config = self.exp.config
    if not config.replay.get("prefill_episodes", 0):
      return
    episodes = offline_episodes(config)
    n = min(int(config.replay.prefill_episodes), len(episodes))
    rows = np.random.default_rng([config.seed, STREAMS["prefill"]]).choice(len(episodes), n,
                                                                          replace=False)
    for i in range(0, n, chunk):
      batch = encode(self.exp, [episodes[int(r)] for r in rows[i:i + chunk]])
      self.buffer.add(self.spec.transitions(batch, self.exp.tokenizer.pad_id))

  def draw(self, state, iteration: int) -> Draw:
    played = self.play(state, iteration)
    self.buffer.add(self.spec.transitions(all_rows(played.rows), self.exp.tokenizer.pad_id))
    rng = np.random.default_rng([self.exp.config.seed, STREAMS["replay"], iteration])
    return Draw(self.spec.sample(self.buffer, rng), batch_axis=1,
                metrics=rollout_metrics(played), episodes=played.episodes)

  def state_dict(self):
    return self.buffer.state_dict()

  def load_state_dict(self, state) -> None:
    self.buffer.load_state_dict(state)


# --------------------------------------------------------------------------- filtered


def top_fraction_mask(returns, top_fraction: float) -> np.ndarray:
  """bool[n]: the best ⌈top_fraction · n⌉ of n returns (`losses.filtered_bc_mask`)."""
  returns = jnp.asarray(np.asarray(returns, np.float32))
  return np.asarray(losses.filtered_bc_mask(returns, jnp.ones(returns.shape, bool),
                                            top_fraction=float(top_fraction)))


class FilteredStore:
  """Every trajectory so far (as token rows) with its return; batches of the top fraction.

  Rows live in arrays that double their capacity when full, so adding n rows costs O(n)
  amortised (not a copy of everything stored).
  """

  def __init__(self):
    self._rows: dict[str, np.ndarray] | None = None
    self._returns = np.zeros(0, np.float32)
    self.size = 0

  @property
  def returns(self) -> np.ndarray:
    return self._returns[:self.size]

  def rows(self) -> dict[str, np.ndarray]:
    return {k: v[:self.size] for k, v in (self._rows or {}).items()}

  def _reserve(self, arrays: dict[str, np.ndarray], n: int) -> None:
    capacity = len(self._returns)
    if self.size + n <= capacity and self._rows is not None:
      return
    capacity = max(self.size + n, 2 * capacity)
    grow = lambda old, like: np.concatenate(  # noqa: E731
        [old[:self.size], np.zeros((capacity - self.size,) + like.shape[1:], like.dtype)])
    self._rows = {k: grow(self._rows[k] if self._rows else v[:0], v) for k, v in arrays.items()}
    self._returns = grow(self._returns, self._returns)

  def add(self, batch: TrajectoryBatch) -> None:
    arrays = {k: np.asarray(v) for k, v in dataclasses.asdict(batch).items()}
    if self._rows is not None and any(self._rows[k].shape[1:] != v.shape[1:]
                                      for k, v in arrays.items()):
      raise ValueError("FilteredStore.add: the batch's shapes differ from the stored rows' "
                       f"({ {k: v.shape for k, v in arrays.items()} }).")
    n = len(arrays["rewards"])
    self._reserve(arrays, n)
    for k, v in arrays.items():
      self._rows[k][self.size:self.size + n] = v
    self._returns[self.size:self.size + n] = (
        (arrays["rewards"] * arrays["turn_mask"]).sum(-1).astype(np.float32))
    self.size += n

  def sample(self, n: int, top_fraction: float, rng: np.random.Generator) -> TrajectoryBatch:
    best = np.flatnonzero(top_fraction_mask(self.returns, top_fraction))
    rows = rng.choice(best, size=n, replace=len(best) < n)
    return TrajectoryBatch(**{k: v[rows] for k, v in self._rows.items()})

  def state_dict(self) -> dict[str, np.ndarray]:
    out = {f"filtered/{k}": v for k, v in self.rows().items()}
    out["filtered/returns"] = self.returns
    return out

  def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
    returns = np.asarray(state["filtered/returns"], np.float32)
    rows = {k.split("/", 1)[1]: np.asarray(v) for k, v in state.items()
            if k.startswith("filtered/") and k != "filtered/returns"}
    self._rows, self._returns, self.size = (rows or None), returns, len(returns)


@dataclasses.dataclass(frozen=True)
class Filtered:
  """The best `top_fraction` by return of every trajectory so far; `batch_size` rows."""

  batch_size: int
  top_fraction: float

  def open(self, exp: Experiment, play: PlayFn) -> FilteredSource:
    return FilteredSource(self, exp, play)


class FilteredSource:

  def __init__(self, spec: Filtered, exp: Experiment, play: PlayFn):
    self.spec, self.exp, self.play = spec, exp, play
    self.store = FilteredStore()

  def start(self) -> None:
    pass

  def draw(self, state, iteration: int) -> Draw:
    played = self.play(state, iteration)
    self.store.add(all_rows(played.rows))
    rng = np.random.default_rng([self.exp.config.seed, STREAMS["replay"], iteration])
    batch = self.store.sample(self.spec.batch_size, self.spec.top_fraction, rng)
    return Draw(batch, metrics=rollout_metrics(played), episodes=played.episodes)

  def state_dict(self):
    return self.store.state_dict()

  def load_state_dict(self, state) -> None:
    self.store.load_state_dict(state)


# --------------------------------------------------------------------------- offline


def offline_episodes(config, split: str = "train") -> list[Episode]:
  """The offline dataset's episodes (built on first use; process 0 first)."""
  d = config.dataset
  with parallel.process_zero_first("offline_episodes"):
    return data.load_episodes(config.env.name, split, episodes=d.episodes,
                              mixture=dict(d.mixture) if d.mixture else None,
                              env_kwargs=dict(config.env.kwargs),
                              data_dir=config.data_dir or None)


def encode(exp: Experiment, episodes: Sequence[Episode]) -> TrajectoryBatch:
  """Text episodes as the experiment's batch rows (its token budget, turns, system prompt)."""
  return encoding.encode_episodes(exp.tokenizer, episodes, max_tokens=exp.config.env.max_tokens,
                                  max_turns=exp.max_turns,
                                  system_prompt=exp.config.env.system_prompt)


def trim_padding(batch: TrajectoryBatch, multiple: int = 64) -> TrajectoryBatch:
  """Drops the all-padding tail of the token axis, keeping a multiple of `multiple` tokens
  (a handful of shapes, so a handful of compiles, and no work on padding)."""
  longest = int(np.asarray(batch.attention_mask).sum(-1).max(initial=1))
  length = min(batch.num_tokens, -(-longest // multiple) * multiple)
  token_fields = ("tokens", "positions", "attention_mask", "action_mask", "turn_index",
                  "turn_end", "behaviour_logprobs", "role")
  return batch.replace(**{k: np.asarray(getattr(batch, k))[:, :length] for k in token_fields})


class OfflineStream(_Stateless):
  """Batches of dataset episodes; batch `step` is a pure function of (seed, stream, step).

  Rows come from one length bucket (a quarter of the episodes, by turn count), picked with
  probability proportional to its size: every episode is equally likely, but the rows of a
  batch have similar lengths, so `trim_padding` leaves little padding to compute on.
  """

  def __init__(self, episodes, exp: Experiment, *, batch_size: int, stream: int,
               num_buckets: int = 4):
    if not episodes:
      raise ValueError("OfflineStream: no episodes (is the dataset or its filter empty?)")
    self.episodes, self.exp, self.batch_size, self.stream = episodes, exp, batch_size, stream
    order = np.argsort([e.num_turns for e in episodes], kind="stable")
    self.buckets = [b for b in np.array_split(order, min(num_buckets, len(order))) if len(b)]
    sizes = np.array([len(b) for b in self.buckets], np.float64)
    self.weights = sizes / sizes.sum()

  def batch(self, step: int) -> TrajectoryBatch:
    rng = np.random.default_rng([self.exp.config.seed, self.stream, step])
    bucket = self.buckets[rng.choice(len(self.buckets), p=self.weights)]
    rows = rng.choice(bucket, size=self.batch_size, replace=len(bucket) < self.batch_size)
    return trim_padding(encode(self.exp, [self.episodes[int(i)] for i in rows]))

  def draw(self, state, iteration: int) -> Draw:
    del state
    return Draw(self.batch(iteration))


@dataclasses.dataclass(frozen=True)
class Offline:
  """Batches of `batch_size` offline dataset episodes, those `episode_filter` keeps (all when
  None); `stream` keeps its draws apart from other offline streams of the run (BC's)."""

  batch_size: int
  episode_filter: Callable[[list[Episode]], list[Episode]] | None = None
  stream: int = STREAMS["offline"] + 10

  def open(self, exp: Experiment, play: PlayFn | None = None) -> OfflineStream:
    del play
    episodes = offline_episodes(exp.config)
    if self.episode_filter is not None:
      episodes = self.episode_filter(episodes)
    return OfflineStream(episodes, exp, batch_size=self.batch_size, stream=self.stream)


Spec = Rollout | Replay | Filtered | Offline
