"""Multi-step arithmetic with unhelpful feedback ("Let's try again.", the UFO setting).

The seed generates an integer expression with 2-4 operations among +, -, * and exact integer
division (written "/", only where it divides exactly), with operands 1-20, the minimum of
parentheses, and an integer result of absolute value at most 1000, e.g.
"Compute (17 + 5) * 3 - 8." The agent answers with a number; the last number in its reply
counts ("The answer is 58", "58.", "= 58", "-12", "1,024", "58.0"). A correct answer ends the
episode (done, success). After a wrong answer the user says only "Let's try again."

Reward (UFO): a correct answer at agent turn t earns 0.5 ** t, where t counts the agent's
earlier turns in the episode (t = 0 for the first reply, so 1.0 at the first try; invalid turns
count too). Wrong answers earn 0, minus `repeat_penalty` (default 0.1) when the number was
already given earlier in this episode. `max_turns` (default 5) truncates with no further reward.
A reply with no number is invalid (reward 0; observation "Invalid action: ... Let's try
again.", `info["invalid_action"]` set).

Scripted policies:
  * strong: the correct answer at the first turn (privileged; an upper bound of return 1.0).
  * weak: a noisy solver, right with probability 0.3 at each turn and otherwise a wrong number
    near the answer that it has not given before (it never repeats an answer). Its expected
    return is 0.3 * (1 - 0.35 ** 5) / 0.65 ~= 0.458 and its success 1 - 0.7 ** 5 ~= 0.832.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Callable

import numpy as np

from agentrl.envs import Normalizer, TokenBudget, register
from agentrl.envs.base import Env, TimeStep

_PREC = {"+": 1, "-": 1, "*": 2, "/": 2}
_NUMBER = re.compile(r"(-?)(\d+(?:,\d{3})*(?:\.\d+)?)")
MAX_RESULT = 1000


class _Node:
  """An expression tree node: a leaf integer or a binary operation."""

  __slots__ = ("op", "left", "right", "value")

  def __init__(self, value: int, op: str = "", left: _Node | None = None,
               right: _Node | None = None):
    self.value, self.op, self.left, self.right = value, op, left, right

  def text(self) -> str:
    if not self.op:
      return str(self.value)
    left, right = self.left.text(), self.right.text()
    if self.left.op and _PREC[self.left.op] < _PREC[self.op]:
      left = f"({left})"
    if self.right.op and (_PREC[self.right.op] < _PREC[self.op] or (
        _PREC[self.right.op] == _PREC[self.op] and (self.op in "-/" or self.right.op == "/"))):
      right = f"({right})"
    return f"{left} {self.op} {right}"


def _combine(op: str, a: _Node, b: _Node) -> _Node | None:
  if op == "+":
    value = a.value + b.value
  elif op == "-":
    value = a.value - b.value
  elif op == "*":
    value = a.value * b.value
  else:
    if b.value == 0 or a.value % b.value != 0 or abs(b.value) == 1:
      return None
    value = a.value // b.value
  return _Node(value, op, a, b) if abs(value) <= MAX_RESULT else None


def generate(rng: np.random.Generator, num_ops: int) -> tuple[str, int]:
  """An expression with `num_ops` operations and its integer value, drawn from `rng`."""
  while True:
    nodes = [_Node(int(v)) for v in rng.integers(1, 21, size=num_ops + 1)]
    ok = True
    while len(nodes) > 1:
      i = int(rng.integers(len(nodes) - 1))
      op = "+-*/"[int(rng.choice(4, p=[0.3, 0.3, 0.28, 0.12]))]
      node = _combine(op, nodes[i], nodes[i + 1])
      if node is None:
        ok = False
        break
      nodes[i:i + 2] = [node]
    if ok:
      return nodes[0].text(), nodes[0].value


def parse_answer(text: str) -> Fraction | None:
  """The last number in `text` (signed, with optional thousands commas and decimals), or None.

  A minus sign directly after a letter, digit or closing parenthesis is read as subtraction.
  """
  last = None
  for match in _NUMBER.finditer(text):
    last = match
  if last is None:
    return None
  value = Fraction(last.group(2).replace(",", ""))
  start = last.start()
  if last.group(1) and not (start > 0 and (text[start - 1].isalnum() or text[start - 1] == ")")):
    value = -value
  return value


def _show(value: Fraction) -> str:
  return str(value.numerator) if value.denominator == 1 else str(float(value))


class ArithmeticTryAgain(Env):
  """Multi-step arithmetic where every wrong answer gets only "Let's try again."."""

  name = "arithmetic_try_again"

  def __init__(self, *, max_turns: int = 5, repeat_penalty: float = 0.1, min_ops: int = 2,
               max_ops: int = 4):
    super().__init__(max_turns=max_turns)
    if not 1 <= min_ops <= max_ops:
      raise ValueError(f"need 1 <= min_ops <= max_ops, got {min_ops}, {max_ops}")
    self.repeat_penalty = repeat_penalty
    self.min_ops, self.max_ops = min_ops, max_ops
    self.problem = ""
    self.answer = 0
    self.given: set[Fraction] = set()

  def reference_answer(self) -> str:
    return f"The answer is {self.answer}."

  def instructions(self, role: int = 0) -> str:
    del role
    return ("Solve the arithmetic problem. Reply with the answer as a number; the last number "
            "in your reply counts. If it is wrong you will only be told to try again.")

  def _reset(self, rng: np.random.Generator) -> str:
    num_ops = int(rng.integers(self.min_ops, self.max_ops + 1))
    expression, self.answer = generate(rng, num_ops)
    self.problem = f"Compute {expression}."
    self.task_id = expression
    self.given = set()
    return self.problem

  def _step(self, action: str) -> TimeStep:
    value = parse_answer(action)
    if value is None:
      return self.invalid("no number found", "Let's try again.")
    if value == self.answer:
      reward = 0.5 ** (self.turn - 1)
      return TimeStep("Correct.", reward=reward, done=True,
                      info={"success": True, "answer": _show(value)})
    repeated = value in self.given
    self.given.add(value)
    reward = -self.repeat_penalty if repeated else 0.0
    return TimeStep("Let's try again.", reward=reward,
                    info={"answer": _show(value), "repeated": repeated})


# --- scripted policies ----------------------------------------------------------------------

def strong_policy(**_) -> Callable[[Env, np.random.Generator], str]:
  """The correct answer at once (privileged)."""

  def act(env: Env, rng: np.random.Generator) -> str:
    del rng
    return f"The answer is {env.answer}."

  return act


def weak_policy(p_correct: float = 0.3, **_) -> Callable[[Env, np.random.Generator], str]:
  """Right w.p. `p_correct` per turn, else a fresh wrong number near the answer."""

  def act(env: Env, rng: np.random.Generator) -> str:
    if rng.random() < p_correct:
      return f"The answer is {env.answer}."
    while True:
      guess = env.answer + int(rng.integers(-10, 11))
      if guess != env.answer and guess not in env.given:
        return f"The answer is {guess}."

  return act


register("arithmetic_try_again", ArithmeticTryAgain,
         policies={"strong": strong_policy, "weak": weak_policy}, budget=TokenBudget(128, 12),
         normalizer=Normalizer(weak=0.457875, dataset=0.715562, strong=1))
