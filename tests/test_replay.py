"""Tests for agentrl.replay: the ring buffer and utterance-level transitions."""

from __future__ import annotations

import numpy as np
import pytest

from agentrl import replay
from agentrl.types import TrajectoryBatch

SPEC = {"x": ((3,), np.int32), "r": ((), np.float32), "d": ((), np.bool_)}


def _rows(start: int, n: int) -> dict[str, np.ndarray]:
  ids = np.arange(start, start + n)
  return {"x": np.stack([ids, ids + 1, ids + 2], 1).astype(np.int32),
          "r": ids.astype(np.float32), "d": ids % 2 == 0}


# ----------------------------------------------------------------------------- ReplayBuffer


def test_ring_overwrites_oldest_and_len():
  buf = replay.ReplayBuffer(SPEC, capacity=5)
  assert len(buf) == 0
  buf.add(_rows(0, 3))
  assert len(buf) == 3
  buf.add(_rows(3, 4))  # rows 0..6, capacity 5 -> rows 2..6 remain
  assert len(buf) == 5
  assert sorted(buf.state_dict()["fields"]["r"].tolist()) == [2, 3, 4, 5, 6]
  assert buf.state_dict()["next"] == 2


def test_batch_larger_than_capacity_keeps_newest_and_equals_row_by_row():
  big, single = replay.ReplayBuffer(SPEC, 4), replay.ReplayBuffer(SPEC, 4)
  big.add(_rows(0, 2))
  single.add(_rows(0, 2))
  big.add(_rows(2, 11))
  for i in range(2, 13):
    single.add(_rows(i, 1))
  a, b = big.state_dict(), single.state_dict()
  assert a["next"] == b["next"] and a["size"] == b["size"] == 4
  for name in SPEC:
    np.testing.assert_array_equal(a["fields"][name], b["fields"][name])
  assert sorted(a["fields"]["r"].tolist()) == [9, 10, 11, 12]


def test_sample_uniform_over_valid_rows_only():
  buf = replay.ReplayBuffer(SPEC, capacity=100)
  buf.add(_rows(0, 3))  # 97 zero rows that must never be drawn
  out = buf.sample(6000, np.random.default_rng(0))
  counts = np.bincount(out["r"].astype(int), minlength=3)
  assert counts.shape == (3,) and counts.sum() == 6000
  assert np.all(np.abs(counts / 6000 - 1 / 3) < 0.03)
  np.testing.assert_array_equal(out["x"][:, 0], out["r"].astype(np.int32))  # rows stay whole
  np.testing.assert_array_equal(out["d"], out["r"].astype(int) % 2 == 0)


def test_sample_without_modulo_bias_after_wrap():
  buf = replay.ReplayBuffer(SPEC, capacity=7)
  buf.add(_rows(0, 10))
  counts = np.bincount(buf.sample(70000, np.random.default_rng(1))["r"].astype(int) - 3)
  assert counts.shape == (7,) and np.all(np.abs(counts / 70000 - 1 / 7) < 0.01)


def test_state_dict_round_trip_continues_exactly():
  rng_a = np.random.default_rng(5)
  a = replay.ReplayBuffer(SPEC, 6)
  a.add(_rows(0, 4))
  a.sample(3, rng_a)
  state, rng_state = a.state_dict(), rng_a.bit_generator.state
  b = replay.ReplayBuffer(SPEC, 6)
  b.load_state_dict({**state, "next": np.asarray(state["next"]),
                     "size": np.asarray(state["size"])})
  rng_b = np.random.default_rng()
  rng_b.bit_generator.state = rng_state
  for start in (4, 9, 12):
    a.add(_rows(start, 5 if start == 4 else 3))
    b.add(_rows(start, 5 if start == 4 else 3))
    sa, sb = a.sample(8, rng_a), b.sample(8, rng_b)
    for name in SPEC:
      np.testing.assert_array_equal(sa[name], sb[name])
  assert len(a) == len(b) == 6


def test_load_state_dict_rejects_wrong_capacity():
  a = replay.ReplayBuffer(SPEC, 6)
  a.add(_rows(0, 2))
  with pytest.raises(ValueError, match="capacity"):
    replay.ReplayBuffer(SPEC, 5).load_state_dict(a.state_dict())


