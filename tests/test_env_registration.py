"""A new environment is its module and its test: `agentrl.envs.register` alone makes it
buildable, sized by the experiment configs, scored, wrapped for HiPER, and trainable by name.

`Echo`, defined and registered here only (in a copy of the registry that the fixture restores,
so it never leaks into other tests), stands in for such a module.
"""

from __future__ import annotations

import numpy as np
import pytest

from agentrl import algorithms, configs, data, envs, trainer
from agentrl.data import scores
from agentrl.envs import Normalizer, TokenBudget
from agentrl.envs import hierarchical
from agentrl.envs.base import Env, TimeStep
from agentrl.logging_utils import read_metrics
from experiments.configs import common

NAME = "test_echo"
BUDGET = TokenBudget(max_tokens=64, max_new_tokens=4)
# What `python -m experiments.make_datasets --normalizers --env test_echo` prints (1000 seeds).
NORMALIZER = Normalizer(weak=0.454, dataset=1.667, strong=3)


class Echo(Env):
  """Each turn the environment names a number from 1 to 4; saying it back earns 1, another
  number 0, anything else is invalid (-1). The episode ends after `max_turns` turns."""

  name = NAME
  invalid_reward = -1.0

  def __init__(self, *, max_turns: int = 3):
    super().__init__(max_turns=max_turns)

  def instructions(self, role: int = 0) -> str:
    return "Repeat the number."

  def _reset(self, rng):
    self.rng, self.correct = rng, 0
    self.target = int(rng.integers(1, 5))
    self.task_id = str(self.target)
    return f"Say {self.target}."

  def _step(self, action):
    if action.strip() not in ("1", "2", "3", "4"):
      return self.invalid("not a number from 1 to 4", "Say 1, 2, 3 or 4.")
    hit = int(action.strip()) == self.target
    self.correct += hit
    self.target = int(self.rng.integers(1, 5))
    done = self.turn >= self.max_turns
    return TimeStep(f"Say {self.target}.", reward=float(hit), done=done,
                    info={"success": done and self.correct == self.turn})


def _strong(**_):
  return lambda env, rng: str(env.target)


def _weak(**_):
  return lambda env, rng: "?" if rng.random() < 0.1 else str(int(rng.integers(1, 5)))


def _subgoal(env, action):
  return "echo" if action.strip() == str(env.target) else "guess"


@pytest.fixture(scope="module")
def echo():
  """`Echo` registered as NAME, as its module would at import time."""
  envs.names()  # The built-in environments load into the registry the copy starts from.
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(envs, "_REGISTRY", dict(envs._REGISTRY))
    envs.register(NAME, Echo, policies={"strong": _strong, "weak": _weak}, budget=BUDGET,
                  normalizer=NORMALIZER, subgoal=_subgoal)
    yield NAME


def test_make_and_scripted_policies_see_it(echo):
  assert echo in envs.names() and f"hiper_{echo}" in envs.names()
  env = envs.make(echo, max_turns=2)
  assert isinstance(env, Echo) and env.max_turns == 2
  [episode] = envs.play(envs.make(echo), envs.policy(echo, "strong"), seed=0)
  assert episode.rewards == [1.0, 1.0, 1.0] and episode.done and episode.success
  with pytest.raises(ValueError, match="already registered"):
    envs.register(echo, Echo, policies={"strong": _strong, "weak": _weak})


def test_config_budgets_see_it(echo):
  assert common.ENVS[echo] == {"max_tokens": 64, "max_new_tokens": 4,
                               "turn_limit_key": "max_turns"}
  assert envs.BUDGETS[echo] == BUDGET
  with pytest.raises(TypeError):
    common.ENVS[echo]["max_tokens"] = 1  # A read-only view of the registry.
  for variant, max_tokens, max_new_tokens in [("smoke", 64, 4), ("cpu", 64, 4),
                                              ("paper", 128, 8)]:
    config = configs.load_config(f"ppo.py:{variant},env={echo}")
    assert config.env.name == echo and config.env.max_tokens == max_tokens
    assert config.sampling.max_new_tokens == max_new_tokens
  assert dict(configs.load_config(f"ppo.py:smoke,env={echo}").env.kwargs) == {"max_turns": 4}
  # HiPER plays it in the reply format: twice the row, 24 more tokens per utterance.
  config = configs.load_config(f"hiper.py:cpu,env={echo}")
  assert config.env.name == f"hiper_{echo}" and config.env.max_tokens == 128
  assert config.sampling.max_new_tokens == 28


def test_an_environment_without_a_budget_has_no_config(echo):
  envs.register(f"{echo}_unsized", Echo, policies={"strong": _strong, "weak": _weak})
  assert f"{echo}_unsized" in envs.names() and f"{echo}_unsized" not in common.ENVS
  with pytest.raises(ValueError, match=f"env='{echo}_unsized' has no token budget"):
    configs.load_config(f"ppo.py:cpu,env={echo}_unsized")
  with pytest.raises(TypeError, match="must be a TokenBudget"):
    envs.register(f"{echo}_bad", Echo, policies={"strong": _strong, "weak": _weak},
                  budget={"max_tokens": 64, "max_new_tokens": 4})
  with pytest.raises(ValueError, match="weak < dataset < strong"):
    envs.register(f"{echo}_bad", Echo, policies={"strong": _strong, "weak": _weak},
                  normalizer=Normalizer(1.0, 1.0, 2.0))
  assert f"{echo}_bad" not in envs.names()


def test_score_normaliser_sees_it(echo):
  assert data.NORMALIZERS[echo] == NORMALIZER and scores.NORMALIZERS[echo] == NORMALIZER
  assert data.normalized_score(echo, 3.0) == 100.0
  assert data.normalized_score(echo, NORMALIZER.weak) == 0.0
  assert envs.score_name(f"hiper_{echo}") == echo  # HiPER keeps its returns.
  # The registered constants are what the harness measures (to the 6 digits it prints).
  measured = scores.compute_normalizers([echo])[echo]
  np.testing.assert_allclose([measured.weak, measured.dataset, measured.strong],
                             [NORMALIZER.weak, NORMALIZER.dataset, NORMALIZER.strong], rtol=1e-5)


def test_hierarchical_wrapper_uses_its_subgoal_rule(echo):
  assert hierarchical.SUBGOAL_RULES[echo] is _subgoal
  name = f"hiper_{echo}"
  [strong] = envs.play(envs.make(name), envs.policy(name, "strong"), seed=0)
  assert strong.actions == [hierarchical.format_reply(True, "echo", strong.actions[0][-1]),
                            *(hierarchical.format_reply(False, "echo", a[-1])
                              for a in strong.actions[1:])]
  [weak] = envs.play(envs.make(name), envs.policy(name, "weak"), seed=3)
  replies = [hierarchical.parse_reply(a) for a in weak.actions]
  assert all(r.ok for r in replies) and {r.subgoal for r in replies} <= {"echo", "guess"}


def test_smoke_run_trains_it_by_name(echo, tmp_path):
  # No BC warm start and no greedy evaluation: fewer programs to compile (the offline dataset
  # of a registered environment is tested with tests/test_data.py's toys).
  config = configs.load_config(f"group.py:smoke,env={echo}", [
      f"data_dir={tmp_path / 'data'}", "train.total_iterations=1", "bc.steps=0",
      "eval.greedy=False"])
  final = trainer.train(config, str(tmp_path / "run"))
  rows = read_metrics(str(tmp_path / "run"))
  assert [r["step"] for r in rows] == [0, 1]
  assert algorithms.nonfinite_losses(final) == []
  assert "eval/score" in rows[-1]  # Scored with its registered normaliser.
