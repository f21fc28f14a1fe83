"""Rules, parser, observations and scripted policies of the Text-Nav house."""

from __future__ import annotations

import numpy as np
import pytest

from agentrl.envs import play, text_nav
from agentrl.envs.text_nav import TextNav


def _env_in(room: str, observed: str = "full", **kwargs) -> TextNav:
  env = TextNav(observed=observed, **kwargs)
  env.reset(0)
  env.room = room
  return env


def test_house_layout():
  assert len(text_nav.ROOMS) == 10
  for room, exits in text_nav.EXITS.items():
    for other in exits.values():
      assert room in text_nav.EXITS[other].values()  # doors work both ways
  assert text_nav.EXITS["living room"] == {"north": "garden", "east": "dining room",
                                           "south": "hallway", "west": "study"}
  assert all(text_nav.RECEPTACLES[rec][0] in text_nav.ROOMS
             for _, rec in text_nav.OBJECTS.values())


@pytest.mark.parametrize("start,goal,dist,first", [
    ("garage", "pantry", 5, "north"), ("bathroom", "living room", 2, "west"),
    ("study", "kitchen", 3, "east"), ("bedroom", "garden", 3, "north"),
    ("kitchen", "kitchen", 0, ""), ("bedroom", "living room", 2, None),
])
def test_routes_by_hand(start, goal, dist, first):
  d, direction = text_nav.ROUTES[(start, goal)]
  assert d == dist and (first is None or direction == first)


def test_optimal_turns_by_hand():
  # bathroom -> hallway -> living room, take, -> dining room -> kitchen, put.
  assert text_nav.optimal_turns("bathroom") == 6
  assert text_nav.optimal_turns("living room") == 4
  assert text_nav.optimal_turns("kitchen") == 6  # there and back


@pytest.mark.parametrize("text,cmd", [
    ("go north", ("go", "north")), ("N", ("go", "north")), ("move east.", ("go", "east")),
    ("Go to the Kitchen!", ("go to", "kitchen")), ("enter dining room", ("go to", "dining room")),
    ("walk to the living", ("go to", "living room")),
    ("take the stale food", ("take", "stale food")), ("pick up food", ("take", "stale food")),
    ("take food from the coffee table", ("take", "stale food")),
    ("put the stale food into the fridge", ("put", "stale food", "fridge")),
    ("place food in fridge", ("put", "stale food", "fridge")),
    ("put plate on the dining table", ("put", "dirty plate", "dining table")),
    ("drop the keys", ("drop", "keys")), ("look", ("look",)), ("I", ("inventory",)),
    ("", None), ("\x00\xff", None), ("dance wildly", None),
])
def test_parser(text, cmd):
  assert text_nav.parse(text) == cmd


def test_solving_by_hand_with_a_detour():
  env = _env_in("living room")
  step = env.step("take the stale food")
  assert step.reward == 0.0 and env.where["stale food"] == text_nav.CARRIED
  assert "You are carrying: some stale food." in step.observation
  step = env.step("go to the dining room")
  assert env.room == "dining room" and not step.info["invalid_action"]
  step = env.step("go east")
  assert env.room == "kitchen" and "put stale food in fridge" in step.observation
  step = env.step("put the food on the counter")  # wrong receptacle: no reward
  assert step.reward == 0.0 and not step.last and env.where["stale food"] == "counter"
  assert "On the counter you see some stale food and a mug." in step.observation
  env.step("take stale food")
  step = env.step("put stale food in fridge")
  assert step.done and step.reward == 1.0 and step.info["success"]


def test_invalid_commands():
  env = _env_in("bathroom")
  for action, reason in [("go north", "no exit"), ("go to the kitchen", "not next door"),
                         ("take stale food", "no stale food here"),
                         ("put food in fridge", "not carrying"), ("sing", "not a command"),
                         ("go to the moon", "no room called")]:
    step = env.step(action)
    assert step.info["invalid_action"] and step.reward == 0.0 and reason in step.observation
    assert "Admissible commands: go west, look, inventory." in step.observation
  assert env.room == "bathroom"


def test_full_and_partial_observations():
  full = _env_in("dining room").describe()
  partial = _env_in("dining room", observed="partial").describe()
  assert "-= Dining Room =-" in full and "east to the kitchen" in full
  assert "You are carrying: nothing." in full
  assert "the stale food is on the coffee table in the living room" in full
  for hidden in ("dining room", "kitchen", "carrying", "coffee table", "stale food"):
    assert hidden not in partial
  assert "Exits: east, west." in partial and "a dining table" in partial
  first = TextNav(observed="partial").reset(1).observation
  assert first.startswith("Your task: pick up the stale food in the living room and put it "
                          "in the fridge in the kitchen.")


def test_truncation_after_50_turns():
  env = TextNav()
  env.reset(0)
  step = None
  for _ in range(50):
    step = env.step("look")
  assert step.truncated and not step.done and step.reward == 0.0


@pytest.mark.parametrize("observed,random_task", [("full", False), ("partial", True)])
def test_strong_policy_is_optimal(observed, random_task):
  env = TextNav(observed=observed, random_task=random_task)
  strong = text_nav.strong_policy()
  tasks = set()
  for seed in range(60):
    [episode] = play(env, strong, seed=seed)
    start = episode.task_id.split("@")[1]
    assert episode.success and episode.episode_return == 1.0
    assert episode.num_turns == text_nav.optimal_turns(start, env.target, env.receptacle)
    tasks.add((env.target, env.receptacle))
  assert len(tasks) > 3 if random_task else tasks == {("stale food", "fridge")}


def test_strong_beats_noisy_beats_weak():
  env = TextNav()
  success = {}
  for name in ("strong", "noisy", "weak"):
    policy = text_nav._POLICIES[name]()
    success[name] = np.mean([play(env, policy, seed=s)[0].success for s in range(100)])
  assert success["strong"] == 1.0
  assert 0.2 < success["noisy"] < 0.9 and success["weak"] < 0.1
