"""HiPER's hierarchical reply format as an environment wrapper: switch, subgoal, then action.

HiPER (Peng et al. 2026, arXiv 2602.16165) has the policy open every turn with a planner
decision and a subgoal before the action:

  <switch>SWITCH</switch> <subgoal>go down</subgoal> move down
  <switch>KEEP</switch> <subgoal>go down</subgoal> move down

`hiper_<name>` (registered with `register_wrapper("hiper", ...)`) is any single-role
environment `<name>` in this format: the wrapper parses the prefix, strips it, and hands the
action alone to the inner environment, which never sees the prefix. A segment of turns runs
from a boundary (the role's first turn, whatever it says, and every SWITCH turn) to the turn
before the next boundary.

Grammar (one automaton, `AUTOMATON`, decides it byte by byte, so the training update can run
the same automaton over token ids and agree with the environment; see `token_tables`):

  reply   := ws* "<switch>" ws* ("SWITCH" | "KEEP") ws* "</switch>"
             ws* "<subgoal>" text "</subgoal>" action
  ws      := ASCII white space (space, \\t, \\n, \\r, \\v, \\f)
  text    := any characters not containing "</subgoal>" (may be empty)

Tags and decisions are matched case-insensitively (ASCII). The action is everything after
"</subgoal>", leading white space removed. A reply that does not match is an invalid action
(`info["invalid_reason"]` says what is wrong, the reward is the inner environment's
`invalid_reward`) and the inner environment does not move. The regions of a reply, which the
update's token masks follow: the switch part (from the start to "</switch>"), the subgoal part
(from "<subgoal>" to "</subgoal>") and the action part (the rest, end of turn included); white
space between parts belongs to the part that follows it, and a token belongs to the part its
first byte is in.

`info` of every well-formed turn adds `switch` (SWITCH was said), `boundary` (the turn opens a
segment), `subgoal` (its text, stripped) and `subgoal_changed` (it differs from the subgoal of
the previous well-formed turn; false on the first one).

Scripted policies wrap the inner ones: the inner policy picks the action (on the inner
environment, exactly as unwrapped), then the subgoal rule the inner environment registered
(`agentrl.envs.register(..., subgoal=rule)`) names the subgoal that action serves, and the
policy says SWITCH on the first turn and whenever that subgoal differs from the current one,
KEEP otherwise (repeating the subgoal text). The registered rules:

  maze        "go <direction>" of the move: a segment is a straight run of moves.
  text_nav    "get the <object>" until the task's object is carried, then "bring the <object>
              to the <receptacle>": the two phases of the task (ALFWorld-like subgoals).
  wilt        "test triples" while probing, "state the rule" for the answer.
  any other   "" (no natural subgoal): one segment per episode, so the planner's advantage
              is the episode's and the executor's is plain turn-level GAE.

`reference_answer()` is None: the right reply depends on the segment history (SWITCH or KEEP,
and which subgoal to repeat), so there is no single answer text to score.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from agentrl.envs import EnvSpec, RegistryView, SubgoalRule, register_wrapper
from agentrl.envs.base import Env, Policy, TimeStep, as_text

PREFIX = "hiper"
SWITCH_OPEN, SWITCH_CLOSE = "<switch>", "</switch>"
SUBGOAL_OPEN, SUBGOAL_CLOSE = "<subgoal>", "</subgoal>"
SWITCH, KEEP = "SWITCH", "KEEP"
WHITESPACE = b" \t\n\r\x0b\x0c"

#: Parts of a reply: every byte (and every token, by its first byte) lies in one.
MALFORMED, SWITCH_PART, SUBGOAL_PART, ACTION_PART = 0, 1, 2, 3

#: Said after a malformed reply (with the inner environment's latest observation).
FORMAT_HINT = (f"Reply {SWITCH_OPEN}{SWITCH} or {KEEP}{SWITCH_CLOSE} "
               f"{SUBGOAL_OPEN}subgoal{SUBGOAL_CLOSE} action.")


def format_reply(switch: bool, subgoal: str, action: str) -> str:
  """The canonical reply: `<switch>SWITCH|KEEP</switch> <subgoal>...</subgoal> action`."""
  decision = SWITCH if switch else KEEP
  return f"{SWITCH_OPEN}{decision}{SWITCH_CLOSE} {SUBGOAL_OPEN}{subgoal}{SUBGOAL_CLOSE} {action}"


# --------------------------------------------------------------------------- the automaton


@dataclasses.dataclass(frozen=True)
class Automaton:
  """A deterministic automaton over the bytes of a reply.

  Attributes:
    next: int32[S, 256], the state after reading a byte.
    region: int8[S, 256], the part (`SWITCH_PART`, ...) of the byte read in a state;
      `MALFORMED` where it breaks the grammar.
    state_region: int8[S], the part of a token with no bytes (end of turn) read in a state.
    reason: per state, why a reply that stops (or breaks) there is malformed.
    dead: the absorbing state of a broken reply (0, so absent turns read as malformed).
    start: the state before a reply.
    accept_switch, accept_keep: the states after "</subgoal>" with SWITCH / KEEP said.
    subgoal_text: the states right after "<subgoal>" (the subgoal text starts there).
  """

  next: np.ndarray
  region: np.ndarray
  state_region: np.ndarray
  reason: tuple[str, ...]
  dead: int
  start: int
  accept_switch: int
  accept_keep: int
  subgoal_text: tuple[int, ...]

  @property
  def num_states(self) -> int:
    return self.next.shape[0]


def _build_automaton() -> Automaton:
  reasons, regions = [], []
  edges: list[dict[int, tuple[int, int]]] = []
  ws_region: list[int | None] = []

  def new(reason: str, region: int, ws: int | None = None) -> int:
    reasons.append(reason)
    regions.append(region)
    edges.append({})
    ws_region.append(ws)
    return len(edges) - 1

  def add(state: int, char: str, target: int, region: int):
    for c in {char, char.upper()}:
      edges[state][ord(c)] = (target, region)

  def literal(state: int, text: str, region: int, reason: str, *, last_ws: int | None,
              last_region: int) -> int:
    """Chains states through `text` from `state`; returns the state after it."""
    for i, char in enumerate(text):
      final = i == len(text) - 1
      nxt = new(reason, last_region if final else region, last_ws if final else None)
      add(state, char, nxt, region)
      state = nxt
    return state

  no_open = f"the reply must start with {SWITCH_OPEN}"
  no_decision = f"the switch decision must be {SWITCH} or {KEEP}"
  no_close = f"the switch decision must be closed by {SWITCH_CLOSE}"
  no_subgoal = f"{SUBGOAL_OPEN} must follow {SWITCH_CLOSE}"
  no_subgoal_close = f"the subgoal must be closed by {SUBGOAL_CLOSE}"
  dead = new("the reply breaks the format", MALFORMED)
  start = new(no_open, SWITCH_PART, ws=SWITCH_PART)
  opened = literal(start, SWITCH_OPEN, SWITCH_PART, no_open, last_ws=SWITCH_PART,
                   last_region=SWITCH_PART)
  reasons[opened] = no_decision
  accepts, texts = {}, []
  for word in (SWITCH, KEEP):
    said = literal(opened, word.lower(), SWITCH_PART, no_decision, last_ws=SWITCH_PART,
                   last_region=SWITCH_PART)
    reasons[said] = no_close
    closed = literal(said, SWITCH_CLOSE, SWITCH_PART, no_close, last_ws=SUBGOAL_PART,
                     last_region=SUBGOAL_PART)
    reasons[closed] = no_subgoal
    content = [literal(closed, SUBGOAL_OPEN, SUBGOAL_PART, no_subgoal, last_ws=None,
                       last_region=SUBGOAL_PART)]
    reasons[content[0]] = no_subgoal_close
    texts.append(content[0])
    for _ in SUBGOAL_CLOSE[:-1]:
      content.append(new(no_subgoal_close, SUBGOAL_PART))
    accept = new("", ACTION_PART)
    accepts[word] = accept
    # The subgoal text: a search for "</subgoal>"; its '<' occurs only first, so a mismatch
    # restarts at 0, or at 1 on '<'.
    for i, state in enumerate(content):
      for byte in range(256):
        edges[state][byte] = (content[1] if byte == ord("<") else content[0], SUBGOAL_PART)
      add(state, SUBGOAL_CLOSE[i], content[i + 1] if i + 1 < len(content) else accept,
          SUBGOAL_PART)
    for byte in range(256):
      edges[accept][byte] = (accept, ACTION_PART)

  n = len(edges)
  nxt = np.full((n, 256), dead, np.int32)
  region = np.full((n, 256), MALFORMED, np.int8)
  for state in range(n):
    if ws_region[state] is not None:
      for byte in WHITESPACE:
        nxt[state, byte], region[state, byte] = state, ws_region[state]
    for byte, (target, part) in edges[state].items():
      nxt[state, byte], region[state, byte] = target, part
  return Automaton(next=nxt, region=region, state_region=np.asarray(regions, np.int8),
                   reason=tuple(reasons), dead=dead, start=start,
                   accept_switch=accepts[SWITCH], accept_keep=accepts[KEEP],
                   subgoal_text=tuple(texts))


AUTOMATON = _build_automaton()


@dataclasses.dataclass(frozen=True)
class Reply:
  """A parsed reply: `ok` and, when ok, the decision, the subgoal and the action."""

  ok: bool
  switch: bool = False
  subgoal: str = ""
  action: str = ""
  reason: str = ""


def _text(raw: bytes) -> str:
  return raw.decode("utf-8", "surrogatepass")


def parse_reply(text: str) -> Reply:
  """Parses a reply with `AUTOMATON`; a malformed one comes back with `ok=False` and the
  reason (where the reply broke the grammar, or stopped short of an action)."""
  a = AUTOMATON
  raw = text.encode("utf-8", "surrogatepass")
  state, subgoal_start, action_start = a.start, None, None
  for i, byte in enumerate(raw):
    new = int(a.next[state, byte])
    if new == a.dead:
      return Reply(False, reason=a.reason[state])
    if subgoal_start is None and new in a.subgoal_text:
      subgoal_start = i + 1
    state = new
    if state in (a.accept_switch, a.accept_keep) and action_start is None:
      action_start = i + 1
  if action_start is None:
    return Reply(False, reason=a.reason[state])
  subgoal = _text(raw[subgoal_start:action_start - len(SUBGOAL_CLOSE)])
  action = _text(raw[action_start:]).lstrip(WHITESPACE.decode())
  return Reply(True, switch=state == a.accept_switch, subgoal=subgoal.strip(), action=action)


def token_tables(token_bytes: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
  """The automaton lifted to tokens: for every (state, token id), the state after reading the
  token's bytes and the part of its first byte (`state_region` for a token without bytes).

  Args:
    token_bytes: the bytes each token id decodes to (b"" for special tokens).

  Returns:
    (next int32[S, V], region int8[S, V]).
  """
  a = AUTOMATON
  v, s = len(token_bytes), a.num_states
  longest = max((len(b) for b in token_bytes), default=0)
  table = np.zeros((v, max(longest, 1)), np.int32)
  length = np.array([len(b) for b in token_bytes], np.int32)
  for i, b in enumerate(token_bytes):
    table[i, :len(b)] = np.frombuffer(b, np.uint8)
  states = np.broadcast_to(np.arange(s, dtype=np.int32)[:, None], (s, v)).copy()
  region = np.where(length[None, :] > 0, a.region[states, table[None, :, 0]],
                    a.state_region[:, None]).astype(np.int8)
  for j in range(longest):
    states = np.where(j < length[None, :], a.next[states, table[None, :, j]], states)
  return states.astype(np.int32), region


# --------------------------------------------------------------------------- the wrapper


class Hierarchical(Env):
  """A single-role environment played in HiPER's switch / subgoal / action format.

  Args:
    inner: The wrapped environment (fresh; the wrapper resets and steps it).
  """

  def __init__(self, inner: Env):
    if inner.num_roles != 1:
      raise ValueError(f"{PREFIX}: {inner.name} has {inner.num_roles} roles; the wrapper "
                       "takes single-role environments.")
    self.inner = inner
    self.name = f"{PREFIX}_{inner.name}"
    self.invalid_reward = inner.invalid_reward
    self.turn_reward = inner.turn_reward
    super().__init__(max_turns=inner.max_turns)
    self.subgoal: str | None = None  # The current subgoal (None before the first one).

  def instructions(self, role: int = 0) -> str:
    inner = self.inner.instructions(role)
    return (inner + " " if inner else "") + (
        f"Begin every reply with {SWITCH_OPEN}{SWITCH}{SWITCH_CLOSE} to set a new subgoal or "
        f"{SWITCH_OPEN}{KEEP}{SWITCH_CLOSE} to keep the current one, then the subgoal as "
        f"{SUBGOAL_OPEN}...{SUBGOAL_CLOSE}, then your action.")

  def _reset(self, rng: np.random.Generator) -> str:
    del rng  # The inner environment draws its task from the same seed.
    step = self.inner.reset(self.seed)
    self.task_id = self.inner.task_id
    self.subgoal = None
    return step.observation

  def _step(self, action: str) -> TimeStep:
    reply = parse_reply(action)
    if not reply.ok:
      last = self.inner.messages()[-1]["content"] if self.inner.messages() else ""
      return self.invalid(reply.reason, f"{FORMAT_HINT} {last}".strip())
    boundary = self.subgoal is None or reply.switch
    changed = self.subgoal is not None and reply.subgoal != self.subgoal
    self.subgoal = reply.subgoal
    step = self.inner.step(reply.action)
    info = {**step.info, "turn": self.turn, "switch": reply.switch, "boundary": boundary,
            "subgoal": reply.subgoal, "subgoal_changed": changed}
    return dataclasses.replace(step, info=info)


# --------------------------------------------------------------------------- scripted policies


def no_subgoal(env: Env, action: str) -> str:
  """The subgoal rule of an environment that registers none: one segment per episode."""
  del env, action
  return ""


#: Registered environment name -> its subgoal rule (a read-only view of the registry; names
#: that register none are absent and use `no_subgoal`).
SUBGOAL_RULES: RegistryView = RegistryView(lambda s: s.subgoal)


def wrap_policy(inner: Policy, spec: EnvSpec | None = None) -> Policy:
  """The scripted policy `inner` of the environment registered as `spec` in the reply format
  (see the module docstring), with `spec.subgoal` as its subgoal rule."""
  rule: SubgoalRule = (spec.subgoal if spec is not None else None) or no_subgoal

  def act(env: Hierarchical, rng: np.random.Generator) -> str:
    action = as_text(inner(env.inner, rng))
    goal = rule(env.inner, action)
    return format_reply(env.subgoal is None or goal != env.subgoal, goal, action)

  return act


register_wrapper(PREFIX, Hierarchical, wrap_policy=wrap_policy, keeps_returns=True)
