# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Self-play: SPIRAL's role-conditioned advantage vs one shared baseline
#
# SPIRAL (Liu et al., arXiv 2506.24119) trains one policy that plays both seats of a
# two-player zero-sum game against itself. Its advantage estimator, RAE, keeps one
# exponential-moving-average baseline **per role**,
#
# $$b_p \leftarrow \alpha\, b_p + (1-\alpha)\, R_p(\tau), \qquad A_p(\tau) = R_p(\tau) - b_p,
# \qquad \alpha = 0.95,$$
#
# and the paper's ablation replaces it by a plain baseline shared by both roles, reporting that
# self-play training is then less stable and ends worse. Our measurable version of that claim:
# **with the same budget, RAE reaches a higher win rate (and return) against a fixed scripted
# opponent than the shared baseline**. The opponents are Kuhn poker's Nash player and
# tic-tac-toe's perfect minimax player, in each seat (`eval.opponent="strong"`).
#
# Everything below goes through the public API: configs from
# `experiments/configs/self_play.py` (the `cpu` variant, smoke variant under `SMOKE`),
# `agentrl.trainer.train`, and the metrics each run writes (`agentrl.logging_utils.read_metrics`).
# The ablation is the single override `algorithm.role_conditioned=False`
# (`agentrl/algorithms/self_play.py`: slot 0 of the same EMA for every row).

# %% tags=["parameters"]
SMOKE = False  # True: the configs' smoke variants and tiny budgets (tests/test_notebooks.py).

# %%
import json
import os

os.environ.setdefault("TQDM_DISABLE", "1")  # One progress bar per run would flood the outputs.

import matplotlib.pyplot as plt
import numpy as np

from agentrl import configs, data, envs, grid, rollout, trainer
from agentrl.grid import Method

ENVS = ("kuhn_poker", "tictactoe")
VARIANTS = {"RAE (per-role baselines)": True, "shared baseline": False}
OPPONENT = "strong"  # Kuhn poker: Nash player; tic-tac-toe: minimax.

ENV_OVERRIDES = {env: [] for env in ENVS}  # Per game, applied after OVERRIDES.
if SMOKE:
  SEEDS = (0,)
  # No BC warm start (so no offline dataset to build): the smoke run checks the plumbing.
  OVERRIDES = ["bc.steps=0", "train.total_iterations=1", "train.eval_every=1",
               "train.checkpoint_every=1"]
  REFERENCE_EPISODES = 8
else:
  # Two seeds, not three, and a shorter budget than the cpu variant's: on the 2-core machine
  # (shared with other jobs) one unmodified cpu run on Kuhn poker took about 16 minutes (10 of
  # them the 400 BC steps), and the whole grid had to fit in about 40 minutes. So: BC 100
  # steps (its loss plateaus by step 75 on Kuhn poker), 24 iterations of 32 games instead of
  # 40 on Kuhn poker, and evaluation every 4 iterations. A tic-tac-toe iteration costs about
  # four times a Kuhn poker one (longer games, T=256), so tic-tac-toe gets 12 iterations.
  SEEDS = (0, 1)
  OVERRIDES = ["bc.steps=100", "train.total_iterations=24", "train.eval_every=4",
               "train.checkpoint_every=8"]
  ENV_OVERRIDES["tictactoe"] = ["train.total_iterations=12"]
  REFERENCE_EPISODES = 2000

# One method per estimator: experiments/configs/self_play.py with the ablation's override.
METHODS = {label: Method("rae" if role_conditioned else "shared", "self_play.py",
                         [f"algorithm.role_conditioned={role_conditioned}"])
           for label, role_conditioned in VARIANTS.items()}
GRID = grid.Grid.create("self_play", smoke=SMOKE, methods=METHODS, envs=ENVS, seeds=SEEDS,
                        overrides=OVERRIDES, env_overrides=ENV_OVERRIDES,
                        metric=f"eval_vs_{OPPONENT}/win_rate")
RESULTS_CSV = GRID.results_path("self_play.csv")
print(f"SMOKE={SMOKE}  variant={GRID.variant}  seeds={SEEDS}  overrides={list(GRID.overrides)}  "
      f"per game: {ENV_OVERRIDES}")
