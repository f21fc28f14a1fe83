"""The training loop: build everything from a config, roll out, update, evaluate, log, save.

  python -m experiments.train --config=experiments/configs/archer_twenty_questions.py:cpu

`train(config, run_dir)` runs one experiment:

  tokenizer   trained on the environment's scripted episodes (cached on disk)
  policy      a decoder LM from scratch, optionally behaviour-cloned on the environment's
              offline TFDS dataset first (`config.bc`; dataset and BC result cached)
  algorithm   `agentrl.algorithms.make(config.algorithm.name, ...)`; a replay buffer starts
              with the transitions of `replay.prefill_episodes` offline episodes (0: empty)
  loop        for each iteration: roll out `rollout.seeds_per_iteration` task seeds x
              `rollout.group_size` episodes with the current policy (on-policy and replay
              algorithms), turn them into the algorithm's batch (the batch itself, replay
              transitions, the best trajectories so far, or an offline batch), update;
              every `train.eval_every` iterations evaluate on held-out task seeds (success
              rate, mean return, normalised score) at `eval.temperature`, and greedily too
              at the first and last evaluation when `eval.greedy`; rollouts and evaluation
              use the algorithm's acting policy (CHAI's best-of-k, ILQL's Q-guided
              decoding, else the plain LM); log every iteration; checkpoint every
              `train.checkpoint_every` iterations and at the end.

Everything random is a pure function of (config.seed, iteration): rollout task seeds, the
JAX keys of sampling and of the update, and the numpy generator that samples the replay
buffer. A checkpoint therefore holds only the train state, the replay buffer (or the
filtered-BC store) and the iteration, and a run killed at any moment and restarted with the
same command ends with exactly the metrics of an uninterrupted run.

Devices and processes (`config.mesh`, `config.distributed`; `agentrl.parallel`). With one
device nothing is placed and the loop is the plain one. With several, the state is initialised
directly into the layout of `parallel.state_shardings` on the ("data", "fsdp", "tensor") mesh
of `config.mesh` (the policy, critics and optimizer moments split by their logical axis names
under `mesh.rules`), every update keeps that layout, and batches are split over data x fsdp;
rollouts and evaluation sample with the state as it is laid out. With several processes
(`jax.distributed`, one controller per host), each process plays its own share of an
iteration's task seeds: the seeds are cut into `distributed.rollout_shards` blocks (0: one per
process), shard s sampled with its own key, so a run gives the same result on any number of
processes that divides the shard count. A rollout batch goes to the update as each process's
own rows (`jax.make_array_from_process_local_data`); the transitions of replay and filtered
algorithms are all-gathered, so every process holds the same buffer and draws the same
batch, of which its devices take their rows. Processes sample from a local copy of the
policy (on their first device); evaluation is played in full by every process (identical
results). Only process 0 writes logs (metrics.jsonl, TensorBoard, the progress bar, the
PNG) and the config; every process takes part in saving and restoring the sharded state, and
the replay buffer (or filtered store), identical on all processes, is written once by orbax.
The run directory must be shared by all hosts (e.g. gs:// or NFS).

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

from agentrl import (algorithms, checkpoint, configs, data, envs, parallel, replay, rollout,
                     sampling)
from agentrl.algorithms import Models, bc
from agentrl.data import tokenizers as tokenizer_cache
from agentrl.logging_utils import RunLogger
from agentrl.models import decoder
from agentrl.tokenizer import Tokenizer
from agentrl.types import TrajectoryBatch

HEADLINE = ("eval/success_rate", "eval/mean_return", "eval/score")
# Offsets that keep the seed streams of different purposes apart.
_ROLLOUT, _UPDATE, _REPLAY, _OFFLINE, _EVAL, _PREFILL = range(6)


@dataclasses.dataclass(frozen=True)
class Layout:
  """Where the arrays of a run live: `mesh` None is one device, where nothing is placed."""

  mesh: Any = None
  rules: tuple = parallel.DEFAULT_RULES
  #: Boxed abstract parameter trees whose logical names lay out unboxed copies in the state
  #: (`parallel.state_shardings`); here {"policy": ...}.
  logical: Any = None

  def init(self, init_fn, rng) -> tuple[Any, Any]:
    """(state, its shardings or None) of `init_fn(rng)`, built sharded on a mesh."""
    if self.mesh is None:
      return init_fn(rng), None
    return parallel.init_state(init_fn, rng, self.mesh, self.rules, logical=self.logical)

  def update(self, update_fn, shardings):
    """`update_fn(state, batch, rng)`, keeping the state's layout on a mesh."""
    if self.mesh is None:
      return update_fn
    jitted = parallel.jit_sharded_update(update_fn, shardings, self.mesh, self.rules)
    return lambda state, batch, rng: jitted(state, batch, parallel.replicate(rng, self.mesh))

  def batch(self, batch, axis: int = 0, *, local: bool = False):
    """A host batch split over the mesh along `axis` (see `parallel.global_batch`)."""
    if self.mesh is None:
      return batch
    return parallel.global_batch(batch, self.mesh, axis, local=local)

  def acting(self, state):
    """The state as this process's sampler reads it (a local copy with several processes)."""
    return state if self.mesh is None else parallel.local_copy(state, self.mesh)


