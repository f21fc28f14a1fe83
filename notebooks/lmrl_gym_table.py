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
# # LMRL-Gym's Table 2 on our environments
#
# LMRL-Gym (Abdulhai et al., 2023) compares offline and online RL methods for language agents
# on a set of multi-turn tasks and reports **normalised scores** (its Table 2): 0 at the
# lowest possible return, 50 at the dataset's average, 100 at the best return. Its headline
# findings: the offline value-based methods (MC returns, ILQL) beat behaviour cloning and
# filtered BC on most tasks, ILQL is best on the RL-capability tasks (maze, text-nav), and online
# PPO helps on some tasks but is unstable.
#
# This notebook trains the same six methods on our versions of seven of its tasks, through
# `agentrl.trainer.train` and the configs in `experiments/configs/`, and prints a table shaped
# like Table 2 beside the paper's cells:
#
# | row | what runs | config |
# | --- | --- | --- |
# | BC | the behaviour-cloned policy every other method starts from (its evaluation at iteration 0) | `bc` block of each config |
# | % BC | offline filtered BC: fine-tune on the top 10% of dataset episodes by return | `filtered_bc.py`, `algorithm.name=filtered_bc_offline` |
# | MC Return | token-level Q/V heads regressed on Monte Carlo returns, Q-guided decoding (β=16) | `value_offline.py`, `algorithm.name=mc_returns` |
# | ILQL | implicit language Q-learning heads, Q-guided decoding (β=4) | `value_offline.py` |
# | Online PPO | token-level PPO with a value head and a KL penalty to the BC policy | `ppo.py` |
# | Online % BC | roll out, clone the top 10% of everything collected so far | `filtered_bc.py` |
#
# **Our scores are recomputed from raw returns with our anchors** (`agentrl.data.normalized_score`:
# 0 = the environment's weak scripted policy, 50 = the dataset mixture, 100 = the strong
# scripted policy), because our environments, datasets and scripted policies are ours, not
# LMRL-Gym's: their numbers are a shape to compare against, not a target to match. The
# anchors' scripted episodes play to the turn limit, so the returns scored here are
# `eval/scored_return`: an episode cut by the token budget (`env.max_tokens`) counts as
# failing every turn it had left.
#
# Re-execute with `jupyter execute --inplace --timeout=-1 notebooks/lmrl_gym_table.ipynb`
# (about 1.7 h of training on 2 CPU cores; finished runs under `runs/notebooks/lmrl_gym_table/`
# are read back, an interrupted one resumes).

# %% tags=["parameters"]
SMOKE = False  # True: the configs' smoke variants and tiny budgets (tests/test_notebooks.py).

# %%
import json
import os

os.environ.setdefault("TQDM_DISABLE", "1")  # One progress bar per run would flood the outputs.

import matplotlib.pyplot as plt
import numpy as np

from agentrl import configs, data, grid
from agentrl.grid import Method

# Our environment -> the row name of LMRL-Gym's tables.
PAPER_TASK = {"twenty_questions": "20Qs", "guess_my_city": "Guess", "maze_fo": "FO Maze",
              "maze_po": "PO Maze", "text_nav_fo": "FO Text-Nav", "text_nav_po": "PO Text-Nav",
              "wordle": "Wordle"}
# method -> (its name in run directories, config file, overrides). "BC" has no run of its
# own: it is every run's start.
METHOD_CONFIGS = {
    "% BC": ("filtered_bc", "filtered_bc.py", ["algorithm.name=filtered_bc_offline"]),
    "MC Return": ("mc_return", "value_offline.py",
                  ["algorithm.name=mc_returns", "algorithm.beta=16.0"]),
    "ILQL": ("ilql", "value_offline.py", []),
    "Online PPO": ("online_ppo", "ppo.py", []),
    "Online % BC": ("online_filtered_bc", "filtered_bc.py", []),
}
COLUMNS = ("BC", *METHOD_CONFIGS)
# LMRL-Gym Table 2 (normalised) and Table 4 (raw returns), the columns we reproduce.
PAPER_TABLE2 = {
    "20Qs": (57.1, 77.1, 87.1, 82.9, 72.9, 55.2),
    "Guess": (30.0, 48.0, 88.0, 75.0, 49.9, 31.6),
    "FO Maze": (58.2, 68.9, 75.0, 99.9, 79.7, 57.4),
    "PO Maze": (53.1, 50.1, 52.4, 76.3, 42.4, 53.1),
    "FO Text-Nav": (53.7, 65.1, 71.9, 91.8, 87.1, 74.5),
    "PO Text-Nav": (49.7, 60.5, 71.6, 83.7, 85.5, 68.4),
    "Wordle": (79.9, 79.1, 94.9, 97.7, 84.2, 95.2),
}
PAPER_TABLE4 = {
    "20Qs": (-16.0, -14.6, -13.9, -14.2, -14.9, -16.8),
    "Guess": (-17.0, -15.2, -11.2, -12.5, -15.1, -19.2),
    "FO Maze": (-72.1, -56.4, -48.1, -6.97, -37.7, -71.7),
    "PO Maze": (-79.5, -82.9, -80.3, -52.9, -91.7, -79.5),
    "FO Text-Nav": (0.39, 0.54, 0.63, 0.88, 0.81, 0.62),
    "PO Text-Nav": (0.25, 0.49, 0.58, 0.76, 0.80, 0.53),
    "Wordle": (-2.81, -2.85, -2.16, -2.04, -2.63, -2.15),
}

