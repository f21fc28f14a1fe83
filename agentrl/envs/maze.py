"""LMRL-Gym's maze: walk a double-T maze to the goal, fully or partially observed.

Game: the 10x13 double-T maze of LMRL-Gym (`double_t_maze`, after mazelab) with the goal at row
8, column 6 (0-based, row 0 at the top). There are 26 free cells, so 25 starting cells; the
reset seed picks one uniformly.

    #############
    #.....#.....#      row 1
    ###.#####.###
    ###.#####.###
    ###.#####.###
    ###.......###      row 5
    ######.######
    ######.######
    ######G######      row 8: the goal (8, 6)
    #############

Actions: "move left", "move right", "move up", "move down" (up = row - 1). Parsing is tolerant:
case, punctuation and extra words are ignored, a bare "left" works, and north/south/east/west
mean up/down/right/left; text naming no direction or several is invalid.

Observations (LMRL-Gym's wording, numbers written digit by digit as it does, so column 11 is
"1 1"; walls listed in the order right, left, above, below):
  * observed="full" (`describe_observation_give_position`): "The goal is at position 8, 6.
    Your current position is at position 5, 3. There are walls to your left, below you."
  * observed="partial" (`describe_observation_only_walls`): "There are walls to your left,
    below you." The agent must track its position from its own moves.
Reaching the goal ends the episode with the observation "Success".

Reward (LMRL-Gym's `standard_reward`): -1 per move, 0 for the move that reaches the goal
(done, success), -4 for text that is not a move (the position does not change). Walking into
a wall leaves the position unchanged and costs -1 like any move.

Horizon: `max_turns` = 100 turns, then the episode is truncated (not done). LMRL-Gym instead
answers a 101st action with "Failure" and a further -1 (min return -101); here the turn limit
is a truncation to be bootstrapped, so the lowest return with valid moves is -100 (-400 with
only invalid text). Turns spent on invalid text count towards the limit.

Scripted policies:
  * "strong": shortest path by breadth-first search from the goal (privileged: it reads the
    environment's position, so for the partially observed maze it is an upper bound).
  * "weak": a uniformly random move each turn.
  * "noisy": LMRL-Gym's data mixture, per turn a shortest-path move w.p. 0.15, else random.
"""

from __future__ import annotations

import collections
import re

import numpy as np

from agentrl.envs import Normalizer, TokenBudget, register
from agentrl.envs.base import Env, Policy, TimeStep