def make_layout(config) -> Layout:
  """The mesh of `config.mesh` (default: every device data-parallel); `Layout()` on one
  device."""
  cfg = config.get("mesh") or {"data": -1}
  mesh = parallel.make_mesh_from_config(cfg)
  if mesh.size == 1:
    return Layout()
  return Layout(mesh, parallel.rules_from_config(cfg.get("rules", ())))


@dataclasses.dataclass
class Experiment:
  """What `build` makes from a config."""

  config: ml_collections.ConfigDict
  tokenizer: Tokenizer
  models: Models
  algorithm: algorithms.Algorithm
  max_turns: int
  layout: Layout = Layout()


def build_tokenizer(config) -> Tokenizer:
  """The environment's BPE tokenizer (trained once and cached; process 0 first)."""
  with parallel.process_zero_first("tokenizer"):
    return tokenizer_cache.environment_tokenizer(
        config.env.name, vocab_size=config.tokenizer.vocab_size,
        episodes=config.tokenizer.corpus_episodes, env_kwargs=dict(config.env.kwargs),
        data_dir=config.data_dir or None)


def build_policy(config, tokenizer: Tokenizer, layout: Layout = Layout()
                 ) -> tuple[decoder.DecoderConfig, Any]:
  p = config.policy
  policy_config = decoder.DecoderConfig.llama(
      vocab_size=tokenizer.vocab_size, hidden_size=p.hidden_size, num_layers=p.num_layers,
      num_heads=p.num_heads, num_kv_heads=p.num_kv_heads, mlp_dim=p.mlp_dim,
      max_position_embeddings=max(4096, config.env.max_tokens), remat=p.get("remat", False))
  rng = jax.random.PRNGKey(config.seed)
  if layout.mesh is None:
    return policy_config, decoder.init_params(policy_config, rng)
  params, _ = parallel.sharded_init(
      lambda: decoder.init_params(policy_config, rng, boxed=True), layout.mesh, layout.rules)
  return policy_config, params


def sampling_config(config, tokenizer: Tokenizer, *, temperature: float | None = None
                    ) -> sampling.SamplingConfig:
  return sampling.SamplingConfig(
      max_new_tokens=config.sampling.max_new_tokens,
      temperature=config.sampling.temperature if temperature is None else temperature,
      stop_token=tokenizer.end_of_turn_id, pad_token=tokenizer.pad_id)


def build(config, layout: Layout = Layout()) -> Experiment:
  tokenizer = build_tokenizer(config)
  policy_config, params = build_policy(config, tokenizer, layout)
  if layout.mesh is not None:
    layout = dataclasses.replace(layout, logical={"policy": jax.eval_shape(
        lambda: decoder.init_params(policy_config, jax.random.PRNGKey(0), boxed=True))})
  models = Models(policy_config, params, sampling_config(config, tokenizer), tokenizer.pad_id,
                  tokenizer)
  algorithm = algorithms.make(config.algorithm.name, config.algorithm, models)
  max_turns = envs.make(config.env.name, **config.env.kwargs).max_turns
  return Experiment(config, tokenizer, models, algorithm, max_turns, layout)


# --------------------------------------------------------------------------- data streams


def offline_episodes(config, split: str = "train"):
  """The offline dataset's episodes (built on first use; process 0 first)."""
  d = config.dataset
  with parallel.process_zero_first("offline_episodes"):
    return data.load_episodes(config.env.name, split, episodes=d.episodes,
                              mixture=dict(d.mixture) if d.mixture else None,
                              env_kwargs=dict(config.env.kwargs),
                              data_dir=config.data_dir or None)


