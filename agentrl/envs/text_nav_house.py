"""Text-Nav's house (`agentrl.envs.text_nav`): its ten rooms and their doors, the furniture
(receptacles) and portable objects with their starting places, the tasks, and the derived
tables every room's exits and shortest routes come from.

                    garden       pantry
                      |            |
    study ------- living room -- dining room -- kitchen
      |               |
    bedroom ------ hallway ----- bathroom
                      |
                    garage

x grows east, y grows north; `ROUTES[(room, target)]` is the number of moves and the first
direction to take (breadth-first search over the doors).
"""

from __future__ import annotations

import collections

#: Room -> (x, y) on the floor plan; doors join some rooms one step apart.
ROOMS = {
    "living room": (0, 0), "garden": (0, 1), "study": (-1, 0), "dining room": (1, 0),
    "kitchen": (2, 0), "pantry": (2, 1), "hallway": (0, -1), "bedroom": (-1, -1),
    "bathroom": (1, -1), "garage": (0, -2),
}
DOORS = (("living room", "garden"), ("living room", "study"), ("living room", "dining room"),
         ("dining room", "kitchen"), ("kitchen", "pantry"), ("living room", "hallway"),
         ("hallway", "bedroom"), ("hallway", "bathroom"), ("hallway", "garage"),
         ("study", "bedroom"))
#: Receptacle -> (room, preposition).
RECEPTACLES = {
    "fridge": ("kitchen", "in"), "sink": ("kitchen", "in"), "counter": ("kitchen", "on"),
    "sofa": ("living room", "on"), "coffee table": ("living room", "on"),
    "dining table": ("dining room", "on"), "bed": ("bedroom", "on"),
    "wardrobe": ("bedroom", "in"), "laundry basket": ("bathroom", "in"),
    "bookshelf": ("study", "on"), "desk": ("study", "on"), "shoe rack": ("hallway", "on"),
    "bench": ("garden", "on"), "toolbox": ("garage", "in"), "workbench": ("garage", "on"),
    "cupboard": ("pantry", "in"),
}
#: Object -> (article, starting receptacle).
OBJECTS = {
    "stale food": ("some", "coffee table"), "dirty plate": ("a", "dining table"),
    "book": ("a", "bed"), "hammer": ("a", "shoe rack"), "towel": ("a", "bench"),
    "pillow": ("a", "sofa"), "keys": ("some", "desk"), "milk": ("some", "cupboard"),
    "watering can": ("a", "workbench"), "mug": ("a", "counter"),
}
#: (object, receptacle) tasks; the first one is LMRL-Gym's.
TASKS = (("stale food", "fridge"), ("dirty plate", "sink"), ("book", "bookshelf"),
         ("hammer", "toolbox"), ("towel", "laundry basket"), ("pillow", "bed"),
         ("keys", "shoe rack"), ("milk", "fridge"), ("watering can", "bench"))

DIRECTIONS = {(0, 1): "north", (0, -1): "south", (1, 0): "east", (-1, 0): "west"}
_ORDER = ("north", "east", "south", "west")


def _exits() -> dict[str, dict[str, str]]:
  exits: dict[str, dict[str, str]] = {room: {} for room in ROOMS}
  for a, b in DOORS:
    (ax, ay), (bx, by) = ROOMS[a], ROOMS[b]
    exits[a][DIRECTIONS[(bx - ax, by - ay)]] = b
    exits[b][DIRECTIONS[(ax - bx, ay - by)]] = a
  return {room: {d: e[d] for d in _ORDER if d in e} for room, e in exits.items()}


#: Room -> {direction: neighbouring room}, directions in the order north, east, south, west.
EXITS = _exits()


def _routes() -> dict[tuple[str, str], tuple[int, str]]:
  """(from, to) -> (distance, first direction) over the door graph, by breadth-first search."""
  table = {}
  for target in ROOMS:
    dist = {target: 0}
    queue = collections.deque([target])
    while queue:
      room = queue.popleft()
      for other in EXITS[room].values():
        if other not in dist:
          dist[other] = dist[room] + 1
          queue.append(other)
    for room, d in dist.items():
      step = next((dr for dr, o in EXITS[room].items() if dist[o] == d - 1), "")
      table[(room, target)] = (d, step)
  return table


#: (from, to) -> (number of moves, first direction to take; "" when from == to).
ROUTES = _routes()
