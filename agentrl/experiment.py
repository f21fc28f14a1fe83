"""An experiment built from a config: its layout, tokenizer, policy, BC warm start, algorithm,
and how its policy plays an iteration's episodes.

  exp = experiment.build(config, experiment.make_layout(config), run_dir="runs/x")
  played = experiment.play_iteration(exp, state, iteration, key)

Devices and processes (`config.mesh`, `config.distributed`; `agentrl.parallel`). The state
is initialised directly into the layout of `parallel.state_shardings` on the ("data", "fsdp",
"tensor") mesh of `config.mesh`, every update keeps that layout, and batches are split over
data x fsdp; rollouts and evaluation sample from this process's local copy of the state. One
device is a mesh of one device: the same code path, every layout replicated. With several
processes each plays its own share of an iteration's task seeds: the seeds are cut into
`distributed.rollout_shards` blocks (0: one per process), shard s sampled with its own key, so
a run gives the same result on any number of processes that divides the shard count.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh

from agentrl import algorithms, checkpoint, envs, parallel, rollout, sampling, sources
from agentrl.algorithms import Models
from agentrl.data import tokenizers as tokenizer_cache
from agentrl.logging_utils import RunLogger
from agentrl.models import decoder
from agentrl.tokenizer import Tokenizer
from agentrl.types import TrajectoryBatch


def single_device_mesh() -> Mesh:
  """A ("data", "fsdp", "tensor") mesh of this process's first device."""
  return parallel.make_mesh(devices=jax.local_devices()[:1])


@dataclasses.dataclass(frozen=True)
class Layout:
  """Where the arrays of a run live: a mesh (default: `single_device_mesh`) and its rules."""

  mesh: Mesh = dataclasses.field(default_factory=single_device_mesh)
  rules: tuple = parallel.DEFAULT_RULES
  #: Boxed abstract parameter trees whose logical names lay out unboxed copies in the state
  #: (`parallel.state_shardings`); here {"policy": ...}.
  logical: Any = None

  def init(self, init_fn, rng) -> tuple[Any, Any]:
    """(state, its shardings) of `init_fn(rng)`, built directly in its layout on the mesh."""
    return parallel.init_state(init_fn, rng, self.mesh, self.rules, logical=self.logical)

  def update(self, update_fn, shardings):
    """`update_fn(state, batch, rng)`, keeping the state's layout on the mesh."""
    jitted = parallel.jit_sharded_update(update_fn, shardings, self.mesh, self.rules)
    return lambda state, batch, rng: jitted(state, batch, parallel.replicate(rng, self.mesh))

  def batch(self, batch, axis: int = 0, *, local: bool = False):
    """A host batch split over the mesh along `axis` (see `parallel.global_batch`)."""
    return parallel.global_batch(batch, self.mesh, axis, local=local)

  def acting(self, state):
    """The state as this process's sampler reads it (a local copy with several processes)."""
    return parallel.local_copy(state, self.mesh)

  def template(self, init_fn):
    """A restore template of the state `init_fn` makes: the state itself, in its layout
    (orbax restores into it)."""
    return self.init(init_fn, jax.random.PRNGKey(0))[0]


def make_layout(config) -> Layout:
  """The mesh of `config.mesh` (default: every device data-parallel) and its rules."""
  cfg = config.get("mesh") or {"data": -1}
  return Layout(parallel.make_mesh_from_config(cfg),
                parallel.rules_from_config(cfg.get("rules", ())))


@dataclasses.dataclass
class Experiment:
  """What `build` makes from a config."""

  config: ml_collections.ConfigDict
  tokenizer: Tokenizer
  models: Models
  algorithm: algorithms.Algorithm | None
  max_turns: int
  layout: Layout = dataclasses.field(default_factory=Layout)


def build_tokenizer(config) -> Tokenizer:
  """The environment's BPE tokenizer (trained once and cached; process 0 first)."""
  with parallel.process_zero_first("tokenizer"):
    return tokenizer_cache.environment_tokenizer(
        config.env.name, vocab_size=config.tokenizer.vocab_size,
        episodes=config.tokenizer.corpus_episodes, env_kwargs=dict(config.env.kwargs),
        data_dir=config.data_dir or None)


def build_policy(config, tokenizer: Tokenizer, layout: Layout | None = None
                 ) -> tuple[decoder.DecoderConfig, Any]:
  """The policy's decoder config and its parameters, initialised in their layout on the mesh
  of `layout` (default: `Layout()`)."""
  layout = Layout() if layout is None else layout
  p = config.policy
  policy_config = decoder.DecoderConfig.llama(
      vocab_size=tokenizer.vocab_size, hidden_size=p.hidden_size, num_layers=p.num_layers,
      num_heads=p.num_heads, num_kv_heads=p.num_kv_heads, mlp_dim=p.mlp_dim,
      max_position_embeddings=max(4096, config.env.max_tokens), remat=p.get("remat", False))
  rng = jax.random.PRNGKey(config.seed)
  params, _ = parallel.sharded_init(
      lambda: decoder.init_params(policy_config, rng, boxed=True), layout.mesh, layout.rules)
  return policy_config, params


