"""Normalised scores in LMRL-Gym's convention: 0 = weak policy, 50 = dataset, 100 = strong.

LMRL-Gym (Appendix E) maps a raw return piecewise-linearly through three anchors, the
return of a weak ("min") policy, the dataset average and a strong ("max") policy:

  score = 50 + (raw - avg) / (strong - avg) * 50    if raw >= avg
  score = (raw - weak) / (avg - weak) * 50          otherwise

so scores are comparable across tasks and can leave [0, 100] (below the weak policy or
above the strong one). Our anchors are measured, not copied: `scripted_returns` plays an
environment's scripted policies over the fixed evaluation seeds
`[EVAL_SEED_START, EVAL_SEED_START + n)` (disjoint from every dataset's seeds), and each
environment registers its means (weak, default dataset mixture, strong) with
`agentrl.envs.register(..., normalizer=Normalizer(...))`; `NORMALIZERS` is the read-only view
of them. `python -m experiments.make_datasets --normalizers` recomputes and prints them.

Multi-role environments report role 0's return. In `scripted_returns` the other roles play
`opponent` (default: the same policy or mixture, i.e. self-play); the normalizers use the
fixed opponent `MULTI_ROLE_OPPONENT` ("strong"), since self-play anchors are not ordered
(weak-vs-weak role 0 can out-earn strong-vs-strong). So for those games the three anchors
are weak / dataset mixture / strong *as role 0 against the strong scripted opponent*, and
the "dataset" anchor is not the dataset's own average (there both seats draw a policy).

`LMRL_GYM_PAPER` keeps the paper's own constants (Table 5) for comparison only: they belong
to LMRL-Gym's environments and datasets, not to ours.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from agentrl import envs as envs_lib
from agentrl.data import episodes_builder


#: The three anchors of the normalised score (defined with the registry, where each
#: environment registers its own).
Normalizer = envs_lib.Normalizer

#: LMRL-Gym's Table 5 anchors (min, dataset average, max), for comparison only. The min is
#: the lowest possible return there (e.g. 20Qs: -20 = every question asked, none right), not
#: a weak policy's mean as in `NORMALIZERS`.
LMRL_GYM_PAPER: dict[str, Normalizer] = {
    "maze_fo": Normalizer(-101.0, -83.0, -6.84),
    "maze_po": Normalizer(-101.0, -83.0, -25.75),
    "text_nav_fo": Normalizer(0.0, 0.26, 1.0),
    "text_nav_po": Normalizer(0.0, 0.26, 1.0),
    "wordle": Normalizer(-6.0, -4.12, -1.94),
    "twenty_questions": Normalizer(-20.0, -17.3, -12.6),
    "guess_my_city": Normalizer(-20.0, -18.8, -8.56),
}

#: Our anchors per registered environment (a read-only view of the registry), measured by
#: `compute_normalizers` over NORMALIZER_EPISODES evaluation seeds (dataset =
#: `episodes_builder.DEFAULT_MIXTURE`). Regenerate with `python -m experiments.make_datasets
#: --normalizers` and paste each one into its environment's `register(..., normalizer=...)`.
NORMALIZERS: Mapping[str, Normalizer] = envs_lib.NORMALIZERS

NORMALIZER_EPISODES = 1000
#: The policy of roles other than 0 when measuring the normalizers of multi-role games.
MULTI_ROLE_OPPONENT = "strong"


def normalized_score(env_name: str, raw, *,
                     table: Mapping[str, Normalizer] | None = None) -> np.ndarray | float:
  """LMRL-Gym normalised score of raw return(s) `raw` in environment `env_name`."""
  table = NORMALIZERS if table is None else table
  if env_name not in table:
    raise KeyError(
        f"no score normalizer for environment {env_name!r} (have: "
        f"{', '.join(sorted(table)) or 'none'}); compute one with "
        f"`python -m experiments.make_datasets --normalizers --env {env_name}` and register "
        f"it (`agentrl.envs.register(..., normalizer=...)`)")
  return table[env_name](raw, name=env_name)


def eval_seeds(n: int = NORMALIZER_EPISODES) -> range:
  """The fixed evaluation seeds, disjoint from every dataset's task seeds."""
  return range(episodes_builder.EVAL_SEED_START, episodes_builder.EVAL_SEED_START + n)


