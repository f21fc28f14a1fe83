"""Host-side replay for utterance-level (turn-level) off-policy learning, e.g. ArCHer's critic.

`utterance_transitions` cuts a `agentrl.types.TrajectoryBatch` into one fixed-shape row per
agent turn (state, action, reward, next state, done), and `ReplayBuffer` keeps the newest
`capacity` such rows in preallocated numpy arrays and samples them uniformly::

  buffer = ReplayBuffer(transition_spec(max_state_tokens=512, max_action_tokens=64), 100_000)
  buffer.add(utterance_transitions(result.batch, max_state_tokens=512, max_action_tokens=64,
                                   pad_id=tok.pad_id))
  batch = buffer.sample(256, rng)  # dict of numpy arrays, rows drawn with replacement

`ReplayBuffer.state_dict` / `load_state_dict` give plain numpy arrays and ints (for
`agentrl.checkpoint.Checkpointer`'s `extras`); a restored buffer continues exactly like one
that was never interrupted, provided the sampling generator's state is restored too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from agentrl.types import TrajectoryBatch

Spec = Mapping[str, tuple[tuple[int, ...], Any]]


class ReplayBuffer:
  """A ring buffer of fixed-shape rows, one numpy array per field.

  Args:
    spec: field name -> (shape of one row, dtype).
    capacity: rows kept; adding more overwrites the oldest.
  """

  def __init__(self, spec: Spec, capacity: int):
    if capacity <= 0:
      raise ValueError(f"ReplayBuffer capacity must be positive, got {capacity}.")
    if not spec:
      raise ValueError("ReplayBuffer spec has no fields.")
    self.capacity = int(capacity)
    self.spec = {name: (tuple(int(d) for d in shape), np.dtype(dtype))
                 for name, (shape, dtype) in spec.items()}
    self._data = {name: np.zeros((self.capacity,) + shape, dtype)
                  for name, (shape, dtype) in self.spec.items()}
    self._next = 0  # row the next insertion writes
    self._size = 0  # valid rows: 0 .. size-1

  def __len__(self) -> int:
    return self._size

  def _check(self, batch: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], int]:
    missing = [k for k in self.spec if k not in batch]
    extra = [k for k in batch if k not in self.spec]
    if missing:
      raise KeyError(f"ReplayBuffer batch is missing field {missing[0]!r} "
                     f"(expected {sorted(self.spec)}).")
    if extra:
      raise KeyError(f"ReplayBuffer batch has unknown field {extra[0]!r} "
                     f"(expected {sorted(self.spec)}).")
    arrays, n = {}, None
    for name, (shape, dtype) in self.spec.items():
      value = np.asarray(batch[name])
      if value.dtype != dtype:
        raise TypeError(f"ReplayBuffer field {name!r} has dtype {value.dtype}, expected {dtype}.")
      if value.ndim != len(shape) + 1 or value.shape[1:] != shape:
        raise ValueError(f"ReplayBuffer field {name!r} has shape {value.shape}, expected "
                         f"(n,) + {shape}.")
      if n is None:
        n = value.shape[0]
      elif value.shape[0] != n:
        raise ValueError(f"ReplayBuffer field {name!r} has {value.shape[0]} rows, the other "
                         f"fields {n}.")
      arrays[name] = value
    return arrays, int(n)

  def add(self, batch: Mapping[str, Any]) -> None:
    """Inserts the rows of `batch` (every field, leading dimension n) after the newest rows.

    Equivalent to adding the rows one at a time: when n exceeds the capacity only the
    newest `capacity` rows stay.
    """
    arrays, n = self._check(batch)
    if n == 0:
      return
    keep = min(n, self.capacity)
    start = (self._next + n - keep) % self.capacity
    rows = (start + np.arange(keep)) % self.capacity
    for name, value in arrays.items():
      self._data[name][rows] = value[n - keep:]
    self._next = (self._next + n) % self.capacity
    self._size = min(self._size + n, self.capacity)

  def sample(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """`n` rows drawn uniformly with replacement from the valid rows (copies)."""
    if self._size == 0:
      raise ValueError("ReplayBuffer.sample: the buffer is empty.")
    index = rng.integers(0, self._size, size=n)
    return {name: data[index] for name, data in self._data.items()}

  def state_dict(self) -> dict[str, Any]:
    """The buffer's contents as numpy arrays (valid rows only) and ints."""
    return {"fields": {name: data[:self._size].copy() for name, data in self._data.items()},
            "next": self._next, "size": self._size, "capacity": self.capacity}

  def load_state_dict(self, state: Mapping[str, Any]) -> None:
    """Restores contents saved by `state_dict` (ints may come back as 0-d arrays)."""
    capacity, size, nxt = (int(np.asarray(state[k])) for k in ("capacity", "size", "next"))
    if capacity != self.capacity:
      raise ValueError(f"ReplayBuffer state has capacity {capacity}, this buffer "
                       f"{self.capacity}.")
    if not (0 <= size <= capacity and 0 <= nxt < capacity):
      raise ValueError(f"ReplayBuffer state has size {size}, next {nxt}, capacity {capacity}.")
    fields, _ = self._check(dict(state["fields"])) if size else (None, 0)
    for name, data in self._data.items():
      data[:] = 0
      if size:
        if fields[name].shape[0] != size:
          raise ValueError(f"ReplayBuffer state field {name!r} has {fields[name].shape[0]} "
                           f"rows, size is {size}.")
        data[:size] = fields[name]
    self._next, self._size = nxt, size


