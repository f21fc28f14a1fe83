"""The training loop end to end (smoke variant): artefacts, exact resume after SIGKILL, NaN stop."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from agentrl import configs, trainer
from agentrl.logging_utils import read_metrics

CONFIG = os.path.join(configs.CONFIG_DIR, "archer_twenty_questions.py:smoke")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def smoke(data_dir, **overrides):
  items = [f"data_dir={data_dir}"] + [f"{k}={v}" for k, v in overrides.items()]
  return configs.load_config(CONFIG, items)


def final_metrics(run_dir):
  rows = read_metrics(run_dir)
  return [{k: v for k, v in row.items() if k != "time" and not k.startswith("time/")}
          for row in rows]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data_dir):
  run_dir = str(tmp_path_factory.mktemp("run"))
  final = trainer.train(smoke(data_dir, **{"train.total_iterations": 4}), run_dir)
  return run_dir, final


def test_smoke_run_writes_every_artefact(uninterrupted):
  run_dir, final = uninterrupted
  for name in ("metrics.jsonl", "learning_curve.png", "config.json"):
    assert os.path.exists(os.path.join(run_dir, name)), name
  assert os.listdir(os.path.join(run_dir, "tb"))
  assert os.path.isdir(os.path.join(run_dir, "checkpoints", "4"))
  rows = final_metrics(run_dir)
  assert [r["step"] for r in rows] == [0, 1, 2, 3, 4]
  assert {"eval/success_rate", "eval/mean_return", "eval/scored_return", "eval/score",
          "eval/context_truncated"} <= set(rows[-1])
  assert 0 <= rows[-1]["eval/context_truncated"] <= 1
  assert rows[-1]["critic/loss"] == pytest.approx(final["critic/loss"])
  assert rows[1]["actor/active"] == 0 and rows[2]["actor/active"] == 1  # One warm-up update.
  with open(os.path.join(run_dir, "learning_curve.png"), "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_sigkill_and_restart_ends_with_identical_metrics(uninterrupted, tmp_path, data_dir):
  run_dir = str(tmp_path / "killed")
  command = [sys.executable, "-m", "experiments.train", f"--config={CONFIG}",
             f"--run_dir={run_dir}", f"--config.data_dir={data_dir}",
             "--config.train.total_iterations=4"]
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  deadline = time.time() + 300
  checkpoints = os.path.join(run_dir, "checkpoints")
  while time.time() < deadline and proc.poll() is None:
    done = [int(d) for d in os.listdir(checkpoints) if d.isdigit()] \
        if os.path.isdir(checkpoints) else []
    if done and max(done) >= 2:
      break
    time.sleep(0.2)
  assert proc.poll() is None, "the run finished before it could be killed"
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  subprocess.run(command, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL,
                 stderr=subprocess.DEVNULL)
  expected, got = final_metrics(uninterrupted[0]), final_metrics(run_dir)
  assert [r["step"] for r in got] == [r["step"] for r in expected]
  for want, have in zip(expected, got):
    assert set(want) == set(have)
    for key in want:
      np.testing.assert_equal(have[key], want[key], err_msg=f"step {want['step']} {key}")


def test_resume_with_a_different_config_is_refused(uninterrupted, data_dir):
  run_dir, _ = uninterrupted
  with pytest.raises(ValueError, match="algorithm.lr"):
    trainer.train(smoke(data_dir, **{"algorithm.lr": 1.0}), run_dir)


def test_a_url_run_directory_is_refused_before_anything_runs(tmp_path):
  with pytest.raises(ValueError, match="mount the bucket"):
    trainer.train(smoke(str(tmp_path)), "gs://bucket/runs/tq")
  assert not os.path.exists("gs:")


def test_nonfinite_loss_stops_and_saves_the_state(tmp_path, data_dir):
  # A learning rate of inf turns the critic's parameters to inf on the first step, so the
  # following step's loss is not finite.
  config = smoke(data_dir, **{"algorithm.critic_lr": float("inf"),
                              "train.total_iterations": 3, "train.eval_every": 0})
  with pytest.raises(FloatingPointError, match="critic_loss"):
    trainer.train(config, str(tmp_path))
  saved = json.load(open(os.path.join(tmp_path, "config.json")))
  assert saved["algorithm"]["critic_lr"] in ("inf", float("inf"))
  assert os.listdir(os.path.join(tmp_path, "checkpoints"))