@pytest.mark.parametrize("mutate, error, needle", [
    (lambda b: b.pop("r"), KeyError, "'r'"),
    (lambda b: b.update(extra=np.zeros(2)), KeyError, "'extra'"),
    (lambda b: b.update(x=np.zeros((2, 4), np.int32)), ValueError, "'x'"),
    (lambda b: b.update(r=np.zeros(2, np.float64)), TypeError, "'r'"),
    (lambda b: b.update(d=np.zeros(3, bool)), ValueError, "'d'"),
])
def test_bad_batches_name_the_field(mutate, error, needle):
  buf = replay.ReplayBuffer(SPEC, 4)
  batch = _rows(0, 2)
  mutate(batch)
  with pytest.raises(error, match=needle):
    buf.add(batch)
  assert len(buf) == 0


def test_sample_empty_raises():
  with pytest.raises(ValueError, match="empty"):
    replay.ReplayBuffer(SPEC, 4).sample(1, np.random.default_rng(0))


# ---------------------------------------------------------------------- utterance_transitions


def _make_batch(rows: list[dict], t_size: int, k_size: int) -> TrajectoryBatch:
  """rows: each {"segments": [(kind, tokens, turn)], "rewards", "turn_mask", "dones"}."""
  batch = TrajectoryBatch.zeros(len(rows), t_size, k_size)
  arrays = {name: np.array(getattr(batch, name)) for name in (
      "tokens", "attention_mask", "action_mask", "turn_index", "turn_end", "rewards",
      "turn_mask", "dones")}
  for b, row in enumerate(rows):
    t = 0
    for kind, toks, turn in row["segments"]:
      n = len(toks)
      arrays["tokens"][b, t:t + n] = toks
      arrays["attention_mask"][b, t:t + n] = True
      if kind == "act":
        arrays["action_mask"][b, t:t + n] = True
        arrays["turn_index"][b, t:t + n] = turn
        arrays["turn_end"][b, t + n - 1] = True
      t += n
    kk = len(row["rewards"])
    arrays["rewards"][b, :kk] = row["rewards"]
    arrays["turn_mask"][b, :kk] = row["turn_mask"]
    arrays["dones"][b, :kk] = row["dones"]
  return batch.replace(**arrays)


def _random_rows(rng: np.random.Generator, n_rows: int, k_size: int) -> tuple[list[dict], int]:
  rows, longest = [], 0
  for _ in range(n_rows):
    turns = int(rng.integers(0, k_size + 1))
    segments = [("obs", rng.integers(1, 100, rng.integers(1, 12)).tolist(), -1)]
    for k in range(turns):
      segments.append(("act", rng.integers(100, 200, rng.integers(1, 9)).tolist(), k))
      if k < turns - 1 or rng.random() < 0.5:
        segments.append(("obs", rng.integers(1, 100, rng.integers(0, 10)).tolist(), -1))
    segments = [s for s in segments if s[1]]
    done = turns > 0 and rng.random() < 0.5
    rows.append({"segments": segments, "rewards": rng.normal(size=turns).tolist(),
                 "turn_mask": [True] * turns, "dones": [False] * (turns - 1) + [done]})
    longest = max(longest, sum(len(s[1]) for s in segments))
  return rows, longest


def _reference(rows: list[dict], s: int, a: int, pad: int) -> list[dict]:
  """Per-row loop over the hand-built segments."""
  out = []
  for row in rows:
    flat, starts, actions = [], {}, {}
    for kind, toks, turn in row["segments"]:
      if kind == "act":
        starts[turn] = len(flat)
        actions[turn] = list(toks)
      flat += list(toks)
    turns = sorted(k for k in starts if row["turn_mask"][k])
    for i, k in enumerate(turns):
      end_next = starts[turns[i + 1]] if i + 1 < len(turns) else len(flat)

      def window(end):
        ctx = flat[:end][-s:]
        return [pad] * (s - len(ctx)) + ctx, [False] * (s - len(ctx)) + [True] * len(ctx)

      act = actions[k][:a]
      st, sm = window(starts[k])
      ns, nm = window(end_next)
      last = i == len(turns) - 1
      out.append({"state": st, "state_mask": sm, "next_state": ns, "next_state_mask": nm,
                  "action": act + [pad] * (a - len(act)),
                  "action_mask": [True] * len(act) + [False] * (a - len(act)),
                  "reward": np.float32(row["rewards"][k]), "done": row["dones"][k],
                  "last": last, "truncated": last and not row["dones"][k], "turn": k})
  return out