def transition_spec(max_state_tokens: int, max_action_tokens: int) -> dict[str, tuple]:
  """The `ReplayBuffer` spec of `utterance_transitions` rows."""
  s, a = (max_state_tokens,), (max_action_tokens,)
  return {
      "state": (s, np.int32), "state_mask": (s, np.bool_),
      "action": (a, np.int32), "action_mask": (a, np.bool_),
      "reward": ((), np.float32), "done": ((), np.bool_),
      "next_state": (s, np.int32), "next_state_mask": (s, np.bool_),
      "last": ((), np.bool_), "truncated": ((), np.bool_), "turn": ((), np.int32),
  }


def _left_window(tokens: np.ndarray, valid: np.ndarray, rows: np.ndarray, end: np.ndarray,
                 width: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
  """Tokens [end - width, end) of each row, left-padded where the index is negative."""
  src = end[:, None] - width + np.arange(width)[None, :]
  ok = src >= 0
  src = np.maximum(src, 0)
  mask = ok & valid[rows[:, None], src]
  out = np.where(mask, tokens[rows[:, None], src], pad_id).astype(np.int32)
  return out, mask


def utterance_transitions(batch: TrajectoryBatch, *, max_state_tokens: int,
                          max_action_tokens: int, pad_id: int) -> dict[str, np.ndarray]:
  """One transition per agent turn (b, k) of a right-padded `TrajectoryBatch`.

  A turn contributes a row when `turn_mask[b, k]` holds and it has at least one action token
  (`turn_index == k` and `action_mask`). Rows are ordered by b, then k. With N rows, S =
  `max_state_tokens` and A = `max_action_tokens`:

    state, state_mask            int32/bool[N, S]: every token of row b before turn k's first
                                 action token, LEFT-padded with `pad_id`; longer contexts keep
                                 their last S tokens.
    action, action_mask          int32/bool[N, A]: turn k's action tokens in order,
                                 RIGHT-padded; longer utterances keep their first A tokens.
    reward                       float32[N]: rewards[b, k].
    done                         bool[N]: dones[b, k] (a true terminal: do not bootstrap).
    next_state, next_state_mask  like state, before the first action token of the row's next
                                 contributing turn; for the row's last turn the whole row
                                 (its real tokens), only meaningful when not done.
    last                         bool[N]: k is the row's last contributing turn.
    truncated                    bool[N]: last and not done (a time-limit end: bootstrap).
    turn                         int32[N]: k.
  """
  tokens = np.asarray(batch.tokens)
  real = np.asarray(batch.attention_mask, bool)
  act = np.asarray(batch.action_mask, bool)
  turn_index = np.asarray(batch.turn_index)
  turn_mask = np.asarray(batch.turn_mask, bool)
  b_size, t_size = tokens.shape
  k_size = turn_mask.shape[1]

  is_action = act & (turn_index >= 0) & (turn_index < k_size)
  bs, ts = np.nonzero(is_action)
  ks = turn_index[bs, ts]
  first = np.full((b_size, k_size), t_size, np.int64)
  np.minimum.at(first, (bs, ks), ts)
  valid = turn_mask & (first < t_size)
  # Length of each row: one past its last real token (the batch is right-padded).
  length = np.where(real.any(1), t_size - np.argmax(real[:, ::-1], axis=1), 0)

  next_first = np.empty((b_size, k_size), np.int64)
  later = np.zeros((b_size, k_size), bool)
  upcoming = length.astype(np.int64)
  seen = np.zeros(b_size, bool)
  for k in reversed(range(k_size)):
    next_first[:, k] = upcoming
    later[:, k] = seen
    upcoming = np.where(valid[:, k], first[:, k], upcoming)
    seen |= valid[:, k]

  rows, turns = np.nonzero(valid)
  state, state_mask = _left_window(tokens, real, rows, first[rows, turns], max_state_tokens,
                                   pad_id)
  next_state, next_mask = _left_window(tokens, real, rows, next_first[rows, turns],
                                       max_state_tokens, pad_id)

  n = rows.shape[0]
  selected = (turn_index[rows] == turns[:, None]) & act[rows]  # [N, T]
  rank = np.cumsum(selected, axis=1) - 1
  i, t = np.nonzero(selected & (rank < max_action_tokens))
  action = np.full((n, max_action_tokens), pad_id, np.int32)
  action_mask = np.zeros((n, max_action_tokens), bool)
  action[i, rank[i, t]] = tokens[rows[i], t]
  action_mask[i, rank[i, t]] = True

  done = np.asarray(batch.dones, bool)[rows, turns]
  last = ~later[rows, turns]
  return {
      "state": state, "state_mask": state_mask,
      "action": action, "action_mask": action_mask,
      "reward": np.asarray(batch.rewards, np.float32)[rows, turns],
      "done": done,
      "next_state": next_state, "next_state_mask": next_mask,
      "last": last, "truncated": last & ~done,
      "turn": turns.astype(np.int32),
  }
