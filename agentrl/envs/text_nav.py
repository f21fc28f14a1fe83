"""Text-Nav, after LMRL-Gym: carry an object through a ten-room house to its receptacle.

Game: a fixed house of ten rooms joined by doors (its map, furniture, objects, tasks and routes
are in `text_nav_house`, re-exported here).

Furniture (the receptacles) and ten portable objects stay at fixed starting places. The task,
as in LMRL-Gym, is "pick up the stale food in the living room and put it in the fridge in the
kitchen"; the reset seed picks the starting room (any of the ten). With `random_task=True`
the seed also picks the task from `TASKS` (nine object/receptacle pairs in different rooms).

Commands (tolerant parsing: case, punctuation and articles are ignored):
  * "go north|south|east|west" (also "north", "n", "move east", ...) or "go to <room>" for a
    room next door ("enter the kitchen", "walk to the garden");
  * "take <object>" ("pick up", "get", "grab"; "from <receptacle>" may follow);
  * "put <object> in|on <receptacle>" ("place", "insert"), "drop <object>";
  * "look", "inventory" ("i").
Objects and receptacles may be named by their last word when it is unique ("food", "plate").

Observations (TextWorld-like): what the last command did, the room's furniture and the objects
on or in it, the exits, then "Admissible commands: ...". The first observation states the
task. observed="full" also names the room ("-= Kitchen =-") and the rooms behind the exits,
and adds the inventory and where the task's object and receptacle are; observed="partial"
omits all of these, so the agent must remember where it is and what it carries (the
"inventory" command still answers, at the cost of a turn).

Reward: 1 when the object is put in its receptacle (done, success), 0 on every other turn.
A command that cannot be parsed or is not possible here (a wall, an object not in sight) is
invalid: the observation says why and lists the admissible commands; reward 0.

Horizon: `max_turns` = 50 turns, then truncation (LMRL-Gym's episodes average 12 turns).

Deviations from LMRL-Gym: it builds the game with a modified TextWorld; here the house, its
descriptions and the parser are a small self-contained simulator with the same task, reward
and observation split. The randomised task is an option LMRL-Gym does not have.

Scripted policies:
  * "strong" (privileged: reads where the object is): shortest route to the object, take it,
    shortest route to the receptacle, put it there; optimal in the number of turns.
  * "weak": a uniformly random admissible command each turn.
  * "noisy": LMRL-Gym's data policies: greedy (as "strong") in half of the rooms and random
    admissible commands in the others; the half is `HALVES[seed % 2]`, so over seeds this is
    the mixture of its two behaviour policies.
"""

from __future__ import annotations

import collections
import re

import numpy as np

from agentrl.envs import Normalizer, TokenBudget, register
from agentrl.envs.base import Env, Policy, TimeStep
from agentrl.envs.text_nav_house import (  # noqa: F401  (re-exported: the house)
    DIRECTIONS, DOORS, EXITS, OBJECTS, RECEPTACLES, ROOMS, ROUTES, TASKS)

_DIR_ALIASES = {"north": "north", "n": "north", "south": "south", "s": "south", "east": "east",
                "e": "east", "west": "west", "w": "west", "up": "north", "down": "south"}
CARRIED = "inventory"


def _aliases(names) -> dict[str, str]:
  """Full names, plus last words that name exactly one thing."""
  table = {name: name for name in names}
  last = collections.Counter(name.split()[-1] for name in names)
  table.update({name.split()[-1]: name for name in names if last[name.split()[-1]] == 1})
  return table


_OBJECT_NAMES = _aliases(OBJECTS)
_RECEPTACLE_NAMES = _aliases(RECEPTACLES)
_ROOM_NAMES = {**{room: room for room in ROOMS}, "living": "living room",
               "dining": "dining room"}
_NON_WORD = re.compile(r"[^a-z]+")
_ARTICLES = frozenset(("the", "a", "an", "some", "my"))
_GO = re.compile(r"^(?:go|walk|move|head|run|enter|travel|step)(?: (?:to|into|towards?|in"
                 r"|inside))? (.+)$")
_TAKE = re.compile(r"^(?:take|get|grab|pick up|pick|collect|fetch)(?: up)? (.+?)"
                   r"(?: (?:from|off|out of|in|on) .+)?$")
_PUT = re.compile(r"^(?:put|place|insert|drop|leave|store|set)(?: down)? (.+?) "
                  r"(?:in|into|on|onto|inside|in to|on to) (.+)$")