#: LMRL-Gym's double-T maze: 1 = wall, 0 = free.
DOUBLE_T_MAZE = np.array([
    [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
    [1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1],
    [1, 1, 1, 0, 1, 1, 1, 1, 1, 0, 1, 1, 1],
    [1, 1, 1, 0, 1, 1, 1, 1, 1, 0, 1, 1, 1],
    [1, 1, 1, 0, 1, 1, 1, 1, 1, 0, 1, 1, 1],
    [1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1],
    [1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1],
    [1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1],
    [1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1],
    [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
], dtype=np.uint8)
GOAL = (8, 6)

#: Move name -> (row delta, column delta).
MOVES = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}
#: The wall sentence's relations, in LMRL-Gym's order.
_RELATIONS = (("to your right", (0, 1)), ("to your left", (0, -1)), ("above you", (-1, 0)),
              ("below you", (1, 0)))
_ALIASES = {"left": "left", "west": "left", "right": "right", "east": "right", "up": "up",
            "north": "up", "down": "down", "south": "down"}
_WORDS = re.compile(r"[a-z]+")

ILLEGAL_REWARD = -4.0


def parse_move(action: str) -> str | None:
  """The direction named in `action` ("left", "right", "up", "down"), or None.

  None when the text names no direction or several different ones.
  """
  found = {_ALIASES[w] for w in _WORDS.findall(action.lower()) if w in _ALIASES}
  return found.pop() if len(found) == 1 else None


def _digits(n: int) -> str:
  return " ".join(str(n))


def describe_walls(maze: np.ndarray, position: tuple[int, int]) -> str:
  """LMRL-Gym's wall sentence for `position`."""
  r, c = position
  walls = [name for name, (dr, dc) in _RELATIONS if maze[r + dr, c + dc]]
  if not walls:
    return "There are no walls near you."
  if len(walls) == 1:
    return f"There is a wall {walls[0]}."
  return f"There are walls {', '.join(walls)}."


def describe(maze: np.ndarray, position: tuple[int, int], goal: tuple[int, int],
             observed: str) -> str:
  """The observation at `position`: full (goal, position and walls) or partial (walls)."""
  walls = describe_walls(maze, position)
  if observed == "partial":
    return walls
  return (f"The goal is at position {_digits(goal[0])}, {_digits(goal[1])}. Your current "
          f"position is at position {_digits(position[0])}, {_digits(position[1])}. {walls}")


def distances(maze: np.ndarray, goal: tuple[int, int]) -> dict[tuple[int, int], int]:
  """Shortest number of moves from every reachable free cell to `goal` (breadth-first)."""
  dist = {goal: 0}
  queue = collections.deque([goal])
  while queue:
    r, c = queue.popleft()
    for dr, dc in MOVES.values():
      nxt = (r + dr, c + dc)
      if not maze[nxt] and nxt not in dist:
        dist[nxt] = dist[(r, c)] + 1
        queue.append(nxt)
  return dist


def _best_moves(maze: np.ndarray, dist: dict[tuple[int, int], int]) -> dict[tuple[int, int], str]:
  best = {}
  for (r, c), d in dist.items():
    for move, (dr, dc) in MOVES.items():
      if dist.get((r + dr, c + dc), d) == d - 1:
        best[(r, c)] = move
        break
  return best


class Maze(Env):
  """LMRL-Gym's double-T maze with fully or partially observed text observations.

  Args:
    observed: "full" (goal, position and walls) or "partial" (walls only).
    max_turns: Turn limit (truncation).
  """

  name = "maze"
  invalid_reward = ILLEGAL_REWARD
  turn_reward = -1.0

  def __init__(self, *, observed: str = "full", max_turns: int = 100):
    if observed not in ("full", "partial"):
      raise ValueError(f"observed must be 'full' or 'partial', got {observed!r}")
    super().__init__(max_turns=max_turns)
    self.observed = observed
    self.maze = DOUBLE_T_MAZE
    self.goal = GOAL
    self.dist = distances(self.maze, self.goal)
    self.best_move = _best_moves(self.maze, self.dist)
    self.starts = sorted(p for p in self.dist if p != self.goal)
    self.position = self.starts[0]
    self._text = {p: describe(self.maze, p, self.goal, observed) for p in self.dist}

  def instructions(self, role: int = 0) -> str:
    del role
    where = ("Each observation gives the goal's position, your position (row, column; rows "
             "grow downwards) and the walls next to you." if self.observed == "full" else
             "Each observation only tells you which of the four cells next to you are walls; "
             "keep track of where you are from your moves.")
    return ("You are in a maze and must reach the goal. Each turn, answer with one move: "
            "\"move left\", \"move right\", \"move up\" or \"move down\". Walking into a wall "
            f"leaves you where you are. {where} Every move costs 1 point; reaching the goal "
            "ends the game.")

  def _reset(self, rng: np.random.Generator) -> str:
    self.position = self.starts[int(rng.integers(len(self.starts)))]
    self.task_id = f"{self.position[0]},{self.position[1]}"
    return self._text[self.position]

  def _step(self, action: str) -> TimeStep:
    move = parse_move(action)
    if move is None:
      return self.invalid("the answer is not a move",
                          "Answer with one of: move left, move right, move up, move down. "
                          + self._text[self.position])
    dr, dc = MOVES[move]
    nxt = (self.position[0] + dr, self.position[1] + dc)
    bumped = bool(self.maze[nxt])
    if not bumped:
      self.position = nxt
    if self.position == self.goal:
      return TimeStep("Success", reward=0.0, done=True,
                      info={"success": True, "position": self.position})
    return TimeStep(self._text[self.position], reward=-1.0,
                    info={"position": self.position, "bumped": bumped})


# --- scripted policies ----------------------------------------------------------------------


def _move_text(move: str) -> str:
  return f"move {move}"


def strong_policy(**_) -> Policy:
  """Shortest-path moves (reads the environment's position)."""

  def act(env: Maze, rng: np.random.Generator) -> str:
    del rng
    return _move_text(env.best_move[env.position])

  return act


def weak_policy(**_) -> Policy:
  """A uniformly random move."""
  moves = tuple(MOVES)

  def act(env: Maze, rng: np.random.Generator) -> str:
    del env
    return _move_text(moves[int(rng.integers(len(moves)))])

  return act


def noisy_policy(*, optimal: float = 0.15, **_) -> Policy:
  """LMRL-Gym's data mixture: a shortest-path move w.p. `optimal`, else a random move."""
  moves = tuple(MOVES)

  def act(env: Maze, rng: np.random.Generator) -> str:
    if rng.random() < optimal:
      return _move_text(env.best_move[env.position])
    return _move_text(moves[int(rng.integers(len(moves)))])

  return act


def subgoal(env: Env, action: str) -> str:
  """HiPER's subgoal of a move, "go <direction>": a segment is a straight run of moves."""
  del env
  move = parse_move(action)
  return f"go {move}" if move else ""


_POLICIES = {"strong": strong_policy, "weak": weak_policy, "noisy": noisy_policy}
_NORMALIZER = Normalizer(weak=-81.249, dataset=-46.297, strong=-6.781)
_COMMON = dict(policies=_POLICIES, normalizer=_NORMALIZER, subgoal=subgoal)
register("maze", Maze, **_COMMON, observed="full")
# A row holds about 13 (FO) to 22 (PO) of the 100 turns: the strong policy's episodes fit,
# most of the weak policy's do not.
register("maze_fo", Maze, **_COMMON, budget=TokenBudget(512, 6), observed="full")
register("maze_po", Maze, **_COMMON, budget=TokenBudget(384, 6), observed="partial")
