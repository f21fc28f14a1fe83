"""Offline episode datasets (LMRL-Gym style) as a TFDS builder writing ArrayRecord files.

A dataset is a set of episodes of one registered environment played by a mixture of its
scripted policies, the way LMRL-Gym builds its offline datasets from suboptimal scripted or
LLM players. The mixture is drawn per episode (and per role in multi-role games): every
role of every episode picks one policy name with the mixture weights and plays the whole
episode with it.

  builder = build_dataset("twenty_questions", episodes=20_000)   # built once, then read
  source = builder.as_data_source()["train"]                     # random access, no TF

Layout and reproducibility:
  * One builder class (`AgentrlEpisodes`, TFDS name "agentrl_episodes") with a runtime
    `EpisodesConfig` per dataset. The config name is `<env>-<episodes>-<hash>`, the hash
    covering everything that changes the content (env, kwargs, mixture, episodes, seed,
    test fraction), so distinct datasets never share a directory:
    `<data_dir>/agentrl_episodes/<config name>/1.0.0/`.
  * Splits: with N episodes, n_test = round(N * test_fraction) (at least 1) and
    n_train = N - n_test. Train uses task seeds `[seed, seed + n_train)`, test uses
    `[seed + n_train, seed + N)`: disjoint, contiguous ranges. Held-out seeds are not
    held-out tasks when an environment has a small task set (20 questions has ~160 words).
    Evaluation seeds (`EVAL_SEED_START`, used by the score normalizers) lie far above any
    dataset seed.
  * The policy names are drawn up front from `np.random.default_rng(seed)`; each episode is
    then `agentrl.envs.play(env, policies, task_seed)` (policy randomness seeded by the task
    seed), so any record can be replayed exactly from its `seed` and `policies` fields.
  * Everything describing the dataset (env, kwargs, mixture, episode count, seed ranges,
    per-split statistics) is in the dataset's metadata (`metadata.json`), restored when the
    directory is reopened.
  * One example per (episode, role). Text is stored as UTF-8 bytes (lone surrogates pass
    through), so every string the environments produce round-trips exactly.

Data directory: the `data_dir` argument, else `$AGENTRL_DATA_DIR`, else
`~/.cache/agentrl/datasets`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import os
from concurrent import futures
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import tensorflow_datasets as tfds

from agentrl import envs as envs_lib
from agentrl.envs.base import Episode

#: Default episode-level mixture of scripted policies.
DEFAULT_MIXTURE = {"strong": 0.5, "weak": 0.5}
#: First task seed of the fixed evaluation seeds (normalizers, held-out evaluation).
EVAL_SEED_START = 1_000_000_000
DATASET_VERSION = "1.0.0"
_TEXT_ERRORS = "surrogatepass"


def default_data_dir(data_dir: str | os.PathLike | None = None) -> str:
  """`data_dir` if given, else `$AGENTRL_DATA_DIR`, else `~/.cache/agentrl/datasets`."""
  if data_dir is not None:
    return os.fspath(data_dir)
  return os.environ.get("AGENTRL_DATA_DIR") or os.path.expanduser("~/.cache/agentrl/datasets")


def check_mixture(env_name: str, mixture: Mapping[str, float] | None) -> dict[str, float]:
  """Validates a policy mixture of `env_name` and returns it as a sorted plain dict.

  Raises:
    ValueError: unknown policy name, negative weight, or weights not summing to 1.
  """
  mixture = dict(DEFAULT_MIXTURE if mixture is None else mixture)
  if not mixture:
    raise ValueError("the policy mixture is empty")
  known = envs_lib.spec(env_name).policies
  for name, weight in mixture.items():
    if name not in known:
      raise ValueError(f"environment {env_name!r} has no policy {name!r}; valid: "
                       f"{', '.join(sorted(known))}")
    if not np.isfinite(weight) or weight < 0:
      raise ValueError(f"mixture weight of {name!r} must be >= 0, got {weight}")
  total = sum(mixture.values())
  if abs(total - 1.0) > 1e-6:
    raise ValueError(f"mixture weights must sum to 1, got {total:g} ({mixture})")
  return {name: float(mixture[name]) for name in sorted(mixture)}


def split_seeds(episodes: int, seed: int = 0,
                test_fraction: float = 0.1) -> dict[str, range]:
  """The task seeds of each split: disjoint contiguous ranges starting at `seed`."""
  if episodes < 2:
    raise ValueError(f"a dataset needs at least 2 episodes (train and test), got {episodes}")
  if not 0.0 < test_fraction < 1.0:
    raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
  n_test = min(max(1, round(episodes * test_fraction)), episodes - 1)
  n_train = episodes - n_test
  return {"train": range(seed, seed + n_train), "test": range(seed + n_train, seed + episodes)}


@dataclasses.dataclass(eq=False)
class EpisodesConfig(tfds.core.BuilderConfig):
  """What a dataset holds: environment, its kwargs, the policy mixture and the seeds."""

  env_name: str = ""
  env_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  mixture: Mapping[str, float] = dataclasses.field(default_factory=dict)
  episodes: int = 0
  seed: int = 0
  test_fraction: float = 0.1
  num_workers: int = 1
  mp_context: str = "spawn"

  def content(self) -> dict[str, Any]:
    """The fields that determine the data (the config name hashes them)."""
    return {"env": self.env_name, "env_kwargs": dict(self.env_kwargs),
            "mixture": dict(self.mixture), "episodes": self.episodes, "seed": self.seed,
            "test_fraction": self.test_fraction}


def make_config(env_name: str, *, episodes: int, mixture: Mapping[str, float] | None = None,
                env_kwargs: Mapping[str, Any] | None = None, seed: int = 0,
                test_fraction: float = 0.1, num_workers: int = 1,
                mp_context: str = "spawn") -> EpisodesConfig:
  """Validates the arguments and builds the `EpisodesConfig` naming the dataset."""
  env_kwargs = dict(env_kwargs or {})
  envs_lib.make(env_name, **env_kwargs)  # Fails early on a bad name or kwargs.
  mixture = check_mixture(env_name, mixture)
  split_seeds(episodes, seed, test_fraction)
  config = EpisodesConfig(name="pending", version=DATASET_VERSION, env_name=env_name,
                          env_kwargs=env_kwargs, mixture=mixture, episodes=int(episodes),
                          seed=int(seed), test_fraction=float(test_fraction),
                          num_workers=int(num_workers), mp_context=mp_context)
  blob = json.dumps(config.content(), sort_keys=True, default=repr).encode()
  digest = hashlib.sha1(blob).hexdigest()[:8]
  return dataclasses.replace(config, name=f"{env_name}-{episodes}-{digest}",
                             description=f"{env_name}: {episodes} episodes of {mixture}")


def _text(value: str) -> bytes:
  return value.encode("utf-8", _TEXT_ERRORS)


def _untext(value: bytes | str) -> str:
  return value if isinstance(value, str) else bytes(value).decode("utf-8", _TEXT_ERRORS)


def episode_to_example(episode: Episode, policy: str, policies: Sequence[str]) -> dict:
  """The TFDS example of one role's episode (see `AgentrlEpisodes._info` for the features)."""
  return {
      "env": _text(episode.env), "seed": episode.seed, "task_id": _text(episode.task_id),
      "role": episode.role, "system": _text(episode.system),
      "messages": [{"role": _text(m["role"]), "content": _text(m["content"])}
                   for m in episode.messages],
      "rewards": np.asarray(episode.rewards, np.float32), "done": bool(episode.done),
      "success": bool(episode.success), "final_observation": _text(episode.final_observation),
      "invalid_actions": episode.invalid_actions, "policy": _text(policy),
      "policies": [_text(p) for p in policies],
  }


