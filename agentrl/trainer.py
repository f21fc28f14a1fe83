"""The training loop: build an experiment from a config, draw batches, update, evaluate, log, save.

  python -m experiments.train --config=experiments/configs/archer_twenty_questions.py:cpu

`train(config, run_dir)` runs one experiment:

  build       `agentrl.experiment.build`: the environment's tokenizer (trained on its
              scripted episodes, cached), a decoder LM policy, optionally behaviour-cloned
              on the environment's offline TFDS dataset first (`config.bc`, saved under
              run_dir/bc), and the algorithm, on the mesh of `config.mesh`
  source      the algorithm's data source (`agentrl.sources`): this iteration's rollouts,
              a replay buffer, the best trajectories so far, or an offline dataset; it
              plays the iteration's episodes itself when it needs them (with the
              algorithm's acting policy: CHAI's best-of-k, ILQL's Q-guided decoding, else
              the plain LM)
  loop        for each iteration: draw a batch from the source, update; every
              `train.eval_every` iterations evaluate on held-out task seeds
              (`agentrl.evaluation`); log every iteration; checkpoint every
              `train.checkpoint_every` iterations and at the end.

The loop never asks what kind of algorithm it runs: the source says where the batch's rows
lie (`Draw.batch_axis`) and whether they are this process's own (`Draw.local`).

Everything random is a pure function of (config.seed, iteration): rollout task seeds, the
JAX keys of sampling and of the update, and the numpy generators of the sources. A checkpoint
therefore holds only the train state, the source's state (a replay buffer, a filtered store)
and the iteration, and a run killed at any moment and restarted with the same command ends
with exactly the metrics of an uninterrupted run.

Several devices and processes: see `agentrl.experiment` (layout, rollout shards) and
`agentrl.sources` (all-gathered stores). Only process 0 writes logs (metrics.jsonl,
TensorBoard, the progress bar, the PNG) and the config; every process takes part in saving and
restoring the sharded state, and the source's state, identical on all processes, is written
once by orbax. The run directory must be shared by all hosts (e.g. NFS).

A NaN or Inf in a loss or gradient leaves the update unapplied (`algorithms.apply_gradients`);
the loop then saves the state it had before that update and raises `FloatingPointError`
naming the loss.
"""

from __future__ import annotations

import functools
import os
import time

import jax
import ml_collections

from agentrl import checkpoint, configs, parallel, sources
from agentrl.evaluation import evaluate, evaluate_all, evaluate_vs_opponent  # noqa: F401
from agentrl.experiment import (Experiment, Layout, build, build_tokenizer,  # noqa: F401
                                check_finite, make_layout, play_iteration)
from agentrl.logging_utils import RunLogger

HEADLINE = ("eval/success_rate", "eval/mean_return", "eval/score")


def _start_run(config, run_dir: str) -> None:
  """Saves the config into a new run directory (process 0), or checks that a resumed run's
  config matches it (every process)."""
  if "://" in run_dir:
    raise ValueError(f"run_dir={run_dir!r}: the run directory must be a file-system path (the "
                     "logs, TensorBoard files and plots are written with local file APIs); on "
                     "several hosts, mount the bucket at the same path on every host (Cloud "
                     "Storage FUSE, NFS) and pass that path.")
  path = os.path.join(run_dir, configs.CONFIG_FILENAME)
  resuming = os.path.exists(path)
  parallel.barrier("start_run")  # Everyone has looked before process 0 writes.
  if resuming:
    configs.check_resume_compatible(run_dir, config)
  elif parallel.is_main_process():
    os.makedirs(run_dir, exist_ok=True)
    configs.save_config(config, run_dir)


def train(config: ml_collections.ConfigDict, run_dir: str) -> dict[str, float]:
  """Runs (or resumes) the experiment `config` in `run_dir`; returns the last metrics."""
  parallel.initialize_distributed(config.get("distributed"))
  _start_run(config, run_dir)
  exp = build(config, make_layout(config), run_dir=run_dir)
  algo, t, layout = exp.algorithm, config.train, exp.layout
  root = jax.random.PRNGKey(config.seed)
  key = lambda stream, it: jax.random.fold_in(  # noqa: E731
      root, sources.STREAMS[stream] * 1_000_003 + it)
  source = algo.source.open(
      exp, lambda state, it: play_iteration(exp, state, it, key("rollout", it)))
  ckpt = checkpoint.Checkpointer(os.path.join(run_dir, "checkpoints"), max_to_keep=2)
  state, shardings = layout.init(algo.init, jax.random.PRNGKey(config.seed))
  update = layout.update(algo.update, shardings)
  start, episodes_seen = 0, 0
  if ckpt.latest_step() is not None:
    state, extras, meta = ckpt.restore(state_template=state)  # Restored into its layout.
    start, episodes_seen = int(meta["iteration"]), int(meta.get("episodes_seen", 0))
    source.load_state_dict(extras)
  else:
    source.start()
  metrics: dict[str, float] = {}
  save = functools.partial(ckpt.save, force=True)

  with RunLogger(run_dir, total_steps=t.total_iterations, headline=HEADLINE,
                 resume_step=start, is_main_process=parallel.is_main_process()) as log:
    if start == 0 and t.eval_every:
      log.log(0, {**evaluate_all(exp, state, 0, last=t.total_iterations == 0), "episodes": 0})
    for it in range(start, t.total_iterations):
      tic = time.perf_counter()
      draw = source.draw(state, it)
      episodes_seen += draw.episodes
      metrics = dict(draw.metrics)
      state, update_metrics = update(
          state, layout.batch(draw.batch, draw.batch_axis, local=draw.local),
          key("update", it))
      check_finite(update_metrics, ckpt, it, state, extras=source.state_dict(),
                   metadata={"iteration": it, "episodes_seen": episodes_seen})
      metrics.update(jax.device_get(update_metrics))
      metrics["episodes"] = episodes_seen
      metrics["time/iteration_s"] = time.perf_counter() - tic
      last = it + 1 == t.total_iterations
      if t.eval_every and ((it + 1) % t.eval_every == 0 or last):
        metrics.update(evaluate_all(exp, state, it + 1, last=last))
      log.log(it + 1, metrics)
      if (it + 1) % t.checkpoint_every == 0 or last:
        save(it + 1, state=state, extras=source.state_dict(),
             metadata={"iteration": it + 1, "episodes_seen": episodes_seen})
    ckpt.wait()
  ckpt.close()
  return {k: float(v) for k, v in metrics.items()}


def default_run_dir(config_path: str) -> str:
  """runs/<config name>[-<variant>]: a stable directory, so rerunning a command resumes it."""
  name, _, variant = config_path.partition(":")
  stem = os.path.splitext(os.path.basename(name))[0]
  return os.path.join("runs", stem + (f"-{variant}" if variant else ""))
