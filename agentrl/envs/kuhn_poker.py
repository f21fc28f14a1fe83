"""Kuhn poker: the three-card, one-bet poker game for two players.

The deck is J < Q < K; the seed deals one card to each player (the third stays hidden). Both
ante 1 chip. Player 0 acts first: "check" or "bet" (1 chip). Facing a check, player 1 may
"check" (showdown for the pot of 2) or "bet"; facing a bet, a player may "call" (showdown for
the pot of 4) or "fold" (the bettor takes the pot). The betting sequences and player 0's
winnings (player 1 gets the negative: the game is zero-sum):

  check check        showdown, +-1        bet call           showdown, +-2
  check bet call     showdown, +-2        bet fold           +1
  check bet fold     -1

Observations are addressed to the player to act only: its own card, the betting so far, and
its legal actions; the opponent's card is revealed only at a showdown, in the closing message
(which both players receive). Actions: "check", "bet", "call", "fold", case-insensitive, with
the last such word of the reply counting ("I will bet." is a bet); aliases: "raise" = bet,
"pass" = check when there is nothing to call, fold when facing a bet.

`TimeStep.to_play` names the next player; `TimeStep.rewards` is (r0, r1): the chip winnings at
the end of the hand, (0, 0) before. `info["success"]` at the end is (r0 > 0, r1 > 0). An
invalid or illegal action (garbage, "call" with nothing to call, "check" facing a bet, "fold"
when nothing was bet) is answered with an observation saying so; the turn is consumed and the
same player acts again, both rewards 0. `max_turns` (default 10) truncates a hand that never
ends.

Scripted policies:
  * strong: a Nash equilibrium (Kuhn 1950), parameterised by alpha in [0, 1/3] (kwarg, default
    1/3). Player 0: with J bet w.p. alpha, fold to a bet; with Q check, call a bet w.p.
    alpha + 1/3; with K bet w.p. 3 alpha, call a bet. Player 1: facing a bet, call with K, call
    w.p. 1/3 with Q, fold with J; facing a check, bet with K, check with Q, bet w.p. 1/3 with J.
    Its value for player 0 is -1/18 for every alpha.
  * weak: a uniformly random legal action.
"""

from __future__ import annotations

import re
from typing import Callable

import numpy as np

from agentrl.envs import Normalizer, TokenBudget, register
from agentrl.envs.base import Env, TimeStep

CARDS = ("J", "Q", "K")
ACTIONS = ("check", "bet", "call", "fold")
#: Legal actions after each betting history (player to act = len(history) % 2).
LEGAL = {(): ("check", "bet"), ("check",): ("check", "bet"), ("bet",): ("call", "fold"),
         ("check", "bet"): ("call", "fold")}
_WORD = re.compile(r"\b(check|checks|bet|bets|call|calls|fold|folds|raise|raises|pass|passes)\b")
_CANON = {"raise": "bet", "checks": "check", "bets": "bet", "calls": "call", "folds": "fold",
          "raises": "bet", "passes": "pass"}


def outcome(cards: tuple[int, int], history: tuple[str, ...]) -> tuple[float, float] | None:
  """Player 0's and player 1's chip winnings after `history`, or None if the hand goes on."""
  if history in LEGAL:
    return None
  if history[-1] == "fold":
    # The player who folded is the last to act: len(history) - 1 (mod 2).
    folder = (len(history) - 1) % 2
    win0 = 1.0 if folder == 1 else -1.0
  else:
    stake = 2.0 if "bet" in history else 1.0
    win0 = stake if cards[0] > cards[1] else -stake
  return (win0, -win0)


def _describe(history: tuple[str, ...]) -> str:
  if not history:
    return "no actions yet"
  return ", ".join(f"player {i % 2} {_PAST[a]}" for i, a in enumerate(history))


_PAST = {"check": "checked", "bet": "bet", "call": "called", "fold": "folded"}


