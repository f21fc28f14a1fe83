"""Tic-tac-toe for two players: X (role 0) moves first, O (role 1) second.

Cells are named by a row letter and a column number, "a1" (top left) to "c3" (bottom right);
that is the canonical move format. Aliases: "1a" (the same cell), "row col" with numbers 1-3
("2 3", "(2, 3)", "row 2 column 3" = b3), or a cell number 1-9 in reading order (5 = b2). The
move may be embedded in a sentence ("I play b2."); the first cell name found counts.

Observations (addressed to the player to move) show the opponent's last move, the board as
text, and whose turn it is:

     1 2 3
  a  X . O
  b  . X .
  c  . . .

The game ends when a player completes a row, column or diagonal (rewards +1 for the winner and
-1 for the loser, per role in `TimeStep.rewards`) or the board is full (a draw, 0 each);
`info["success"]` at the end is (X won, O won). An illegal move (occupied cell, garbage) is
invalid: the observation says so, the turn is consumed, the same player moves again, rewards 0.
`max_turns` (default 20) truncates a game that never ends. The seed does not change the start
(the empty board); it names the episode and seeds the scripted policies.

Scripted policies:
  * strong: perfect minimax, memoised over boards; among optimal moves it prefers the fastest
    win and the slowest loss, and breaks remaining ties at random. It never loses.
  * weak: a uniformly random legal move.
"""

from __future__ import annotations

import functools
import re
from typing import Callable

import numpy as np

from agentrl.envs import Normalizer, TokenBudget, register
from agentrl.envs.base import Env, TimeStep

ROWS = "abc"
MARKS = ("X", "O")
LINES = ((0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8), (2, 4, 6))
_LETTER_DIGIT = re.compile(r"(?<![a-z])([abc])\s*-?\s*([123])(?!\d)")
_DIGIT_LETTER = re.compile(r"(?<!\d)([123])\s*([abc])(?![a-z])")
_DIGIT = re.compile(r"(?<![a-z])\d+")


def cell_name(cell: int) -> str:
  """The canonical name ("a1".."c3") of cell 0..8 (reading order)."""
  return f"{ROWS[cell // 3]}{cell % 3 + 1}"


def parse_move(text: str) -> int | None:
  """The cell 0..8 named by `text` (any accepted format), or None."""
  text = text.lower()
  match = _LETTER_DIGIT.search(text) or _DIGIT_LETTER.search(text)
  if match is not None:
    a, b = match.groups()
    letter, digit = (a, b) if a.isalpha() else (b, a)
    return ROWS.index(letter) * 3 + int(digit) - 1
  numbers = _DIGIT.findall(text)
  if len(numbers) == 2 and all(n in ("1", "2", "3") for n in numbers):
    return (int(numbers[0]) - 1) * 3 + int(numbers[1]) - 1
  if len(numbers) == 1 and numbers[0] in tuple("123456789"):
    return int(numbers[0]) - 1
  return None


def winner(board: str) -> str | None:
  """"X" or "O" if that mark has a full line on the 9-character `board`, else None."""
  for i, j, k in LINES:
    if board[i] != "." and board[i] == board[j] == board[k]:
      return board[i]
  return None


def render(board: str) -> str:
  """The board as text, rows a-c and columns 1-3, empty cells as dots."""
  lines = ["   1 2 3"]
  for r in range(3):
    lines.append(f"{ROWS[r]}  " + " ".join(board[3 * r:3 * r + 3]))
  return "\n".join(lines)


@functools.cache
def _value(board: str) -> int:
  """Minimax value for X of `board` (X to move iff the counts are equal), scaled by speed.

  A win for X with e empty cells left scores e + 1, a loss -(e + 1), a draw 0.
  """
  w = winner(board)
  empty = board.count(".")
  if w is not None:
    return (empty + 1) if w == "X" else -(empty + 1)
  if empty == 0:
    return 0
  mark = "X" if empty % 2 == 1 else "O"
  values = [_value(board[:c] + mark + board[c + 1:]) for c in range(9) if board[c] == "."]
  return max(values) if mark == "X" else min(values)


def best_moves(board: str) -> list[int]:
  """All optimal cells for the player to move on a non-terminal `board`."""
  mark = "X" if board.count(".") % 2 == 1 else "O"
  scored = [(_value(board[:c] + mark + board[c + 1:]), c) for c in range(9) if board[c] == "."]
  target = max(v for v, _ in scored) if mark == "X" else min(v for v, _ in scored)
  return [c for v, c in scored if v == target]


class TicTacToe(Env):
  """Tic-tac-toe; role 0 plays X and moves first."""

  name = "tictactoe"
  num_roles = 2

  def __init__(self, *, max_turns: int = 20):
    super().__init__(max_turns=max_turns)
    self.board = "." * 9

  def instructions(self, role: int = 0) -> str:
    return (f"You play tic-tac-toe as {MARKS[role]}; X moves first. Rows are a (top) to c "
            "(bottom), columns 1 (left) to 3 (right). Reply with a free cell, e.g. \"b2\" for "
            "the centre. Three in a row, column or diagonal wins.")

  def _reset(self, rng: np.random.Generator) -> str:
    del rng
    self.board = "." * 9
    self.task_id = "empty"
    return self._prompt("")

  def _prompt(self, last: str) -> str:
    mark = MARKS[self.to_play]
    return f"{last}{render(self.board)}\nYou are {mark}; your move (e.g. b2)."

  def _step(self, action: str) -> TimeStep:
    cell = parse_move(action)
    if cell is None:
      return self.invalid("no cell found", f"Name a free cell, e.g. b2.\n{render(self.board)}")
    if self.board[cell] != ".":
      return self.invalid(f"{cell_name(cell)} is taken",
                          f"Name a free cell.\n{render(self.board)}")
    actor = self.to_play
    mark = MARKS[actor]
    self.board = self.board[:cell] + mark + self.board[cell + 1:]
    last = f"{mark} played {cell_name(cell)}.\n"
    if winner(self.board) is not None:
      rewards = (1.0, -1.0) if actor == 0 else (-1.0, 1.0)
      return TimeStep(f"{last}{render(self.board)}\n{mark} wins.", reward=1.0, done=True,
                      to_play=1 - actor, rewards=rewards,
                      info={"success": (actor == 0, actor == 1)})
    if "." not in self.board:
      return TimeStep(f"{last}{render(self.board)}\nDraw.", done=True, to_play=1 - actor,
                      rewards=(0.0, 0.0), info={"success": (False, False)})
    self.to_play = 1 - actor
    return TimeStep(self._prompt(last), to_play=self.to_play, rewards=(0.0, 0.0))


# --- scripted policies ----------------------------------------------------------------------

def strong_policy(**_) -> Callable[[Env, np.random.Generator], str]:
  """Perfect minimax play (fastest win, slowest loss, random among equals)."""

  def act(env: Env, rng: np.random.Generator) -> str:
    moves = best_moves(env.board)
    return cell_name(moves[int(rng.integers(len(moves)))])

  return act


def weak_policy(**_) -> Callable[[Env, np.random.Generator], str]:
  """A uniformly random free cell."""

  def act(env: Env, rng: np.random.Generator) -> str:
    free = [c for c in range(9) if env.board[c] == "."]
    return cell_name(free[int(rng.integers(len(free)))])

  return act


register("tictactoe", TicTacToe, policies={"strong": strong_policy, "weak": weak_policy},
         budget=TokenBudget(256, 6), normalizer=Normalizer(weak=-0.773, dataset=-0.406, strong=0))
