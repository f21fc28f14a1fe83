"""Rules, observations and scripted policies of LMRL-Gym's double-T maze."""

from __future__ import annotations

import numpy as np
import pytest

from agentrl.envs import maze, play


def _at(position, observed="full") -> maze.Maze:
  env = maze.Maze(observed=observed)
  env.reset(0)
  env.position = position
  return env


def test_layout():
  grid = maze.DOUBLE_T_MAZE
  assert grid.shape == (10, 13) and grid[maze.GOAL] == 0
  assert int((grid == 0).sum()) == 26
  env = maze.Maze()
  assert len(env.starts) == 25 and maze.GOAL not in env.starts
  assert sorted({env.reset(s).info["task_id"] for s in range(400)}) == sorted(
      f"{r},{c}" for r, c in env.starts)


@pytest.mark.parametrize("cell,dist", [
    ((7, 6), 1), ((5, 6), 3), ((5, 3), 6), ((5, 9), 6), ((4, 3), 7), ((2, 9), 9),
    ((1, 3), 10), ((1, 1), 12), ((1, 5), 12), ((1, 11), 12), ((1, 8), 11),
])
def test_bfs_distances_by_hand(cell, dist):
  assert maze.distances(maze.DOUBLE_T_MAZE, maze.GOAL)[cell] == dist


def test_mean_optimal_return_matches_lmrl_gym_normaliser():
  env = maze.Maze()
  # LMRL-Gym's FO maze maximum: -6.84 averaged over the 25 starts.
  assert np.mean([-(env.dist[p] - 1) for p in env.starts]) == pytest.approx(-6.84)


def test_observations():
  assert maze.describe(maze.DOUBLE_T_MAZE, (5, 3), maze.GOAL, "full") == (
      "The goal is at position 8, 6. Your current position is at position 5, 3. "
      "There are walls to your left, below you.")
  assert maze.describe(maze.DOUBLE_T_MAZE, (5, 3), maze.GOAL, "partial") == (
      "There are walls to your left, below you.")
  assert maze.describe_walls(maze.DOUBLE_T_MAZE, (5, 6)) == "There is a wall above you."
  assert maze.describe_walls(maze.DOUBLE_T_MAZE, (1, 1)) == (
      "There are walls to your left, above you, below you.")
  # LMRL-Gym writes numbers digit by digit.
  assert "position 1, 1 1." in maze.describe(maze.DOUBLE_T_MAZE, (1, 11), maze.GOAL, "full")
  env = maze.Maze(observed="partial")
  first = env.reset(4).observation
  assert "position" not in first and first.startswith("There")


@pytest.mark.parametrize("text,move", [
    ("move left", "left"), ("Move Left.\n", "left"), ("left", "left"), ("go west", "left"),
    ("MOVE UP", "up"), ("north", "up"), ("move down", "down"), ("I move right!", "right"),
    ("", None), ("jump", None), ("move left or right", None), ("\x00\xff", None),
])
def test_parse_move(text, move):
  assert maze.parse_move(text) == move


def test_rewards_walls_and_goal():
  env = _at((5, 3))
  step = env.step("move right")
  assert step.reward == -1.0 and env.position == (5, 4) and not step.last
  step = env.step("move up")  # wall above (5, 4)
  assert step.reward == -1.0 and env.position == (5, 4) and step.info["bumped"]
  step = env.step("fly away")
  assert step.reward == -4.0 and step.info["invalid_action"] and env.position == (5, 4)
  env.position = (7, 6)
  step = env.step("move down")
  assert step.done and step.reward == 0.0 and step.info["success"]
  assert step.observation == "Success"


def test_truncation_after_100_turns():
  env = maze.Maze()
  env.reset(0)
  env.position = (1, 1)
  total, step = 0.0, None
  for _ in range(100):
    step = env.step("move left")  # always a wall
    total += step.reward
  assert step.truncated and not step.done and total == -100.0


@pytest.mark.parametrize("observed", ["full", "partial"])
def test_strong_policy_is_optimal_from_every_start(observed):
  env = maze.Maze(observed=observed)
  strong = maze.strong_policy()
  for seed in range(60):
    [episode] = play(env, strong, seed=seed)
    start = tuple(int(x) for x in episode.task_id.split(","))
    assert episode.success and episode.num_turns == env.dist[start]
    assert episode.episode_return == -(env.dist[start] - 1)


def test_strong_beats_noisy_beats_weak():
  env = maze.Maze()
  means = {}
  for name in ("strong", "noisy", "weak"):
    policy = maze._POLICIES[name]()
    means[name] = np.mean([play(env, policy, seed=s)[0].episode_return for s in range(200)])
  assert means["strong"] > -8.0
  assert means["strong"] > means["noisy"] + 20 > means["weak"] + 40