class KuhnPoker(Env):
  """Two-player Kuhn poker; role 0 acts first."""

  name = "kuhn_poker"
  num_roles = 2

  def __init__(self, *, max_turns: int = 10):
    super().__init__(max_turns=max_turns)
    self.cards = (0, 1)
    self.history: tuple[str, ...] = ()

  def instructions(self, role: int = 0) -> str:
    order = "first" if role == 0 else "second"
    return (f"You are player {role} in Kuhn poker and act {order}. The deck has three cards, "
            "J < Q < K; each player gets one card and antes 1 chip. Player 0 may check or bet "
            "1 chip. Facing a check you may check (showdown) or bet; facing a bet you may call "
            "(showdown) or fold (the bettor wins the pot). The higher card wins a showdown. "
            "Reply with one action: check, bet, call or fold.")

  def _reset(self, rng: np.random.Generator) -> str:
    deal = rng.permutation(3)[:2]
    self.cards = (int(deal[0]), int(deal[1]))
    self.history = ()
    self.task_id = "".join(CARDS[c] for c in self.cards)
    return self._prompt()

  def _prompt(self) -> str:
    role = len(self.history) % 2
    legal = " or ".join(LEGAL[self.history])
    return (f"You are player {role}. Your card: {CARDS[self.cards[role]]}. Betting so far: "
            f"{_describe(self.history)}. Your action ({legal})?")

  def _step(self, action: str) -> TimeStep:
    words = _WORD.findall(action.lower())
    if not words:
      return self.invalid("no action found", self._hint())
    word = _CANON.get(words[-1], words[-1])
    legal = LEGAL[self.history]
    if word == "pass":
      word = "check" if "check" in legal else "fold"
    if word not in legal:
      return self.invalid(f"{word} is not legal now", self._hint())
    actor = len(self.history) % 2
    self.history = self.history + (word,)
    result = outcome(self.cards, self.history)
    if result is None:
      self.to_play = len(self.history) % 2
      return TimeStep(f"Player {actor} {_PAST[word]}. " + self._prompt(), to_play=self.to_play,
                      rewards=(0.0, 0.0))
    if word == "fold":
      closing = f"Player {actor} folded."
    else:
      closing = (f"Player {actor} {_PAST[word]}. Showdown: player 0 has "
                 f"{CARDS[self.cards[0]]}, player 1 has {CARDS[self.cards[1]]}.")
    winner = 0 if result[0] > 0 else 1
    closing += f" Player {winner} wins {abs(result[0]):g} chip{'s' if abs(result[0]) > 1 else ''}."
    return TimeStep(closing, reward=result[actor], done=True, to_play=1 - actor,
                    rewards=result, info={"success": (result[0] > 0, result[1] > 0)})

  def _hint(self) -> str:
    role = len(self.history) % 2
    return (f"You are player {role} with {CARDS[self.cards[role]]}; betting so far: "
            f"{_describe(self.history)}. Legal actions: {' or '.join(LEGAL[self.history])}.")


# --- scripted policies ----------------------------------------------------------------------

def nash_strategy(card: int, history: tuple[str, ...],
                  alpha: float = 1 / 3) -> dict[str, float]:
  """The equilibrium action probabilities for `card` (0 = J, 1 = Q, 2 = K) after `history`."""
  if not 0.0 <= alpha <= 1 / 3 + 1e-12:
    raise ValueError(f"alpha must lie in [0, 1/3], got {alpha}")
  if history == ():
    p_bet = (alpha, 0.0, 3 * alpha)[card]
    return {"bet": p_bet, "check": 1 - p_bet}
  if history == ("check", "bet"):
    p_call = (0.0, alpha + 1 / 3, 1.0)[card]
    return {"call": p_call, "fold": 1 - p_call}
  if history == ("bet",):
    p_call = (0.0, 1 / 3, 1.0)[card]
    return {"call": p_call, "fold": 1 - p_call}
  if history == ("check",):
    p_bet = (1 / 3, 0.0, 1.0)[card]
    return {"bet": p_bet, "check": 1 - p_bet}
  raise ValueError(f"no decision after {history}")


def _sample(probs: dict[str, float], rng: np.random.Generator) -> str:
  actions = list(probs)
  p = np.clip(np.array([probs[a] for a in actions]), 0.0, None)
  return actions[int(rng.choice(len(actions), p=p / p.sum()))]


def strong_policy(alpha: float = 1 / 3, **_) -> Callable[[Env, np.random.Generator], str]:
  """The alpha-parameterised Nash-equilibrium strategy for whichever player is to act."""

  def act(env: Env, rng: np.random.Generator) -> str:
    role = len(env.history) % 2
    return _sample(nash_strategy(env.cards[role], env.history, alpha), rng)

  return act


def weak_policy(**_) -> Callable[[Env, np.random.Generator], str]:
  """A uniformly random legal action."""

  def act(env: Env, rng: np.random.Generator) -> str:
    legal = LEGAL[env.history]
    return legal[int(rng.integers(len(legal)))]

  return act


register("kuhn_poker", KuhnPoker, policies={"strong": strong_policy, "weak": weak_policy},
         budget=TokenBudget(96, 4),
         normalizer=Normalizer(weak=-0.192, dataset=-0.151, strong=-0.096))