def example_to_episode(example: Mapping[str, Any]) -> tuple[Episode, str]:
  """Decodes a record read back from the data source into `(Episode, policy name)`."""
  messages = example["messages"]
  episode = Episode(
      env=_untext(example["env"]), seed=int(example["seed"]),
      task_id=_untext(example["task_id"]), role=int(example["role"]),
      system=_untext(example["system"]),
      messages=[{"role": _untext(r), "content": _untext(c)}
                for r, c in zip(messages["role"], messages["content"])],
      rewards=[float(r) for r in np.asarray(example["rewards"], np.float32)],
      done=bool(example["done"]), success=bool(example["success"]),
      final_observation=_untext(example["final_observation"]),
      invalid_actions=int(example["invalid_actions"]))
  return episode, _untext(example["policy"])


def play_episode(env_name: str, env_kwargs: Mapping[str, Any], task_seed: int,
                 policies: Sequence[str], *, env=None, cache=None) -> list[Episode]:
  """Plays task `task_seed` with one named scripted policy per role; returns each role's view.

  `env` and `cache` (policy name -> Policy) are reused across calls when given.
  """
  env = env if env is not None else envs_lib.make(env_name, **env_kwargs)
  cache = {} if cache is None else cache
  for name in policies:
    if name not in cache:
      cache[name] = envs_lib.policy(env_name, name, **env_kwargs)
  return envs_lib.play(env, [cache[name] for name in policies], task_seed)


