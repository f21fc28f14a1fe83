"""Rules of the two-player games: Kuhn poker and tic-tac-toe."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from agentrl.envs import base
from agentrl.envs import kuhn_poker as kp
from agentrl.envs import tictactoe as ttt

# --- Kuhn poker -----------------------------------------------------------------------------


def _kuhn_with_cards(cards: tuple[int, int]) -> tuple[kp.KuhnPoker, int]:
  env = kp.KuhnPoker()
  for seed in range(200):
    env.reset(seed)
    if env.cards == cards:
      return env, seed
  raise AssertionError(f"no seed deals {cards}")


@pytest.mark.parametrize("cards,actions,payoff", [
    ((2, 0), ("check", "check"), 1), ((0, 2), ("check", "check"), -1),
    ((1, 0), ("bet", "call"), 2), ((1, 2), ("bet", "call"), -2),
    ((0, 2), ("bet", "fold"), 1),  # the bluff works
    ((2, 1), ("check", "bet", "call"), 2), ((0, 1), ("check", "bet", "call"), -2),
    ((2, 1), ("check", "bet", "fold"), -1),
])
def test_kuhn_payoffs_by_hand(cards, actions, payoff):
  env, _ = _kuhn_with_cards(cards)
  for i, action in enumerate(actions):
    assert env.to_play == i % 2
    step = env.step(f"I {action}.")
    assert not step.info["invalid_action"]
    if i < len(actions) - 1:
      assert not step.last and step.rewards == (0.0, 0.0) and step.to_play == (i + 1) % 2
  assert step.done and step.rewards == (payoff, -payoff)
  assert step.reward == step.rewards[(len(actions) - 1) % 2]
  assert step.info["success"] == (payoff > 0, payoff < 0)
  assert kp.outcome(cards, actions) == (payoff, -payoff)


def test_kuhn_hidden_information_and_showdown():
  env, seed = _kuhn_with_cards((2, 0))
  first = env.reset(seed)
  assert "Your card: K" in first.observation and "J" not in first.observation
  step = env.step("check")
  assert "Your card: J" in step.observation and "K" not in step.observation
  assert "player 0 checked" in step.observation
  step = env.step("bet")
  assert "Your card: K" in step.observation and "J" not in step.observation
  step = env.step("call")
  assert "player 0 has K, player 1 has J" in step.observation
  env.reset(seed)
  env.step("bet")
  step = env.step("fold")
  assert "K" not in step.observation and "J" not in step.observation  # no showdown on a fold


@pytest.mark.parametrize("history,bad", [
    ((), "call"), ((), "fold"), ((), "banana"), ((), ""), (("bet",), "check"),
    (("bet",), "bet"), (("check",), "call"), (("check", "bet"), "raise"),
])
def test_kuhn_illegal_actions(history, bad):
  env, _ = _kuhn_with_cards((1, 2))
  for action in history:
    env.step(action)
  actor = env.to_play
  step = env.step(bad)
  assert step.info["invalid_action"] and not step.last
  assert step.to_play == actor and step.rewards == (0.0, 0.0) and step.reward == 0.0
  assert env.history == history


def test_kuhn_aliases_and_truncation():
  env, _ = _kuhn_with_cards((1, 2))
  env.step("pass")  # = check
  assert env.history == ("check",)
  env.step("raise")  # = bet
  env.step("pass")  # facing a bet = fold
  assert env.history == ("check", "bet", "fold")
  env = kp.KuhnPoker(max_turns=4)
  env.reset(0)
  steps = [env.step("call") for _ in range(4)]
  assert steps[-1].truncated and not steps[-1].done and steps[-1].rewards == (0.0, 0.0)


def _exact_value(policy0, policy1) -> float:
  """Player 0's exact expected winnings, enumerating the 6 deals and all betting lines."""
  def walk(cards, history, prob):
    result = kp.outcome(cards, history)
    if result is not None:
      return prob * result[0]
    role = len(history) % 2
    probs = (policy0, policy1)[role](cards[role], history)
    return sum(walk(cards, history + (a,), prob * p) for a, p in probs.items() if p > 0)
  return sum(walk(c, (), 1 / 6) for c in itertools.permutations(range(3), 2))


def _uniform(card, history):
  del card
  legal = kp.LEGAL[history]
  return {a: 1 / len(legal) for a in legal}


