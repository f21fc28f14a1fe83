"""WILT: the Wason 2-4-6 inductive-logic task over integer triples.

A hidden rule over integer triples (x, y, z) is drawn from the seed. The agent is shown one
triple that satisfies the rule (the Wason "2, 4, 6" cue) and then, each turn, either

  * tests a triple: "(2, 4, 6)", "2 4 6", "test 2, 4, 6", "[2,4,6]" (exactly three integers,
    each in [-1000, 1000], and no variable names) and is told "True." or "False."; or
  * states the rule: "rule: x < y < z" (the text after the last "rule", with an optional ":"
    or "is"; without the word "rule", any reply that names x, y or z and parses as a rule).

Stating a rule ends the episode with reward 1 (success) if the stated rule is equivalent to the
hidden one on the test domain D = all triples with elements in [-10, 10] (9261 triples; both
rules are evaluated on the whole of D with vectorised numpy), else 0. Probes earn 0; at
`max_turns` (30) the episode is truncated with reward 0. An unparseable triple or rule is an
invalid action (reward 0, the turn is consumed, the observation says what went wrong).

The rule grammar, the domain D and the catalogue of hidden rules are in
`agentrl.envs.wilt_rules` (re-exported here). The seed draws a catalogue rule: an atom with
probability 1/2, else a compound ("A and B", "A or B"), uniformly within the kind.

Scripted policies:
  * strong (honest: it reads only the probe history `env.history`): keeps the catalogue rules
    consistent with every observation so far, tests the triple of D that splits them most
    evenly (random tie-break), and states the rule when one equivalence class is left (or on
    the last turn). Since the hidden rule is in the catalogue it always succeeds.
  * weak: tests 3-10 random triples of D, then states a random catalogue rule.

Deviation from the WILT benchmark: the rule space is this finite grammar rather than free-form
hand-written rules, equivalence is decided on the finite domain D, and a first positive
example is shown.
"""

from __future__ import annotations

import re
from typing import Callable

import numpy as np

from agentrl.envs import Normalizer, TokenBudget, register
from agentrl.envs.base import Env, TimeStep
from agentrl.envs.wilt_rules import (  # noqa: F401  (re-exported: WILT's rule language)
    DOMAIN, DOMAIN_SIZE, HIGH, LOW, MAX_CONSTANT, MAX_DEPTH, MIN_TRUE, UNICODE_SYMBOLS,
    Catalogue, Fn, RuleError, Vars, catalogue, catalogue_atoms, compile_rule, domain_index,
    equivalent, evaluate, members, truth_table)

PROBE_LIMIT = 1000


# --- the environment ------------------------------------------------------------------------

_INT = re.compile(r"(?:(?<![\w)])-)?\d+")
_HAS_VAR = re.compile(r"(?<![a-z])[xyz](?![a-z])")
_RULE_WORD = re.compile(r"\brule\b")
_RULE_LEAD = re.compile(r"^(?:\s*(?:is\b|:|=(?![=<>])))*\s*")


def _format(triple) -> str:
  return "(" + ", ".join(str(int(t)) for t in triple) + ")"


