"""Grids of training runs, each trained once and read back afterwards.

A notebook or a sweep calls `train_once(config, run_dir)` for every cell of its grid:

* a run directory that already holds a finished run (its `wall_time.json`) is read, not
  retrained, and an interrupted one resumes from its last checkpoint (`trainer.train`);
* the wall time of the training is written beside the metrics, so a figure can say what the
  grid cost on the machine that ran it;
* runs that start from the same behaviour-cloned policy (same environment, tokenizer, policy
  and `bc` block) can share it: `bc_from` names finished runs whose `bc/` checkpoint is
  copied in first, which `experiment.behaviour_clone` then restores instead of training again.

`restore(config, run_dir)` gives back the experiment and the train state of a run's last
checkpoint (or of its BC warm start), to measure something on the trained models.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from typing import Any, Sequence

import jax
import ml_collections

from agentrl import checkpoint, experiment, trainer

WALL_TIME = "wall_time.json"


def finished(run_dir: str) -> bool:
  """Whether `run_dir` holds a run that `train_once` completed."""
  return os.path.exists(os.path.join(run_dir, WALL_TIME))


def wall_time(run_dir: str) -> float:
  """Seconds the run in `run_dir` took to train; FileNotFoundError if it never finished."""
  path = os.path.join(run_dir, WALL_TIME)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{run_dir} holds no finished run ({WALL_TIME} is missing).")
  with open(path, encoding="utf-8") as f:
    return float(json.load(f)["seconds"])


def train_once(config: ml_collections.ConfigDict, run_dir: str, *,
               bc_from: Sequence[str] = ()) -> float:
  """Trains `config` into `run_dir` unless a finished run is there; returns its wall seconds.

  Args:
    config: An experiment config (`agentrl.configs.load_config`).
    run_dir: The run directory.
    bc_from: Run directories that start from the same BC policy; the `bc/` checkpoint of the
      first finished one is copied into `run_dir` before training (when `config.bc.steps`).
  """
  if not finished(run_dir):
    tic = time.perf_counter()
    if config.bc.steps:
      for other in bc_from:
        source = os.path.join(other, "bc")
        if os.path.abspath(other) != os.path.abspath(run_dir) and finished(other) \
            and os.path.isdir(source):
          shutil.copytree(source, os.path.join(run_dir, "bc"), dirs_exist_ok=True)
          break
    trainer.train(config, run_dir)
    with open(os.path.join(run_dir, WALL_TIME), "w", encoding="utf-8") as f:
      json.dump({"seconds": time.perf_counter() - tic}, f)
  return wall_time(run_dir)


def restore(config: ml_collections.ConfigDict, run_dir: str, *, step: int | None = None
            ) -> tuple[experiment.Experiment, Any]:
  """(experiment, train state) of the checkpoint `step` (default: the last) of `run_dir`.

  The experiment's `models.policy_params` are the run's BC warm start when it has one (the
  policy every update of the run was regularised towards), else the initial parameters.
  """
  if config.bc.steps > 0 and not os.path.isdir(os.path.join(run_dir, "bc")):
    raise FileNotFoundError(f"{run_dir}/bc holds no BC checkpoint (config.bc.steps="
                            f"{config.bc.steps}); restore reads runs, it does not train.")
  exp = experiment.build(config, run_dir=run_dir)
  with checkpoint.Checkpointer(os.path.join(run_dir, "checkpoints"), max_to_keep=None) as ckpt:
    if ckpt.latest_step() is None:
      raise FileNotFoundError(f"{run_dir}/checkpoints holds no checkpoint to restore.")
    template = jax.eval_shape(exp.algorithm.init, jax.random.PRNGKey(0))
    state, _, _ = ckpt.restore(step, state_template=template)
  return exp, state
