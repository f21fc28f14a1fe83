"""Tests for agentrl.logging_utils: JSONL content, resume truncation, TensorBoard, PNG."""

from __future__ import annotations

import glob
import json
import math
import os
import struct

import jax.numpy as jnp
import numpy as np
import pytest

from agentrl import logging_utils
from agentrl.logging_utils import RunLogger, read_metrics

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _tb_scalars(tb_dir: str) -> dict[str, list[tuple[int, float]]]:
  """Reads scalars from event files: TensorBoard's reader if installed, else TFRecord framing."""
  try:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
  except ImportError:
    EventAccumulator = None
  if EventAccumulator is not None:
    acc = EventAccumulator(tb_dir)
    acc.Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}
  from tensorboardX.proto import event_pb2

  out: dict[str, list[tuple[int, float]]] = {}
  for path in sorted(glob.glob(os.path.join(tb_dir, "events.out.tfevents.*"))):
    data = open(path, "rb").read()
    pos = 0
    while pos + 12 <= len(data):  # u64 length, u32 crc, payload, u32 crc
      (length,) = struct.unpack("<Q", data[pos:pos + 8])
      payload = data[pos + 12:pos + 12 + length]
      pos += 12 + length + 4
      event = event_pb2.Event.FromString(payload)
      for v in event.summary.value:
        out.setdefault(v.tag, []).append((event.step, v.simple_value))
  return out


def test_jsonl_content_and_conversion(tmp_path):
  run = str(tmp_path / "run")
  with RunLogger(run, total_steps=10, progress=False) as logger:
    got = logger.log(1, {"mean_return": jnp.float32(0.5), "loss": np.array([2.0]),
                         "count": 3, "flag": True})
    logger.log(2, {"mean_return": 1.25, "loss": float("nan"), "grad": float("inf")})
  assert got == {"mean_return": 0.5, "loss": 2.0, "count": 3.0, "flag": 1.0}
  assert all(type(v) is float for v in got.values())
  lines = open(os.path.join(run, "metrics.jsonl")).read().splitlines()
  assert len(lines) == 2
  raw = [json.loads(line) for line in lines]  # strict JSON: non-finite values are strings
  assert raw[0]["step"] == 1 and raw[0]["mean_return"] == 0.5 and raw[0]["count"] == 3.0
  assert raw[1]["loss"] == "nan" and raw[1]["grad"] == "inf"
  assert "NaN" not in lines[1] and "Infinity" not in lines[1]
  assert raw[0]["time"] <= raw[1]["time"]
  back = read_metrics(run)
  assert math.isnan(back[1]["loss"]) and back[1]["grad"] == math.inf
  assert back[1]["mean_return"] == 1.25


def test_log_is_flushed_before_close(tmp_path):
  logger = RunLogger(str(tmp_path), total_steps=5, progress=False)
  logger.log(3, {"loss": 1.0})
  # Another reader (or a post-mortem after SIGKILL) already sees the line.
  assert [r["step"] for r in read_metrics(str(tmp_path))] == [3]
  logger.close()
  logger.close()  # idempotent
  with pytest.raises(RuntimeError):
    logger.log(4, {"loss": 1.0})


def test_bad_metrics_rejected(tmp_path):
  with RunLogger(str(tmp_path), total_steps=5, progress=False) as logger:
    with pytest.raises(ValueError, match="single number"):
      logger.log(1, {"vec": np.ones(3)})
    with pytest.raises(ValueError, match="reserved"):
      logger.log(1, {"step": 1.0})
    with pytest.raises(ValueError, match="single number"):
      logger.log(1, {"name": "abc"})
  assert read_metrics(str(tmp_path)) == []


