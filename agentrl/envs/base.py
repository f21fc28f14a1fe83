"""The multi-turn text environment protocol, scripted policies and the direct episode runner.

An environment is a Python object that plays one episode at a time:

  env = agentrl.envs.make("twenty_questions")
  step = env.reset(seed=3)                  # the task is a pure function of the seed
  while not step.last:
    step = env.step("Is it an animal?")     # any string: bad actions never raise

`reset` and `step` return a `TimeStep`. `done` is a true terminal (the task was solved or
failed for good); `truncated` is the turn limit, and the two stay distinct so estimators
bootstrap only at truncations. A bad action (empty, huge, binary, unparseable, illegal) is
answered with an observation that says so, consumes the turn, and sets
`info["invalid_action"]`. The base class itself refuses actions over `MAX_ACTION_CHARS`
characters and actions containing control characters, before the game parses anything.

Two-player games set `num_roles = 2`: `TimeStep.to_play` names the role that acts next, the
observation is addressed to that role only (hidden information stays hidden), and
`TimeStep.rewards` carries one reward per role for the step just taken.

Scripted policies are plain callables `policy(env, rng) -> str`. They may read the
environment's task state (the strong ones are privileged upper bounds, like LMRL-Gym's
scripted Wordle and maze solvers), and `env.messages(role)` for the conversation so far.
"""

from __future__ import annotations

import abc
import dataclasses
import re
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np

#: Actions longer than this many characters are refused before any parsing.
MAX_ACTION_CHARS = 1000

# Control characters other than tab / newline / carriage return, and lone surrogates: an
# action that contains one is binary garbage, whatever else it contains.
_BINARY = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


@dataclasses.dataclass(frozen=True)
class TimeStep:
  """What the environment returns from `reset` and `step`.

  Attributes:
    observation: Text for the role that acts next (`to_play`); on the last step, the closing
      message of the episode.
    reward: Reward of the role that just acted (0 after `reset`).
    done: True terminal: the episode is over and its value is exactly its rewards.
    truncated: The turn limit ended the episode; its value should be bootstrapped.
    to_play: Role that acts next (always 0 in single-agent environments).
    rewards: Per-role rewards of this step in multi-role environments, else None.
    info: `task_id`, `turn`, `success`, `invalid_action` (and the reason), plus extras.
  """

  observation: str
  reward: float = 0.0
  done: bool = False
  truncated: bool = False
  to_play: int = 0
  rewards: tuple[float, ...] | None = None
  info: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  @property
  def last(self) -> bool:
    """The episode is over (terminal or truncated)."""
    return self.done or self.truncated


