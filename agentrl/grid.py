"""A grid of training runs, as the notebooks run it: one run per (environment, method, seed).

A notebook names its methods (`Method`: a config file of `experiments/configs/`, its overrides,
its name in run directories) and builds its grid with `Grid.create(notebook, smoke=SMOKE, ...)`:

* the full grid (`smoke=False`) uses the configs' `cpu` variants, trains into
  `runs/notebooks/<notebook>/` and writes its tables to `experiments/results/`;
* the smoke grid (`smoke=True`, what `tests/test_notebooks.py` executes) uses the `smoke`
  variants and writes everything, offline datasets included (`data_dir=`), under a fresh
  temporary directory, never into the repository.

The config of a cell is `experiments/configs/<file>:<variant>,env=<env>` with the overrides
`seed=<seed>`, then the grid's, then the method's, then the environment's
(`Grid.overrides_for`); its run directory is `<runs_dir>/<env>-<variant>-<name>-seed<seed>`.
Every cell trains through `run_cache.train_once`, so a finished run is read back instead of
retrained, and the methods of one environment and seed with the same `bc_group` start from
one behaviour-cloned policy (trained by the first of them to run, copied into the others).
`Grid.train_all` trains the grid in a given order and returns a `Run` per cell: its config,
overrides, wall time and the metric rows that hold the grid's `metric`. `select`, `curves`
and `write_csv` turn runs into figures and tables.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import tempfile
import time
from typing import Any, Callable, Iterable, Mapping, Sequence

import jax
import ml_collections
import numpy as np

from agentrl import configs, run_cache
from agentrl.logging_utils import read_metrics

#: The repository root (above the `agentrl` package).
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: The orders `Grid.cells` walks a grid in: environments outermost.
ORDERS = (("env", "method", "seed"), ("env", "seed", "method"))


@dataclasses.dataclass(frozen=True)
class Method:
  """One method of a grid.

  Attributes:
    name: Its name in run directories (`<env>-<variant>-<name>-seed<seed>`).
    config: Its config file, relative to `experiments/configs/`.
    overrides: Its own overrides, applied after the grid's.
    envs: The environments it runs on; None: every environment of the grid.
    env_in_variant: Whether the config file takes the environment in its variant argument
      (`file.py:<variant>,env=<env>`). False for a file that picks its environment by variant
      (`archer_twenty_questions.py`, `chai.py`): its `env.name` is set after loading.
    bc_group: The methods of one environment and seed with the same `bc_group` share one
      behaviour-cloned warm start (`run_cache.train_once(bc_from=...)`).
  """

  name: str
  config: str
  overrides: Sequence[str] = ()
  envs: Sequence[str] | None = None
  env_in_variant: bool = True
  bc_group: str = ""


@dataclasses.dataclass(frozen=True)
class Run:
  """One trained cell of a grid.

  Attributes:
    env, method, seed: The cell (`method` is the grid's key of the method).
    config: The experiment config it trained with.
    overrides: The overrides that config was loaded with.
    run_dir: Its run directory.
    rows: Its logged metric records that hold the grid's `metric`, in order.
    seconds: Wall seconds its training took (`run_cache.wall_time`).
  """

  env: str
  method: str
  seed: int
  config: ml_collections.ConfigDict
  overrides: list[str]
  run_dir: str
  rows: list[dict[str, Any]]
  seconds: float

  @property
  def first(self) -> dict[str, Any]:
    """The first record (the evaluation before any update)."""
    return self.rows[0]

  @property
  def last(self) -> dict[str, Any]:
    """The last record (the final evaluation)."""
    return self.rows[-1]


@dataclasses.dataclass(frozen=True)
class Grid:
  """Environments x methods x seeds, their configs and run directories (module docstring).

  Attributes:
    methods: Method by its key (the name figures and tables use), in grid order.
    seeds: The seeds of each environment, environments in grid order.
    overrides: Overrides of every run, after `seed=<seed>`.
    env_overrides: Overrides per environment, applied last.
    metric: The key a metric record must hold to be one of a `Run`'s rows.
    variant: The config variant, "smoke" or "cpu".
    runs_dir: Where the run directories are.
    results_dir: Where tables go (`results_path`).
    smoke: Whether this is the smoke grid.
  """

  methods: Mapping[str, Method]
  seeds: Mapping[str, tuple[int, ...]]
  overrides: tuple[str, ...]
  env_overrides: Mapping[str, Sequence[str]]
  metric: str
  variant: str
  runs_dir: str
  results_dir: str
  smoke: bool

  @classmethod
  def create(cls, notebook: str, *, smoke: bool, methods: Mapping[str, Method],
             envs: Sequence[str], seeds: Sequence[int] | Mapping[str, Sequence[int]],
             overrides: Sequence[str] = (),
             env_overrides: Mapping[str, Sequence[str]] | None = None,
             metric: str = "eval/mean_return") -> Grid:
    """The grid of notebook `notebook`, full or smoke (see the module docstring).

    Args:
      notebook: Names the run and temporary directories.
      smoke: The configs' smoke variants, everything under a new temporary directory (whose
        `data` folder is appended to `overrides` as `data_dir=`).
      methods: Method by key.
      envs: The environments, in order.
      seeds: The seeds of every environment, or a mapping from environment to its seeds.
      overrides: Overrides of every run.
      env_overrides: Overrides per environment, applied after the method's.
      metric: The key that marks the metric records a `Run` keeps (an evaluation's).
    """
    if smoke:
      out = tempfile.mkdtemp(prefix=f"{notebook}_smoke_")
      runs_dir, results_dir = os.path.join(out, "runs"), out
      overrides = [*overrides, f"data_dir={os.path.join(out, 'data')}"]
    else:
      runs_dir = os.path.join(REPO, "runs", "notebooks", notebook)
      results_dir = os.path.join(REPO, "experiments", "results")
    per_env = {env: tuple(seeds[env] if isinstance(seeds, Mapping) else seeds) for env in envs}
    return cls(methods=dict(methods), seeds=per_env, overrides=tuple(overrides),
               env_overrides=dict(env_overrides or {}), metric=metric,
               variant="smoke" if smoke else "cpu", runs_dir=runs_dir,
               results_dir=results_dir, smoke=smoke)

  @property
  def envs(self) -> tuple[str, ...]:
    """The environments, in order."""
    return tuple(self.seeds)

  def methods_for(self, env: str) -> list[str]:
    """The keys of the methods that run on `env`, in order."""
    return [k for k, m in self.methods.items() if m.envs is None or env in m.envs]

  def overrides_for(self, env: str, method: str, seed: int) -> list[str]:
    """The overrides of one cell: seed, the grid's, the method's, the environment's."""
    return [f"seed={seed}", *self.overrides, *self.methods[method].overrides,
            *self.env_overrides.get(env, ())]

  def config(self, env: str, method: str, seed: int) -> ml_collections.ConfigDict:
    """The experiment config of one cell."""
    m = self.methods[method]
    path = os.path.join(configs.CONFIG_DIR, m.config)
    arg = f"{self.variant},env={env}" if m.env_in_variant else self.variant
    config = configs.load_config(f"{path}:{arg}", self.overrides_for(env, method, seed))
    if not m.env_in_variant:
      config.env.name = env
    return config

  def run_dir(self, env: str, method: str, seed: int) -> str:
    """The run directory of one cell."""
    name = self.methods[method].name
    return os.path.join(self.runs_dir, f"{env}-{self.variant}-{name}-seed{seed}")

  def bc_from(self, env: str, method: str, seed: int) -> list[str]:
    """The run directories whose BC warm start the cell may copy (its `bc_group`)."""
    group = self.methods[method].bc_group
    return [self.run_dir(env, m, seed) for m in self.methods_for(env)
            if self.methods[m].bc_group == group]

  def cells(self, order: Sequence[str] = ORDERS[0]) -> list[tuple[str, str, int]]:
    """Every (env, method, seed) of the grid, nested in `order` (one of `ORDERS`)."""
    if tuple(order) not in ORDERS:
      raise ValueError(f"order {tuple(order)}; valid: {ORDERS}.")
    out = []
    for env in self.envs:
      methods, seeds = self.methods_for(env), self.seeds[env]
      if order[1] == "method":
        out += [(env, m, s) for m in methods for s in seeds]
      else:
        out += [(env, m, s) for s in seeds for m in methods]
    return out

  def train(self, env: str, method: str, seed: int) -> Run:
    """Trains one cell once (`run_cache.train_once`) and reads its metric rows back."""
    config = self.config(env, method, seed)
    path = self.run_dir(env, method, seed)
    seconds = run_cache.train_once(config, path, bc_from=self.bc_from(env, method, seed))
    rows = [r for r in read_metrics(path) if self.metric in r]
    return Run(env=env, method=method, seed=seed, config=config,
               overrides=self.overrides_for(env, method, seed), run_dir=path, rows=rows,
               seconds=seconds)

  def train_all(self, order: Sequence[str] = ORDERS[0],
                describe: Callable[[Run], str] | None = None) -> list[Run]:
    """Trains every cell in `order`; prints `describe(run)` after each and the total time."""
    tic = time.perf_counter()
    runs = []
    for cell in self.cells(order):
      runs.append(self.train(*cell))
      if describe is not None:
        print(describe(runs[-1]))
    print(f"all runs: {total_minutes(runs):.1f} min of training "
          f"({(time.perf_counter() - tic) / 60:.1f} min in this execution)")
    return runs

  def start(self) -> None:
    """Caches compiled programs under `runs_dir/jax_cache` (runs share most of them: sampling,
    BC, evaluation) and prints the machine (`machine`)."""
    jax.config.update("jax_compilation_cache_dir", os.path.join(self.runs_dir, "jax_cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    print(machine())

  def results_path(self, filename: str) -> str:
    """Where the table `filename` goes: `experiments/results/`, or the smoke directory."""
    return os.path.join(self.results_dir, filename)

  def shown(self, path: str) -> str:
    """`path` as a notebook prints it: relative to the repository, absolute in smoke mode."""
    return path if self.smoke else os.path.relpath(path, REPO)


def machine() -> str:
  """One line: the jax version, its devices, the processor and the number of CPUs."""
  return (f"jax {jax.__version__} on {jax.devices()}; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")


def total_minutes(runs: Iterable[Run]) -> float:
  """The training wall time of `runs`, in minutes."""
  return sum(r.seconds for r in runs) / 60


def select(runs: Sequence[Run], **fields: Any) -> list[Run]:
  """The runs whose attributes equal `fields` (e.g. `env="wilt", method="GRPO"`), in order."""
  return [r for r in runs if all(getattr(r, k) == v for k, v in fields.items())]


def curves(runs: Sequence[Run], key: str, **fields: Any) -> tuple[np.ndarray, np.ndarray]:
  """(episodes [N], `key` [runs, N]) of the runs that match `fields` (`select`).

  N is the shortest run's number of rows; the episodes are those of the first run.
  """
  chosen = select(runs, **fields)
  if not chosen:
    raise ValueError(f"no run matches {fields}")
  n = min(len(r.rows) for r in chosen)
  x = np.asarray([row["episodes"] for row in chosen[0].rows[:n]], float)
  y = np.asarray([[row[key] for row in r.rows[:n]] for r in chosen], float)
  return x, y


def write_csv(path: str, table: Sequence[Mapping[str, Any]],
              formats: Mapping[str, str] | None = None) -> str:
  """Writes `table` (rows of equal keys; the first row's keys are the header) to `path`.

  A string is written as it is; any other value with `formats[column]` (a `str.format`
  pattern) when given, else a float as `{:.4f}` and the rest with `str`. Returns `path`.
  """
  formats = formats or {}

  def cell(column, value):
    if isinstance(value, str):
      return value
    if column in formats:
      return formats[column].format(value)
    return f"{value:.4f}" if isinstance(value, float) else str(value)

  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    f.write(",".join(table[0]) + "\n")
    for row in table:
      f.write(",".join(cell(k, v) for k, v in row.items()) + "\n")
  return path
