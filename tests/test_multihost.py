"""Two processes x 4 fake CPU devices (`jax.distributed`, gloo) train like one process x 8.

The main experiment's smoke config (ArCHer on Twenty Questions, shrunk further: see
`OVERRIDES`) runs three iterations twice:

* reference: one process with 8 fake CPU devices;
* multi-host: two processes with 4 fake CPU devices each, joined by `jax.distributed` on
  127.0.0.1 with gloo collectives. Each process plays its own rollout shard; both train two
  iterations (a checkpoint of the sharded state and the replay buffer each), then call the
  trainer again for three, which restores iteration 2's checkpoint across the two processes and
  runs the third.

Both use 2 rollout shards (`distributed.rollout_shards`), so they play the same episodes and
update on the same batches. What may differ is the order of floating-point sums across devices
(an all-reduce inside one process or across two over gloo): differences of a few float32 ulps,
far below the 1e-4 tolerance used. Any real divergence (a different episode, batch or
restored state) changes the losses at the 1e-2 level or more, and the discrete rollout
statistics exactly.

This file is also the worker: ``python tests/test_multihost.py RUN_DIR DATA_DIR DEVICES
ITERATIONS [PROCESS_ID NUM_PROCESSES PORT]``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = "archer_twenty_questions.py:smoke"
# Smaller than smoke: fewer compiles (no BC warm start, no greedy evaluation; evaluation
# batches shaped like the rollout shards), 4 task seeds per iteration in 2 rollout shards.
OVERRIDES = ["bc.steps=0", "eval.greedy=false", "eval.episodes=2", "train.eval_every=1",
             "rollout.seeds_per_iteration=4", "distributed.rollout_shards=2",
             "train.checkpoint_every=1"]
TIMEOUT = 600  # Seconds per launch; the processes are killed after it.
TOL = 1e-4


def worker(run_dir: str, data_dir: str, devices: int, iterations: list[int],
           process_id: int = 0, num_processes: int = 1, port: int = 0) -> None:
  """Trains the config for each total in `iterations` in turn (a later call resumes)."""
  os.environ["XLA_FLAGS"] = " ".join([
      os.environ.get("XLA_FLAGS", ""), f"--xla_force_host_platform_device_count={devices}",
      "--xla_backend_optimization_level=0", "--xla_llvm_disable_expensive_passes=true"])
  os.environ["JAX_PLATFORMS"] = "cpu"
  sys.path.insert(0, ROOT)
  import jax  # pylint: disable=import-outside-toplevel

  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  # The resuming call compiles what the first one did: read it back from disk.
  jax.config.update("jax_compilation_cache_dir", os.path.join(run_dir, "xla_cache"))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  from agentrl import configs, trainer  # pylint: disable=import-outside-toplevel

  overrides = [f"data_dir={data_dir}", *OVERRIDES]
  if num_processes > 1:
    overrides += ["distributed.mode=on", f"distributed.coordinator_address=127.0.0.1:{port}",
                  f"distributed.num_processes={num_processes}",
                  f"distributed.process_id={process_id}"]
  for total in iterations:
    config = configs.load_config(CONFIG, overrides + [f"train.total_iterations={total}"])
    trainer.train(config, run_dir)
  assert jax.device_count() == 8 and jax.local_device_count() == devices
  print(f"process {jax.process_index()} of {jax.process_count()} done", flush=True)


# ------------------------------------------------------------------------------- the test


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def launch(run_dir, data_dir, devices, iterations, *distributed):
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": ROOT}
  command = [sys.executable, os.path.abspath(__file__), run_dir, data_dir, str(devices),
             ",".join(map(str, iterations)), *map(str, distributed)]
  return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


def wait_all(procs, timeout: float = TIMEOUT) -> list[str]:
  """Waits for every process (killing all of them after `timeout` or when one fails);
  returns their outputs."""
  import pytest  # pylint: disable=import-outside-toplevel

  deadline = time.time() + timeout
  try:
    while any(p.poll() is None for p in procs):
      if time.time() > deadline or any(p.poll() not in (None, 0) for p in procs):
        break
      time.sleep(0.5)
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  outputs = [p.communicate()[0] for p in procs]
  for i, (p, out) in enumerate(zip(procs, outputs)):
    if p.returncode != 0:
      pytest.fail(f"process {i} exited with {p.returncode}:\n{out[-6000:]}")
  return outputs


def test_two_processes_train_and_resume_like_one(tmp_path):
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel

  from agentrl import checkpoint, configs, trainer  # pylint: disable=import-outside-toplevel
  from agentrl.logging_utils import read_metrics  # pylint: disable=import-outside-toplevel

  data_dir, one, two = (str(tmp_path / name) for name in ("data", "one", "two"))
  # The reference also builds the tokenizer and the dataset caches that the others read.
  wait_all([launch(one, data_dir, 8, [3])])
  port = free_port()
  outputs = wait_all([launch(two, data_dir, 4, [2, 3], i, 2, port) for i in range(2)])
  assert "process 1 of 2 done" in outputs[1]

  def rows(run_dir):
    return [{k: v for k, v in row.items() if k != "time" and not k.startswith("time/")}
            for row in read_metrics(run_dir)]

  expected, got = rows(one), rows(two)
  assert [r["step"] for r in got] == [r["step"] for r in expected] == [0, 1, 2, 3]
  for want, have in zip(expected, got):
    assert set(have) == set(want)
    for key in want:
      np.testing.assert_allclose(have[key], want[key], rtol=TOL, atol=TOL,
                                 err_msg=f"step {want['step']} {key}")
  assert float(expected[1]["episodes"]) == 4  # Two shards of two seeds, both counted.

  # The final states (saved by two processes and by one) restore alike on one device.
  config = configs.load_config(CONFIG, [f"data_dir={data_dir}", *OVERRIDES])
  exp = trainer.build(config)
  template = jax.eval_shape(exp.algorithm.init, jax.random.PRNGKey(0))
  states = []
  for run_dir in (one, two):
    with checkpoint.Checkpointer(os.path.join(run_dir, "checkpoints")) as ckpt:
      assert ckpt.latest_step() == 3
      state, extras, _ = ckpt.restore(state_template=template)
      states.append((state, extras))
  (ref, ref_extras), (new, new_extras) = states
  for a, b in zip(jax.tree.leaves(ref), jax.tree.leaves(new)):
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=TOL, atol=TOL)
  # The replay buffer: the same on both processes, saved once, equal to the reference's.
  assert jax.tree.structure(new_extras) == jax.tree.structure(ref_extras)
  jax.tree.map(np.testing.assert_array_equal, new_extras, ref_extras)


if __name__ == "__main__":
  run, data, devs, totals, *dist = sys.argv[1:]
  worker(run, data, int(devs), [int(x) for x in totals.split(",")], *map(int, dist))
