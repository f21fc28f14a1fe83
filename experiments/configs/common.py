r"""The blocks every experiment config shares, sized per environment and variant.

An algorithm's config file (`ppo.py`, `filtered_bc.py`, ...) is `base(env, variant)` plus its
own `algorithm` block. Its argument after the colon picks the variant and, optionally, the
environment:

  python -m experiments.train --config=experiments/configs/ppo.py:cpu,env=maze_po

Variants: `smoke` (seconds, for tests: tiny models, short episodes), `cpu` (minutes on a
laptop CPU: a small from-scratch policy), `paper` (the published sizes, for GPU/TPU).
`archer_twenty_questions.py`, the main experiment, spells all of its keys out instead.
"""

from __future__ import annotations

import dataclasses
import types

import ml_collections

from agentrl import algorithms, envs, parallel
from agentrl.algorithms import defaults

VARIANTS = ("smoke", "cpu", "paper")

# Per environment: tokens per conversation row (T) and per utterance for the cpu variant, as
# the environment registers them (`agentrl.envs.register(..., budget=TokenBudget(...))`, which
# says how they were chosen). A longer row is cut (a time limit, not a terminal) and evaluation
# scores it as failing every turn it had left (`rollout` stats["scored_return"]), so a T that
# is too small lowers scores, never raises them. The paper variant doubles T. The smoke
# variant caps episodes at 4 turns through the env's `turn_limit_key` keyword (default
# "max_turns"). A read-only view of the registry, name -> {"max_tokens", "max_new_tokens",
# "turn_limit_key"}, of every registered environment with a budget (one registered by any
# module, a test's included).
ENVS = envs.RegistryView(
    lambda spec: spec.budget and types.MappingProxyType(dataclasses.asdict(spec.budget)))


def parse(arg: str | None, default_env: str) -> tuple[str, str]:
  """`"cpu"`, `"smoke,env=wordle"`, `"env=maze_po"` -> (variant, env). Unknown parts raise."""
  variant, env = "cpu", default_env
  for part in filter(None, (arg or "").split(",")):
    key, sep, value = part.partition("=")
    if not sep and key in VARIANTS:
      variant = key
    elif sep and key == "env":
      env = value
    else:
      raise ValueError(f"config argument {part!r}: expected a variant ({', '.join(VARIANTS)}) "
                       "or env=NAME")
  if env not in ENVS:
    raise ValueError(f"env={env!r} has no token budget (agentrl.envs.register(..., "
                     f"budget=TokenBudget(...))); known: {', '.join(sorted(ENVS))}")
  return variant, env


