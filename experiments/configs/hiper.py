r"""HiPER: hierarchical PPO (planner / executor / switch head) with HAE advantages.

  python -m experiments.train --config=experiments/configs/hiper.py:cpu,env=maze_po
  python -m experiments.train --config=experiments/configs/hiper.py:cpu,env=text_nav_po
  python -m experiments.train --config=experiments/configs/hiper.py:paper,env=wilt

`env=NAME` names the plain environment; the run plays `hiper_NAME`, the same environment in
HiPER's reply format (`<switch>SWITCH|KEEP</switch> <subgoal>…</subgoal> action`, see
`agentrl/envs/hierarchical.py`), with the tokenizer, the offline dataset and the BC warm
start built from its scripted policies, which write the prefix. Episode returns are the
plain environment's (the shaping lives in the update), and `eval/score` is NAME's normalised
score (`agentrl.envs.score_name`). The algorithm is `agentrl/algorithms/hiper.py`.

Token budgets: the prefix adds about 15 tokens to every utterance (20 with text_nav's
subgoals) under a 1024-token BPE, so per environment `max_new_tokens` grows by that and
`max_tokens` by the measured ratio of scripted episodes' tokens per turn with and without
the prefix (maze_po 1.95, maze_fo 1.43, text_nav_po 1.26, text_nav_fo 1.15, wilt 1.91), so
that as many turns fit in a row as for the other algorithms; environments not listed get
+24 tokens per utterance and twice the row.

Paper: the reference's ALFWorld settings (reference notes §2): γ 1, λ_turn 1, λ_seg 0.95,
keep penalty −0.3 (normalized), keep consistency −0.3, invalid 0.1, bootstrap on truncation,
KL loss low_var_kl 0.01, actor lr 1e-6, critic lr 1e-5, clip 0.2, one epoch.
"""

from __future__ import annotations

import ml_collections

from experiments.configs import common

# Plain environment -> (max_tokens, max_new_tokens) of the cpu variant in HiPER's format.
SIZES = {
    "maze_po": (768, 24),
    "maze_fo": (768, 24),
    "text_nav_po": (832, 32),
    "text_nav_fo": (1216, 32),
    "wilt": (512, 40),
}


def sizes(env: str) -> tuple[int, int]:
  """(max_tokens, max_new_tokens) of `env` in the reply format (cpu variant)."""
  if env in SIZES:
    return SIZES[env]
  base = common.ENVS[env]
  return 2 * base["max_tokens"], base["max_new_tokens"] + 24


def algorithm(variant: str) -> ml_collections.ConfigDict:
  a = common.algorithm_block("hiper")
  a.lr = 1e-5  # Policy learning rate.
  a.value_lr = 1e-3  # Critic (three heads) learning rate, its own optimizer.
  a.max_grad_norm = 1.0
  a.gamma = 1.0  # HAE discount γ (per turn).
  a.lambda_turn = 1.0  # Executor GAE λ within a segment.
  a.lambda_seg = 0.95  # Planner SMDP-GAE λ across segments.
  a.bootstrap_truncated = True  # Executor bootstraps a truncated last segment (ALFWorld).
  a.keep_penalty = -0.3  # c_keep, added on KEEP turns (negative: KEEP costs).
  a.keep_penalty_mode = "normalized"  # "normalized": c_keep / #turns per KEEP; "fixed": c_keep.
  a.keep_consistency = -0.3  # c_cons, added on KEEP turns whose subgoal text changed.
  a.invalid_penalty = 0.1  # c_inv, subtracted on turns whose reply breaks the format.
  a.kl_coef = 0.01  # KL loss to the frozen BC policy (verl low_var_kl: k3 clamped at 10).
  a.clip_eps = 0.2  # PPO ratio clip ε.
  a.value_clip_eps = 0.2  # Value clip ε of the three heads.
  a.value_coef = 1.0  # Weight of the value losses.
  a.entropy_coef = 0.0  # Entropy bonus weight.
  a.epochs = 4  # Passes over each rollout batch (as ppo.py, for comparison).
  a.minibatches = 2  # Row slices per pass.
  a.micro_batch_size = 0  # Rows per gradient micro-batch, accumulated exactly (0: whole minibatch).
  a.whiten = True  # Per-head batch z-scores of the low / high / term advantages.
  a.shared_trunk = False  # Let the value losses train the policy trunk.
  a.value_hidden_dims = ()  # Hidden layers the three heads share (() = linear heads).
  if variant == "smoke":
    a.update(epochs=1, minibatches=1, lr=1e-4)
  elif variant == "paper":
    a.update(lr=1e-6, value_lr=1e-5, epochs=1, minibatches=1)
  return a


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variant, env = common.parse(arg, "maze_po")
  c = common.base(env, variant)
  c.env.name = f"hiper_{env}"  # The plain environment in HiPER's reply format.
  max_tokens, max_new_tokens = sizes(env)
  c.env.max_tokens = {"smoke": min(256, max_tokens), "cpu": max_tokens,
                      "paper": 2 * max_tokens}[variant]
  c.sampling.max_new_tokens = 2 * max_new_tokens if variant == "paper" else max_new_tokens
  c.algorithm = algorithm(variant)
  c.rollout.seeds_per_iteration = {"smoke": 4, "cpu": 32, "paper": 128}[variant]
  return c
