r"""Critic-free group policy gradients: GRPO, Dr.GRPO, RLOO, REINFORCE++ and GiGPO.

  python -m experiments.train --config=experiments/configs/group.py:cpu,env=wilt
  python -m experiments.train --config=experiments/configs/group.py:cpu,env=maze_po \
      --config.algorithm.name=gigpo --config.algorithm.credit=gigpo

Each iteration rolls out `rollout.group_size` episodes per task seed (the group) and takes
one update on them (`agentrl/algorithms/group.py`). `algorithm.name` picks the estimator,
`algorithm.credit` the multi-turn credit, for every estimator but gigpo: "none" (the episode
advantage on every turn), "turn" (return-to-go with a per-turn-position group baseline),
"mars" (return-to-go normalised per (group, role)), "igpo" or "a2tgpo" (information gain about
the task's ground-truth answer; environments with one: twenty_questions, guess_my_city, wordle,
wilt, arithmetic_try_again); for gigpo "gigpo" or "gigpo_mean_norm":

  python -m experiments.train --config=experiments/configs/group.py:cpu,env=wilt \
      --config.algorithm.credit=a2tgpo
"""

from __future__ import annotations

import ml_collections

from experiments.configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variant, env = common.parse(arg, "maze_po")
  c = common.base(env, variant)
  a = c.algorithm = common.algorithm_block("grpo")  # grpo, dr_grpo, rloo, reinforce_pp, gigpo.
  # A group estimator registered with advantages.register_group_estimator, in place of the
  # one `name` implies ("": that one); registered before the run starts (e.g. by a test).
  a.estimator = ""
  a.credit = ""  # "" = the estimator's default (see the module docstring).
  a.lr = 1e-5  # Policy learning rate.
  a.max_grad_norm = 1.0
  # Turn discount of the return-to-go (credits "turn", "mars", igpo, a2tgpo and gigpo's step
  # return); unset: 0.95 for gigpo (the paper's), 1.0 for the others.
  a.gamma = None
  a.clip_eps = 0.2  # PPO clip on the ratio to the sampler.
  a.epochs = 1  # Passes over each group batch (1: a pure policy gradient step).
  a.minibatches = 1
  a.micro_batch_size = 0  # Rows per gradient micro-batch, accumulated exactly (0: whole minibatch).
  a.kl_coef = 0.0  # KL to the frozen BC policy (GRPO Eq. 4, k3).
  a.entropy_coef = 0.0
  a.omega = 1.0  # GiGPO: weight of the step (anchor-state) advantage.
  a.anchor = "history"  # GiGPO anchor states: "history" or "observation".
  a.answer_length = 32  # igpo, a2tgpo: tokens kept of each task's ground-truth answer.
  a.lambda_ig = 1.0  # a2tgpo: weight of the accumulated information-gain advantage.
  a.lambda_outcome = 1.0  # a2tgpo: weight of the outcome (episode-return) advantage.
  a.beta = 0.3  # a2tgpo: clip ranges ε(1 ± β) by the turn's normalised information gain.
  a.mask_truncated = False  # Mini-o3: episodes without a terminal get no loss (still grouped).
  c.rollout.seeds_per_iteration = {"smoke": 2, "cpu": 8, "paper": 32}[variant]
  c.rollout.group_size = {"smoke": 2, "cpu": 8, "paper": 8}[variant]  # G.
  if variant in ("smoke", "cpu"):
    # One step per batch (ppo.py and hiper.py take 8 at 1e-5): at 1e-5 a from-scratch cpu
    # policy does not move in 16 iterations.
    a.lr = 1e-4
  elif variant == "paper":
    a.update(lr=1e-6, kl_coef=0.001)
  return c