GRID.start()  # Runs of a game share most compiled programs (sampling, BC, evaluation).


# %% [markdown]
# ## The runs
#
# One `trainer.train` call per (game, estimator, seed), through `agentrl.grid`. A run directory
# that already holds a finished run is read instead of retrained (the trainer also resumes an
# interrupted one), and each run's wall time is stored beside its metrics. The two estimators
# of one seed start from the same behaviour-cloned policy: the first run's BC checkpoint
# (`<run>/bc`) is copied into the second run's directory, where the trainer reuses it instead
# of training it again.


# %%
def describe(r):
  return (f"{r.env:11s} {r.method:25s} seed {r.seed}: {r.seconds / 60:5.1f} min, final win rate "
          f"{r.last[f'eval_vs_{OPPONENT}/win_rate']:.3f}")


RESULTS = GRID.train_all(order=("env", "method", "seed"), describe=describe)

# %% [markdown]
# ## Reference points: the scripted players against the same opponent
#
# What a policy could reach in each seat: the opponent itself in that seat (Kuhn poker's Nash
# player, whose expected return is -1/18 as first player and +1/18 as second; minimax, which
# only draws against minimax), and a uniformly random legal mover. Played with
# `rollout.rollout` on the same held-out seeds the evaluation uses. Against minimax nobody can
# win at tic-tac-toe, so there the win rate is 0 by construction and the mean return
# (win 1, draw 0, loss -1) is the informative number.


# %%
def scripted_reference(env, which):
  config = GRID.config(env, next(iter(METHODS)), 0)
  tok = trainer.build_tokenizer(config)
  fixed = envs.policy(env, OPPONENT)
  seeds = data.EVAL_SEED_START + np.arange(REFERENCE_EPISODES)
  out = {}
  for seat in range(2):
    res = rollout.rollout(envs.policy(env, which), env, seeds, tokenizer=tok,
                          max_tokens=config.env.max_tokens, rng=seat,
                          system_prompt=False, opponents={1 - seat: fixed})
    out[f"seat{seat}_win_rate"] = res.stats["success_rate"]
    out[f"seat{seat}_mean_return"] = res.stats["mean_return"]
  for key in ("win_rate", "mean_return"):
    out[key] = (out[f"seat0_{key}"] + out[f"seat1_{key}"]) / 2
  return out


REFERENCE = {(env, which): scripted_reference(env, which)
             for env in ENVS for which in ("strong", "weak")}
for (env, which), ref in REFERENCE.items():
  print(f"{env:11s} {which:6s} vs {OPPONENT}: " +
        "  ".join(f"{k} {v:+.3f}" for k, v in ref.items()))

# %% [markdown]
# ## Learning curves
#
# Median over seeds (line) and the range over seeds (band), against the trainer's `episodes`
# count (one per player per game, so 64 per iteration of 32 games). Dashed: the opponent's own level in that seat; dotted: the random mover.

# %%
PANELS = (("", "mean over seats"), ("seat0_", "seat 0 (moves first)"),
          ("seat1_", "seat 1 (moves second)"))
COLORS = {True: "tab:blue", False: "tab:orange"}


def figure(metric, ylabel):
  fig, axes = plt.subplots(len(PANELS), len(ENVS), figsize=(5.2 * len(ENVS), 2.8 * len(PANELS)),
                           sharex="col", layout="constrained")
  for j, env in enumerate(ENVS):
    for i, (prefix, title) in enumerate(PANELS):
      ax, key = axes[i, j], f"eval_vs_{OPPONENT}/{prefix}{metric}"
      for label, role_conditioned in VARIANTS.items():
        x, y = grid.curves(RESULTS, key, env=env, method=label)
        ax.plot(x, np.median(y, axis=0), color=COLORS[role_conditioned], label=label)
        ax.fill_between(x, y.min(axis=0), y.max(axis=0), color=COLORS[role_conditioned],
                        alpha=0.2, linewidth=0)
      for which, style in (("strong", "--"), ("weak", ":")):
        ax.axhline(REFERENCE[env, which][f"{prefix}{metric}"], color="gray", linestyle=style,
                   linewidth=1, label=f"scripted {which}" if which == "strong" else "random")
      ax.set_title(f"{env}: {title}", fontsize=10)
      ax.grid(alpha=0.3)
      if j == 0:
        ax.set_ylabel(ylabel)
      if i == len(PANELS) - 1:
        ax.set_xlabel("training episodes (2 per game)")
  axes[0, 0].legend(fontsize=8)
  fig.suptitle(f"Self-play vs the fixed {OPPONENT} player: {ylabel} "
               f"(median and range over seeds {list(SEEDS)})")
  plt.show()


