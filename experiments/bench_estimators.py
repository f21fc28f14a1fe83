r"""Advantage estimators (turn-level GAE, GiGPO), jitted, against the numpy reference loops the tests check them with.

A batch of 1024 trajectories x 50 turns x 32 tokens per turn (ragged: each trajectory
plays 1..50 turns; each turn is 8 observation tokens then 24 action tokens). Times the
jitted estimator (after compilation, median of runs) and the slow reference on the same
arrays (device-resident for the jitted one, as inside a train step), checks they agree,
and prints the speed ratio. Run from the repository root with
the test extra installed (the references live in the test modules):

  python -m experiments.bench_estimators --json out.json
"""

from __future__ import annotations

import json
import statistics
import time

from absl import app
from absl import flags
import jax
import numpy as np

from agentrl import advantages
from agentrl import credit
from tests import test_advantages as adv_refs
from tests import test_credit as credit_refs

_JSON = flags.DEFINE_string("json", None, "Write the figures to this JSON file.")
_BATCH = flags.DEFINE_integer("batch", 1024, "Trajectories.")
_TURNS = flags.DEFINE_integer("turns", 50, "Turns per trajectory (at most).")
_TOKENS = flags.DEFINE_integer("tokens_per_turn", 32, "Tokens per turn.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed runs of the jitted estimator.")

GAMMA, LAMBDA = 0.95, 0.9
OBSERVATION_TOKENS = 8


def make_batch(batch: int, turns: int, tokens_per_turn: int, seed: int = 0) -> dict:
  rng = np.random.default_rng(seed)
  num_turns = rng.integers(1, turns + 1, size=batch)
  turn_mask = np.arange(turns)[None, :] < num_turns[:, None]
  dones = np.zeros((batch, turns), bool)
  finished = rng.random(batch) < 0.7  # the rest hit the turn limit (truncated, bootstrapped)
  dones[np.arange(batch), num_turns - 1] = finished
  offset = np.arange(tokens_per_turn)
  in_turn = np.broadcast_to(offset >= OBSERVATION_TOKENS, (turns, tokens_per_turn)).reshape(-1)
  turn_of_token = np.repeat(np.arange(turns), tokens_per_turn)
  action_mask = in_turn[None, :] & (turn_of_token[None, :] < num_turns[:, None])
  turn_index = np.where(action_mask, turn_of_token[None, :], -1).astype(np.int32)
  return dict(
      rewards=rng.normal(size=(batch, turns)).astype(np.float32) * turn_mask,
      values=rng.normal(size=(batch, turns)).astype(np.float32),
      dones=dones, turn_mask=turn_mask, turn_index=turn_index, action_mask=action_mask,
      bootstrap=rng.normal(size=batch).astype(np.float32),
      episode_returns=rng.normal(size=batch).astype(np.float32),
      group_id=(np.arange(batch) // 8).astype(np.int32),
      # Few distinct states per turn, so trajectories of a group share anchor states.
      anchor_id=rng.integers(0, 4, size=(batch, turns)).astype(np.int32) + 4 * np.arange(turns))


def reference_turn_level_gae(b: dict) -> np.ndarray:
  """The test's GAE loop over turns, then a loop broadcasting each turn to its tokens."""
  turn_adv, _ = adv_refs.ref_gae(b["rewards"], b["values"], b["dones"], b["turn_mask"], GAMMA,
                                 LAMBDA, b["bootstrap"])
  out = np.zeros(b["turn_index"].shape, np.float32)
  for i in range(out.shape[0]):
    for t in range(out.shape[1]):
      if b["action_mask"][i, t]:
        out[i, t] = turn_adv[i, b["turn_index"][i, t]]
  return out


def time_jitted(fn, *args, repeats: int) -> tuple[float, float, np.ndarray]:
  start = time.perf_counter()
  out = jax.block_until_ready(fn(*args))
  compile_s = time.perf_counter() - start
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return statistics.median(times), compile_s, out


def main(argv):
  del argv
  b = make_batch(_BATCH.value, _TURNS.value, _TOKENS.value)
  results = {"batch": _BATCH.value, "turns": _TURNS.value, "tokens_per_turn": _TOKENS.value,
             "device": jax.devices()[0].device_kind}

  turn_gae = jax.jit(lambda r, v, d, m, ti, am, boot: advantages.turn_level_gae(
      r, v, d, m, ti, am, gamma=GAMMA, lambda_=LAMBDA, bootstrap_value=boot)[0])
  # The estimators run inside a jitted train step on arrays already on the device.
  args = jax.device_put((b["rewards"], b["values"], b["dones"], b["turn_mask"],
                         b["turn_index"], b["action_mask"], b["bootstrap"]))
  ours_s, compile_s, ours = time_jitted(turn_gae, *args, repeats=_REPEATS.value)
  start = time.perf_counter()
  ref = reference_turn_level_gae(b)
  ref_s = time.perf_counter() - start
  np.testing.assert_allclose(np.asarray(ours), ref, atol=1e-3, rtol=1e-3)
  results["turn_level_gae"] = dict(jitted_s=ours_s, reference_s=ref_s, ratio=ref_s / ours_s,
                                   compile_s=compile_s)

  gigpo = jax.jit(lambda ret, gid, rew, m, anchor: credit.gigpo_advantages(
      ret, gid, rew, m, anchor, gamma=GAMMA))
  args = jax.device_put((b["episode_returns"], b["group_id"], b["rewards"], b["turn_mask"],
                         b["anchor_id"]))
  ours_s, compile_s, ours = time_jitted(gigpo, *args, repeats=_REPEATS.value)
  start = time.perf_counter()
  ref = credit_refs.ref_gigpo(b["episode_returns"], b["group_id"], b["rewards"], b["turn_mask"],
                              b["anchor_id"], GAMMA, 1.0, True, True, True, 1e-6)
  ref_s = time.perf_counter() - start
  np.testing.assert_allclose(np.asarray(ours), ref, atol=1e-3, rtol=1e-3)
  results["gigpo"] = dict(jitted_s=ours_s, reference_s=ref_s, ratio=ref_s / ours_s,
                          compile_s=compile_s)

  for name, r in results.items():
    if isinstance(r, dict):
      print(f"{name:>16}: jitted {r['jitted_s'] * 1e3:8.2f} ms, numpy reference "
            f"{r['reference_s']:7.2f} s, ratio {r['ratio']:8.0f}x (compile {r['compile_s']:.1f} s)")
  if _JSON.value:
    with open(_JSON.value, "w", encoding="utf-8") as f:
      json.dump(results, f, indent=2)


if __name__ == "__main__":
  app.run(main)
