"""Rules of the WILT (Wason 2-4-6) environment: grammar, equivalence, rewards, policies."""

from __future__ import annotations

import numpy as np
import pytest

from agentrl.envs import base
from agentrl.envs import wilt


@pytest.mark.parametrize("rule,triples,expected", [
    ("x < y < z", [(1, 2, 3), (1, 3, 2), (2, 2, 3)], [True, False, False]),
    ("x <= y <= z", [(2, 2, 3), (3, 2, 3)], [True, False]),
    ("z = x * y", [(2, 3, 6), (-2, 3, -6), (2, 3, 5)], [True, True, False]),
    ("y = x + 2", [(4, 6, 0), (4, 7, 0)], [True, False]),
    ("x + z = 2 * y", [(2, 4, 6), (1, 4, 6)], [True, False]),
    ("even(y) and odd(z)", [(0, 2, 3), (0, 3, 3), (0, -4, -7)], [True, False, True]),
    ("x % 3 = 0", [(-3, 0, 0), (4, 0, 0), (0, 0, 0)], [True, False, True]),
    ("abs(z) < 5 or x > 5", [(0, 0, -4), (6, 0, 9), (5, 0, 5)], [True, True, False]),
    ("distinct", [(1, 2, 3), (1, 2, 1)], [True, False]),
    ("x + y + z > 10", [(5, 5, 1), (5, 5, 0)], [True, False]),
    ("x is not even", [(3, 0, 0), (2, 0, 0)], [True, False]),
    ("2x = y", [(3, 6, 0), (3, 5, 0)], [True, False]),
    ("x % 0 = 0", [(7, 0, 0)], [True]),
])
def test_evaluate_hand_cases(rule, triples, expected):
  assert wilt.evaluate(rule, triples).tolist() == expected


@pytest.mark.parametrize("rewrite", [
    "x < y and y < z", "not (x >= y or y >= z)", "y > x & z > y", "x<y && y<z",
    "(x < y) and (y < z).", "x < y ∧ y < z", "  X <  Y <  Z  ", "z > y > x",
])
def test_equivalent_rewrites(rewrite):
  assert wilt.equivalent("x < y < z", rewrite)


@pytest.mark.parametrize("other", ["x <= y <= z", "x < z", "x < y or y < z", "x < y < z + 1"])
def test_not_equivalent(other):
  assert not wilt.equivalent("x < y < z", other)


@pytest.mark.parametrize("bad", [
    "", "x", "(x)", "x <", "x < y <", "\x00\xff", "x ^ 2 > 1", "x < y or", "w < 3",
    "(" * 40 + "x < y" + ")" * 40, "(" * 500, "99999999999 < x", "even x", "x is big",
])
def test_bad_rules_raise(bad):
  with pytest.raises(wilt.RuleError):
    wilt.compile_rule(bad)


def test_catalogue_round_trip_and_distinct():
  cat = wilt.catalogue()
  assert 1000 < len(cat.texts) and 50 < cat.num_atoms < len(cat.texts)
  assert cat.texts[0] == "x < y < z"  # first spelling of each class is kept
  rng = np.random.default_rng(0)
  bits = np.unpackbits(cat.bits.view(np.uint8), axis=1, bitorder="little")
  for i in rng.choice(len(cat.texts), 100, replace=False):
    table = wilt.truth_table(cat.texts[i])
    assert np.array_equal(bits[:, i].astype(bool), table)
    assert wilt.MIN_TRUE <= table.sum() <= wilt.DOMAIN_SIZE - wilt.MIN_TRUE
  # No two catalogue rules are equivalent on the domain.
  assert len({bits[:, i].tobytes() for i in range(len(cat.texts))}) == len(cat.texts)


def test_domain_index_matches_domain_order():
  for triple in [(-10, -10, -10), (2, 4, 6), (10, -3, 7), (10, 10, 10)]:
    i = wilt.domain_index(triple)
    assert tuple(int(d[i]) for d in wilt.DOMAIN) == triple
  assert wilt.domain_index((11, 0, 0)) is None


def test_reset_is_deterministic_and_example_satisfies_rule():
  env = wilt.Wilt()
  for seed in range(10):
    first = env.reset(seed)
    rule, (triple, answer) = env.rule, env.history[0]
    assert answer and wilt.evaluate(rule, triple)[0]
    assert wilt.catalogue_atoms() and rule in wilt.catalogue().texts
    assert env.reset(seed).observation == first.observation and env.rule == rule


def _env_with_rule(rule: str) -> wilt.Wilt:
  env = wilt.Wilt()
  for seed in range(500):
    env.reset(seed)
    if env.rule == rule:
      return env
  raise AssertionError(f"no seed draws {rule!r}")


def test_probe_phrasings_and_stating_rules():
  env = _env_with_rule("x < y < z")
  for probe, answer in [("(2, 4, 6)", "True."), ("2 4 6", "True."), ("test 6, 4, 2", "False."),
                        ("[-3, 0, 11]", "True."), ("2-4-6", "True."), ("(1, 1, 2)", "False."),
                        ("(5, 6, 500)", "True.")]:
    step = env.step(probe)
    assert step.observation == answer and step.reward == 0 and not step.last, probe
  assert env.history[-1] == ((5, 6, 500), True)
  step = env.step("The rule is: x < y and y < z.")
  assert step.done and step.reward == 1.0 and step.info["success"]

  env.reset(env.seed)
  step = env.step("rule: x <= y <= z")
  assert step.done and step.reward == 0.0 and not step.info["success"]
  env.reset(env.seed)
  assert env.step("z > y > x").reward == 1.0  # a bare rule without the word "rule"


@pytest.mark.parametrize("bad", ["1 2", "1 2 3 4", "rule: garbage", "hello", "", "(1, 2, 99999)",
                                 "rule:", "\x00\xff"])
def test_invalid_actions_consume_the_turn(bad):
  env = wilt.Wilt()
  env.reset(3)
  step = env.step(bad)
  assert step.info["invalid_action"] and step.reward == 0 and not step.last
  assert env.turn == 1


def test_truncation_at_max_turns():
  env = wilt.Wilt(max_turns=3)
  env.reset(0)
  steps = [env.step("(1, 2, 3)") for _ in range(3)]
  assert steps[-1].truncated and not steps[-1].done and steps[-1].reward == 0
  assert not steps[-1].info["success"]


def test_strong_solves_and_weak_fails():
  env = wilt.Wilt()
  strong, weak = wilt.strong_policy(), wilt.weak_policy()
  seeds = range(25)
  strong_eps = [base.play(env, strong, s)[0] for s in seeds]
  weak_eps = [base.play(env, weak, s)[0] for s in seeds]
  assert all(e.success and e.episode_return == 1.0 and e.done for e in strong_eps)
  assert max(e.num_turns for e in strong_eps) <= 25
  assert all(e.invalid_actions == 0 for e in strong_eps)
  assert np.mean([e.success for e in weak_eps]) < 0.1
