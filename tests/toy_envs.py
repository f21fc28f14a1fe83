"""Two tiny environments for testing the protocol, the rollout and the datasets.

`GuessNumber` (one role): find a hidden number in [1, 8]; the answer is "higher" / "lower".
`Echo` (one role): each turn the environment names a number in [1, 4]; saying it back earns 1,
another number 0, anything else -1 (an invalid action). Value-based methods (ArCHer, CHAI) learn
it from a policy that answers at random.
`Nim` (two roles): take 1 or 2 stones from a pile; who takes the last stone wins. Each role is
also told a private secret, to check that rows never see the other role's observations.
"""

from __future__ import annotations

import dataclasses
import re

from agentrl.envs.base import Env, TimeStep

_NUMBER = re.compile(r"-?\d+")


class GuessNumber(Env):
  name = "_toy_guess_number"
  invalid_reward = -1.0
  turn_reward = -1.0

  def __init__(self, max_turns: int = 6):
    super().__init__(max_turns=max_turns)

  def instructions(self, role: int = 0) -> str:
    return "Guess my number between 1 and 8."

  def reference_answer(self) -> str:
    return f"I guess {self.target}"

  def _reset(self, rng):
    self.target = int(rng.integers(1, 9))
    self.task_id = str(self.target)
    return "Your first guess?"

  def _step(self, action):
    found = _NUMBER.findall(action)
    if not found:
      return self.invalid("no number in the guess", "Answer with a number.")
    guess = int(found[-1])
    if guess == self.target:
      return TimeStep("Correct!", reward=0.0, done=True, info={"success": True})
    return TimeStep("higher" if guess < self.target else "lower", reward=-1.0)


def bisect_policy(env, rng):
  """Binary search over the answers so far (uses only the conversation)."""
  lo, hi = 1, 8
  messages = env.messages()
  for asked, answer in zip(messages[1::2], messages[2::2]):
    guess = int(asked["content"].split()[-1])
    if answer["content"] == "higher":
      lo = guess + 1
    elif answer["content"] == "lower":
      hi = guess - 1
  return f"I guess {(lo + hi) // 2}"


def random_policy(env, rng):
  return "maybe" if rng.random() < 0.2 else str(int(rng.integers(1, 9)))


class Echo(Env):
  name = "_toy_echo"
  invalid_reward = -1.0

  def __init__(self, max_turns: int = 2):
    super().__init__(max_turns=max_turns)

  def instructions(self, role: int = 0) -> str:
    return "Repeat the number."

  def _reset(self, rng):
    self.rng = rng
    self.target = int(rng.integers(1, 5))
    self.task_id = str(self.target)
    self.hits = 0
    return f"Say {self.target}."

  def _step(self, action):
    found = _NUMBER.findall(action)
    last = self.turn >= self.max_turns
    if not found or not 1 <= int(found[-1]) <= 4:
      step = self.invalid("not a number from 1 to 4")
      return dataclasses.replace(step, done=True) if last else self._next(step)
    hit = int(found[-1]) == self.target
    self.hits += hit
    if last:
      return TimeStep("Done.", reward=float(hit), done=True,
                      info={"success": self.hits == self.max_turns})
    return self._next(TimeStep("", reward=float(hit)))

  def _next(self, step):
    self.target = int(self.rng.integers(1, 5))
    return dataclasses.replace(step, observation=f"{step.observation} Say {self.target}.".strip())


def echo_policy(env, rng):
  return str(env.target)


def random_echo_policy(env, rng):
  return str(int(rng.integers(1, 5)))


class Nim(Env):
  name = "_toy_nim"
  num_roles = 2

  def __init__(self, max_turns: int = 12):
    super().__init__(max_turns=max_turns)

  def instructions(self, role: int = 0) -> str:
    return f"You are player {role}. Take 1 or 2 stones; whoever takes the last stone wins."

  def _reset(self, rng):
    self.stones = int(rng.integers(4, 9))
    self.secrets = [int(x) for x in rng.integers(100, 1000, size=2)]
    self.task_id = str(self.stones)
    return self._observation(0)

  def _observation(self, role):
    return f"Secret {self.secrets[role]}. There are {self.stones} stones. Your move."

  def _step(self, action):
    found = _NUMBER.findall(action)
    take = int(found[-1]) if found else 0
    if take not in (1, 2) or take > self.stones:
      return self.invalid("take 1 or 2 stones", self._observation(self.to_play))
    self.stones -= take
    actor = self.to_play
    if self.stones == 0:
      rewards = [-1.0, -1.0]
      rewards[actor] = 1.0
      return TimeStep(f"Player {actor} took the last stone.", reward=1.0, done=True,
                      rewards=tuple(rewards), to_play=actor,
                      info={"success": tuple(r > 0 for r in rewards)})
    return TimeStep(self._observation(1 - actor), to_play=1 - actor, rewards=(0.0, 0.0))


def nim_policy(env, rng):
  """Optimal play: leave a multiple of 3 when possible."""
  return f"take {env.stones % 3 or 1}"
