r"""Self-play on two-player zero-sum games with SPIRAL's role-conditioned advantages.

  python -m experiments.train --config=experiments/configs/self_play.py:cpu,env=kuhn_poker
  python -m experiments.train --config=experiments/configs/self_play.py:cpu,env=tictactoe \
      --config.algorithm.role_conditioned=false     # the shared-baseline ablation

One policy plays both roles; each rollout row is one role's view of a game
(`agentrl/algorithms/self_play.py`).
"""

from __future__ import annotations

import ml_collections

from experiments.configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variant, env = common.parse(arg, "kuhn_poker")
  if env not in ("kuhn_poker", "tictactoe"):
    raise ValueError(f"self_play needs a two-player game (kuhn_poker, tictactoe), got {env!r}")
  c = common.base(env, variant)
  c.eval.greedy = False
  c.eval.opponent = "strong"  # Also play each seat against this scripted policy (Nash, minimax).
  a = c.algorithm = common.algorithm_block("self_play")
  a.lr = 1e-5 if variant == "paper" else 1e-4  # Policy learning rate.
  a.micro_batch_size = 0  # Rows per gradient micro-batch, accumulated exactly (0: whole minibatch).
  a.max_grad_norm = 1.0
  a.alpha = 0.95  # EMA decay of the per-role baselines.
  a.role_conditioned = True  # False: one baseline shared by both roles (ablation).
  a.epochs = 2  # SPIRAL: 2.
  a.clip_eps = 0.2
  c.rollout.seeds_per_iteration = {"smoke": 2, "cpu": 32, "paper": 128}[variant]
  return c
