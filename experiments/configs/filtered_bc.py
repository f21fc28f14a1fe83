r"""Filtered behaviour cloning: online (ArCHer's and LMRL-Gym's baseline) or offline.

  python -m experiments.train --config=experiments/configs/filtered_bc.py:cpu,env=wordle
  python -m experiments.train --config=experiments/configs/filtered_bc.py:cpu,env=maze_po \
      --config.algorithm.name=filtered_bc_offline

Online (`filtered_bc`): every iteration rolls out, then clones the top `top_fraction` (by
return) of every trajectory collected so far. Offline (`filtered_bc_offline`): clones the top
`top_fraction` of the dataset, one batch per iteration. Both start from the BC warm start.
"""

from __future__ import annotations

import ml_collections

from experiments.configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variant, env = common.parse(arg, "twenty_questions")
  c = common.base(env, variant)
  a = c.algorithm = common.algorithm_block("filtered_bc")  # Or filtered_bc_offline.
  a.lr = 1e-4  # Policy learning rate.
  a.micro_batch_size = 0  # Rows per gradient micro-batch, accumulated exactly (0: whole minibatch).
  a.max_grad_norm = 1.0
  a.top_fraction = 0.1  # Share kept (LMRL-Gym: 0.1 dialogue, 0.3 wordle).
  a.batch_size = 32  # Trajectories per update.
  if variant == "smoke":
    a.batch_size = 8
  return c