def _assign(env_name: str, policy: str | Mapping[str, float], n: int, num_roles: int,
            rng: np.random.Generator) -> list[tuple[str, ...]]:
  """Per episode, the policy name of each role: fixed, or drawn from a mixture."""
  if isinstance(policy, str):
    episodes_builder.check_mixture(env_name, {policy: 1.0})
    return [(policy,) * num_roles] * n
  mixture = episodes_builder.check_mixture(env_name, policy)
  names = list(mixture)
  draws = rng.choice(len(names), size=(n, num_roles), p=[mixture[k] for k in names])
  return [tuple(names[j] for j in row) for row in draws]


def scripted_returns(env_name: str, policy: str | Mapping[str, float], *, seeds: Sequence[int],
                     env_kwargs: Mapping[str, Any] | None = None, role: int = 0,
                     opponent: str | Mapping[str, float] | None = None,
                     mixture_seed: int = 0) -> np.ndarray:
  """Per-episode returns of role `role` when scripted policies play tasks `seeds`.

  Args:
    env_name: Registered environment name.
    policy: A policy name ("strong", "weak", ...) or a mixture {name: probability}; a
      mixture draws one policy per episode and role from `default_rng(mixture_seed)`, as the
      dataset builder does.
    seeds: Task seeds, one episode each (policy randomness is seeded by the task seed).
    env_kwargs: Overrides of the registered kwargs.
    role: Whose return is reported, and who plays `policy` (multi-role environments).
    opponent: Policy name or mixture of the other roles; None: `policy` as well.
    mixture_seed: Seed of the mixture draws.

  Returns:
    float64 array of shape [len(seeds)]; a pure function of the arguments.
  """
  env_kwargs = dict(env_kwargs or {})
  env = envs_lib.make(env_name, **env_kwargs)
  if not 0 <= role < env.num_roles:
    raise ValueError(f"{env_name} has {env.num_roles} roles, got role={role}")
  seeds = [int(s) for s in seeds]
  rng = np.random.default_rng(mixture_seed)
  assignments = _assign(env_name, policy, len(seeds), env.num_roles, rng)
  if opponent is not None and env.num_roles > 1:
    others = _assign(env_name, opponent, len(seeds), env.num_roles, rng)
    assignments = [other[:role] + (mine[role],) + other[role + 1:]
                   for mine, other in zip(assignments, others)]
  cache = {}
  returns = [episodes_builder.play_episode(env_name, env_kwargs, s, names, env=env,
                                           cache=cache)[role].episode_return
             for s, names in zip(seeds, assignments)]
  return np.asarray(returns, np.float64)


def compute_normalizers(env_names: Sequence[str], *, episodes: int = NORMALIZER_EPISODES,
                        mixture: Mapping[str, float] | None = None,
                        ) -> dict[str, Normalizer]:
  """Measures (weak, dataset mixture, strong) mean returns over the evaluation seeds.

  Multi-role environments: role 0's return against `MULTI_ROLE_OPPONENT` at the other seats.
  """
  seeds = eval_seeds(episodes)
  table = {}
  for name in env_names:
    means = [float(scripted_returns(name, which, seeds=seeds,
                                    opponent=MULTI_ROLE_OPPONENT).mean())
             for which in ("weak", episodes_builder.check_mixture(name, mixture), "strong")]
    table[name] = Normalizer(*means)
  return table


def normalizers_source(table: Mapping[str, Normalizer], *, episodes: int) -> str:
  """`table` as Python source: each entry is the `normalizer=` of its environment's
  `agentrl.envs.register` call."""
  lines = [f"# Measured over {episodes} evaluation seeds per policy "
           f"(`python -m experiments.make_datasets --normalizers`); multi-role games: role 0",
           f"# against the {MULTI_ROLE_OPPONENT!r} scripted opponent.",
           "NORMALIZERS: dict[str, Normalizer] = {"]
  for name, n in sorted(table.items()):
    lines.append(f"    {name!r}: Normalizer(weak={n.weak:.6g}, dataset={n.dataset:.6g}, "
                 f"strong={n.strong:.6g}),")
  lines.append("}")
  return "\n".join(lines)


def normalizers_markdown(table: Mapping[str, Normalizer]) -> str:
  """`table` as a markdown table."""
  lines = ["| env | weak (0) | dataset (50) | strong (100) |", "|---|---|---|---|"]
  for name, n in sorted(table.items()):
    lines.append(f"| {name} | {n.weak:.4g} | {n.dataset:.4g} | {n.strong:.4g} |")
  return "\n".join(lines)