def _play_chunk(env_name: str, env_kwargs: Mapping[str, Any],
                jobs: Sequence[tuple[int, tuple[str, ...]]]) -> list[list[Episode]]:
  env, cache = envs_lib.make(env_name, **env_kwargs), {}
  return [play_episode(env_name, env_kwargs, s, p, env=env, cache=cache) for s, p in jobs]


def _stats(returns: list[float], successes: list[bool], counts: dict[str, int]) -> dict:
  return {"episodes": len(returns), "mean_return": float(np.mean(returns)) if returns else 0.0,
          "std_return": float(np.std(returns)) if returns else 0.0,
          "success_rate": float(np.mean(successes)) if successes else 0.0,
          "policy_counts": dict(sorted(counts.items()))}


class AgentrlEpisodes(tfds.core.GeneratorBasedBuilder):
  """Episodes of one environment played by a mixture of scripted policies (runtime config)."""

  VERSION = tfds.core.Version(DATASET_VERSION)
  RELEASE_NOTES = {DATASET_VERSION: "Episodes of scripted-policy mixtures, one example per role."}
  BUILDER_CONFIGS: list[EpisodesConfig] = []

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls):
    """No source checksums to find: nothing is downloaded (and TFDS's lookup of the module
    path needs the optional `importlib_resources` package)."""
    return None

  #: Shows a tqdm bar over episodes while generating (set by the command line tool).
  progress = False

  def _info(self) -> tfds.core.DatasetInfo:
    text = tfds.features.Text()
    features = tfds.features.FeaturesDict({
        "env": text, "seed": np.int64, "task_id": text, "role": np.int32, "system": text,
        "messages": tfds.features.Sequence({"role": text, "content": text}),
        "rewards": tfds.features.Sequence(np.float32), "done": np.bool_, "success": np.bool_,
        "final_observation": text, "invalid_actions": np.int32, "policy": text,
        "policies": tfds.features.Sequence(text),
    })
    return tfds.core.DatasetInfo(
        builder=self, description=__doc__.split("\n\n")[0], features=features,
        metadata=tfds.core.MetadataDict(),
        homepage="https://github.com/abdulhaim/LMRL-Gym")

  def _split_generators(self, dl_manager):
    del dl_manager
    config = self.builder_config
    seeds = split_seeds(config.episodes, config.seed, config.test_fraction)
    env = envs_lib.make(config.env_name, **config.env_kwargs)
    names = list(config.mixture)
    rng = np.random.default_rng(config.seed)
    draws = rng.choice(len(names), size=(config.episodes, env.num_roles),
                       p=np.asarray([config.mixture[n] for n in names]))
    policies = [tuple(names[j] for j in row) for row in draws]
    self.info.metadata.update({
        **config.content(), "config_name": config.name, "num_roles": env.num_roles,
        "resolved_env_kwargs": json.loads(json.dumps(
            {**envs_lib.spec(config.env_name).kwargs, **config.env_kwargs}, default=repr)),
        "split_seeds": {k: [r.start, r.stop] for k, r in seeds.items()},
        "stats_role": 0,
    })
    offset = {"train": 0, "test": len(seeds["train"])}
    return {split: self._generate_examples(split, list(zip(r, policies[offset[split]:])))
            for split, r in seeds.items()}

  def _episodes(self, jobs) -> Iterator[tuple[tuple[str, ...], list[Episode]]]:
    config = self.builder_config
    if config.num_workers <= 1:
      env, cache = envs_lib.make(config.env_name, **config.env_kwargs), {}
      for task_seed, names in jobs:
        yield names, play_episode(config.env_name, config.env_kwargs, task_seed, names,
                                  env=env, cache=cache)
      return
    chunk = max(1, min(256, len(jobs) // (4 * config.num_workers)))
    chunks = [jobs[i:i + chunk] for i in range(0, len(jobs), chunk)]
    context = multiprocessing.get_context(config.mp_context)
    with futures.ProcessPoolExecutor(config.num_workers, mp_context=context) as pool:
      results = pool.map(_play_chunk, [config.env_name] * len(chunks),
                         [dict(config.env_kwargs)] * len(chunks), chunks)
      for part, played in zip(chunks, results):
        for (_, names), episodes in zip(part, played):
          yield names, episodes

  def _generate_examples(self, split: str, jobs: list[tuple[int, tuple[str, ...]]]):
    returns, successes, counts = [], [], {}
    played = self._episodes(jobs)
    if self.progress:
      from tqdm import auto as tqdm  # pylint: disable=g-import-not-at-top
      played = tqdm.tqdm(played, total=len(jobs), desc=f"{self.builder_config.name} {split}",
                         unit="episode")
    for names, episodes in played:
      for episode in episodes:
        yield f"{episode.seed}:{episode.role}", episode_to_example(
            episode, names[episode.role], names)
      returns.append(episodes[0].episode_return)
      successes.append(episodes[0].success)
      counts[names[0]] = counts.get(names[0], 0) + 1
    self.info.metadata[f"{split}_stats"] = _stats(returns, successes, counts)


def build_dataset(env_name: str, *, episodes: int, mixture: Mapping[str, float] | None = None,
                  data_dir: str | os.PathLike | None = None,
                  env_kwargs: Mapping[str, Any] | None = None, seed: int = 0,
                  test_fraction: float = 0.1, num_workers: int = 1,
                  mp_context: str = "spawn", progress: bool = False) -> AgentrlEpisodes:
  """Returns the prepared builder of this dataset, generating it on first use.

  Args:
    env_name: Registered environment name.
    episodes: Environment episodes in total (train + test); multi-role environments store
      one example per role.
    mixture: Policy name -> probability (default `DEFAULT_MIXTURE`); must sum to 1.
    data_dir: Root directory (default: `default_data_dir()`).
    env_kwargs: Overrides of the environment's registered kwargs (also given to policies).
    seed: First task seed, and the seed of the per-episode policy draws.
    test_fraction: Fraction of episodes in the "test" split (held-out seeds).
    num_workers: Processes playing episodes (the result does not depend on it).
    mp_context: multiprocessing start method of the workers.
    progress: Show a tqdm bar over episodes while generating.

  A second call with the same arguments reads the existing files (the directory name hashes
  the arguments that change the content).
  """
  config = make_config(env_name, episodes=episodes, mixture=mixture, env_kwargs=env_kwargs,
                       seed=seed, test_fraction=test_fraction, num_workers=num_workers,
                       mp_context=mp_context)
  builder = AgentrlEpisodes(config=config, data_dir=default_data_dir(data_dir),
                            file_format="array_record")
  if not builder.is_prepared():
    builder.progress = progress
    builder.download_and_prepare(
        file_format="array_record",
        download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  return builder
