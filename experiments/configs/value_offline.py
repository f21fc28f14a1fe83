r"""LMRL-Gym's offline value-based methods: ILQL and MC returns, with Q-guided decoding.

  python -m experiments.train --config=experiments/configs/value_offline.py:cpu,env=maze_po
  python -m experiments.train --config=experiments/configs/value_offline.py:cpu \
      --config.algorithm.name=mc_returns --config.algorithm.beta=16

Token-level Q/V heads on the BC policy's hidden states, trained on the offline dataset;
evaluation decodes with π_β·exp(β·(min Q − V)) (`agentrl/algorithms/ilql.py`).
"""

from __future__ import annotations

import ml_collections

from experiments.configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variant, env = common.parse(arg, "twenty_questions")
  c = common.base(env, variant)
  a = c.algorithm = common.algorithm_block("ilql")  # ilql or mc_returns.
  a.lr = 1e-4  # Head learning rate.
  a.max_grad_norm = 1.0
  a.gamma = 0.99  # Discount per action token (LMRL-Gym).
  a.expectile = 0.7  # ILQL: τ of the V expectile.
  a.cql_weight = 0.01  # Weight of the CE term on the Q-logits.
  a.tau = 0.005  # ILQL: Polyak rate of the target heads.
  a.beta = 4.0  # Q-guidance of evaluation decoding (LMRL-Gym: 4 dialogue ILQL, 16 MC).
  a.batch_size = {"smoke": 8, "cpu": 32, "paper": 32}[variant]  # Episodes per update.
  c.train.total_iterations = {"smoke": 2, "cpu": 300, "paper": 5000}[variant]
  c.train.eval_every = {"smoke": 2, "cpu": 100, "paper": 500}[variant]
  c.train.checkpoint_every = {"smoke": 1, "cpu": 100, "paper": 500}[variant]
  return c
