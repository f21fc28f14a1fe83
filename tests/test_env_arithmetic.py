"""Rules of the arithmetic "Let's try again." (UFO) environment."""

from __future__ import annotations

import ast
import operator
from fractions import Fraction

import numpy as np
import pytest

from agentrl.envs import arithmetic_try_again as ata
from agentrl.envs import base

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
        ast.Div: operator.truediv}


def _eval(node):
  """An exact evaluator of the generated expressions (Fractions), independent of the env."""
  if isinstance(node, ast.Expression):
    return _eval(node.body)
  if isinstance(node, ast.Constant):
    return Fraction(node.value)
  assert isinstance(node, ast.BinOp), node
  if isinstance(node.op, ast.Div):
    return _eval(node.left) / _eval(node.right)
  return _OPS[type(node.op)](_eval(node.left), _eval(node.right))


@pytest.mark.parametrize("text,value", [
    ("58", 58), ("The answer is 58", 58), ("58.", 58), ("= 58", 58), ("-12", -12),
    ("It is -12.", -12), ("1,024", 1024), ("58.0", 58), ("17 - 5 = 12", 12), ("x = -3", -3),
    ("3-5", 5), ("(4)-2", 2), ("2.5", Fraction(5, 2)), ("first 3 then 7", 7),
])
def test_parse_answer(text, value):
  assert ata.parse_answer(text) == value


@pytest.mark.parametrize("text", ["", "no idea", "\x00\xff", "minus five", "- "])
def test_parse_answer_none(text):
  assert ata.parse_answer(text) is None


def test_generated_problems_are_exact_integers():
  env = ata.ArithmeticTryAgain()
  seen_ops = set()
  for seed in range(300):
    first = env.reset(seed)
    assert first.observation == env.problem == f"Compute {env.task_id}."
    expression = env.task_id
    num_ops = sum(expression.count(f" {op} ") for op in "+-*/")
    assert 2 <= num_ops <= 4
    seen_ops |= {op for op in "+-*/" if f" {op} " in expression}
    value = _eval(ast.parse(expression, mode="eval"))
    assert value == env.answer and isinstance(env.answer, int) and abs(env.answer) <= 1000
  assert seen_ops == set("+-*/")
  env.reset(7)
  problem = env.problem
  assert env.reset(7).observation == problem


def test_parentheses_are_kept_where_needed():
  env = ata.ArithmeticTryAgain()
  assert any("(" in env.reset(s).observation for s in range(50))


def test_ufo_rewards():
  env = ata.ArithmeticTryAgain()
  env.reset(0)
  answer = env.answer
  step = env.step(f"The answer is {answer}")
  assert step.done and step.reward == 1.0 and step.info["success"]

  env.reset(0)
  step = env.step(str(answer + 1))
  assert step.observation == "Let's try again." and step.reward == 0 and not step.last
  step = env.step(f"{answer}.")
  assert step.done and step.reward == 0.5

  env.reset(0)
  rewards = [env.step(a).reward for a in (str(answer + 1), f"= {answer + 1}", "no number",
                                          f"{answer}.0")]
  assert rewards == [0.0, -0.1, 0.0, 0.5 ** 3]


def test_invalid_and_truncation():
  env = ata.ArithmeticTryAgain(max_turns=3, repeat_penalty=0.25)
  env.reset(1)
  step = env.step("I don't know")
  assert step.info["invalid_action"] and "Let's try again." in step.observation
  wrong = env.answer + 2
  step = env.step(str(wrong))
  assert step.reward == 0 and not step.info["invalid_action"]
  step = env.step(f"Still {wrong}")
  assert step.reward == -0.25 and step.info["repeated"]
  assert step.truncated and not step.done and not step.info["success"]


def test_policies():
  env = ata.ArithmeticTryAgain()
  strong, weak = ata.strong_policy(), ata.weak_policy()
  strong_eps = [base.play(env, strong, s)[0] for s in range(50)]
  assert all(e.episode_return == 1.0 and e.success for e in strong_eps)
  weak_eps = [base.play(env, weak, s)[0] for s in range(1000)]
  returns = [e.episode_return for e in weak_eps]
  assert np.mean(returns) == pytest.approx(0.3 * (1 - 0.35 ** 5) / 0.65, abs=0.04)
  assert np.mean([e.success for e in weak_eps]) == pytest.approx(1 - 0.7 ** 5, abs=0.04)
  assert min(returns) >= 0  # the weak policy never repeats itself
