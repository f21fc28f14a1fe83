"""Held-out evaluation of an experiment's acting policy.

  metrics = evaluation.evaluate_all(exp, state, iteration, last=False)

Task seeds from `data.EVAL_SEED_START` on, disjoint from training and dataset seeds; the
policy that acts is the algorithm's (CHAI's best-of-k, ILQL's Q-guided decoding, else the LM).
"""

from __future__ import annotations

import jax
import numpy as np

from agentrl import data, envs, experiment, sources
from agentrl.experiment import Experiment


def evaluate(exp: Experiment, state, iteration: int, *, temperature: float | None = None,
             prefix: str = "eval", opponents=None) -> dict[str, float]:
  """Held-out task seeds (disjoint from training and dataset seeds), played by the acting
  policy at `temperature` (default `config.eval.temperature`); `opponents` as in
  `rollout.rollout` (the metrics are then the policy's seats only)."""
  e = exp.config.eval
  temperature = e.temperature if temperature is None else temperature
  seeds = data.EVAL_SEED_START + np.arange(e.episodes)
  key = jax.random.fold_in(jax.random.PRNGKey(exp.config.seed),
                          sources.STREAMS["eval"] * 1_000_003 + iteration)
  result = experiment.play(
      exp, experiment.acting_policy(exp, exp.layout.acting(state), temperature), seeds,
      key=key, opponents=opponents)
  st = result.stats
  metrics = {f"{prefix}/success_rate": st["success_rate"],
             f"{prefix}/mean_return": st["mean_return"],
             f"{prefix}/scored_return": st["scored_return"],
             f"{prefix}/mean_turns": st["mean_turns"],
             f"{prefix}/invalid_action_rate": st["invalid_action_rate"],
             f"{prefix}/context_truncated": st["context_truncated"] / max(1, len(result.episodes))}
  scored = envs.score_name(exp.config.env.name)  # hiper_maze_po is scored as maze_po.
  if scored in data.NORMALIZERS:
    # The normalisers' scripted episodes play to the turn limit; an episode the token budget
    # cut is scored as failing every turn it had left (`scored_return`), not as its shorter
    # partial return.
    metrics[f"{prefix}/score"] = float(data.normalized_score(scored, st["scored_return"]))
  return metrics


def evaluate_all(exp: Experiment, state, iteration: int, *, last: bool) -> dict[str, float]:
  """`evaluate`, plus greedy decoding under `eval_greedy/` at the first and the last
  evaluation when `config.eval.greedy` (ArCHer evaluates greedily), plus play against a fixed
  opponent when `config.eval.opponent` names a scripted policy of a multi-player game."""
  metrics = evaluate(exp, state, iteration)
  if exp.config.eval.get("greedy", False) and (iteration == 0 or last):
    metrics.update(evaluate(exp, state, iteration, temperature=0.0, prefix="eval_greedy"))
  if exp.config.eval.get("opponent", ""):
    metrics.update(evaluate_vs_opponent(exp, state, iteration, exp.config.eval.opponent))
  return metrics


def evaluate_vs_opponent(exp: Experiment, state, iteration: int, opponent: str
                         ) -> dict[str, float]:
  """The policy in each seat of a multi-player game against the environment's scripted
  policy `opponent` ("strong": Kuhn poker's Nash player, tic-tac-toe's minimax) in the
  others: per seat `eval_vs_<opponent>/seat<r>_win_rate` and `.._mean_return`, and their
  means over seats `eval_vs_<opponent>/win_rate` and `/mean_return`."""
  name = exp.config.env.name
  num_roles = envs.make(name, **exp.config.env.kwargs).num_roles
  if num_roles < 2:
    raise ValueError(f"eval.opponent={opponent!r} needs a multi-player game; {name} has one "
                     "role.")
  fixed = envs.policy(name, opponent)
  prefix, out = f"eval_vs_{opponent}", {}
  for seat in range(num_roles):
    m = evaluate(exp, state, iteration, prefix="seat",
                 opponents={r: fixed for r in range(num_roles) if r != seat})
    out[f"{prefix}/seat{seat}_win_rate"] = m["seat/success_rate"]
    out[f"{prefix}/seat{seat}_mean_return"] = m["seat/mean_return"]
  for key in ("win_rate", "mean_return"):
    out[f"{prefix}/{key}"] = float(np.mean([out[f"{prefix}/seat{r}_{key}"]
                                            for r in range(num_roles)]))
  return out
