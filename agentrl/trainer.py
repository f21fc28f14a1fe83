"""The training loop: build everything from a config, roll out, update, evaluate, log, save.

  python -m experiments.train --config=experiments/configs/archer_twenty_questions.py:cpu

`train(config, run_dir)` runs one experiment:

  tokenizer   trained on the environment's scripted episodes (cached on disk)
  policy      a decoder LM from scratch, optionally behaviour-cloned on the environment's
              offline TFDS dataset first (`config.bc`; dataset and BC result cached)
  algorithm   `agentrl.algorithms.make(config.algorithm.name, ...)`
  loop        for each iteration: roll out `rollout.seeds_per_iteration` task seeds x
              `rollout.group_size` episodes with the current policy (on-policy and replay
              algorithms), turn them into the algorithm's batch (the batch itself, replay
              transitions, the best trajectories so far, or an offline batch), update;
              every `train.eval_every` iterations evaluate on held-out task seeds (success
              rate, mean return, normalised score); log every iteration; checkpoint every
              `train.checkpoint_every` iterations and at the end.

Everything random is a pure function of (config.seed, iteration): rollout task seeds, the
JAX keys of sampling and of the update, and the numpy generator that samples the replay
buffer. A checkpoint therefore holds only the train state, the replay buffer (or the
filtered-BC store) and the iteration, and a run killed at any moment and restarted with the
same command ends with exactly the metrics of an uninterrupted run.

A NaN or Inf in a loss or gradient leaves the update unapplied (`algorithms.apply_gradients`);
the loop then saves the state it had before that update and raises `FloatingPointError`
naming the loss.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from agentrl import algorithms, checkpoint, configs, data, envs, replay, rollout, sampling
from agentrl.algorithms import Models
from agentrl.data import tokenizers as tokenizer_cache
from agentrl.logging_utils import RunLogger
from agentrl.models import decoder
from agentrl.tokenizer import Tokenizer
from agentrl.types import TrajectoryBatch

HEADLINE = ("eval/success_rate", "eval/mean_return", "eval/score")
# Offsets that keep the seed streams of different purposes apart.
_ROLLOUT, _UPDATE, _REPLAY, _OFFLINE, _EVAL = range(5)


@dataclasses.dataclass
class Experiment:
  """What `build` makes from a config."""

  config: ml_collections.ConfigDict
  tokenizer: Tokenizer
  models: Models
  algorithm: algorithms.Algorithm
  max_turns: int


def build_tokenizer(config) -> Tokenizer:
  return tokenizer_cache.environment_tokenizer(
      config.env.name, vocab_size=config.tokenizer.vocab_size,
      episodes=config.tokenizer.corpus_episodes, env_kwargs=dict(config.env.kwargs),
      data_dir=config.data_dir or None)


def build_policy(config, tokenizer: Tokenizer) -> tuple[decoder.DecoderConfig, Any]:
  p = config.policy
  policy_config = decoder.DecoderConfig.llama(
      vocab_size=tokenizer.vocab_size, hidden_size=p.hidden_size, num_layers=p.num_layers,
      num_heads=p.num_heads, num_kv_heads=p.num_kv_heads, mlp_dim=p.mlp_dim,
      max_position_embeddings=max(4096, config.env.max_tokens))
  params = decoder.init_params(policy_config, jax.random.PRNGKey(config.seed))
  return policy_config, params


def sampling_config(config, tokenizer: Tokenizer, *, temperature: float | None = None
                    ) -> sampling.SamplingConfig:
  return sampling.SamplingConfig(
      max_new_tokens=config.sampling.max_new_tokens,
      temperature=config.sampling.temperature if temperature is None else temperature,
      stop_token=tokenizer.end_of_turn_id, pad_token=tokenizer.pad_id)


def build(config) -> Experiment:
  tokenizer = build_tokenizer(config)
  policy_config, params = build_policy(config, tokenizer)
  models = Models(policy_config, params, sampling_config(config, tokenizer), tokenizer.pad_id)
  algorithm = algorithms.make(config.algorithm.name, config.algorithm, models)
  max_turns = envs.make(config.env.name, **config.env.kwargs).max_turns
  return Experiment(config, tokenizer, models, algorithm, max_turns)


# --------------------------------------------------------------------------- data streams


def offline_episodes(config, split: str = "train"):
  d = config.dataset
  return data.load_episodes(config.env.name, split, episodes=d.episodes,
                            mixture=dict(d.mixture) if d.mixture else None,
                            env_kwargs=dict(config.env.kwargs),
                            data_dir=config.data_dir or None)


def offline_batch(episodes, exp: Experiment, step: int, batch_size: int, stream: int
                  ) -> TrajectoryBatch:
  """Batch `step` of a stream: a pure function of (seed, stream, step)."""
  rng = np.random.default_rng([exp.config.seed, stream, step])
  rows = rng.choice(len(episodes), size=batch_size, replace=len(episodes) < batch_size)
  return rollout.encode_episodes(exp.tokenizer, [episodes[int(i)] for i in rows],
                                 max_tokens=exp.config.env.max_tokens, max_turns=exp.max_turns,
                                 system_prompt=exp.config.env.system_prompt)


def play(exp: Experiment, params, seeds, *, key, group_size: int = 1,
         temperature: float | None = None) -> rollout.RolloutResult:
  policy = rollout.LMPolicy(params, exp.models.policy_config,
                            sampling_config(exp.config, exp.tokenizer, temperature=temperature))
  return rollout.rollout(policy, exp.config.env.name, list(seeds), tokenizer=exp.tokenizer,
                         max_tokens=exp.config.env.max_tokens, group_size=group_size, rng=key,
                         env_kwargs=dict(exp.config.env.kwargs), max_turns=exp.max_turns,
                         system_prompt=exp.config.env.system_prompt)


def evaluate(exp: Experiment, params, iteration: int) -> dict[str, float]:
  """Held-out task seeds (disjoint from training and dataset seeds)."""
  e = exp.config.eval
  seeds = data.EVAL_SEED_START + np.arange(e.episodes)
  key = jax.random.fold_in(jax.random.PRNGKey(exp.config.seed), _EVAL * 1_000_003 + iteration)
  result = play(exp, params, seeds, key=key, temperature=e.temperature)
  metrics = {"eval/success_rate": result.stats["success_rate"],
             "eval/mean_return": result.stats["mean_return"],
             "eval/mean_turns": result.stats["mean_turns"],
             "eval/invalid_action_rate": result.stats["invalid_action_rate"]}
  if exp.config.env.name in data.NORMALIZERS:
    metrics["eval/score"] = float(data.normalized_score(exp.config.env.name,
                                                        result.stats["mean_return"]))
  return metrics


class FilteredStore:
  """Every trajectory so far (as token rows) with its return; batches of the top fraction."""

  def __init__(self):
    self.rows: dict[str, np.ndarray] | None = None
    self.returns = np.zeros(0, np.float32)

  def add(self, batch: TrajectoryBatch):
    arrays = {k: np.asarray(v) for k, v in dataclasses.asdict(batch).items()}
    returns = (arrays["rewards"] * arrays["turn_mask"]).sum(-1).astype(np.float32)
    self.rows = arrays if self.rows is None else {
        k: np.concatenate([self.rows[k], v]) for k, v in arrays.items()}
    self.returns = np.concatenate([self.returns, returns])

  def sample(self, n: int, top_fraction: float, rng: np.random.Generator) -> TrajectoryBatch:
    k = max(1, int(np.ceil(top_fraction * len(self.returns) - 1e-6)))
    best = np.argsort(-self.returns, kind="stable")[:k]
    rows = rng.choice(best, size=n, replace=len(best) < n)
    return TrajectoryBatch(**{k: v[rows] for k, v in self.rows.items()})

  def state_dict(self) -> dict[str, np.ndarray]:
    out = {f"filtered/{k}": v for k, v in (self.rows or {}).items()}
    out["filtered/returns"] = self.returns
    return out

  def load_state_dict(self, state: dict[str, np.ndarray]):
    self.returns = np.asarray(state["filtered/returns"])
    rows = {k.split("/", 1)[1]: np.asarray(v) for k, v in state.items()
            if k.startswith("filtered/") and k != "filtered/returns"}
    self.rows = rows or None


# --------------------------------------------------------------------------- the loop


def behaviour_clone(exp: Experiment, run_dir: str) -> Any:
  """The BC warm start (`config.bc`), saved under run_dir/bc and reused on resume."""
  c = exp.config.bc
  bc_algo = algorithms.make("bc", c, exp.models)
  template = jax.eval_shape(bc_algo.init, jax.random.PRNGKey(0))
  ckpt = checkpoint.Checkpointer(os.path.join(run_dir, "bc"), max_to_keep=1)
  try:
    if ckpt.latest_step() == c.steps:
      state, _, _ = ckpt.restore(state_template=template)
      return state.params["policy"]
    episodes = offline_episodes(exp.config)
    state = bc_algo.init(jax.random.PRNGKey(exp.config.seed))
    with RunLogger(os.path.join(run_dir, "bc"), total_steps=c.steps,
                   headline=("bc/loss",)) as log:
      for step in range(c.steps):
        batch = offline_batch(episodes, exp, step, c.batch_size, _OFFLINE)
        state, metrics = bc_algo.update(state, batch, jax.random.PRNGKey(0))
        _check_finite(metrics, ckpt, step, state)
        if step % exp.config.train.log_every == 0 or step == c.steps - 1:
          log.log(step + 1, metrics)
    ckpt.save(c.steps, state=state, force=True)
    ckpt.wait()
    return state.params["policy"]
  finally:
    ckpt.close()


def _check_finite(metrics, ckpt: checkpoint.Checkpointer, step: int, state, **save_kwargs):
  bad = algorithms.nonfinite_losses(jax.device_get(metrics))
  if bad:
    ckpt.save(step, state=state, force=True, **save_kwargs)
    ckpt.wait()
    raise FloatingPointError(
        f"non-finite {', '.join(bad)} at step {step}: the update was not applied; the state "
        f"before it is saved in {ckpt.directory} (step {step}).")


def train(config: ml_collections.ConfigDict, run_dir: str) -> dict[str, float]:
  """Runs (or resumes) the experiment `config` in `run_dir`; returns the last metrics."""
  os.makedirs(run_dir, exist_ok=True)
  if os.path.exists(os.path.join(run_dir, configs.CONFIG_FILENAME)):
    configs.check_resume_compatible(run_dir, config)
  else:
    configs.save_config(config, run_dir)
  exp = build(config)
  if config.bc.steps > 0:
    exp = dataclasses.replace(exp, models=dataclasses.replace(
        exp.models, policy_params=behaviour_clone(exp, run_dir)))
    exp = dataclasses.replace(exp, algorithm=algorithms.make(
        config.algorithm.name, config.algorithm, exp.models))
  algo, t = exp.algorithm, config.train
  ckpt = checkpoint.Checkpointer(os.path.join(run_dir, "checkpoints"), max_to_keep=2)
  buffer = store = episodes = None
  if algo.data == "replay":
    buffer = replay.ReplayBuffer(replay.transition_spec(
        config.algorithm.state_tokens, config.algorithm.action_tokens), config.replay.capacity)
  elif algo.data == "filtered":
    store = FilteredStore()
  elif algo.data == "offline":
    episodes = offline_episodes(config)

  state = algo.init(jax.random.PRNGKey(config.seed))
  start = 0
  if ckpt.latest_step() is not None:
    state, extras, meta = ckpt.restore(state_template=jax.eval_shape(lambda: state))
    start = int(meta["iteration"])
    if buffer is not None:
      buffer.load_state_dict(extras)
    if store is not None:
      store.load_state_dict(extras)
  root = jax.random.PRNGKey(config.seed)
  metrics: dict[str, float] = {}
  episodes_seen = 0 if start == 0 else int(meta.get("episodes_seen", 0))

  def extras():
    if buffer is not None:
      return buffer.state_dict()
    return store.state_dict() if store is not None else None

  def save(iteration, force=False):
    ckpt.save(iteration, state=state, extras=extras(), force=force,
              metadata={"iteration": iteration, "episodes_seen": episodes_seen})

  with RunLogger(run_dir, total_steps=t.total_iterations, headline=HEADLINE,
                 resume_step=start) as log:
    if start == 0 and t.eval_every:
      log.log(0, {**evaluate(exp, state.params["policy"], 0), "episodes": 0})
    for it in range(start, t.total_iterations):
      tic = time.perf_counter()
      metrics = {}
      if algo.data in ("rollout", "replay", "filtered"):
        r = config.rollout
        seeds = it * r.seeds_per_iteration + np.arange(r.seeds_per_iteration)
        result = play(exp, state.params["policy"], seeds, group_size=r.group_size,
                      key=jax.random.fold_in(root, _ROLLOUT * 1_000_003 + it))
        episodes_seen += len(result.episodes)
        metrics.update({f"time/{k}" if k.endswith("_seconds") else f"rollout/{k}": v
                        for k, v in result.stats.items()})
      if algo.data == "rollout":
        batch = result.batch
      elif algo.data == "replay":
        buffer.add(replay.utterance_transitions(
            result.batch, max_state_tokens=config.algorithm.state_tokens,
            max_action_tokens=config.algorithm.action_tokens, pad_id=exp.tokenizer.pad_id))
        batch = algo.sample(buffer, np.random.default_rng([config.seed, _REPLAY, it]))
      elif algo.data == "filtered":
        store.add(result.batch)
        batch = store.sample(config.algorithm.batch_size, config.algorithm.top_fraction,
                             np.random.default_rng([config.seed, _REPLAY, it]))
      else:
        batch = offline_batch(episodes, exp, it, config.algorithm.batch_size, _OFFLINE + 10)
      state, update_metrics = algo.update(state, batch,
                                          jax.random.fold_in(root, _UPDATE * 1_000_003 + it))
      _check_finite(update_metrics, ckpt, it, state, extras=extras(),
                    metadata={"iteration": it, "episodes_seen": episodes_seen})
      metrics.update(jax.device_get(update_metrics))
      metrics["episodes"] = episodes_seen
      metrics["time/iteration_s"] = time.perf_counter() - tic
      if t.eval_every and ((it + 1) % t.eval_every == 0 or it + 1 == t.total_iterations):
        metrics.update(evaluate(exp, state.params["policy"], it + 1))
      log.log(it + 1, metrics)
      if (it + 1) % t.checkpoint_every == 0 or it + 1 == t.total_iterations:
        save(it + 1, force=True)
    ckpt.wait()
  ckpt.close()
  return {k: float(v) for k, v in metrics.items()}


def default_run_dir(config_path: str) -> str:
  """runs/<config name>[-<variant>]: a stable directory, so rerunning a command resumes it."""
  name, _, variant = config_path.partition(":")
  stem = os.path.splitext(os.path.basename(name))[0]
  return os.path.join("runs", stem + (f"-{variant}" if variant else ""))
