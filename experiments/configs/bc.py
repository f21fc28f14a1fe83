r"""Behaviour cloning on the offline dataset (LMRL-Gym's BC row).

  python -m experiments.train --config=experiments/configs/bc.py:cpu,env=maze_po

The warm start (`bc`) is skipped: the `algorithm` block is the BC run itself, one batch per
iteration, evaluated every `train.eval_every` iterations.
"""

from __future__ import annotations

import ml_collections

from experiments.configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variant, env = common.parse(arg, "twenty_questions")
  c = common.base(env, variant)
  c.bc.steps = 0
  a = c.algorithm = common.algorithm_block("bc")
  a.lr = 1e-3 if variant != "paper" else 1e-4  # LMRL-Gym: 1e-4 (GPT-2).
  a.micro_batch_size = 0  # Rows per gradient micro-batch, accumulated exactly (0: whole minibatch).
  a.warmup_steps = 20
  a.max_grad_norm = 1.0
  a.batch_size = {"smoke": 8, "cpu": 32, "paper": 128}[variant]  # Episodes per update.
  c.train.total_iterations = {"smoke": 2, "cpu": 400, "paper": 5000}[variant]
  c.train.eval_every = {"smoke": 2, "cpu": 100, "paper": 500}[variant]
  c.train.checkpoint_every = {"smoke": 1, "cpu": 100, "paper": 500}[variant]
  return c