figure("win_rate", "win rate")
figure("mean_return", "mean return")

# %% [markdown]
# Neither game charges anything for an invalid move (it consumes the turn; the row is cut, with
# reward 0, once it no longer fits the context), unlike SPIRAL's -1.5. A policy that only
# stalls therefore scores 0, as much as a draw. The rate of invalid moves when the policy plays
# itself (the trainer's plain `eval/` evaluation) shows when that happens.

# %%
fig, axes = plt.subplots(1, len(ENVS), figsize=(5.2 * len(ENVS), 2.8), layout="constrained")
for ax, env in zip(axes, ENVS):
  for label, role_conditioned in VARIANTS.items():
    x, y = grid.curves(RESULTS, "eval/invalid_action_rate", env=env, method=label)
    ax.plot(x, np.median(y, axis=0), color=COLORS[role_conditioned], label=label)
    ax.fill_between(x, y.min(axis=0), y.max(axis=0), color=COLORS[role_conditioned], alpha=0.2,
                    linewidth=0)
  ax.set_title(f"{env}: invalid-move rate in self-play", fontsize=10)
  ax.set_xlabel("training episodes (2 per game)")
  ax.grid(alpha=0.3)
axes[0].legend(fontsize=8)
plt.show()

# %% [markdown]
# ## Final numbers
#
# Each run's last evaluation (64 held-out games per seat in the cpu variant, so a win rate's
# standard error is about 0.06), as median and per seed; written to
# `experiments/results/self_play.csv` (one row per run).

# %%
FINAL_KEYS = ("win_rate", "seat0_win_rate", "seat1_win_rate", "mean_return",
              "seat0_mean_return", "seat1_mean_return", "invalid_action_rate")
TABLE = []
for r in RESULTS:
  last = r.last
  TABLE.append({"env": r.env, "estimator": METHODS[r.method].name,
                "seed": r.seed, "iterations": last["step"], "episodes": last["episodes"],
                **{k: last[f"eval_vs_{OPPONENT}/{k}"] for k in FINAL_KEYS[:-1]},
                "invalid_action_rate": last["eval/invalid_action_rate"],
                "wall_time_s": round(r.seconds, 1)})
grid.write_csv(RESULTS_CSV, TABLE)

header = f"{'env':11s} {'estimator':9s} {'seeds':>6s} " + " ".join(f"{k:>17s}" for k in FINAL_KEYS)
print(header)
SUMMARY = {}
for env in ENVS:
  for role_conditioned in (True, False):
    name = "rae" if role_conditioned else "shared"
    rows = [t for t in TABLE if t["env"] == env and t["estimator"] == name]
    med = {k: float(np.median([t[k] for t in rows])) for k in FINAL_KEYS}
    SUMMARY[env, role_conditioned] = med
    print(f"{env:11s} {name:9s} {len(rows):6d} " +
          " ".join(f"{med[k]:17.3f}" for k in FINAL_KEYS))
print()
for t in TABLE:
  print(f"{t['env']:11s} {t['estimator']:7s} seed {t['seed']}: win rate {t['win_rate']:.3f} "
        f"(seats {t['seat0_win_rate']:.3f} / {t['seat1_win_rate']:.3f}), mean return "
        f"{t['mean_return']:+.3f}, invalid moves {t['invalid_action_rate']:.3f}, "
        f"{t['wall_time_s'] / 60:.1f} min")
print(f"\nwrote {GRID.shown(RESULTS_CSV)}")

# %% [markdown]
# ## The configs, seeds and wall time

