"""Multi-turn text environments, their scripted policies, and the registry.

  env = agentrl.envs.make("twenty_questions", subset=True)
  strong = agentrl.envs.policy("twenty_questions", "strong")
  [episode] = agentrl.envs.play(env, strong, seed=0)

Each environment module registers itself with `register`; a registered name may carry
default keyword arguments (so `maze_po` is `maze` with `observed="partial"`).

A wrapper registered with `register_wrapper(prefix, ...)` composes with every registered
single-role environment: `<prefix>_<name>` is `<name>` wrapped, with its scripted policies
wrapped too (so `hiper_maze_po` is the maze in HiPER's switch/subgoal/action format, see
`agentrl.envs.hierarchical`). Wrapped names are resolved on demand and listed by `names()`.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, Mapping

from agentrl.envs.base import (MAX_ACTION_CHARS, Env, Episode, EpisodeRecorder, Policy,
                               TimeStep, play)


@dataclasses.dataclass(frozen=True)
class EnvSpec:
  """A registered environment: its class, default kwargs and scripted policies."""

  name: str
  factory: Callable[..., Env]
  kwargs: Mapping[str, Any]
  policies: Mapping[str, Callable[..., Policy]]


_REGISTRY: dict[str, EnvSpec] = {}


@dataclasses.dataclass(frozen=True)
class WrapperSpec:
  """A registered environment wrapper: `wrap(inner_env) -> Env` and `wrap_policy(inner
  scripted policy) -> Policy`, for single-role environments."""

  prefix: str
  wrap: Callable[[Env], Env]
  wrap_policy: Callable[[Policy], Policy]
  keeps_returns: bool = False  # Episode returns are the inner environment's (same scale).


_WRAPPERS: dict[str, WrapperSpec] = {}

# Modules imported on first use of the registry; each calls `register` at import time.
_MODULES = ("twenty_questions", "guess_my_city", "wordle", "maze", "text_nav", "wilt",
            "kuhn_poker", "tictactoe", "arithmetic_try_again", "hierarchical")


def register(name: str, factory: Callable[..., Env], *,
             policies: Mapping[str, Callable[..., Policy]], **kwargs):
  """Registers `factory(**kwargs)` as `name` with scripted policy factories.

  `policies` maps a policy name ("strong", "weak", ...) to a callable that takes the same
  keyword arguments as the environment (or none it does not need) and returns a `Policy`.
  """
  if name in _REGISTRY:
    raise ValueError(f"environment {name!r} is already registered")
  for required in ("strong", "weak"):
    if required not in policies:
      raise ValueError(f"environment {name!r} must register a {required!r} policy")
  _REGISTRY[name] = EnvSpec(name, factory, dict(kwargs), dict(policies))


def register_wrapper(prefix: str, wrap: Callable[[Env], Env], *,
                     wrap_policy: Callable[[Policy], Policy], keeps_returns: bool = False):
  """Registers a wrapper: `<prefix>_<name>` becomes `wrap(make(name))` for every registered
  single-role environment `name`, with each scripted policy `p` of `name` as `wrap_policy(p)`.
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
    policies = {which: (lambda _p=p, **kw: w.wrap_policy(_p(**kw)))
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


__all__ = ["MAX_ACTION_CHARS", "Env", "EnvSpec", "Episode", "EpisodeRecorder", "Policy",
           "TimeStep", "WrapperSpec", "make", "names", "play", "policy", "register",
           "register_wrapper", "spec"]