_DROP = re.compile(r"^(?:drop|discard|put down|set down) (.+)$")
_LOOK = frozenset(("look", "l", "look around", "describe room"))
_INVENTORY = frozenset(("inventory", "i", "inv", "check inventory", "show inventory"))


def normalize(command: str) -> str:
  """Lower case, letters only, articles removed, single spaces."""
  words = _NON_WORD.sub(" ", command.lower()).split()
  return " ".join(w for w in words if w not in _ARTICLES)


def parse(command: str) -> tuple[str, ...] | None:
  """A command as a tuple: ("go", direction) | ("go to", room) | ("take", object) |
  ("put", object, receptacle) | ("drop", object) | ("look",) | ("inventory",); None if none.

  Names are resolved to canonical ones; an unknown name parses as the raw text (reported as
  not seen by the environment).
  """
  text = normalize(command)
  if not text:
    return None
  if text in _LOOK:
    return ("look",)
  if text in _INVENTORY:
    return ("inventory",)
  if text in _DIR_ALIASES:
    return ("go", _DIR_ALIASES[text])
  m = _PUT.match(text)
  if m:
    obj, rec = m.group(1), m.group(2)
    return ("put", _OBJECT_NAMES.get(obj, obj), _RECEPTACLE_NAMES.get(rec, rec))
  m = _DROP.match(text)
  if m:
    return ("drop", _OBJECT_NAMES.get(m.group(1), m.group(1)))
  m = _GO.match(text)
  if m:
    where = m.group(1)
    if where in _DIR_ALIASES:
      return ("go", _DIR_ALIASES[where])
    return ("go to", _ROOM_NAMES.get(where, where))
  m = _TAKE.match(text)
  if m:
    return ("take", _OBJECT_NAMES.get(m.group(1), m.group(1)))
  return None


def _listing(items: list[str]) -> str:
  if len(items) <= 1:
    return "".join(items)
  return ", ".join(items[:-1]) + " and " + items[-1]