def test_resume_truncates_later_steps(tmp_path):
  run = str(tmp_path)
  with RunLogger(run, total_steps=10, progress=False) as logger:
    for step in range(1, 7):
      logger.log(step, {"loss": float(step)})
  with open(os.path.join(run, "metrics.jsonl"), "a") as f:
    f.write('{"step": 7, "loss": 7.')  # torn write from a killed process
  # Checkpoint was at 4: steps 5, 6 and the torn line go.
  with RunLogger(run, total_steps=10, resume_step=4, progress=False) as logger:
    assert [r["step"] for r in read_metrics(run)] == [1, 2, 3, 4]
    for step in range(5, 8):
      logger.log(step, {"loss": 10.0 * step})
  steps = [r["step"] for r in read_metrics(run)]
  assert steps == [1, 2, 3, 4, 5, 6, 7]
  assert [r["loss"] for r in read_metrics(run)] == [1, 2, 3, 4, 50, 60, 70]


def test_fresh_start_clears_old_log(tmp_path):
  with RunLogger(str(tmp_path), total_steps=3, progress=False) as logger:
    logger.log(0, {"loss": 1.0})
    logger.log(1, {"loss": 1.0})
  with RunLogger(str(tmp_path), total_steps=3, progress=False) as logger:
    logger.log(0, {"loss": 2.0})
  assert read_metrics(str(tmp_path))[0]["loss"] == 2.0
  assert len(read_metrics(str(tmp_path))) == 1


def test_progress_bar_starts_at_resume_step_and_shows_headline(tmp_path):
  logger = RunLogger(str(tmp_path), total_steps=100, resume_step=40)
  assert logger._bar.n == 40
  logger.log(45, {"success_rate": 0.25, "loss": 3.0})
  assert logger._bar.n == 45
  assert "success_rate=0.25" in str(logger._bar)
  assert "loss" not in str(logger._bar)
  logger.close()


def test_png_learning_curve_includes_pre_resume_part(tmp_path):
  run = str(tmp_path)
  with RunLogger(run, total_steps=4, progress=False) as logger:
    logger.log(1, {"success_rate": 0.1, "policy_loss": 1.0, "kl": 0.0})
    logger.log(2, {"success_rate": 0.2, "policy_loss": float("nan"), "kl": 0.0})
  with RunLogger(run, total_steps=4, resume_step=2, progress=False) as logger:
    logger.log(3, {"success_rate": 0.3, "policy_loss": 0.5})
  path = os.path.join(run, "learning_curve.png")
  with open(path, "rb") as f:
    assert f.read(8) == PNG_SIGNATURE
  assert os.path.getsize(path) > 1000
  records = read_metrics(run)
  assert logging_utils.curve_keys(records, ("success_rate", "mean_return")) == [
      "success_rate", "policy_loss"]


def test_no_png_when_nothing_plottable(tmp_path):
  with RunLogger(str(tmp_path), total_steps=1, progress=False) as logger:
    logger.log(1, {"kl": 0.1})
  assert not os.path.exists(os.path.join(str(tmp_path), "learning_curve.png"))


def test_tensorboard_scalars_written(tmp_path):
  run = str(tmp_path)
  with RunLogger(run, total_steps=3, progress=False) as logger:
    logger.log(1, {"mean_return": 0.5})
    logger.log(2, {"mean_return": jnp.asarray(0.75)})
  files = glob.glob(os.path.join(run, "tb", "events.out.tfevents.*"))
  assert files and all(os.path.getsize(f) > 0 for f in files)
  scalars = _tb_scalars(os.path.join(run, "tb"))
  assert scalars["mean_return"] == [(1, 0.5), (2, 0.75)]


def test_non_main_process_writes_nothing(tmp_path):
  run = str(tmp_path / "run")
  with RunLogger(run, total_steps=3, is_main_process=False) as logger:
    assert logger.log(1, {"mean_return": 1.0, "loss": 2.0}) == {}
  assert logger.close() is None
  assert not os.path.exists(run)
  # An existing log is not truncated by a non-main process either.
  os.makedirs(run)
  with open(os.path.join(run, "metrics.jsonl"), "w") as f:
    f.write('{"step": 9, "loss": 1.0}\n')
  RunLogger(run, total_steps=3, is_main_process=False, resume_step=2).close()
  assert os.listdir(run) == ["metrics.jsonl"]
  assert read_metrics(run) == [{"step": 9, "loss": 1.0}]