class Wilt(Env):
  """The Wason 2-4-6 task: find a hidden rule over integer triples by testing triples."""

  name = "wilt"

  def __init__(self, *, max_turns: int = 30):
    super().__init__(max_turns=max_turns)
    self.rule = ""
    self.table = np.zeros(DOMAIN_SIZE, bool)
    self.history: list[tuple[tuple[int, int, int], bool]] = []
    self._fn: Fn | None = None

  def reference_answer(self) -> str:
    return f"rule: {self.rule}"

  def instructions(self, role: int = 0) -> str:
    del role
    return (f"I have a hidden rule about triples of integers (x, y, z). Find it. Each turn, "
            f"either test a triple, e.g. \"(2, 4, 6)\", and I answer True. or False., or state "
            f"the rule, e.g. \"rule: x < y < z\", which ends the game. Rules use x, y, z, "
            f"integers, + - * % abs(), comparisons < <= > >= = !=, even(...), odd(...), "
            f"distinct, and, or, not and parentheses. You win if your rule agrees with mine "
            f"on every triple with elements in [{LOW}, {HIGH}]. You have {self.max_turns} "
            f"turns.")

  def _reset(self, rng: np.random.Generator) -> str:
    cat = catalogue()
    if rng.random() < 0.5:
      index = int(rng.integers(cat.num_atoms))
    else:
      index = int(rng.integers(cat.num_atoms, len(cat.texts)))
    self.rule = cat.texts[index]
    self.task_id = self.rule
    self._fn = compile_rule(self.rule)
    self.table = truth_table(self._fn)
    example = int(rng.choice(np.flatnonzero(self.table)))
    triple = tuple(int(d[example]) for d in DOMAIN)
    self.history = [(triple, True)]
    return (f"The triple {_format(triple)} satisfies my rule. Test a triple or state the "
            f"rule.")

  def _step(self, action: str) -> TimeStep:
    text = action.lower().translate(UNICODE_SYMBOLS)
    rule_words = list(_RULE_WORD.finditer(text))
    if rule_words:
      rule_text = _RULE_LEAD.sub("", text[rule_words[-1].end():], count=1)
      return self._state(rule_text)
    if not _HAS_VAR.search(text):
      numbers = _INT.findall(text)
      if len(numbers) != 3:
        return self.invalid(f"expected a triple of three integers, found {len(numbers)} "
                            f"numbers", "Test a triple like \"(2, 4, 6)\" or state a rule "
                            "like \"rule: x < y < z\".")
      if any(len(n.lstrip("-")) > 4 or abs(int(n)) > PROBE_LIMIT for n in numbers):
        return self.invalid(f"triple elements must lie in [-{PROBE_LIMIT}, {PROBE_LIMIT}]")
      triple = tuple(int(n) for n in numbers)
      index = domain_index(triple)
      value = bool(self.table[index]) if index is not None else bool(evaluate(self._fn,
                                                                              triple)[0])
      self.history.append((triple, value))
      return TimeStep("True." if value else "False.", info={"probe": triple, "answer": value})
    return self._state(text)

  def _state(self, rule_text: str) -> TimeStep:
    try:
      table = truth_table(rule_text)
    except Exception as e:  # RuleError, or numpy trouble on an exotic expression
      return self.invalid(f"the rule does not parse ({str(e)[:80]})",
                          "State a rule like \"rule: x < y < z\" or test a triple like "
                          "\"(2, 4, 6)\".")
    ok = bool(np.array_equal(table, self.table))
    verdict = "Correct" if ok else "Wrong"
    return TimeStep(f"{verdict}: my rule was \"{self.rule}\".", reward=float(ok), done=True,
                    info={"success": ok, "stated_rule": rule_text.strip()})


# --- scripted policies ----------------------------------------------------------------------

def version_space(env: Wilt) -> np.ndarray:
  """The bitset of catalogue rules consistent with every in-domain observation so far."""
  cat = catalogue()
  alive = cat.all_rules()
  for triple, answer in env.history:
    index = domain_index(triple)
    if index is not None:
      alive &= cat.bits[index] if answer else ~cat.bits[index]
  return alive


def strong_policy(**_) -> Callable[[Env, np.random.Generator], str]:
  """Honest version-space search: split the consistent rules evenly, state the last one."""

  def act(env: Env, rng: np.random.Generator) -> str:
    cat = catalogue()
    alive = version_space(env)
    size = int(np.bitwise_count(alive).sum())
    if size == 0:
      return f"rule: {cat.texts[0]}"
    if size == 1 or env.turn >= env.max_turns - 1:
      return f"rule: {cat.texts[members(alive)[0]]}"
    counts = np.bitwise_count(cat.bits & alive).sum(1, dtype=np.int64)
    score = np.abs(2 * counts - size)
    index = int(rng.choice(np.flatnonzero(score == score.min())))
    return _format(d[index] for d in DOMAIN)

  return act


def weak_policy(**_) -> Callable[[Env, np.random.Generator], str]:
  """Random probes for 3-10 turns, then a random catalogue rule."""

  def act(env: Env, rng: np.random.Generator) -> str:
    probes = 3 + (env.seed or 0) % 8
    if env.turn < probes and env.turn < env.max_turns - 1:
      return _format(rng.integers(LOW, HIGH + 1, size=3))
    texts = catalogue().texts
    return f"rule: {texts[int(rng.integers(len(texts)))]}"

  return act


_SAYS_RULE = re.compile(r"\brule\b", re.IGNORECASE)


def subgoal(env: Env, action: str) -> str:
  """HiPER's subgoal: "test triples" while probing, "state the rule" for the answer."""
  del env
  return "state the rule" if _SAYS_RULE.search(action) else "test triples"


register("wilt", Wilt, policies={"strong": strong_policy, "weak": weak_policy},
         budget=TokenBudget(256, 16), normalizer=Normalizer(weak=0, dataset=0.473, strong=1),
         subgoal=subgoal)