def _assert_matches(got: dict, want: list[dict]):
  assert set(got) == set(replay.transition_spec(1, 1))
  for name, (shape, dtype) in replay.transition_spec(*got["state"].shape[1:],
                                                     *got["action"].shape[1:]).items():
    assert got[name].dtype == dtype and got[name].shape == (len(want),) + shape, name
    np.testing.assert_array_equal(got[name], np.array([w[name] for w in want], dtype).reshape(
        got[name].shape), err_msg=name)


@pytest.mark.parametrize("seed", range(4))
def test_transitions_match_loop_reference_on_random_ragged_batches(seed):
  rng = np.random.default_rng(seed)
  rows, longest = _random_rows(rng, n_rows=7, k_size=4)
  t_size = longest + int(rng.integers(0, 5))
  s, a = (8, 4) if seed % 2 else (64, 16)  # truncating and non-truncating windows
  got = replay.utterance_transitions(_make_batch(rows, t_size, 4), max_state_tokens=s,
                                     max_action_tokens=a, pad_id=0)
  want = _reference(rows, s, a, pad=0)
  assert len(want) == sum(len(r["rewards"]) for r in rows)
  _assert_matches(got, want)
  buf = replay.ReplayBuffer(replay.transition_spec(s, a), capacity=64)
  buf.add(got)  # the rows fit the buffer spec exactly
  assert len(buf) == len(want)


def test_hand_computed_two_turn_row_and_edge_cases():
  rows = [
      {"segments": [("obs", [1, 2, 3, 4, 5], -1), ("act", [10, 11], 0), ("obs", [6], -1),
                    ("act", [12, 13, 14], 1)],
       "rewards": [0.5, -1.0], "turn_mask": [True, True], "dones": [False, True]},
      {"segments": [("obs", [7, 8], -1)], "rewards": [], "turn_mask": [], "dones": []},
      {"segments": [("obs", [9], -1), ("act", [15], 0), ("obs", [3, 3], -1)],
       "rewards": [2.0], "turn_mask": [True], "dones": [False]},
  ]
  out = replay.utterance_transitions(_make_batch(rows, 14, 3), max_state_tokens=4,
                                     max_action_tokens=2, pad_id=-7)
  assert out["turn"].tolist() == [0, 1, 0]  # the zero-turn row contributes nothing
  np.testing.assert_array_equal(out["state"], [[2, 3, 4, 5], [5, 10, 11, 6], [-7, -7, -7, 9]])
  np.testing.assert_array_equal(out["state_mask"][2], [False, False, False, True])
  np.testing.assert_array_equal(out["action"], [[10, 11], [12, 13], [15, -7]])
  np.testing.assert_array_equal(out["action_mask"], [[1, 1], [1, 1], [1, 0]])
  np.testing.assert_array_equal(out["next_state"], [[5, 10, 11, 6], [11, 6, 12, 13, 14][-4:],
                                                    [9, 15, 3, 3]])
  np.testing.assert_allclose(out["reward"], [0.5, -1.0, 2.0])
  assert out["done"].tolist() == [False, True, False]
  assert out["last"].tolist() == [False, True, True]
  assert out["truncated"].tolist() == [False, False, True]


def test_turn_without_turn_mask_or_tokens_is_skipped():
  rows = [{"segments": [("obs", [1], -1), ("act", [10], 0), ("obs", [2], -1), ("act", [11], 1)],
           "rewards": [1.0, 2.0, 3.0], "turn_mask": [True, False, True], "dones": [False] * 3}]
  out = replay.utterance_transitions(_make_batch(rows, 6, 3), max_state_tokens=6,
                                     max_action_tokens=1, pad_id=0)
  # turn 1 is masked out, turn 2 has no tokens: only turn 0 remains and is the row's last.
  assert out["turn"].tolist() == [0] and out["last"].tolist() == [True]
  np.testing.assert_array_equal(out["next_state"][0], [0, 0, 1, 10, 2, 11])


def test_empty_batch_gives_zero_rows():
  out = replay.utterance_transitions(TrajectoryBatch.zeros(2, 5, 3), max_state_tokens=4,
                                     max_action_tokens=2, pad_id=0)
  assert out["state"].shape == (0, 4) and out["action"].shape == (0, 2)
  buf = replay.ReplayBuffer(replay.transition_spec(4, 2), 3)
  buf.add(out)
  assert len(buf) == 0