def sampling_config(config, tokenizer: Tokenizer, *, temperature: float | None = None
                    ) -> sampling.SamplingConfig:
  return sampling.SamplingConfig(
      max_new_tokens=config.sampling.max_new_tokens,
      temperature=config.sampling.temperature if temperature is None else temperature,
      stop_token=tokenizer.end_of_turn_id, pad_token=tokenizer.pad_id)


def build(config, layout: Layout | None = None, *, run_dir: str | None = None) -> Experiment:
  """The experiment of `config` on `layout` (default: `Layout()`, one device). With
  `run_dir` and `config.bc.steps` > 0 the policy starts from the BC warm start of
  `run_dir/bc` (trained there first if it is not saved yet); without `run_dir` from its
  initial parameters. The algorithm is made once, from that policy."""
  layout = Layout() if layout is None else layout
  tokenizer = build_tokenizer(config)
  policy_config, params = build_policy(config, tokenizer, layout)
  layout = dataclasses.replace(layout, logical={"policy": jax.eval_shape(
      lambda: decoder.init_params(policy_config, jax.random.PRNGKey(0), boxed=True))})
  models = Models(policy_config, params, sampling_config(config, tokenizer), tokenizer.pad_id,
                  tokenizer)
  max_turns = envs.make(config.env.name, **config.env.kwargs).max_turns
  exp = Experiment(config, tokenizer, models, None, max_turns, layout)
  if run_dir is not None and config.bc.steps > 0:
    models = dataclasses.replace(models, policy_params=behaviour_clone(exp, run_dir))
  algorithm = algorithms.make(config.algorithm.name, config.algorithm, models)
  return dataclasses.replace(exp, models=models, algorithm=algorithm)


# --------------------------------------------------------------------------- BC warm start


def check_finite(metrics, ckpt: checkpoint.Checkpointer, step: int, state, **save_kwargs):
  """Saves `state` (the one before the skipped update) and raises when an update flagged a
  non-finite loss or gradient (`algorithms.apply_gradients`)."""
  bad = algorithms.nonfinite_losses(jax.device_get(metrics))
  if bad:
    ckpt.save(step, state=state, force=True, **save_kwargs)
    ckpt.wait()
    raise FloatingPointError(
        f"non-finite {', '.join(bad)} at step {step}: the update was not applied; the state "
        f"before it is saved in {ckpt.directory} (step {step}).")


def behaviour_clone(exp: Experiment, run_dir: str) -> Any:
  """The BC warm start (`config.bc`), saved under run_dir/bc and reused on resume."""
  c, layout = exp.config.bc, exp.layout
  bc_algo = algorithms.make("bc", {k: c[k] for k in c.keys() if k != "steps"}, exp.models)
  ckpt = checkpoint.Checkpointer(os.path.join(run_dir, "bc"), max_to_keep=1)
  try:
    if ckpt.latest_step() == c.steps:
      state, _, _ = ckpt.restore(state_template=layout.template(bc_algo.init))
      return state.params["policy"]
    stream = sources.Offline(c.batch_size, stream=sources.STREAMS["offline"]).open(exp)
    state, shardings = layout.init(bc_algo.init, jax.random.PRNGKey(exp.config.seed))
    update = layout.update(bc_algo.update, shardings)
    with RunLogger(os.path.join(run_dir, "bc"), total_steps=c.steps, headline=("bc/loss",),
                   is_main_process=parallel.is_main_process()) as log:
      for step in range(c.steps):
        batch = layout.batch(stream.batch(step))
        state, metrics = update(state, batch, jax.random.PRNGKey(0))
        check_finite(metrics, ckpt, step, state)
        if step % exp.config.train.log_every == 0 or step == c.steps - 1:
          log.log(step + 1, metrics)
    ckpt.save(c.steps, state=state, force=True)
    ckpt.wait()
    return state.params["policy"]
  finally:
    ckpt.close()


# --------------------------------------------------------------------------- playing


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


def play_iteration(exp: Experiment, state, iteration: int, key) -> sources.Played:
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
    return sources.Played(result.batch, result.stats, len(result.episodes))
  per_process, per_shard = shards // jax.process_count(), len(seeds) // shards
  batches, sums = [], []
  for s in range(jax.process_index() * per_process, (jax.process_index() + 1) * per_process):
    result = play(exp, policy, seeds[s * per_shard:(s + 1) * per_shard],
                  group_size=r.group_size, key=jax.random.fold_in(key, s))
    # Group ids count seeds from the shard's first one: make them the iteration's.
    batches.append(result.batch.replace(group_id=result.batch.group_id + s * per_shard))
    sums.append(_stat_sums(result))
  total = parallel.allgather(np.sum(sums, axis=0)).sum(axis=0)
  batch: TrajectoryBatch = jax.tree.map(lambda *xs: np.concatenate(xs), *batches)
  return sources.Played(batch, _stats_from_sums(total), int(total[0]))