class TextNav(Env):
  """The Text-Nav house: find an object, carry it to its receptacle.

  Args:
    observed: "full" (room names, inventory, where the task's object is) or "partial".
    max_turns: Turn limit (truncation).
    random_task: Draw the task from `TASKS` with the seed (default: LMRL-Gym's stale food).
  """

  name = "text_nav"

  def __init__(self, *, observed: str = "full", max_turns: int = 50, random_task: bool = False):
    if observed not in ("full", "partial"):
      raise ValueError(f"observed must be 'full' or 'partial', got {observed!r}")
    super().__init__(max_turns=max_turns)
    self.observed = observed
    self.random_task = random_task
    self.room = "living room"
    self.target, self.receptacle = TASKS[0]
    #: Object -> receptacle it is in/on, a room (on the floor) or `CARRIED`.
    self.where: dict[str, str] = {}

  @property
  def full(self) -> bool:
    """Whether observations are fully observed."""
    return self.observed == "full"

  def instructions(self, role: int = 0) -> str:
    del role
    return ("You are in a house with ten rooms: " + _listing(list(ROOMS)) + ". Complete the "
            "task you are given by typing one command per turn: \"go north\" (or south, east, "
            "west), \"go to <room>\" for a room next door, \"take <object>\", \"put <object> "
            "in <receptacle>\", \"drop <object>\", \"look\" or \"inventory\". Each observation "
            "ends with the admissible commands. You get a reward of 1 when the task is done.")

  def _reset(self, rng: np.random.Generator) -> str:
    if self.random_task:
      self.target, self.receptacle = TASKS[int(rng.integers(len(TASKS)))]
    else:
      self.target, self.receptacle = TASKS[0]
    rooms = list(ROOMS)
    self.room = rooms[int(rng.integers(len(rooms)))]
    self.where = {obj: rec for obj, (_, rec) in OBJECTS.items()}
    self.task_id = f"{self.target}>{self.receptacle}@{self.room}"
    start = RECEPTACLES[OBJECTS[self.target][1]][0]
    task = (f"Your task: pick up the {self.target} in the {start} and put it "
            f"{RECEPTACLES[self.receptacle][1]} the {self.receptacle} in the "
            f"{RECEPTACLES[self.receptacle][0]}.")
    return task + "\n" + self.describe()

  # --- state and text ---------------------------------------------------------------------

  def room_of(self, obj: str) -> str:
    """The room the object is in (the current room when carried)."""
    place = self.where[obj]
    if place == CARRIED:
      return self.room
    return place if place in ROOMS else RECEPTACLES[place][0]

  def carried(self) -> list[str]:
    """Objects in the inventory."""
    return [obj for obj, place in self.where.items() if place == CARRIED]

  def visible(self) -> list[str]:
    """Objects in the current room that can be taken."""
    return [obj for obj, place in self.where.items()
            if place != CARRIED and self.room_of(obj) == self.room]

  def admissible(self) -> list[str]:
    """The commands that do something here."""
    cmds = [f"go {d}" for d in EXITS[self.room]]
    cmds += [f"take {obj}" for obj in self.visible()]
    here = [r for r, (room, _) in RECEPTACLES.items() if room == self.room]
    for obj in self.carried():
      cmds += [f"put {obj} {RECEPTACLES[r][1]} {r}" for r in here]
      cmds.append(f"drop {obj}")
    return cmds + ["look", "inventory"]

  def _inventory_text(self) -> str:
    held = self.carried()
    items = [f"{OBJECTS[o][0]} {o}" for o in held]
    return "You are carrying: " + (_listing(items) if items else "nothing") + "."

  def _place_text(self, obj: str) -> str:
    place = self.where[obj]
    if place == CARRIED:
      return f"the {obj} is in your inventory"
    if place in ROOMS:
      return f"the {obj} is on the floor of the {place}"
    room, prep = RECEPTACLES[place]
    return f"the {obj} is {prep} the {place} in the {room}"

  def describe(self) -> str:
    """The room, its contents, its exits and (full) the status, then the admissible commands."""
    room = self.room
    lines = [f"-= {room.title()} =-"] if self.full else []
    furniture = [r for r, (where, _) in RECEPTACLES.items() if where == room]
    text = (f"You are in the {room}." if self.full else "You are in a room.")
    text += f" You see {_listing([f'a {r}' for r in furniture])}."
    for rec in furniture:
      inside = [f"{OBJECTS[o][0]} {o}" for o, p in self.where.items() if p == rec]
      if inside:
        prep = RECEPTACLES[rec][1]
        text += (f" The {rec} contains {_listing(inside)}." if prep == "in"
                 else f" On the {rec} you see {_listing(inside)}.")
    floor = [f"{OBJECTS[o][0]} {o}" for o, p in self.where.items() if p == room]
    if floor:
      text += f" On the floor you see {_listing(floor)}."
    exits = EXITS[room]
    if self.full:
      text += " Exits: " + ", ".join(f"{d} to the {r}" for d, r in exits.items()) + "."
    else:
      text += " Exits: " + ", ".join(exits) + "."
    lines.append(text)
    if self.full:
      lines.append(self._inventory_text())
      rec_room = RECEPTACLES[self.receptacle][0]
      lines.append(f"Goal: put the {self.target} {RECEPTACLES[self.receptacle][1]} the "
                   f"{self.receptacle}; {self._place_text(self.target)}, the "
                   f"{self.receptacle} is in the {rec_room}.")
    lines.append("Admissible commands: " + ", ".join(self.admissible()) + ".")
    return "\n".join(lines)

  # --- the turn ---------------------------------------------------------------------------

  def _bad(self, reason: str) -> TimeStep:
    return self.invalid(reason, "Admissible commands: " + ", ".join(self.admissible()) + ".")

  def _say(self, feedback: str) -> TimeStep:
    return TimeStep(feedback + "\n" + self.describe(), reward=0.0, info={"room": self.room})

  def _step(self, action: str) -> TimeStep:
    cmd = parse(action)
    if cmd is None:
      return self._bad("that is not a command I understand")
    verb = cmd[0]
    if verb == "look":
      return self._say("You look around.")
    if verb == "inventory":
      return self._say(self._inventory_text())
    if verb in ("go", "go to"):
      return self._go(cmd[1], by_name=verb == "go to")
    if verb == "take":
      return self._take(cmd[1])
    if verb == "drop":
      obj = cmd[1]
      if self.where.get(obj) != CARRIED:
        return self._bad(f"you are not carrying {obj!r}")
      self.where[obj] = self.room
      return self._say(f"You drop the {obj}.")
    return self._put(cmd[1], cmd[2])

  def _go(self, where: str, by_name: bool) -> TimeStep:
    exits = EXITS[self.room]
    if by_name:
      if where not in ROOMS:
        return self._bad(f"there is no room called {where!r}")
      direction = next((d for d, r in exits.items() if r == where), None)
      if where == self.room:
        return self._bad(f"you are already in the {where}")
      if direction is None:
        return self._bad(f"the {where} is not next door")
    else:
      direction = where
      if direction not in exits:
        return self._bad(f"there is no exit to the {direction}")
    self.room = exits[direction]
    return self._say(f"You go {direction} to the {self.room}." if self.full
                     else f"You go {direction}.")

  def _take(self, obj: str) -> TimeStep:
    if obj not in OBJECTS:
      return self._bad(f"there is no {obj!r} here")
    if self.where[obj] == CARRIED:
      return self._bad(f"you already carry the {obj}")
    if self.room_of(obj) != self.room:
      return self._bad(f"there is no {obj} here")
    self.where[obj] = CARRIED
    return self._say(f"You take the {obj}.")

  def _put(self, obj: str, rec: str) -> TimeStep:
    if obj not in OBJECTS or self.where[obj] != CARRIED:
      return self._bad(f"you are not carrying {obj!r}")
    if rec not in RECEPTACLES or RECEPTACLES[rec][0] != self.room:
      return self._bad(f"there is no {rec!r} here")
    self.where[obj] = rec
    prep = RECEPTACLES[rec][1]
    if (obj, rec) == (self.target, self.receptacle):
      return TimeStep(f"You put the {obj} {prep} the {rec}. Task complete!", reward=1.0,
                      done=True, info={"success": True, "room": self.room})
    return self._say(f"You put the {obj} {prep} the {rec}.")