if SMOKE:
  ENVS = ("wordle",)
  SEED = 0
  OVERRIDES = ["bc.steps=2", "train.checkpoint_every=2", "eval.greedy=False"]
  BUDGET = {m: ["train.total_iterations=1", "train.eval_every=1"] for m in METHOD_CONFIGS}
else:
  ENVS = tuple(PAPER_TASK)
  SEED = 0
  # A budget cut to fit 2 CPU cores for all seven environments, one seed: BC 200 steps
  # (the cpu variant's 400), then per method a short budget, evaluated once at the end on 64
  # held-out tasks at temperature 1 (value methods: their Q-guided decoder).
  OVERRIDES = ["bc.steps=200", "eval.episodes=64", "eval.greedy=False"]
  BUDGET = {
      "% BC": ["train.total_iterations=100", "train.eval_every=100",
               "train.checkpoint_every=100"],
      "MC Return": ["train.total_iterations=100", "train.eval_every=100",
                    "train.checkpoint_every=100"],
      "ILQL": ["train.total_iterations=100", "train.eval_every=100",
               "train.checkpoint_every=100"],
      "Online PPO": ["train.total_iterations=16", "train.eval_every=16",
                     "train.checkpoint_every=8"],
      "Online % BC": ["train.total_iterations=16", "train.eval_every=16",
                      "train.checkpoint_every=8"],
  }

METHODS = {m: Method(name, file, [*own, *BUDGET[m]])
           for m, (name, file, own) in METHOD_CONFIGS.items()}
GRID = grid.Grid.create("lmrl_gym_table", smoke=SMOKE, methods=METHODS, envs=ENVS,
                        seeds=(SEED,), overrides=OVERRIDES, metric="eval/scored_return")
RESULTS_CSV = GRID.results_path("lmrl_gym_table.csv")
print(f"SMOKE={SMOKE}  variant={GRID.variant}  envs={ENVS}  seed={SEED}  "
      f"overrides={list(GRID.overrides)}")
print(f"per method: {BUDGET}")
GRID.start()


# %% [markdown]
# ## The runs
#
# Per environment, the first run trains the BC warm start (`<run>/bc`); the other methods'
# run directories get a copy, which the trainer reuses. A finished run is read back instead of
# retrained, and an interrupted one resumes.


# %%
def describe(r):
  return (f"{r.env:16s} {r.method:12s} {r.seconds / 60:5.1f} min: return "
          f"{r.first['eval/scored_return']:+8.3f} (BC) -> {r.last['eval/scored_return']:+8.3f}")


RESULTS = {(r.env, r.method): r
           for r in GRID.train_all(order=("env", "method", "seed"), describe=describe)}

# %% [markdown]
# ## Raw returns and normalised scores
#
# BC is the evaluation at iteration 0 of the first method's run (all five start from the same
# BC checkpoint; the other runs' iteration-0 evaluations re-measure it on the same seeds and are
# printed as a check of the evaluation's noise). Each score is recomputed here from the mean
# return (cut episodes completed as failures, `eval/scored_return`) with
# `agentrl.data.normalized_score`, and also with LMRL-Gym's own formula and anchors (Table 5)
# applied to our returns, which is only indicative: their anchors belong to their
# environments. The share of episodes cut by the token budget is printed beside them.

