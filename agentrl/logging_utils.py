"""Run logging: a JSONL metrics file, TensorBoard scalars, a progress bar and a learning curve.

`RunLogger` writes, under `run_dir` (main process only; other processes do nothing):

  metrics.jsonl       one JSON object per `log` call: `{"step": int, "time": unix seconds,
                      **metrics}`, flushed after every line, so a killed process loses nothing it
                      already logged. The file is the source of truth (TensorBoard and the PNG are
                      views of it).
  tb/                 TensorBoard event files (tensorboardX; TensorFlow is not needed).
  learning_curve.png  written by `close()` from metrics.jsonl (so it covers the part of the run
                      before a resume): one panel per headline metric present and per loss-like
                      key (any key containing "loss"), x = step.

Non-finite values. Metrics are Python floats; NaN and +-inf are kept as such in memory but JSON
has no literal for them, so they are written as the strings "nan", "inf" and "-inf" (the file
stays valid JSON for any reader). `read_metrics` turns those strings back into floats.

Resume. `RunLogger(..., resume_step=N)` rewrites metrics.jsonl keeping only the lines with
step <= N (a run killed after logging N+3 but checkpointed at N would otherwise log N+1..N+3
twice), tells TensorBoard to discard events after N (tensorboardX `purge_step`) and starts the
progress bar at N. `resume_step=0` (the default) is a fresh start: an existing metrics.jsonl is
emptied. A torn last line (a process killed mid-write) is dropped in both cases.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Mapping, Optional, Sequence

import jax
import numpy as np

METRICS_FILE = "metrics.jsonl"
TB_DIR = "tb"
CURVE_FILE = "learning_curve.png"
DEFAULT_HEADLINE = ("success_rate", "mean_return")
_RESERVED = ("step", "time")
_NONFINITE_TEXT = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


# ----------------------------------------------------------------------------- conversion


def to_floats(metrics: Mapping[str, Any]) -> dict[str, float]:
  """Converts scalar metrics (Python numbers, numpy or jax arrays of size 1) to Python floats.

  All jax arrays are fetched from the device in a single `jax.device_get` call.

  Raises:
    ValueError: a value that is not a single number, or a reserved key ("step", "time").
  """
  for key in _RESERVED:
    if key in metrics:
      raise ValueError(f"metric name {key!r} is reserved")
  on_device = {k: v for k, v in metrics.items() if isinstance(v, jax.Array)}
  fetched = jax.device_get(on_device) if on_device else {}
  out = {}
  for key, value in metrics.items():
    value = fetched.get(key, value)
    if isinstance(value, (bool, int, float)):
      out[str(key)] = float(value)
      continue
    arr = np.asarray(value)
    if arr.size != 1 or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
      raise ValueError(f"metric {key!r} must be a single number, got shape {arr.shape} "
                       f"dtype {arr.dtype}")
    out[str(key)] = float(arr.reshape(()))
  return out


def _encode(value: float) -> float | str:
  return value if math.isfinite(value) else str(value)  # "nan", "inf", "-inf"


def _decode(value: Any) -> Any:
  if isinstance(value, str) and value in _NONFINITE_TEXT:
    return _NONFINITE_TEXT[value]
  return value


def _read_lines(path: str) -> list[dict[str, Any]]:
  """Parsed JSON objects of a JSONL file, skipping lines that do not parse (a torn write)."""
  if not os.path.exists(path):
    return []
  records = []
  with open(path, encoding="utf-8") as f:
    for line in f:
      line = line.strip()
      if not line:
        continue
      try:
        record = json.loads(line)
      except json.JSONDecodeError:
        continue
      if isinstance(record, dict) and "step" in record:
        records.append(record)
  return records


def read_metrics(run_dir: str) -> list[dict[str, Any]]:
  """Reads `run_dir/metrics.jsonl` as a list of dicts, "nan"/"inf"/"-inf" turned into floats.

  Returns [] if the file does not exist; unparseable lines (a torn last write) are skipped.
  """
  records = _read_lines(os.path.join(run_dir, METRICS_FILE))
  return [{k: _decode(v) for k, v in r.items()} for r in records]


def _truncate_metrics(path: str, max_step: Optional[int]) -> None:
  """Keeps only the well-formed lines with step <= max_step (all are dropped if None)."""
  if not os.path.exists(path):
    return
  keep = [] if max_step is None else [r for r in _read_lines(path) if r["step"] <= max_step]
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    for record in keep:
      f.write(json.dumps(record, allow_nan=False) + "\n")
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


# ----------------------------------------------------------------------------- learning curve


def curve_keys(records: Sequence[Mapping[str, Any]], headline: Sequence[str],
               extra: Optional[Sequence[str]] = None, max_panels: int = 9) -> list[str]:
  """Keys to plot: headline metrics present, then `extra` (default: keys containing "loss")."""
  present: dict[str, None] = {}
  for record in records:
    present.update(dict.fromkeys(k for k in record if k not in _RESERVED))
  keys = [k for k in headline if k in present]
  if extra is None:
    extra = sorted(k for k in present if "loss" in k.lower())
  keys += [k for k in extra if k in present and k not in keys]
  return keys[:max_panels]


def plot_learning_curve(records: Sequence[Mapping[str, Any]], path: str, keys: Sequence[str],
                        title: str = "") -> Optional[str]:
  """Writes a PNG with one panel per key (x = step); returns the path, or None if no keys."""
  if not keys or not records:
    return None
  from matplotlib.figure import Figure  # lazy: matplotlib is only needed at close()
  from matplotlib.backends.backend_agg import FigureCanvasAgg

  ncols = min(3, len(keys))
  nrows = math.ceil(len(keys) / ncols)
  fig = Figure(figsize=(4.2 * ncols, 3.0 * nrows), layout="constrained")
  FigureCanvasAgg(fig)
  for i, key in enumerate(keys):
    ax = fig.add_subplot(nrows, ncols, i + 1)
    pts = [(r["step"], _decode(r[key])) for r in records if key in r]
    steps = np.asarray([p[0] for p in pts], dtype=np.float64)
    vals = np.asarray([p[1] if isinstance(p[1], (int, float)) else math.nan for p in pts],
                      dtype=np.float64)
    vals[~np.isfinite(vals)] = np.nan  # gaps, not spikes to +-inf
    ax.plot(steps, vals, marker="." if len(pts) < 50 else None, linewidth=1.2)
    ax.set_title(key, fontsize=10)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
  if title:
    fig.suptitle(title)
  tmp = path + ".tmp.png"
  fig.savefig(tmp, dpi=100, format="png")
  os.replace(tmp, path)
  return path


# ----------------------------------------------------------------------------- logger


class RunLogger:
  """Logs scalar metrics to metrics.jsonl, TensorBoard and a tqdm bar; plots on close.

  Args:
    run_dir: the run directory (created if missing).
    total_steps: the progress bar's total (in the same units as `step`).
    headline: metrics shown in the progress-bar postfix and plotted first.
    is_main_process: if False every method is a no-op and nothing is created.
    resume_step: the step of the checkpoint being resumed (0 = fresh start); see the module
      docstring.
    progress: show the tqdm bar.
    plot_keys: keys plotted after the headline ones (default: keys containing "loss").
    tb_flush_secs: how often TensorBoard events are flushed to disk.
  """

  def __init__(self, run_dir: str, *, total_steps: int,
               headline: Sequence[str] = DEFAULT_HEADLINE, is_main_process: bool = True,
               resume_step: int = 0, progress: bool = True,
               plot_keys: Optional[Sequence[str]] = None, tb_flush_secs: int = 30):
    self.run_dir = run_dir
    self.total_steps = int(total_steps)
    self.headline = tuple(headline)
    self.is_main_process = bool(is_main_process)
    self.resume_step = int(resume_step)
    self.plot_keys = None if plot_keys is None else tuple(plot_keys)
    self.metrics_path = os.path.join(run_dir, METRICS_FILE)
    self.curve_path = os.path.join(run_dir, CURVE_FILE)
    self.tb_dir = os.path.join(run_dir, TB_DIR)
    self._file = None
    self._tb = None
    self._bar = None
    self._closed = False
    if not self.is_main_process:
      return
    os.makedirs(run_dir, exist_ok=True)
    _truncate_metrics(self.metrics_path, self.resume_step if self.resume_step > 0 else None)
    self._file = open(self.metrics_path, "a", encoding="utf-8")

    from tensorboardX import SummaryWriter  # lazy: only the main process needs it

    had_events = os.path.isdir(self.tb_dir) and bool(os.listdir(self.tb_dir))
    # TensorBoard drops earlier events with step >= purge_step when it reads this file.
    purge = self.resume_step + 1 if self.resume_step > 0 else (0 if had_events else None)
    self._tb = SummaryWriter(logdir=self.tb_dir, purge_step=purge, flush_secs=tb_flush_secs)
    if progress:
      import tqdm

      self._bar = tqdm.tqdm(total=self.total_steps, initial=self.resume_step, unit="step",
                            dynamic_ncols=True, mininterval=1.0, smoothing=0.1)

  def log(self, step: int, metrics: Mapping[str, Any]) -> dict[str, float]:
    """Records `metrics` at `step`; returns them as Python floats ({} off the main process)."""
    if not self.is_main_process:
      return {}
    if self._closed:
      raise RuntimeError("RunLogger.log called after close()")
    step = int(step)
    values = to_floats(metrics)
    now = time.time()
    record = {"step": step, "time": round(now, 3), **{k: _encode(v) for k, v in values.items()}}
    self._file.write(json.dumps(record, allow_nan=False) + "\n")
    self._file.flush()
    for key, value in values.items():
      self._tb.add_scalar(key, value, global_step=step, walltime=now)
    if self._bar is not None:
      shown = {k: f"{values[k]:.4g}" for k in self.headline if k in values}
      if shown:
        self._bar.set_postfix(shown, refresh=False)
      if step > self._bar.n:
        self._bar.update(step - self._bar.n)
    return values

  def close(self) -> Optional[str]:
    """Flushes and closes the writers and writes the learning curve; returns the PNG path.

    Returns None (and writes no PNG) off the main process or when nothing plottable was ever
    logged. Safe to call twice.
    """
    if not self.is_main_process or self._closed:
      return None
    self._closed = True
    self._file.close()
    self._tb.close()
    if self._bar is not None:
      self._bar.close()
    records = _read_lines(self.metrics_path)
    keys = curve_keys(records, self.headline, self.plot_keys)
    return plot_learning_curve(records, self.curve_path, keys,
                               title=os.path.basename(os.path.normpath(self.run_dir)))

  def __enter__(self) -> RunLogger:
    return self

  def __exit__(self, *exc) -> None:
    self.close()
