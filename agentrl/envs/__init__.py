"""Multi-turn text environments, their scripted policies, and the registry.

  env = agentrl.envs.make("twenty_questions", subset=True)
  strong = agentrl.envs.policy("twenty_questions", "strong")
  [episode] = agentrl.envs.play(env, strong, seed=0)

Each environment module registers itself with `register`; a registered name may carry
default keyword arguments (so `maze_po` is `maze` with `observed="partial"`).
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

# Modules imported on first use of the registry; each calls `register` at import time.
_MODULES = ("twenty_questions", "guess_my_city", "wordle", "maze", "text_nav", "wilt",
            "kuhn_poker", "tictactoe", "arithmetic_try_again")


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


def _load_all():
  for module in _MODULES:
    importlib.import_module(f"agentrl.envs.{module}")


def names() -> list[str]:
  """All registered environment names."""
  _load_all()
  return sorted(_REGISTRY)


def spec(name: str) -> EnvSpec:
  """The `EnvSpec` of `name`; a ValueError lists the valid names."""
  _load_all()
  if name not in _REGISTRY:
    raise ValueError(f"Unknown environment {name!r}; valid names: {', '.join(sorted(_REGISTRY))}.")
  return _REGISTRY[name]


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
           "TimeStep", "make", "names", "play", "policy", "register", "spec"]