# %%
print(f"config: experiments/configs/self_play.py:{GRID.variant},env=<game>, overrides "
      f"seed=<seed>, {', '.join(GRID.overrides)}, algorithm.role_conditioned=<True|False>; "
      f"per game {ENV_OVERRIDES}")
print(f"seeds: {list(SEEDS)}; total training wall time "
      f"{grid.total_minutes(RESULTS):.1f} min on {os.cpu_count()} CPU cores")
for env in ENVS:
  c = grid.select(RESULTS, env=env)[0].config
  print(f"\n{env}: policy {c.policy.num_layers} layers x {c.policy.hidden_size} wide, "
        f"BC warm start {c.bc.steps} steps on {c.dataset.episodes} scripted games "
        f"({dict(c.dataset.mixture)}), {c.train.total_iterations} iterations x "
        f"{c.rollout.seeds_per_iteration} games, eval every {c.train.eval_every} on "
        f"{c.eval.episodes} games per seat at temperature {c.eval.temperature}")
  print("algorithm:", json.dumps(configs.config_to_dict(c.algorithm), sort_keys=True))

# %% [markdown]
# ## Did the claim hold?
#
# The verdict for the committed full run is below the numbers it rests on; the cell computes
# the differences (RAE minus shared baseline, medians over seeds) so the text can be checked
# against them.

# %%
for env in ENVS:
  rae, shared = SUMMARY[env, True], SUMMARY[env, False]
  print(f"{env:11s} RAE - shared: win rate {rae['win_rate'] - shared['win_rate']:+.3f} "
        f"({rae['win_rate']:.3f} vs {shared['win_rate']:.3f}), mean return "
        f"{rae['mean_return'] - shared['mean_return']:+.3f} "
        f"({rae['mean_return']:+.3f} vs {shared['mean_return']:+.3f})")

# %% [markdown]
# **Verdict (full run, 2 seeds): the claim did not hold at our scale; there is no measurable
# difference between the two estimators.**
#
# * **Kuhn poker** (24 iterations, 768 self-play games per run): final win rate against the
#   Nash player 0.535 with RAE vs 0.551 with the shared baseline (medians; per seed 0.547 /
#   0.523 vs 0.570 / 0.531). The gap, -0.016, is about a third of the standard error of one
#   evaluation (128 games, about 0.044), and the Nash player itself reaches 0.499 in the same
#   seats. Both estimators start from the same BC policy and their curves stay within each
#   other's seed range throughout. RAE's two baselines are mirror images (every hand is
#   zero-sum) and end at +-0.02 (seed 0) and +-0.44 (seed 1); 24 updates at lr 1e-4 do not
#   turn that into a different policy.
# * **Tic-tac-toe** (12 iterations, 384 games per run): no policy beats minimax, so the win rate
#   is 0 for both; the mean return against minimax is -0.633 (RAE) vs -0.637 (shared), per
#   seed -0.586 / -0.680 vs -0.656 / -0.617, within the seed spread and far from minimax's own
#   0 (a random mover gets -0.876).
# * **What does move is the invalid-move rate**, for both estimators alike: in self-play it
#   grows from about 0.01 to 0.23-0.42 on Kuhn poker, and on tic-tac-toe it starts at
#   0.29-0.32 (after BC) and ends at 0.33-0.39.
#   Our games charge nothing for an invalid move, and a stalled hand ends with reward 0, so on
#   Kuhn poker the returns against Nash rise above the game value (seat 1 ends at +0.22 to
#   +0.53 per run, against a legal-play ceiling of +0.056) through stalling rather than better
#   poker.
#   SPIRAL charges -1.5 for an invalid move; that penalty, not the baseline, is what this
#   setting is missing.
#
# What the paper's ablation reports (a 4B model's reasoning collapsing without RAE over
# hundreds of iterations) is beyond this scale: a 2-layer, 128-wide policy trained from
# scratch, 12-24 iterations, 2 seeds. Wall time: 11.8 min of training on 2 CPU cores (per run
# in the table above; the first run of each game also trained the BC warm start and built the
# compile cache). An earlier execution, before rollouts rebuilt a full shared KV cache instead
# of cutting every running row, reached the same verdict (Kuhn 0.559 vs 0.547, tic-tac-toe
# -0.551 vs -0.492).
