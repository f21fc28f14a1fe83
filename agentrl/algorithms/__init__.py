"""Algorithms by name: each module's `make(config, models, **kwargs) -> Algorithm`.

  algo = agentrl.algorithms.make("bc", config.algorithm, models)

Each module's `Defaults` dataclass holds every knob it reads (`knobs(name)`,
`agentrl/algorithms/defaults.py`). See `agentrl/algorithms/base.py` for the interface
(`init`, the jitted donated `update`, what the batch is) and the non-finite guard.
"""

from __future__ import annotations

import importlib
from typing import Any

from agentrl.algorithms.base import (Algorithm, Models, TrainState, apply_gradients,
                                     nonfinite_losses, optimizer)

# name -> (module, keyword arguments of its `make`).
_ALGORITHMS: dict[str, tuple[str, dict[str, Any]]] = {
    "bc": ("bc", {}),
    "filtered_bc": ("bc", {"online": True, "name": "filtered_bc", "filtered": True}),
    "filtered_bc_offline": ("bc", {"name": "filtered_bc_offline", "filtered": True}),
    "ppo": ("ppo", {}),
    "turn_ppo": ("ppo", {"turn_level": True, "name": "turn_ppo"}),
    "hiper": ("hiper", {}),
    "grpo": ("group", {"estimator": "grpo", "name": "grpo"}),
    "dr_grpo": ("group", {"estimator": "dr_grpo", "name": "dr_grpo"}),
    "rloo": ("group", {"estimator": "rloo", "name": "rloo"}),
    "reinforce_pp": ("group", {"estimator": "reinforce_pp", "name": "reinforce_pp"}),
    "gigpo": ("group", {"estimator": "gigpo", "name": "gigpo"}),
    "self_play": ("self_play", {}),
    "ilql": ("ilql", {}),
    "mc_returns": ("mc_returns", {}),
    "archer": ("archer", {}),
    "chai": ("archer", {"chai": True, "name": "chai"}),
    "archer_offline": ("archer_offline", {}),
}


def names() -> list[str]:
  """Every registered algorithm name."""
  return sorted(_ALGORITHMS)


def knobs(name: str) -> type:
  """The `Defaults` dataclass of algorithm `name`: every knob its `make` reads, with its
  default and comment (`defaults.config_block(knobs(name), name)` is its config block)."""
  if name not in _ALGORITHMS:
    raise ValueError(f"Unknown algorithm {name!r}; valid names: {', '.join(names())}.")
  return importlib.import_module(f"agentrl.algorithms.{_ALGORITHMS[name][0]}").Defaults


def make(name: str, config, models: Models) -> Algorithm:
  """Builds algorithm `name` from its config block and the starting policy."""
  if name not in _ALGORITHMS:
    raise ValueError(f"Unknown algorithm {name!r}; valid names: {', '.join(names())}.")
  module, kwargs = _ALGORITHMS[name]
  return importlib.import_module(f"agentrl.algorithms.{module}").make(config, models, **kwargs)


__all__ = ["Algorithm", "Models", "TrainState", "apply_gradients", "knobs", "make", "names",
           "nonfinite_losses", "optimizer"]