class Env(abc.ABC):
  """Base class of the text environments; subclasses implement `_reset` and `_step`.

  The base class owns the bookkeeping every environment shares: seeding, the turn counter,
  truncation at `max_turns`, the per-role message log, coercion of non-string actions, the
  length limit on actions, and the `info` keys. Subclasses only describe their game.

  Subclass contract:
    * `_reset(rng)` picks the task with `rng` (a seeded numpy Generator), sets
      `self.task_id` (a string naming the task, e.g. the hidden word) and returns the first
      observation.
    * `_step(action)` returns a `TimeStep` for one (already length-checked) action; it must
      not raise on any string. `invalid(...)` builds the answer to a bad action.
    * `instructions(role)` is the system prompt for a role.
  """

  name: ClassVar[str] = "env"
  num_roles: ClassVar[int] = 1

  def __init__(self, *, max_turns: int):
    if max_turns < 1:
      raise ValueError(f"max_turns must be >= 1, got {max_turns}")
    self.max_turns = max_turns
    self.task_id = ""
    self.seed: int | None = None
    self.turn = 0
    self.to_play = 0
    self._finished = True
    self._messages: list[list[dict[str, str]]] = [[] for _ in range(self.num_roles)]

  # --- the protocol -----------------------------------------------------------------------

  def reset(self, seed: int) -> TimeStep:
    """Starts the episode of task `seed` (deterministic) and returns the first observation."""
    self.seed = int(seed)
    self.turn, self.to_play, self._finished = 0, 0, False
    self._messages = [[] for _ in range(self.num_roles)]
    observation = self._reset(np.random.default_rng(self.seed))
    self._log(self.to_play, "user", observation)
    return TimeStep(observation, to_play=self.to_play,
                    info={"task_id": self.task_id, "turn": 0, "success": False,
                          "invalid_action": False})

  def step(self, action: str) -> TimeStep:
    """Plays `action` for the role `to_play`; never raises on the content of `action`."""
    if self._finished:
      raise RuntimeError(f"{self.name}: step() called after the episode ended; call reset().")
    action = as_text(action)
    actor = self.to_play
    self._log(actor, "assistant", action)
    self.turn += 1
    if len(action) > MAX_ACTION_CHARS:
      step = self._refuse(f"the action is {len(action)} characters long, the limit is "
                          f"{MAX_ACTION_CHARS}")
    elif _BINARY.search(action):
      step = self._refuse("the action contains control characters (binary data)")
    else:
      step = self._step(action)
    if not step.done and self.turn >= self.max_turns:
      step = dataclasses.replace(step, truncated=True)
    info = {"task_id": self.task_id, "turn": self.turn, "success": False,
            "invalid_action": False, **step.info}
    step = dataclasses.replace(step, info=info)
    self.to_play = step.to_play
    self._finished = step.last
    self._log(step.to_play, "user", step.observation)
    return step

  def instructions(self, role: int = 0) -> str:
    """The system prompt that explains the task to `role`."""
    del role
    return ""

  def reference_answer(self) -> str | None:
    """The ground-truth final action of the current task (the correct guess, rule or answer),
    phrased as the strong scripted policy would say it; None where a task has no single answer
    (navigation, games). Information-gain credit (IGPO, A2TGPO) measures the policy's
    probability of this text after each turn."""
    return None

  def messages(self, role: int = 0) -> list[dict[str, str]]:
    """The conversation so far as `role` saw it (system prompt excluded)."""
    return list(self._messages[role])

  def invalid(self, reason: str, hint: str = "", **extra) -> TimeStep:
    """The answer to a bad action: an observation naming `reason`, the turn consumed.

    Subclasses override `invalid_reward` when a bad action costs more than a normal turn.
    """
    observation = f"Invalid action: {reason}." + (f" {hint}" if hint else "")
    return TimeStep(observation, reward=self.invalid_reward, to_play=self.to_play,
                    rewards=self._invalid_rewards(),
                    info={"invalid_action": True, "invalid_reason": reason, **extra})

  #: Reward of a turn spent on a bad action.
  invalid_reward: ClassVar[float] = 0.0

  #: Reward of an ordinary turn that does not end the episode (the per-turn cost of games
  #: such as Maze or Twenty Questions). `rollout` completes an episode that the token budget
  #: cut with this reward for every turn left to `max_turns` (stats["scored_return"]), so
  #: that running out of context never scores better than running out of turns.
  turn_reward: ClassVar[float] = 0.0

  # --- for subclasses ---------------------------------------------------------------------

  @abc.abstractmethod
  def _reset(self, rng: np.random.Generator) -> str:
    """Chooses the task from `rng`, sets `self.task_id`, returns the first observation."""

  @abc.abstractmethod
  def _step(self, action: str) -> TimeStep:
    """One turn; `to_play` in the result is the next role (single-agent: 0)."""

  def _refuse(self, reason: str) -> TimeStep:
    """The answer to an action the base class refuses before parsing (too long, binary).

    Defaults to `invalid(reason)`; a game whose oracle has a fixed reply to anything it does
    not understand (Twenty Questions' "Invalid question.") overrides this.
    """
    return self.invalid(reason)

  def _invalid_rewards(self) -> tuple[float, ...] | None:
    if self.num_roles == 1:
      return None
    rewards = [0.0] * self.num_roles
    rewards[self.to_play] = self.invalid_reward
    return tuple(rewards)

  def _log(self, role: int, speaker: str, text: str):
    self._messages[role].append({"role": speaker, "content": text})

  def __repr__(self) -> str:
    return f"{type(self).__name__}(task_id={self.task_id!r}, turn={self.turn})"


