"""Multi-turn text environments, their scripted policies, and the registry.

  env = agentrl.envs.make("twenty_questions", subset=True)
  strong = agentrl.envs.policy("twenty_questions", "strong")
  [episode] = agentrl.envs.play(env, strong, seed=0)

Each environment module registers itself with `register`; a registered name may carry
default keyword arguments (so `maze_po` is `maze` with `observed="partial"`), and everything
else the project keeps per environment: the token budgets of its experiment configs
(`TokenBudget`, read by `experiments/configs/common.py` through `BUDGETS`), its score
normaliser (`Normalizer`, read by `agentrl.data.normalized_score` through `NORMALIZERS`) and
its subgoal rule for the hierarchical wrapper (`agentrl.envs.hierarchical`). A new environment
is one module that calls `register` plus its test: a module of this package is imported with
the others on first use of the registry, one elsewhere (a test's) registers when imported.

  register("my_env", MyEnv, policies={"strong": strong, "weak": weak},
           budget=TokenBudget(max_tokens=256, max_new_tokens=12),
           normalizer=Normalizer(weak=-5.0, dataset=-3.2, strong=-1.0), max_turns=8)

A wrapper registered with `register_wrapper(prefix, ...)` composes with every registered
single-role environment: `<prefix>_<name>` is `<name>` wrapped, with its scripted policies
wrapped too (so `hiper_maze_po` is the maze in HiPER's switch/subgoal/action format, see
`agentrl.envs.hierarchical`). Wrapped names are resolved on demand and listed by `names()`.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from agentrl.envs.base import (MAX_ACTION_CHARS, Env, Episode, EpisodeRecorder, Policy,
                               TimeStep, play)


@dataclasses.dataclass(frozen=True)
class TokenBudget:
  """An environment's token budgets in the experiment configs (their cpu variant; the paper
  variant doubles them, the smoke variant caps them; `experiments/configs/common.py`).

  Set from the lengths of its scripted episodes under a 1024-token BPE: a row longer than
  `max_tokens` is cut (a time limit, not a terminal) and evaluation scores it as failing
  every turn it had left, so a budget that is too small lowers scores, never raises them.
  """

  max_tokens: int  # T: tokens per conversation row.
  max_new_tokens: int  # Tokens per utterance.
  turn_limit_key: str = "max_turns"  # The keyword the smoke variant sets to 4 to cap turns.

  def __post_init__(self):
    if self.max_tokens < 1 or self.max_new_tokens < 1:
      raise ValueError(f"token budgets must be >= 1, got {self}")


@dataclasses.dataclass(frozen=True)
class Normalizer:
  """The three anchors of the normalised score: weak -> 0, dataset -> 50, strong -> 100
  (LMRL-Gym's piecewise-linear convention, see `agentrl.data.scores`)."""

  weak: float
  dataset: float
  strong: float

  def __call__(self, raw, *, name: str = "") -> np.ndarray | float:
    """The normalised score of `raw` (a float or an array of returns)."""
    where = f" of {name!r}" if name else ""
    if not self.weak < self.dataset < self.strong:
      raise ValueError(
          f"normalizer{where} needs weak < dataset < strong to divide by their gaps, got "
          f"weak={self.weak}, dataset={self.dataset}, strong={self.strong}")
    raw_array = np.asarray(raw, np.float64)
    above = 50.0 + (raw_array - self.dataset) / (self.strong - self.dataset) * 50.0
    below = (raw_array - self.weak) / (self.dataset - self.weak) * 50.0
    score = np.where(raw_array >= self.dataset, above, below)
    return float(score) if score.ndim == 0 else score


#: A subgoal rule: (inner environment before the action, scripted action) -> the subgoal
#: that action serves, for the scripted policies of the hierarchical wrapper.
SubgoalRule = Callable[[Env, str], str]


@dataclasses.dataclass(frozen=True)
class EnvSpec:
  """A registered environment: its class, default kwargs, scripted policies, and what the
  project keeps per environment (each None where it has none)."""

  name: str
  factory: Callable[..., Env]
  kwargs: Mapping[str, Any]
  policies: Mapping[str, Callable[..., Policy]]
  budget: TokenBudget | None = None  # Token budgets of the experiment configs.
  normalizer: Normalizer | None = None  # Anchors of its normalised score.
  subgoal: SubgoalRule | None = None  # Subgoal rule of the hierarchical wrapper.


_REGISTRY: dict[str, EnvSpec] = {}


@dataclasses.dataclass(frozen=True)
class WrapperSpec:
  """A registered environment wrapper: `wrap(inner_env) -> Env` and `wrap_policy(inner
  scripted policy, inner EnvSpec) -> Policy`, for single-role environments."""

  prefix: str
  wrap: Callable[[Env], Env]
  wrap_policy: Callable[[Policy, EnvSpec], Policy]
  keeps_returns: bool = False  # Episode returns are the inner environment's (same scale).


_WRAPPERS: dict[str, WrapperSpec] = {}

# Modules imported on first use of the registry: every module of this package (environment
# modules call `register` at import time; the others, such as `base`, register nothing).
_MODULES = tuple(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def register(name: str, factory: Callable[..., Env], *,
             policies: Mapping[str, Callable[..., Policy]], budget: TokenBudget | None = None,
             normalizer: Normalizer | None = None, subgoal: SubgoalRule | None = None,
             **kwargs):
  """Registers `factory(**kwargs)` as `name` with scripted policy factories.

  Args:
    name: The environment's name (`make(name)`, `env=name` in the experiment configs).
    factory: Builds the environment from keyword arguments (usually its `Env` subclass).
    policies: Maps a policy name ("strong", "weak", ...) to a callable that takes the same
      keyword arguments as the environment (or none it does not need) and returns a `Policy`.
    budget: Its token budgets in the experiment configs; None: no config can train on it.
    normalizer: The anchors of its normalised score (`python -m experiments.make_datasets
      --normalizers --env NAME` measures them); None: runs report no `score`.
    subgoal: Its subgoal rule in the hierarchical wrapper; None: "" for every action (one
      segment per episode).
    **kwargs: Default keyword arguments of `factory` (and of the policies).
  """
  if name in _REGISTRY:
    raise ValueError(f"environment {name!r} is already registered")
  for required in ("strong", "weak"):
    if required not in policies:
      raise ValueError(f"environment {name!r} must register a {required!r} policy")
  if budget is not None and not isinstance(budget, TokenBudget):
    raise TypeError(f"environment {name!r}: budget must be a TokenBudget, got {budget!r}")
  if normalizer is not None and not (isinstance(normalizer, Normalizer)
                                     and normalizer.weak < normalizer.dataset < normalizer.strong):
    raise ValueError(f"environment {name!r}: normalizer must be a Normalizer with weak < "
                     f"dataset < strong, got {normalizer!r}")
  _REGISTRY[name] = EnvSpec(name, factory, dict(kwargs), dict(policies), budget=budget,
                            normalizer=normalizer, subgoal=subgoal)


def register_wrapper(prefix: str, wrap: Callable[[Env], Env], *,
                     wrap_policy: Callable[[Policy, EnvSpec], Policy],
                     keeps_returns: bool = False):
  """Registers a wrapper: `<prefix>_<name>` becomes `wrap(make(name))` for every registered
  single-role environment `name`, with each scripted policy `p` of `name` as
  `wrap_policy(p, spec(name))`.
  `keeps_returns`: the wrapped episodes' returns are the inner environment's, so its score
  normaliser applies to them (`score_name`).
  """
  if prefix in _WRAPPERS or not prefix.isidentifier():
    raise ValueError(f"wrapper prefix {prefix!r} is already registered or not an identifier")
  _WRAPPERS[prefix] = WrapperSpec(prefix, wrap, wrap_policy, keeps_returns)


def score_name(name: str) -> str | None:
  """The environment whose score normaliser applies to `name`'s returns: `name` itself, the
  inner environment of a wrapper that keeps its returns (`hiper_maze_po` -> `maze_po`), or
  None for a wrapper that changes them."""
  _load_all()
  if name in _REGISTRY:
    return name
  for prefix, w in _WRAPPERS.items():
    inner = name[len(prefix) + 1:]
    if name.startswith(prefix + "_") and inner in _REGISTRY:
      return inner if w.keeps_returns else None
  spec(name)  # Raises, naming the valid environments.
  return None


def _single_role(s: EnvSpec) -> bool:
  return getattr(s.factory, "num_roles", 1) == 1


def _wrapped_spec(name: str) -> EnvSpec | None:
  """The spec of `<prefix>_<inner>` for a registered wrapper, or None if `name` is not one."""
  for prefix, w in _WRAPPERS.items():
    inner_name = name[len(prefix) + 1:]
    if not name.startswith(prefix + "_") or inner_name not in _REGISTRY:
      continue
    inner = _REGISTRY[inner_name]
    if not _single_role(inner):
      raise ValueError(f"environment {name!r}: the {prefix!r} wrapper takes single-role "
                       f"environments; {inner_name!r} has several roles.")
    factory = lambda _f=inner.factory, **kw: w.wrap(_f(**kw))  # noqa: E731
    policies = {which: (lambda _p=p, **kw: w.wrap_policy(_p(**kw), inner))
                for which, p in inner.policies.items()}
    return EnvSpec(name, factory, dict(inner.kwargs), policies)
  return None


def _load_all():
  for module in _MODULES:
    importlib.import_module(f"agentrl.envs.{module}")


def names() -> list[str]:
  """All registered environment names, wrapped ones (`<prefix>_<name>`) included."""
  _load_all()
  wrapped = [f"{prefix}_{name}" for prefix in _WRAPPERS for name, s in _REGISTRY.items()
             if _single_role(s)]
  return sorted([*_REGISTRY, *wrapped])


def spec(name: str) -> EnvSpec:
  """The `EnvSpec` of `name`; a ValueError lists the valid names."""
  _load_all()
  if name in _REGISTRY:
    return _REGISTRY[name]
  wrapped = _wrapped_spec(name)
  if wrapped is None:
    raise ValueError(f"Unknown environment {name!r}; valid names: {', '.join(names())}.")
  return wrapped


class RegistryView(Mapping):
  """A read-only, live mapping name -> `get(spec)` over the registered environments for
  which that is not None, in registration order (`BUDGETS`, `NORMALIZERS`). Environments
  registered later, from any module, appear in it; wrapped names (`hiper_...`) do not."""

  def __init__(self, get: Callable[[EnvSpec], Any]):
    self._get = get

  def __getitem__(self, name: str):
    _load_all()
    value = self._get(_REGISTRY[name]) if name in _REGISTRY else None
    if value is None:
      raise KeyError(name)
    return value

  def __iter__(self) -> Iterator[str]:
    _load_all()
    return iter([name for name, s in _REGISTRY.items() if self._get(s) is not None])

  def __len__(self) -> int:
    return sum(1 for _ in self)

  def __repr__(self) -> str:
    return f"{type(self).__name__}({dict(self.items())!r})"


#: Name -> `TokenBudget` of every registered environment that has one.
BUDGETS: Mapping[str, TokenBudget] = RegistryView(lambda s: s.budget)
#: Name -> `Normalizer` of every registered environment that has one.
NORMALIZERS: Mapping[str, Normalizer] = RegistryView(lambda s: s.normalizer)


def make(name: str, **kwargs) -> Env:
  """Builds environment `name`; `kwargs` override the registered defaults."""
  s = spec(name)
  return s.factory(**{**s.kwargs, **kwargs})


def policy(name: str, which: str = "strong", **kwargs) -> Policy:
  """The scripted policy `which` ("strong" or "weak") of environment `name`."""
  s = spec(name)
  if which not in s.policies:
    raise ValueError(f"Environment {name!r} has no policy {which!r}; valid: "
                     f"{', '.join(sorted(s.policies))}.")
  return s.policies[which](**{**s.kwargs, **kwargs})


__all__ = ["BUDGETS", "MAX_ACTION_CHARS", "NORMALIZERS", "Env", "EnvSpec", "Episode",
           "EpisodeRecorder", "Normalizer", "Policy", "RegistryView", "SubgoalRule", "TimeStep",
           "TokenBudget", "WrapperSpec", "make", "names", "play", "policy", "register",
           "register_wrapper", "score_name", "spec"]