class OfflineStream:
  """Batches of dataset episodes; batch `step` is a pure function of (seed, stream, step).

  Rows come from one length bucket (a quarter of the episodes, by turn count), picked with
  probability proportional to its size: every episode is equally likely, but the rows of a
  batch have similar lengths, so `trim_padding` leaves little padding to compute on.
  """

  def __init__(self, episodes, exp: Experiment, *, batch_size: int, stream: int,
               num_buckets: int = 4):
    if not episodes:
      raise ValueError("OfflineStream: no episodes (is the dataset or its filter empty?)")
    self.episodes, self.exp, self.batch_size, self.stream = episodes, exp, batch_size, stream
    order = np.argsort([e.num_turns for e in episodes], kind="stable")
    self.buckets = [b for b in np.array_split(order, min(num_buckets, len(order))) if len(b)]
    sizes = np.array([len(b) for b in self.buckets], np.float64)
    self.weights = sizes / sizes.sum()

  def batch(self, step: int) -> TrajectoryBatch:
    exp = self.exp
    rng = np.random.default_rng([exp.config.seed, self.stream, step])
    bucket = self.buckets[rng.choice(len(self.buckets), p=self.weights)]
    rows = rng.choice(bucket, size=self.batch_size, replace=len(bucket) < self.batch_size)
    batch = rollout.encode_episodes(exp.tokenizer, [self.episodes[int(i)] for i in rows],
                                    max_tokens=exp.config.env.max_tokens,
                                    max_turns=exp.max_turns,
                                    system_prompt=exp.config.env.system_prompt)
    return trim_padding(batch)


