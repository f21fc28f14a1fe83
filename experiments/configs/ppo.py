r"""Token-level PPO with a value head and a KL penalty to the BC policy (LMRL-Gym's PPO).

  python -m experiments.train --config=experiments/configs/ppo.py:cpu,env=twenty_questions
  python -m experiments.train --config=experiments/configs/ppo.py:paper,env=maze_po

Variants and `env=` as in `common.py`; BC warm start, then on-policy PPO on fresh rollouts.
Paper: LMRL-Gym's PPO settings (reference notes §2.6: 20Q lr 1e-5, γ 1.0, λ 0.95, KL 0.001,
clip 0.2, value clip 0.2, value coefficient 1.0, 128 rollouts per round, 4 epochs). LMRL-Gym's
optional BC term on an offline set is not built.
"""

from __future__ import annotations

import ml_collections

from experiments.configs import common


def algorithm(variant: str, name: str = "ppo") -> ml_collections.ConfigDict:
  # "ppo" (token-level critic) or "turn_ppo" (turn-level critic, ST-PPO).
  a = common.algorithm_block(name)
  a.lr = 1e-5  # Policy learning rate.
  a.value_lr = 1e-3  # Value head learning rate (its own optimizer).
  a.max_grad_norm = 1.0
  a.gamma = 1.0  # GAE discount (per action token for ppo, per turn for turn_ppo).
  a.lam = 0.95  # GAE λ.
  a.kl_coef = 0.001  # In-reward KL penalty to the frozen reference (the BC policy).
  a.clip_eps = 0.2  # Ratio clip ε.
  a.value_clip_eps = 0.2  # Value clip ε.
  a.value_coef = 1.0  # Weight of the value loss.
  a.entropy_coef = 0.0  # Entropy bonus weight (LMRL-Gym: none).
  a.epochs = 4  # Passes over each rollout batch.
  a.minibatches = 2  # Row slices per pass.
  a.micro_batch_size = 0  # Rows per gradient micro-batch, accumulated exactly (0: whole minibatch).
  if variant == "smoke":
    a.update(epochs=1, minibatches=1, lr=1e-4)
  elif variant == "paper":
    a.update(lr=1e-6, gamma=0.99, kl_coef=0.01)  # LMRL-Gym Table 3 (dialogue, maze).
  return a


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variant, env = common.parse(arg, "twenty_questions")
  c = common.base(env, variant)
  c.algorithm = algorithm(variant)
  c.rollout.seeds_per_iteration = {"smoke": 4, "cpu": 32, "paper": 128}[variant]
  return c