def as_text(action: Any) -> str:
  """Strings pass through; bytes are decoded leniently; anything else becomes its repr."""
  if isinstance(action, str):
    return action
  if isinstance(action, (bytes, bytearray)):
    return bytes(action).decode("utf-8", errors="replace")
  return repr(action)


# --- scripted policies and the direct episode runner ---------------------------------------

#: A scripted policy: reads the environment (and its messages) and returns an action string.
Policy = Callable[[Env, np.random.Generator], str]


@dataclasses.dataclass
class Episode:
  """One role's view of a finished episode, as text: what datasets store and rollouts return.

  Attributes:
    env: Registry name of the environment.
    seed: Task seed the episode was reset with.
    task_id: The task (hidden word, city, maze start, ...).
    role: The role whose conversation this is.
    system: The system prompt of that role.
    messages: Alternating user (observation) and assistant (action) messages, starting with
      the first observation and ending with the last action (the closing observation is in
      `final_observation`, since no action follows it).
    rewards: Reward after each of this role's turns (multi-role: everything this role
      received until its next turn or the end).
    done: The episode ended in a true terminal (False when truncated).
    success: The environment's success flag at the end, for this role.
    final_observation: The closing message of the episode.
    invalid_actions: How many of this role's actions were invalid.
  """

  env: str
  seed: int
  task_id: str
  role: int
  system: str
  messages: list[dict[str, str]]
  rewards: list[float]
  done: bool
  success: bool
  final_observation: str = ""
  invalid_actions: int = 0

  @property
  def num_turns(self) -> int:
    return len(self.rewards)

  @property
  def episode_return(self) -> float:
    return float(sum(self.rewards))

  @property
  def actions(self) -> list[str]:
    return [m["content"] for m in self.messages if m["role"] == "assistant"]


class EpisodeRecorder:
  """Builds the per-role `Episode`s of one environment episode, step by step.

  Used by both the direct runner (`play`) and the model rollout, so that the two agree on
  how rewards are attributed to turns.
  """

  def __init__(self, env: Env, first: TimeStep):
    self.env = env
    n = env.num_roles
    self.episodes = [Episode(env=env.name, seed=env.seed, task_id=env.task_id, role=r,
                             system=env.instructions(r), messages=[], rewards=[], done=False,
                             success=False) for r in range(n)]
    self._pending = [None] * n  # observation not yet followed by an action, per role
    self._pending[first.to_play] = first.observation

  def record(self, actor: int, action: str, step: TimeStep):
    """Adds `actor`'s `action` and the environment's answer `step`."""
    episode = self.episodes[actor]
    episode.messages += [{"role": "user", "content": self._pending[actor]},
                         {"role": "assistant", "content": action}]
    self._pending[actor] = None
    episode.rewards.append(0.0)
    episode.invalid_actions += int(bool(step.info.get("invalid_action", False)))
    rewards = step.rewards if step.rewards is not None else (step.reward,)
    for role, reward in enumerate(rewards):
      if self.episodes[role].rewards:  # A role is credited on its latest turn.
        self.episodes[role].rewards[-1] += float(reward)
    if step.last:
      success = step.info.get("success", False)
      for role, episode in enumerate(self.episodes):
        episode.done = step.done
        episode.final_observation = step.observation
        episode.success = bool(success[role] if isinstance(success, (list, tuple)) else success)
    else:
      self._pending[step.to_play] = step.observation


def play(env: Env, policies: Policy | Sequence[Policy], seed: int,
         rng: np.random.Generator | int | None = None) -> list[Episode]:
  """Plays one episode of task `seed` with scripted policies (one per role, or one for all).

  Returns one `Episode` per role (a one-element list for single-agent environments).
  """
  if callable(policies):
    policies = [policies] * env.num_roles
  if len(policies) != env.num_roles:
    raise ValueError(f"{env.name} has {env.num_roles} roles, got {len(policies)} policies")
  rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(
      seed if rng is None else rng)
  step = env.reset(seed)
  recorder = EpisodeRecorder(env, step)
  while not step.last:
    actor = step.to_play
    action = policies[actor](env, rng)
    step = env.step(action)
    recorder.record(actor, action, step)
  return recorder.episodes
