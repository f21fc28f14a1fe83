"""The protocol every registered environment keeps: determinism, bad actions, limits, bounds.

Environment-specific rules are tested in tests/test_env_<name>.py.
"""

import math

from hypothesis import given, settings, strategies as st
import numpy as np
import pytest

from agentrl import envs

NAMES = envs.names()

# Actions no environment can parse.
GARBAGE = st.one_of(
    st.just(""), st.text(alphabet=" \t\n", max_size=20),
    st.binary(min_size=1, max_size=64).map(lambda b: "\x00" + b.decode("latin-1")),
    st.text(alphabet=st.characters(categories=["Cc", "Co", "So"]), min_size=1, max_size=30),
    st.integers(envs.MAX_ACTION_CHARS + 1, 4 * envs.MAX_ACTION_CHARS).map(lambda n: "a" * n),
)


def test_registry_has_every_environment_of_the_catalogue():
  for name in ("twenty_questions", "twenty_questions_subset", "guess_my_city", "wordle", "maze_fo",
               "maze_po", "text_nav_fo", "text_nav_po", "wilt", "kuhn_poker", "tictactoe",
               "arithmetic_try_again"):
    assert name in NAMES
  with pytest.raises(ValueError, match="valid names"):
    envs.make("twenty_question")


@pytest.mark.parametrize("name", NAMES)
def test_reset_is_deterministic_and_seeds_pick_tasks(name):
  env_a, env_b = envs.make(name), envs.make(name)
  tasks = set()
  for seed in range(20):
    a, b = env_a.reset(seed), env_b.reset(seed)
    assert a.observation == b.observation and env_a.task_id == env_b.task_id
    assert isinstance(a.observation, str) and a.info["task_id"] == env_a.task_id
    assert not a.last and a.reward == 0
    tasks.add(env_a.task_id)
  assert len(tasks) > 1 or name == "tictactoe"  # One task: the empty board.


@pytest.mark.parametrize("name", NAMES)
def test_scripted_episodes_are_deterministic(name):
  for which in ("strong", "weak"):
    policy = envs.policy(name, which)
    first = envs.play(envs.make(name), policy, seed=7, rng=1)
    second = envs.play(envs.make(name), policy, seed=7, rng=1)
    assert [e.messages for e in first] == [e.messages for e in second]
    assert [e.rewards for e in first] == [e.rewards for e in second]


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=25, deadline=None)
@given(action=GARBAGE, seed=st.integers(0, 2**31 - 1))
def test_garbage_is_an_invalid_action_that_consumes_the_turn(name, action, seed):
  env = envs.make(name)
  env.reset(seed)
  step = env.step(action)
  assert step.info["invalid_action"], (name, action[:50], step.observation)
  assert env.turn == 1 and isinstance(step.observation, str) and step.observation
  assert math.isfinite(step.reward)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=25, deadline=None)
@given(actions=st.lists(st.one_of(st.text(max_size=80), GARBAGE), min_size=1, max_size=8),
       seed=st.integers(0, 2**31 - 1))
def test_any_text_never_raises(name, actions, seed):
  env = envs.make(name)
  step = env.reset(seed)
  for turn, action in enumerate(actions, 1):
    if step.last:
      break
    step = env.step(action)
    assert env.turn == turn and isinstance(step.observation, str)
    assert 0 <= step.to_play < env.num_roles
    assert math.isfinite(step.reward)
    if step.rewards is not None:
      assert len(step.rewards) == env.num_roles


@pytest.mark.parametrize("name", NAMES)
def test_turn_limit_truncates_and_the_episode_then_refuses_steps(name):
  env = envs.make(name)
  step = env.reset(0)
  while not step.last:
    step = env.step("")
  assert env.turn == env.max_turns
  # Running out of turns is a truncation, unless the game itself ends there (Wordle's sixth
  # guess is a loss: a true terminal).
  assert step.truncated != step.done
  with pytest.raises(RuntimeError, match="reset"):
    env.step("")


@pytest.mark.parametrize("name", NAMES)
def test_strong_policy_beats_weak_policy(name):
  """Role 0's return; in two-player games against the strong policy as the opponent."""
  def mean_return(which):
    policy = envs.policy(name, which)
    env = envs.make(name)
    policies = [policy] + [envs.policy(name, "strong")] * (env.num_roles - 1)
    returns = [envs.play(env, policies, seed=s, rng=s)[0].episode_return for s in range(60)]
    return float(np.mean(returns))
  assert mean_return("strong") > mean_return("weak")


ANSWERED = ("twenty_questions", "twenty_questions_subset", "guess_my_city", "wordle", "wilt",
            "arithmetic_try_again")


@pytest.mark.parametrize("name", NAMES)
def test_reference_answer_solves_the_task_at_once(name):
  """The ground-truth answer (information-gain credit scores it) is a winning first action;
  environments without a single answer say None."""
  env = envs.make(name)
  for seed in (3, 11):
    env.reset(seed)
    answer = env.reference_answer()
    if name not in ANSWERED:
      assert answer is None
      continue
    step = env.step(answer)
    assert step.done and step.info["success"], (name, seed, answer, step.observation)