@pytest.mark.parametrize("alpha", [0.0, 1 / 6, 1 / 3])
def test_kuhn_equilibrium_value_exact(alpha):
  nash = lambda card, history: kp.nash_strategy(card, history, alpha)
  assert _exact_value(nash, nash) == pytest.approx(-1 / 18, abs=1e-12)
  # Equilibrium: a deviation of player 0 cannot gain, e.g. always betting or always checking.
  for deviation in (_uniform, lambda c, h: {kp.LEGAL[h][c % 2]: 1.0}):
    assert _exact_value(deviation, nash) <= -1 / 18 + 1e-12
    assert _exact_value(nash, deviation) >= -1 / 18 - 1e-12


def test_kuhn_policies_monte_carlo():
  env = kp.KuhnPoker()
  strong, weak = kp.strong_policy(), kp.weak_policy()
  def mean_returns(pols, n):
    return np.mean([[e.episode_return for e in base.play(env, pols, s)] for s in range(n)], 0)
  selfplay = mean_returns((strong, strong), 3000)
  assert selfplay[0] == pytest.approx(-1 / 18, abs=0.06) and selfplay.sum() == 0
  exact_sw = _exact_value(kp.nash_strategy, _uniform)
  exact_ws = _exact_value(_uniform, kp.nash_strategy)
  assert exact_sw > 0.1 and -exact_ws > 0.1  # the equilibrium beats random in both seats
  assert mean_returns((strong, weak), 2000)[0] == pytest.approx(exact_sw, abs=0.08)


# --- tic-tac-toe ----------------------------------------------------------------------------


@pytest.mark.parametrize("text,cell", [
    ("a1", 0), ("b2", 4), ("c3", 8), ("C1", 6), ("1a", 0), ("I play b3.", 5), ("2 3", 5),
    ("(3, 1)", 6), ("row 2 column 3", 5), ("5", 4), ("9", 8), ("cell 7", 6), ("a 2", 1),
])
def test_ttt_parse_move(text, cell):
  assert ttt.parse_move(text) == cell


@pytest.mark.parametrize("text", ["", "d4", "0", "10", "4 4", "banana", "\x00\xff", "1 2 3"])
def test_ttt_parse_move_rejects(text):
  assert ttt.parse_move(text) is None


def test_ttt_win_loss_and_draw():
  env = ttt.TicTacToe()
  env.reset(0)
  for move in ("a1", "b1", "a2", "b2"):
    step = env.step(move)
    assert not step.last and step.rewards == (0.0, 0.0)
  assert "You are X" in step.observation and "O played b2" in step.observation
  step = env.step("a3")
  assert step.done and step.reward == 1.0 and step.rewards == (1.0, -1.0)
  assert step.info["success"] == (True, False) and "X wins" in step.observation

  env.reset(1)
  for move in ("a1", "b1", "a2", "b2", "c1"):
    env.step(move)
  step = env.step("b3")
  assert step.done and step.rewards == (-1.0, 1.0) and step.info["success"] == (False, True)

  env.reset(2)
  for i, move in enumerate(("a1", "a2", "a3", "b2", "b1", "b3", "c2", "c1", "c3")):
    step = env.step(move)
    assert step.last == (i == 8)
  assert step.done and step.rewards == (0.0, 0.0) and "Draw" in step.observation


def test_ttt_illegal_moves():
  env = ttt.TicTacToe(max_turns=6)
  env.reset(0)
  env.step("b2")
  for bad in ("b2", "5", "garbage", ""):
    step = env.step(bad)
    assert step.info["invalid_action"] and step.to_play == 1 and step.rewards == (0.0, 0.0)
  assert env.board == "....X...."
  step = env.step("a1")
  assert step.truncated and not step.done


def test_ttt_minimax_values():
  assert ttt._value("." * 9) == 0
  assert ttt.best_moves("XX.OO....") == [2]  # X wins at once
  assert ttt.best_moves("XX.O.....") == [2]
  assert ttt.best_moves("X...O...X") in ([1, 3, 5, 7], [1, 5, 3, 7])  # O must take an edge
  assert set(ttt.best_moves("O.X.X....")) == {6}  # O to move must block the diagonal


def test_ttt_minimax_never_loses():
  env = ttt.TicTacToe()
  strong, weak = ttt.strong_policy(), ttt.weak_policy()
  for seed in range(100):
    x, o = base.play(env, (strong, weak), seed)
    assert x.episode_return >= 0 and x.done
    x, o = base.play(env, (weak, strong), seed)
    assert o.episode_return >= 0
    x, o = base.play(env, (strong, strong), seed)
    assert x.episode_return == 0 == o.episode_return and x.done
  wins = np.mean([base.play(env, (strong, weak), s)[0].success for s in range(100)])
  assert wins > 0.9