def trim_padding(batch: TrajectoryBatch, multiple: int = 64) -> TrajectoryBatch:
  """Drops the all-padding tail of the token axis, keeping a multiple of `multiple` tokens
  (a handful of shapes, so a handful of compiles, and no work on padding)."""
  longest = int(np.asarray(batch.attention_mask).sum(-1).max(initial=1))
  length = min(batch.num_tokens, -(-longest // multiple) * multiple)
  token_fields = ("tokens", "positions", "attention_mask", "action_mask", "turn_index",
                  "turn_end", "behaviour_logprobs", "role")
  return batch.replace(**{k: np.asarray(getattr(batch, k))[:, :length] for k in token_fields})


def lm_policy(exp: Experiment, params, temperature: float | None = None) -> rollout.LMPolicy:
  """The plain token policy `params` with the experiment's sampling settings."""
  return rollout.LMPolicy(params, exp.models.policy_config,
                          sampling_config(exp.config, exp.tokenizer, temperature=temperature))


def acting_policy(exp: Experiment, state, temperature: float | None = None) -> rollout.LMPolicy:
  """The policy that acts for the algorithm in `state` (e.g. CHAI's best-of-k decoder)."""
  base = lm_policy(exp, state.params["policy"], temperature)
  hook = exp.algorithm.acting_policy
  return hook(state, base) if hook is not None else base


def play(exp: Experiment, policy: rollout.LMPolicy, seeds, *, key, group_size: int = 1,
         opponents=None) -> rollout.RolloutResult:
  return rollout.rollout(policy, exp.config.env.name, list(seeds), tokenizer=exp.tokenizer,
                         max_tokens=exp.config.env.max_tokens, group_size=group_size, rng=key,
                         env_kwargs=dict(exp.config.env.kwargs), max_turns=exp.max_turns,
                         system_prompt=exp.config.env.system_prompt,
                         answer_length=exp.algorithm.answer_length, opponents=opponents)


# Rollout statistics that add up over shards and processes (the others are means).
_SUMMED_STATS = ("context_truncated", "env_seconds", "policy_seconds", "policy_tokens",
                 "cache_refills")


def _stat_sums(result: rollout.RolloutResult) -> np.ndarray:
  """[episodes, Σ return, Σ scored return, Σ success, Σ turns, Σ invalid actions,
  *_SUMMED_STATS]."""
  n, st = len(result.episodes), result.stats
  turns = st["mean_turns"] * n
  return np.array([n, st["mean_return"] * n, st["scored_return"] * n, st["success_rate"] * n,
                   turns, st["invalid_action_rate"] * max(1.0, turns),
                   *(st[k] for k in _SUMMED_STATS)], np.float64)


def _stats_from_sums(sums: np.ndarray) -> dict[str, float]:
  n, ret, scored, success, turns, invalid, *summed = (float(x) for x in sums)
  return {"mean_return": ret / max(n, 1), "scored_return": scored / max(n, 1),
          "success_rate": success / max(n, 1), "mean_turns": turns / max(n, 1),
          "invalid_action_rate": invalid / max(1.0, turns),
          **dict(zip(_SUMMED_STATS, summed))}


def rollout_shards(config) -> int:
  """Independent rollout streams per iteration (`distributed.rollout_shards`, 0: one per
  process), checked against the processes and `rollout.seeds_per_iteration`."""
  shards = int((config.get("distributed") or {}).get("rollout_shards", 0)) or jax.process_count()
  seeds = config.rollout.seeds_per_iteration
  if shards % jax.process_count() or seeds % shards:
    raise ValueError(f"distributed.rollout_shards={shards} must be a multiple of the "
                     f"{jax.process_count()} processes and divide "
                     f"rollout.seeds_per_iteration={seeds}.")
  return shards


def play_iteration(exp: Experiment, state, iteration: int, key
                   ) -> tuple[TrajectoryBatch, dict[str, float], int]:
  """This process's episodes of one iteration: (its rows, the stats of the episodes of all
  processes, their number). Shard s of the iteration's seeds is played with
  `fold_in(key, s)` (with one shard, with `key` itself); process p plays the p-th block of
  shards, whose rows are the block its devices take in the global batch."""
  r = exp.config.rollout
  seeds = iteration * r.seeds_per_iteration + np.arange(r.seeds_per_iteration)
  policy = acting_policy(exp, exp.layout.acting(state))
  shards = rollout_shards(exp.config)
  if shards == 1:
    result = play(exp, policy, seeds, group_size=r.group_size, key=key)
    return result.batch, result.stats, len(result.episodes)
  per_process, per_shard = shards // jax.process_count(), len(seeds) // shards
  batches, sums = [], []
  for s in range(jax.process_index() * per_process, (jax.process_index() + 1) * per_process):
    result = play(exp, policy, seeds[s * per_shard:(s + 1) * per_shard],
                  group_size=r.group_size, key=jax.random.fold_in(key, s))
    # Group ids count seeds from the shard's first one: make them the iteration's.
    batches.append(result.batch.replace(group_id=result.batch.group_id + s * per_shard))
    sums.append(_stat_sums(result))
  total = parallel.allgather(np.sum(sums, axis=0)).sum(axis=0)
  batch = jax.tree.map(lambda *xs: np.concatenate(xs), *batches)
  return batch, _stats_from_sums(total), int(total[0])


def all_rows(batch: TrajectoryBatch) -> TrajectoryBatch:
  """Every process's rows of a batch (process order), on every process."""
  if jax.process_count() == 1:
    return batch
  return jax.tree.map(lambda x: x.reshape(x.shape[0] * x.shape[1], *x.shape[2:]),
                      parallel.allgather(batch))


def evaluate(exp: Experiment, state, iteration: int, *, temperature: float | None = None,
             prefix: str = "eval", opponents=None) -> dict[str, float]:
  """Held-out task seeds (disjoint from training and dataset seeds), played by the acting
  policy at `temperature` (default `config.eval.temperature`); `opponents` as in
  `rollout.rollout` (the metrics are then the policy's seats only)."""
  e = exp.config.eval
  temperature = e.temperature if temperature is None else temperature
  seeds = data.EVAL_SEED_START + np.arange(e.episodes)
  key = jax.random.fold_in(jax.random.PRNGKey(exp.config.seed), _EVAL * 1_000_003 + iteration)
  result = play(exp, acting_policy(exp, exp.layout.acting(state), temperature), seeds, key=key,
                opponents=opponents)
  st = result.stats
  metrics = {f"{prefix}/success_rate": st["success_rate"],
             f"{prefix}/mean_return": st["mean_return"],
             f"{prefix}/scored_return": st["scored_return"],
             f"{prefix}/mean_turns": st["mean_turns"],
             f"{prefix}/invalid_action_rate": st["invalid_action_rate"],
             f"{prefix}/context_truncated": st["context_truncated"] / max(1, len(result.episodes))}
  scored = envs.score_name(exp.config.env.name)  # hiper_maze_po is scored as maze_po.
  if scored in data.NORMALIZERS:
    # The normalisers' scripted episodes play to the turn limit; an episode the token budget
    # cut is scored as failing every turn it had left (`scored_return`), not as its shorter
    # partial return.
    metrics[f"{prefix}/score"] = float(data.normalized_score(scored, st["scored_return"]))
  return metrics


def evaluate_all(exp: Experiment, state, iteration: int, *, last: bool) -> dict[str, float]:
  """`evaluate`, plus greedy decoding under `eval_greedy/` at the first and the last
  evaluation when `config.eval.greedy` (ArCHer evaluates greedily), plus play against a fixed
  opponent when `config.eval.opponent` names a scripted policy of a multi-player game."""
  metrics = evaluate(exp, state, iteration)
  if exp.config.eval.get("greedy", False) and (iteration == 0 or last):
    metrics.update(evaluate(exp, state, iteration, temperature=0.0, prefix="eval_greedy"))
  if exp.config.eval.get("opponent", ""):
    metrics.update(evaluate_vs_opponent(exp, state, iteration, exp.config.eval.opponent))
  return metrics


def evaluate_vs_opponent(exp: Experiment, state, iteration: int, opponent: str
                         ) -> dict[str, float]:
  """The policy in each seat of a multi-player game against the environment's scripted
  policy `opponent` ("strong": Kuhn poker's Nash player, tic-tac-toe's minimax) in the
  others: per seat `eval_vs_<opponent>/seat<r>_win_rate` and `.._mean_return`, and their
  means over seats `eval_vs_<opponent>/win_rate` and `/mean_return`."""
  name = exp.config.env.name
  num_roles = envs.make(name, **exp.config.env.kwargs).num_roles
  if num_roles < 2:
    raise ValueError(f"eval.opponent={opponent!r} needs a multi-player game; {name} has one "
                     "role.")
  fixed = envs.policy(name, opponent)
  prefix, out = f"eval_vs_{opponent}", {}
  for seat in range(num_roles):
    m = evaluate(exp, state, iteration, prefix="seat",
                 opponents={r: fixed for r in range(num_roles) if r != seat})
    out[f"{prefix}/seat{seat}_win_rate"] = m["seat/success_rate"]
    out[f"{prefix}/seat{seat}_mean_return"] = m["seat/mean_return"]
  for key in ("win_rate", "mean_return"):
    out[f"{prefix}/{key}"] = float(np.mean([out[f"{prefix}/seat{r}_{key}"]
                                            for r in range(num_roles)]))
  return out


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
    best = np.flatnonzero(bc.top_fraction_mask(self.returns, top_fraction))
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


def replay_transitions(exp: Experiment, batch: TrajectoryBatch) -> dict[str, np.ndarray]:
  a = exp.config.algorithm
  return replay.utterance_transitions(batch, max_state_tokens=a.state_tokens,
                                      max_action_tokens=a.action_tokens,
                                      pad_id=exp.tokenizer.pad_id)


def prefill(buffer: replay.ReplayBuffer, exp: Experiment, chunk: int = 256) -> None:
  """Seeds the replay buffer with the transitions of `config.replay.prefill_episodes` offline
  dataset episodes (drawn without replacement, a function of the seed)."""
  episodes = offline_episodes(exp.config)
  n = min(int(exp.config.replay.prefill_episodes), len(episodes))
  rows = np.random.default_rng([exp.config.seed, _PREFILL]).choice(len(episodes), n,
                                                                      replace=False)
  for i in range(0, n, chunk):
    batch = rollout.encode_episodes(
        exp.tokenizer, [episodes[int(r)] for r in rows[i:i + chunk]],
        max_tokens=exp.config.env.max_tokens, max_turns=exp.max_turns,
        system_prompt=exp.config.env.system_prompt)
    buffer.add(replay_transitions(exp, batch))


# --------------------------------------------------------------------------- the loop


def behaviour_clone(exp: Experiment, run_dir: str) -> Any:
  """The BC warm start (`config.bc`), saved under run_dir/bc and reused on resume."""
  c, layout = exp.config.bc, exp.layout
  bc_algo = algorithms.make("bc", c, exp.models)
  ckpt = checkpoint.Checkpointer(os.path.join(run_dir, "bc"), max_to_keep=1)
  try:
    if ckpt.latest_step() == c.steps:
      template = (jax.eval_shape(bc_algo.init, jax.random.PRNGKey(0)) if layout.mesh is None
                  else layout.init(bc_algo.init, jax.random.PRNGKey(0))[0])
      state, _, _ = ckpt.restore(state_template=template)
      return state.params["policy"]
    stream = OfflineStream(offline_episodes(exp.config), exp, batch_size=c.batch_size,
                           stream=_OFFLINE)
    state, shardings = layout.init(bc_algo.init, jax.random.PRNGKey(exp.config.seed))
    update = layout.update(bc_algo.update, shardings)
    with RunLogger(os.path.join(run_dir, "bc"), total_steps=c.steps, headline=("bc/loss",),
                   is_main_process=parallel.is_main_process()) as log:
      for step in range(c.steps):
        batch = layout.batch(stream.batch(step))
        state, metrics = update(state, batch, jax.random.PRNGKey(0))
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
  exp = build(config, make_layout(config))
  if config.bc.steps > 0:
    exp = dataclasses.replace(exp, models=dataclasses.replace(
        exp.models, policy_params=behaviour_clone(exp, run_dir)))
    exp = dataclasses.replace(exp, algorithm=algorithms.make(
        config.algorithm.name, config.algorithm, exp.models))
  algo, t, layout = exp.algorithm, config.train, exp.layout
  ckpt = checkpoint.Checkpointer(os.path.join(run_dir, "checkpoints"), max_to_keep=2)
  buffer = store = stream = None
  if algo.data == "replay":
    buffer = replay.ReplayBuffer(replay.transition_spec(
        config.algorithm.state_tokens, config.algorithm.action_tokens), config.replay.capacity)
  elif algo.data == "filtered":
    store = FilteredStore()
  elif algo.data == "offline":
    episodes = offline_episodes(config)
    if algo.episode_filter is not None:
      episodes = algo.episode_filter(episodes)
    stream = OfflineStream(episodes, exp, batch_size=config.algorithm.batch_size,
                           stream=_OFFLINE + 10)

  state, shardings = layout.init(algo.init, jax.random.PRNGKey(config.seed))
  update = layout.update(algo.update, shardings)
  # A replay batch is [steps, batch, ...] (see algorithms.archer.sample_batch).
  batch_axis = 1 if algo.data == "replay" else 0
  start = 0
  if ckpt.latest_step() is not None:
    template = jax.eval_shape(lambda: state) if layout.mesh is None else state
    state, extras, meta = ckpt.restore(state_template=template)
    start = int(meta["iteration"])
    if buffer is not None:
      buffer.load_state_dict(extras)
    if store is not None:
      store.load_state_dict(extras)
  elif buffer is not None and config.replay.get("prefill_episodes", 0):
    prefill(buffer, exp)
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
                 resume_step=start, is_main_process=parallel.is_main_process()) as log:
    if start == 0 and t.eval_every:
      log.log(0, {**evaluate_all(exp, state, 0, last=t.total_iterations == 0), "episodes": 0})
    for it in range(start, t.total_iterations):
      tic = time.perf_counter()
      metrics = {}
      local = False  # Whether `batch` holds only this process's rows.
      if algo.data in ("rollout", "replay", "filtered"):
        rows, stats, played = play_iteration(
            exp, state, it, jax.random.fold_in(root, _ROLLOUT * 1_000_003 + it))
        episodes_seen += played
        metrics.update({f"time/{k}" if k.endswith("_seconds") else f"rollout/{k}": v
                        for k, v in stats.items()})
      if algo.data == "rollout":
        batch, local = rows, True
      elif algo.data == "replay":
        buffer.add(replay_transitions(exp, all_rows(rows)))
        batch = algo.sample(buffer, np.random.default_rng([config.seed, _REPLAY, it]))
      elif algo.data == "filtered":
        store.add(all_rows(rows))
        batch = store.sample(config.algorithm.batch_size, config.algorithm.top_fraction,
                             np.random.default_rng([config.seed, _REPLAY, it]))
      else:
        batch = stream.batch(it)
      state, update_metrics = update(state, layout.batch(batch, batch_axis, local=local),
                                     jax.random.fold_in(root, _UPDATE * 1_000_003 + it))
      _check_finite(update_metrics, ckpt, it, state, extras=extras(),
                    metadata={"iteration": it, "episodes_seen": episodes_seen})
      metrics.update(jax.device_get(update_metrics))
      metrics["episodes"] = episodes_seen
      metrics["time/iteration_s"] = time.perf_counter() - tic
      if t.eval_every and ((it + 1) % t.eval_every == 0 or it + 1 == t.total_iterations):
        metrics.update(evaluate_all(exp, state, it + 1, last=it + 1 == t.total_iterations))
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