def base(env: str, variant: str) -> ml_collections.ConfigDict:
  """Every block but `algorithm` (and `replay`, which replay-based configs add)."""
  sizes = ENVS[env]
  c = ml_collections.ConfigDict()
  c.seed = 0  # Everything random derives from it (and the iteration).
  c.data_dir = ""  # Datasets and tokenizers; "" = $AGENTRL_DATA_DIR or ~/.cache/agentrl/datasets.

  c.env = ml_collections.ConfigDict()
  c.env.name = env  # A name registered in agentrl.envs.
  c.env.kwargs = ml_collections.ConfigDict()  # Keyword arguments of agentrl.envs.make.
  c.env.max_tokens = sizes["max_tokens"]  # T: tokens per conversation row.
  c.env.system_prompt = False  # A from-scratch policy learns nothing from a constant prompt.

  c.tokenizer = ml_collections.ConfigDict()
  c.tokenizer.vocab_size = 1024  # BPE trained on scripted episodes of the environment.
  c.tokenizer.corpus_episodes = 200  # Strong and weak episodes each, for the BPE corpus.

  c.policy = ml_collections.ConfigDict()  # A Llama-style decoder trained from scratch.
  c.policy.hidden_size = 128
  c.policy.num_layers = 2
  c.policy.num_heads = 4
  c.policy.num_kv_heads = 2
  c.policy.mlp_dim = 256
  c.policy.remat = False  # Recompute each block in the backward pass (TPU/GPU: less memory).

  c.sampling = ml_collections.ConfigDict()
  c.sampling.max_new_tokens = sizes["max_new_tokens"]  # Token budget of one utterance.
  c.sampling.temperature = 1.0  # Rollouts sample at this.

  c.dataset = ml_collections.ConfigDict()  # The offline TFDS dataset (built on first use).
  c.dataset.episodes = 20_000
  c.dataset.mixture = ml_collections.ConfigDict({"strong": 0.5, "weak": 0.5})

  # Behaviour-cloning warm start on the dataset: every knob of the bc algorithm, and its steps.
  c.bc = algorithm_block("bc", named=False)
  c.bc.steps = 400  # 0 skips it.
  c.bc.batch_size = 32
  c.bc.lr = 1e-3
  c.bc.warmup_steps = 20
  c.bc.max_grad_norm = 1.0

  c.rollout = ml_collections.ConfigDict()
  c.rollout.seeds_per_iteration = 16  # Task seeds per iteration...
  c.rollout.group_size = 1  # ... times episodes per seed.

  c.eval = ml_collections.ConfigDict()
  c.eval.episodes = 64  # Held-out task seeds.
  c.eval.temperature = 1.0  # The policy as it acts in training.
  c.eval.greedy = True  # Also evaluate greedily at the first and the last evaluation.

  c.train = ml_collections.ConfigDict()
  c.train.total_iterations = 40
  c.train.eval_every = 10
  c.train.checkpoint_every = 5
  c.train.log_every = 25  # Steps between log lines in step-based phases (BC).

  c.mesh = mesh_block()  # Default: every device data-parallel.
  c.distributed = distributed_block()  # Default: one process, or every host of a TPU slice.

  if variant == "smoke":
    c.env.kwargs[sizes["turn_limit_key"]] = 4
    c.env.max_tokens = min(192, sizes["max_tokens"])
    c.tokenizer.update(vocab_size=512, corpus_episodes=30)
    c.policy.update(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, mlp_dim=64)
    c.sampling.max_new_tokens = min(8, sizes["max_new_tokens"])
    c.dataset.episodes = 200
    c.bc.update(steps=10, batch_size=8)
    c.rollout.seeds_per_iteration = 4
    c.eval.episodes = 4
    c.train.update(total_iterations=2, eval_every=2, checkpoint_every=1, log_every=5)
  elif variant == "paper":
    c.env.max_tokens = 2 * sizes["max_tokens"]
    c.env.system_prompt = True
    c.tokenizer.vocab_size = 8192
    c.policy.update(hidden_size=768, num_layers=12, num_heads=12, num_kv_heads=12,
                    mlp_dim=3072)  # GPT-2-small-sized.
    c.sampling.max_new_tokens = 2 * sizes["max_new_tokens"]
    c.bc.update(steps=5000, lr=1e-4)
    c.rollout.seeds_per_iteration = 128
    c.eval.update(episodes=128, temperature=0.0, greedy=False)
    c.train.update(total_iterations=2000, eval_every=25, checkpoint_every=25)
  return c


def algorithm_block(name: str, *, named: bool = True) -> ml_collections.ConfigDict:
  """Algorithm `name`'s block: every knob of its `Defaults` (`agentrl.algorithms.knobs`) at
  its default, so each is settable (`--config.algorithm.clip_high=0.28`); its comment is the
  field's in the algorithm module. The config file then sets what it changes."""
  return defaults.config_block(algorithms.knobs(name), name if named else None)


def mesh_block() -> ml_collections.ConfigDict:
  """The device mesh (`agentrl.parallel`): sizes of its three axes, one of them -1."""
  m = ml_collections.ConfigDict()
  m.data = -1  # Data-parallel replicas (parameters replicated); -1: the remaining devices.
  m.fsdp = 1  # Batch and the parameters' `embed` dimension split this many ways.
  m.tensor = 1  # Attention heads, MLP units and the vocabulary split this many ways.
  # (logical axis name, mesh axes) pairs; the first pair whose mesh axes are free wins.
  m.rules = tuple(parallel.DEFAULT_RULES)
  return m


def distributed_block() -> ml_collections.ConfigDict:
  """Several processes (hosts) on one mesh: `jax.distributed` (`agentrl.parallel`)."""
  d = ml_collections.ConfigDict()
  # "off": one process; "on": initialise (empty keys below come from the environment);
  # "auto": "on" when coordinator_address is set or on a multi-host TPU VM slice.
  d.mode = "auto"
  d.coordinator_address = ""  # "host:port" of process 0.
  d.num_processes = 0  # 0: from the environment.
  d.process_id = -1  # -1: from the environment.
  d.local_device_ids = ()  # Devices this process uses; (): every visible one.
  # Independent rollout streams per iteration (0: one per process). A run reproduces on any
  # number of processes that divides it; fix it to resume on a different number.
  d.rollout_shards = 0
  return d


def replay_block(variant: str) -> ml_collections.ConfigDict:
  """The utterance replay buffer of ArCHer-style algorithms."""
  r = ml_collections.ConfigDict()
  r.capacity = 512 if variant == "smoke" else 10_000  # Utterance transitions (paper: 10k).
  # Offline dataset episodes whose transitions seed the buffer (0: start empty).
  r.prefill_episodes = {"smoke": 16, "cpu": 600, "paper": 0}[variant]
  return r