# --- scripted policies ----------------------------------------------------------------------


def optimal_turns(start: str, target: str = TASKS[0][0], receptacle: str = TASKS[0][1]) -> int:
  """Fewest turns to solve from `start` with every object at its starting place."""
  obj_room = RECEPTACLES[OBJECTS[target][1]][0]
  return (ROUTES[(start, obj_room)][0] + 1
          + ROUTES[(obj_room, RECEPTACLES[receptacle][0])][0] + 1)


def strong_policy(**_) -> Policy:
  """Shortest route to the object, take it, shortest route to the receptacle, put it."""

  def act(env: TextNav, rng: np.random.Generator) -> str:
    del rng
    obj, rec = env.target, env.receptacle
    if env.where[obj] != CARRIED:
      room = env.room_of(obj)
      return f"take {obj}" if room == env.room else f"go {ROUTES[(env.room, room)][1]}"
    room, prep = RECEPTACLES[rec]
    return f"put {obj} {prep} {rec}" if room == env.room else f"go {ROUTES[(env.room, room)][1]}"

  return act


def weak_policy(**_) -> Policy:
  """A uniformly random admissible command."""

  def act(env: TextNav, rng: np.random.Generator) -> str:
    cmds = env.admissible()
    return cmds[int(rng.integers(len(cmds)))]

  return act


#: The two halves of the house in which the "noisy" policy's two behaviours are greedy.
HALVES = (frozenset(("living room", "garden", "study", "dining room", "kitchen")),
          frozenset(("pantry", "hallway", "bedroom", "bathroom", "garage")))


def noisy_policy(**_) -> Policy:
  """Greedy in the rooms of `HALVES[seed % 2]`, random admissible commands elsewhere."""
  greedy, random = strong_policy(), weak_policy()

  def act(env: TextNav, rng: np.random.Generator) -> str:
    half = HALVES[(env.seed or 0) % 2]
    return greedy(env, rng) if env.room in half else random(env, rng)

  return act


def subgoal(env: TextNav, action: str) -> str:
  """HiPER's subgoal: get the object until it is carried, then bring it to the receptacle."""
  del action
  if env.where.get(env.target) == CARRIED:
    return f"bring the {env.target} to the {env.receptacle}"
  return f"get the {env.target}"


_POLICIES = {"strong": strong_policy, "weak": weak_policy, "noisy": noisy_policy}
_COMMON = dict(policies=_POLICIES, subgoal=subgoal,
               normalizer=Normalizer(weak=0.01, dataset=0.478, strong=1))
register("text_nav", TextNav, **_COMMON, observed="full")
# A row holds about 9 of the 50 turns: the strong policy's episodes fit, most weak ones do not.
register("text_nav_fo", TextNav, **_COMMON, budget=TokenBudget(1024, 8), observed="full")
register("text_nav_po", TextNav, **_COMMON, budget=TokenBudget(640, 8), observed="partial")