# %%
RAW, SCORE, SUCCESS, CUT = {}, {}, {}, {}
for env in ENVS:
  for col in COLUMNS:
    r = RESULTS[env, next(iter(METHODS)) if col == "BC" else col]
    row = r.first if col == "BC" else r.last
    RAW[env, col], SUCCESS[env, col] = row["eval/scored_return"], row["eval/success_rate"]
    CUT[env, col] = row["eval/context_truncated"]
    SCORE[env, col] = float(data.normalized_score(env, RAW[env, col]))
  starts = [RESULTS[env, m].first["eval/scored_return"] for m in METHODS]
  print(f"{env:16s} BC return re-measured at each run's start: "
        f"{', '.join(f'{s:+.3f}' for s in starts)}")


def markdown_table(values, fmt):
  lines = ["| task | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
  for env in ENVS:
    lines.append(f"| {env} | " + " | ".join(fmt(values(env, c)) for c in COLUMNS) + " |")
  return "\n".join(lines)


print("\nOur normalised scores (0 weak, 50 dataset, 100 strong scripted policy):\n")
print(markdown_table(lambda e, c: SCORE[e, c], lambda v: f"{v:.1f}"))
print("\nLMRL-Gym Table 2 (their environments and anchors):\n")
print(markdown_table(lambda e, c: PAPER_TABLE2[PAPER_TASK[e]][COLUMNS.index(c)],
                     lambda v: f"{v:.1f}"))
print("\nOur mean returns (cut episodes completed as failures):\n")
print(markdown_table(lambda e, c: RAW[e, c], lambda v: f"{v:+.3f}"))
print("\nOur success rates:\n")
print(markdown_table(lambda e, c: SUCCESS[e, c], lambda v: f"{v:.3f}"))
print("\nShare of evaluation episodes cut by the token budget:\n")
print(markdown_table(lambda e, c: CUT[e, c], lambda v: f"{v:.2f}"))
paper_anchored = {
    (e, c): float(data.normalized_score(e, RAW[e, c], table=data.LMRL_GYM_PAPER))
    for e in ENVS for c in COLUMNS}
print("\nOur raw returns under LMRL-Gym's anchors (indicative only):\n")
print(markdown_table(lambda e, c: paper_anchored[e, c],
                     lambda v: f"{v:.1f}"))

# %%
fig, ax = plt.subplots(figsize=(11, 4), layout="constrained")
width = 0.8 / len(COLUMNS)
x = np.arange(len(ENVS))
for i, col in enumerate(COLUMNS):
  ax.bar(x + (i - (len(COLUMNS) - 1) / 2) * width, [SCORE[e, col] for e in ENVS], width,
         label=col)
  ax.scatter(x + (i - (len(COLUMNS) - 1) / 2) * width,
             [PAPER_TABLE2[PAPER_TASK[e]][i] for e in ENVS], marker="_", color="black", s=60,
             zorder=3)
ax.axhline(50, color="gray", linewidth=0.8, linestyle="--")
ax.set_xticks(x, ENVS)
ax.set_ylabel("normalised score")
ax.set_title("Bars: our scores (our anchors); black ticks: LMRL-Gym Table 2 (their anchors)")
ax.legend(ncol=len(COLUMNS), fontsize=8)
ax.grid(axis="y", alpha=0.3)
plt.show()

# %% [markdown]
# ## Written results, configs and wall time

# %%
TABLE = []
for env in ENVS:
  for i, col in enumerate(COLUMNS):
    r = RESULTS[env, next(iter(METHODS)) if col == "BC" else col]
    TABLE.append({"env": env, "paper_task": PAPER_TASK[env], "method": col,
                  "scored_return": RAW[env, col], "success_rate": SUCCESS[env, col],
                  "context_truncated": CUT[env, col], "score": SCORE[env, col],
                  "paper_score": PAPER_TABLE2[PAPER_TASK[env]][i],
                  "paper_raw_return": PAPER_TABLE4[PAPER_TASK[env]][i],
                  "iterations": 0 if col == "BC" else r.last["step"],
                  "wall_time_s": "" if col == "BC" else r.seconds})
grid.write_csv(RESULTS_CSV, TABLE, formats={
    "scored_return": "{:.4f}", "success_rate": "{:.4f}", "context_truncated": "{:.4f}",
    "score": "{:.2f}", "paper_score": "{}", "paper_raw_return": "{}", "wall_time_s": "{:.1f}"})
print(f"wrote {GRID.shown(RESULTS_CSV)}")
print(f"overrides for every run: {', '.join(GRID.overrides)}; seed {SEED}")
print(f"total training wall time {grid.total_minutes(RESULTS.values()):.1f} min "
      f"on {os.cpu_count()} CPU cores")
for method, m in METHODS.items():
  c = RESULTS[ENVS[0], method].config
  print(f"\n{method}: experiments/configs/{m.config}:{GRID.variant},env=<env> "
        f"{' '.join(m.overrides)}")
  print("algorithm:", json.dumps(configs.config_to_dict(c.algorithm), sort_keys=True))
c = RESULTS[ENVS[0], "ILQL"].config
print(f"\npolicy {c.policy.num_layers} layers x {c.policy.hidden_size} wide, BC {c.bc.steps} "
      f"steps on {c.dataset.episodes} dataset episodes ({dict(c.dataset.mixture)}), eval on "
      f"{c.eval.episodes} held-out tasks at temperature {c.eval.temperature}")

# %% [markdown]
# ## Did the paper's findings hold?
#
# The verdict for the committed full run is written below the numbers it rests on.
#
# **Verdict (full run, seed 0, 103.5 min of training on 2 CPU cores of an AMD EPYC: held
# partly).** Filtered BC beats BC wherever a policy learns anything; the value-based offline
# methods are the weakest family here, not the strongest; the online methods improve on BC
# on the mazes' FO variant and on text-nav only. Twenty Questions, Guess My City and Wordle
# stay at or below the weak scripted level for every method, so they rank nothing.
#
# * **Filtered BC beats BC** (LMRL-Gym: % BC at or above BC on most tasks): held. Offline
#   % BC is above BC on every task but Wordle (where both never solve a word), by far the
#   most on text-nav (scores 24 -> 96 FO, 19 -> 97 PO; success 0.23 -> 0.95 and
#   0.19 -> 0.97) and FO maze (7 -> 51, success 0.25 -> 0.58); PO maze 13 -> 25, Guess My
#   City -2 -> 11 (success 0 -> 0.14), Twenty Questions 0 -> 10 (0.03 -> 0.13).
# * **Value-based offline RL (ILQL, MC returns) is the best family**: not held. MC returns
#   (β = 16) never succeeds on any task, and its guided decoder mostly writes illegal moves
#   (maze: every episode cut at return -118.5, score -53); ILQL (β = 4) is below BC on the
#   mazes (-15 FO, -15 PO) and about 0 on text-nav, and level with the others on Guess My
#   City (1.0, success 0.03). The evaluation at iteration 0, BC plus untrained heads, is
#   already below BC (FO maze -18.7 vs 6.9, PO -30.8 vs 13.0, text-nav 0 vs 0.2): it is the
#   Q-guided decoder that derails the BC policy, and 100 offline steps on a 2-layer, 128-wide
#   model do not give heads good enough to steer it (the paper trains GPT-2 value heads for
#   far longer).
# * **Online PPO and online filtered BC improve on BC** (the paper: PPO helps on some tasks,
#   unstably): held on FO maze (7 -> 21 / 24) and text-nav (PPO 24 -> 31 FO, 19 -> 47 PO;
#   online % BC 60 / 51) within 16 iterations (of 32 episodes for PPO, 16 for online
#   % BC); on PO maze they stay at BC's level (16 / 10 vs 13) and on Twenty Questions and
#   Guess My City near 0.
# * Twenty Questions and Guess My City: every method stays near the weak scripted level
#   (scores -2 to 11, success at most 0.14): a policy cloned for 200 steps does not learn to
#   narrow down 157 objects or 100 cities, so nothing downstream has much signal.
# * Wordle: no method solves a word (return -6.0, score -54.8, below the weak policy's random
#   vocabulary words). The BC policy spells a word outside the 4,667-word vocabulary on 87%
#   of its guesses (81% after % BC), each an invalid turn: with letters as tokens, 200 BC
#   steps do not teach the vocabulary, and no method gets a success to learn from.
# * Cut episodes: no Twenty Questions or Wordle episode is cut and 0.19-0.44 of Guess My
#   City's (all of MC returns', whose invalid questions draw long answers); the mazes and
#   text-nav cut most of BC's episodes (0.70-0.81) and few of the best policies' (% BC 0.05 /
#   0.03 on text-nav): a weak policy wanders past the row's 9 (text-nav) to 22 (PO maze)
#   turns, and the scored return counts the turns it had left as failures, as the anchors'
#   scripted episodes play them.
# * Scores use our anchors (weak 0, dataset 50, strong 100), not LMRL-Gym's; the paper's
#   column is a shape to compare with. One seed and 64 evaluation tasks: a success rate near
#   0.3 has a standard error of about 0.06, so differences of a few points are noise (BC
#   re-measured at each run's start varies as printed).
