r"""Builds the offline episode datasets and the score normalizers of the environments.

  python -m experiments.make_datasets --env twenty_questions --episodes 20000 \
      [--mixture strong=0.5,weak=0.5] [--data_dir DIR] [--num_workers 8]
  python -m experiments.make_datasets --env all --episodes 20000
  python -m experiments.make_datasets --normalizers [--env all] [--normalizer_episodes 1000]

A dataset build shows a progress bar over episodes and prints the dataset's path, size,
example counts, mean return and success rate per split, and its metadata. An existing
dataset (same arguments) is read, not rebuilt. `--normalizers` plays each policy (weak,
the dataset mixture, strong) on the fixed evaluation seeds and prints the normalizers as
Python source, each entry to paste into its environment's `agentrl.envs.register(...,
normalizer=...)` call, plus a markdown table. An environment registered outside the built-in
modules is listed once the module that registers it is imported.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Sequence

from absl import app
from absl import flags
import tensorflow_datasets as tfds

from agentrl import envs as envs_lib
from agentrl.data import episodes_builder
from agentrl.data import scores

_ENV = flags.DEFINE_string("env", None, "Environment name, or 'all' for every registered one.")
_EPISODES = flags.DEFINE_integer("episodes", 20000, "Episodes per dataset (train + test).")
_MIXTURE = flags.DEFINE_string("mixture", "strong=0.5,weak=0.5",
                               "Episode-level policy mixture, name=weight,... summing to 1.")
_DATA_DIR = flags.DEFINE_string("data_dir", None,
                                "Dataset root (default: $AGENTRL_DATA_DIR or "
                                "~/.cache/agentrl/datasets).")
_SEED = flags.DEFINE_integer("seed", 0, "First task seed and seed of the mixture draws.")
_TEST_FRACTION = flags.DEFINE_float("test_fraction", 0.1, "Fraction of episodes in 'test'.")
_ENV_KWARGS = flags.DEFINE_string("env_kwargs", "{}", "JSON object of environment kwargs.")
_NUM_WORKERS = flags.DEFINE_integer("num_workers", 1, "Processes playing episodes.")
_NORMALIZERS = flags.DEFINE_bool("normalizers", False,
                                 "Recompute and print the score normalizers instead.")
_NORMALIZER_EPISODES = flags.DEFINE_integer(
    "normalizer_episodes", scores.NORMALIZER_EPISODES,
    "Evaluation episodes per policy for --normalizers.")


def parse_mixture(text: str) -> dict[str, float]:
  """'strong=0.5,weak=0.5' -> {'strong': 0.5, 'weak': 0.5}; errors name --mixture."""
  mixture = {}
  for item in filter(None, (part.strip() for part in text.split(","))):
    name, sep, weight = item.partition("=")
    name = name.strip()
    try:
      value = float(weight)
    except ValueError:
      value = math.nan
    if not sep or not name or not math.isfinite(value):
      raise app.UsageError(f"--mixture: expected name=weight, got {item!r} in {text!r}")
    if name in mixture:
      raise app.UsageError(f"--mixture: policy {name!r} is listed twice in {text!r}")
    mixture[name] = value
  if not mixture:
    raise app.UsageError(f"--mixture: no policy given in {text!r}")
  return mixture


def resolve_envs(env: str | None) -> list[str]:
  """The environment names `--env` selects; errors name --env."""
  valid = envs_lib.names()
  if env is None:
    raise app.UsageError(f"--env is required: one of {', '.join(valid)} or 'all'")
  if env == "all":
    return valid
  if env not in valid:
    raise app.UsageError(f"--env: unknown environment {env!r}; valid: {', '.join(valid)}, all")
  return [env]


def parse_env_kwargs(text: str) -> dict[str, Any]:
  """The --env_kwargs JSON object."""
  try:
    kwargs = json.loads(text)
  except json.JSONDecodeError as e:
    raise app.UsageError(f"--env_kwargs: not valid JSON ({e}): {text!r}") from e
  if not isinstance(kwargs, dict):
    raise app.UsageError(f"--env_kwargs: expected a JSON object, got {text!r}")
  return kwargs


def check_flags(env_names: Sequence[str], mixture: dict[str, float], *, episodes: int,
                test_fraction: float) -> None:
  """Validates the mixture against every environment; errors name the flag."""
  try:
    episodes_builder.split_seeds(episodes, 0, test_fraction)
  except ValueError as e:
    raise app.UsageError(f"--episodes/--test_fraction: {e}") from e
  tfds.disable_progress_bar()  # Ours counts episodes instead.
  for name in env_names:
    try:
      episodes_builder.check_mixture(name, mixture)
    except ValueError as e:
      raise app.UsageError(f"--mixture: {e}") from e


def _directory_bytes(path) -> int:
  return sum(os.path.getsize(os.path.join(root, f))
             for root, _, files in os.walk(os.fspath(path)) for f in files)


def describe(builder) -> str:
  """Path, size, example counts, mean return / success per split, and the metadata."""
  meta = dict(builder.info.metadata)
  lines = [f"dataset {builder.builder_config.name}",
           f"  path: {builder.data_path}",
           f"  size: {_directory_bytes(builder.data_path) / 2**20:.2f} MiB"]
  for split, info in sorted(builder.info.splits.items()):
    stats = meta.get(f"{split}_stats", {})
    lines.append(f"  {split}: {info.num_examples} examples, {stats.get('episodes', '?')} "
                 f"episodes, mean return {stats.get('mean_return', math.nan):.4g} "
                 f"(std {stats.get('std_return', math.nan):.4g}), success rate "
                 f"{stats.get('success_rate', math.nan):.3f}, policies "
                 f"{stats.get('policy_counts', {})}")
  lines.append("  metadata: " + json.dumps(meta, sort_keys=True, default=str))
  return "\n".join(lines)


def run_normalizers(env_names: Sequence[str], mixture: dict[str, float], episodes: int) -> str:
  """Recomputes the normalizers and returns them as Python source and markdown."""
  table = scores.compute_normalizers(env_names, episodes=episodes, mixture=mixture)
  return (scores.normalizers_source(table, episodes=episodes) + "\n\n"
          + scores.normalizers_markdown(table))


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  mixture = parse_mixture(_MIXTURE.value)
  if _NORMALIZERS.value:
    # A wrapper that keeps its environment's returns is scored with that one's normaliser.
    scored = {e: envs_lib.score_name(e) for e in resolve_envs(_ENV.value or "all")}
    if len(scored) == 1 and (e := next(iter(scored))) != scored[e]:
      raise app.UsageError(f"--env: {e} has no normaliser of its own; its returns are scored "
                           f"as {scored[e]}'s")
    env_names = [e for e, own in scored.items() if own == e]
    check_flags(env_names, mixture, episodes=2, test_fraction=0.5)
    if _NORMALIZER_EPISODES.value < 1:
      raise app.UsageError("--normalizer_episodes must be >= 1")
    print(run_normalizers(env_names, mixture, _NORMALIZER_EPISODES.value))
    return
  env_names = resolve_envs(_ENV.value)
  check_flags(env_names, mixture, episodes=_EPISODES.value, test_fraction=_TEST_FRACTION.value)
  env_kwargs = parse_env_kwargs(_ENV_KWARGS.value)
  if _NUM_WORKERS.value < 1:
    raise app.UsageError(f"--num_workers must be >= 1, got {_NUM_WORKERS.value}")
  tfds.disable_progress_bar()  # Ours counts episodes instead.
  for name in env_names:
    try:
      builder = episodes_builder.build_dataset(
          name, episodes=_EPISODES.value, mixture=mixture, data_dir=_DATA_DIR.value,
          env_kwargs=env_kwargs, seed=_SEED.value, test_fraction=_TEST_FRACTION.value,
          num_workers=_NUM_WORKERS.value, progress=True)
    except TypeError as e:  # Bad kwargs reach the environment's constructor.
      raise app.UsageError(f"--env_kwargs: {name}: {e}") from e
    print(describe(builder), flush=True)


if __name__ == "__main__":
  app.run(main)
