r"""Turn-PPO / ST-PPO: a turn-level critic and turn-level importance ratios.

  python -m experiments.train --config=experiments/configs/turn_ppo.py:cpu,env=maze_po

The `ppo` config's keys with `algorithm.name = "turn_ppo"` (see `agentrl/algorithms/ppo.py`):
V(s_k) is read before each agent turn, GAE runs over turns, and the clipped surrogate uses the
geometric-mean ratio of each turn's tokens.
"""

from __future__ import annotations

import ml_collections

from experiments.configs import common, ppo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variant, env = common.parse(arg, "maze_po")
  c = common.base(env, variant)
  c.algorithm = ppo.algorithm(variant, name="turn_ppo")
  c.algorithm.token_gradient = False  # GSPO-style per-token gradient of the turn ratio.
  c.rollout.seeds_per_iteration = {"smoke": 4, "cpu": 32, "paper": 128}[variant]
  return c
