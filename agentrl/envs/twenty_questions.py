"""Twenty Questions: find the hidden object by asking yes/no questions.

The game of ArCHer / LMRL-Gym's Twenty Questions. The environment hides one object of a fixed
list (157 everyday objects in 17 categories, from those projects; `twenty_questions_subset`
plays ArCHer's 10-word subset: football, dog, banana, truck, pants, computer, piano, chair,
pen, scissors). The agent asks one yes/no question per turn and the environment answers.

Oracle. Where ArCHer and LMRL-Gym answer with a fine-tuned language model, this oracle is a
rule-based one over a hand-written attribute table (`twenty_questions_data`: about 190 yes/no
attributes known for every object: is it an animal, is it alive, can you eat it, is it made of
metal, is it bigger than a breadbox, does it have wheels, ...). Questions are normalised
(lowercased, punctuation, articles, possessives and adverbs like "usually" dropped) and matched
against several phrasings of every attribute ("Is it an animal?", "Is the object a kind of
animal?", "Are they animals?"); category questions ("Is it a vehicle?", "Is it a kind of
fruit?") are attributes too. The answer is `Yes.`, `No.` or `Invalid question.` (anything the
oracle does not recognise: it is an invalid action, `info["invalid_action"]` is True).

Actions. A question, e.g. "Is it an animal?", "Does it have wheels?", "Can you eat it?".
A guess is a question about one object: "Is it a dog?", "Is it an apple?", "Is the object a
dog?", "Is it dogs?", with the synonyms of the list ("Is it a plane?", "Is it a pair of
scissors?") and simple plurals. A correct guess ends the episode with success; a wrong guess is
answered `No.`. A guess must name the object alone: "Is it a dog or a cat?" is invalid (ArCHer
only looks at the question's last word; this is stricter, so guesses cannot be stacked).

Observations. `reset` asks for the first question; after each question the observation is only
the answer (`Yes.` / `No.` / `Invalid question.`), since the conversation history lives in the
chat. The closing observation of a won game says the object was guessed; when the questions run
out it names the object. `instructions()` explains the game (and, for the subset, lists the
10 possible objects, as ArCHer's prompted-LLM variant does).

Reward and horizon. -1 per turn (invalid questions included: `invalid_reward = -1`), 0 on the
turn of the correct guess; at most 20 turns (then truncated), so returns lie in [-20, 0].
`task_id` is the hidden object (its first synonym, lowercase).

Scripted policies (neither reads the hidden object):
  strong: keeps the objects consistent with the answers so far (re-derived from
    `env.messages()` at every call, so one policy object serves any number of environments,
    interleaved), and either asks the attribute question that minimises the expected number of
    further turns (estimated with perfect halving afterwards; in effect the question that splits
    the candidates most evenly, ties broken by the fixed attribute order) or guesses the first
    remaining candidate when that is cheaper (one or two or three candidates left, or no
    question splits them). About 7 to 8 turns of cost per game on the full list.
  weak: a random canonical question, or with probability 0.2 a guess of a random object.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np

from agentrl.envs import Normalizer, TokenBudget, register
from agentrl.envs import twenty_questions_data as data
from agentrl.envs.base import Env, TimeStep

YES, NO, INVALID = "Yes.", "No.", "Invalid question."

# --- the object list ------------------------------------------------------------------------

#: Synonyms of every object, lowercase; the first one names it.
SYNONYMS: tuple[tuple[str, ...], ...] = tuple(
    tuple(s.strip().lower() for s in entry.split(";"))
    for entries in data.CATEGORIES.values() for entry in entries)
#: The name of every object (its first synonym, lowercase).
WORDS: tuple[str, ...] = tuple(s[0] for s in SYNONYMS)
#: The category of every object.
WORD_CATEGORY: tuple[str, ...] = tuple(
    category for category, entries in data.CATEGORIES.items() for _ in entries)
#: Indices (into WORDS) of ArCHer's 10-word subset.
SUBSET_IDS: tuple[int, ...] = tuple(WORDS.index(w.lower()) for w in data.SUBSET)

#: Attribute names and the canonical question of each (the phrasing the policies use).
ATTRIBUTE_NAMES: tuple[str, ...] = tuple(a[0] for a in data.ATTRIBUTES)
QUESTIONS: tuple[str, ...] = tuple(a[1] for a in data.ATTRIBUTES)
_ATTR_INDEX = {name: i for i, name in enumerate(ATTRIBUTE_NAMES)}


def _build_table() -> np.ndarray:
  table = np.zeros((len(WORDS), len(ATTRIBUTE_NAMES)), bool)
  entries = [(c, e.split(";")[0]) for c, es in data.CATEGORIES.items() for e in es]
  for w, (category, key) in enumerate(entries):
    names = set(data.CATEGORY_DEFAULTS[category].split())
    for item in data.WORD_ATTRIBUTES[key].split():
      if item.startswith("-"):
        if item[1:] not in names:
          raise ValueError(f"{key}: removes {item[1:]!r}, which is not a default")
        names.discard(item[1:])
      else:
        names.add(item)
    for name in names:
      if name not in _ATTR_INDEX:
        raise ValueError(f"{key}: unknown attribute {name!r}")
      table[w, _ATTR_INDEX[name]] = True
  return table


#: TABLE[word, attribute]: the oracle's answer for every object and attribute.
TABLE: np.ndarray = _build_table()
TABLE.setflags(write=False)

# --- the question parser --------------------------------------------------------------------

# Words dropped before matching: articles, possessives and frequency adverbs.
_DROPPED = frozenset({"a", "an", "the", "your", "my", "usually", "typically", "normally",
                      "generally", "often", "mostly", "mainly", "commonly", "primarily", "really",
                      "actually"})
_SPELLINGS = {"colour": "color", "grey": "gray", "jewellery": "jewelry"}
# ASCII punctuation and control characters become spaces; apostrophes vanish ("it's" -> "its").
_TRANSLATE = {c: " " for c in range(128) if not chr(c).isalnum()}
_TRANSLATE.update({ord("'"): None, ord("\u2019"): None, ord("\u2018"): None})


def normalize(text: str) -> str:
  """Lowercase, punctuation to spaces, articles / possessives / adverbs dropped, one space."""
  return " ".join(_SPELLINGS.get(t, t) for t in text.lower().translate(_TRANSLATE).split()
                  if t not in _DROPPED)


def _phrases(*items: str) -> tuple[str, ...]:
  return tuple(normalize(s) for s in items)


# Leading words that carry no meaning ("Okay, my next question is: is it ...").
_FILLERS = tuple(sorted({tuple(s.split()) for s in _phrases(
    "ok", "okay", "so", "well", "hmm", "alright", "then", "now", "and", "next", "question",
    "my question is", "my next question is", "my guess is", "my final guess is", "guess",
    "final guess", "next question", "first question", "q")}, key=len, reverse=True))
# Prefixes that introduce each kind of question; "be" cores also accept a bare noun phrase.
_PREFIXES = {
    "be": _phrases(
        "is it", "is this", "is that", "is object", "is this object", "is that object",
        "is thing", "is this thing", "is word", "is hidden word", "is secret word",
        "is hidden object", "is secret object", "is mystery object", "is your object",
        "is your word", "is your thing", "is item", "is answer", "is it possibly",
        "is it perhaps", "is it maybe", "could it be", "would it be", "might it be",
        "are they", "are these", "are those", "it is", "its", "answer is", "i guess",
        "i think its", "i think it is", "is it called", "is it some", "can it be"),
    "v": _phrases(
        "does it", "does this", "does that", "does object", "does this object", "does thing",
        "does your object", "does item", "do they", "do these", "can it", "can this",
        "can object", "can they", "could it", "will it", "would it", "is it able to",
        "are they able to", "is object able to", "does it usually", "can it usually"),
    "y": _phrases(
        "can you", "could you", "do you", "would you", "will you", "can i", "could i", "do i",
        "would i", "can we", "do we", "can people", "do people", "can one", "does one",
        "is it possible to", "are you able to", "do you usually", "would you usually"),
}
_QUALIFIERS = tuple(tuple(s.split()) for s in _phrases(
    "type of", "kind of", "sort of", "form of", "some kind of", "some type of", "some sort of",
    "piece of", "pair of", "item of", "article of", "some", "specific", "particular"))
_TRAILERS = tuple(tuple(s.split()) for s in _phrases("or not", "please", "at all"))
_MAX_PREFIX = max(len(p.split()) for ps in _PREFIXES.values() for p in ps)
_PREFIX_KIND = {p: kind for kind, ps in _PREFIXES.items() for p in ps}


def _plurals(noun: str) -> set[str]:
  forms = {noun, noun + "s", noun + "es"}
  if noun.endswith("y") and noun[-2:-1] not in "aeiou":
    forms.add(noun[:-1] + "ies")
  if noun.endswith("fe"):
    forms.add(noun[:-2] + "ves")
  elif noun.endswith("f"):
    forms.add(noun[:-1] + "ves")
  if noun.endswith("s") and not noun.endswith("ss"):
    forms.add(noun[:-1])
  last = noun.split()[-1]
  if last in data.IRREGULAR_PLURALS:
    forms.add(noun[:-len(last)] + data.IRREGULAR_PLURALS[last])
  return forms


def _expand(phrasing: str) -> list[tuple[str, str]]:
  """One `kind:text` phrasing of the data module -> the (kind, normalised core) keys."""
  kind, _, text = phrasing.partition(":")
  core = normalize(text)
  if kind == "n":
    return [("be", form) for form in sorted(_plurals(core))]
  if kind == "a":
    return [("be", core)]
  if kind == "m":
    return [("be", f"{p} {core}") for p in ("made of", "made out of", "made from")]
  if kind == "v":
    return [("v", core)]
  if kind == "y":
    keys = [("y", core)]
    tokens = core.split()
    if "it" in tokens:
      keys.append(("y", " ".join("them" if t == "it" else t for t in tokens)))
      rest = " ".join(t for t in tokens if t != "it")
      keys += [("be", f"something {p} {rest}") for p in ("you can", "you", "that you can",
                                                         "people", "people can")]
    return keys
  raise ValueError(f"bad phrasing {phrasing!r}")


def _build_parser() -> dict[tuple[str, str], tuple[int, int]]:
  """(kind, core) -> (0, attribute) for a yes question, (1, attribute) negated, (2, word)."""
  table: dict[tuple[str, str], tuple[int, int]] = {}

  def add(key, value, source):
    if table.get(key, value) != value:
      raise ValueError(f"phrasing {key} of {source} is ambiguous: also {table[key]}")
    table[key] = value

  for w, synonyms in enumerate(SYNONYMS):
    for synonym in synonyms:
      for form in _plurals(normalize(synonym)):
        add(("be", form), (2, w), synonym)
  for a, (name, canonical, phrasings) in enumerate(data.ATTRIBUTES):
    for phrasing in phrasings.split("|"):
      negated = phrasing.startswith("!")
      for key in _expand(phrasing.lstrip("!")):
        add(key, (int(negated), a), name)
    if _lookup(table, normalize(canonical)) != (0, a):
      raise ValueError(f"the canonical question of {name!r} does not parse to it")
  return table


def _strip_front(tokens: list[str], phrases) -> list[str]:
  changed = True
  while changed and tokens:
    changed = False
    for phrase in phrases:
      if tuple(tokens[:len(phrase)]) == phrase and len(tokens) > len(phrase):
        tokens, changed = tokens[len(phrase):], True
        break
  return tokens


def _lookup(table, question: str) -> tuple[int, int] | None:
  tokens = _strip_front(question.split(), _FILLERS)
  for phrase in _TRAILERS:
    if len(tokens) > len(phrase) and tuple(tokens[-len(phrase):]) == phrase:
      tokens = tokens[:-len(phrase)]
  for k in range(min(_MAX_PREFIX, len(tokens) - 1), -1, -1):
    kind = _PREFIX_KIND.get(" ".join(tokens[:k])) if k else "be"
    if kind is None:
      continue
    rest = tokens[k:]
    if kind == "be":
      rest = _strip_front(rest, _QUALIFIERS)
    hit = table.get((kind, " ".join(rest)))
    if hit is not None:
      return hit
  return None


_PARSER = _build_parser()


@functools.lru_cache(maxsize=4096)
def parse(question: str) -> tuple[str, int, bool] | None:
  """Parses a question: ("attribute", index, negated), ("guess", word index, False) or None."""
  hit = _lookup(_PARSER, normalize(question))
  if hit is None:
    return None
  kind, index = hit
  return ("guess", index, False) if kind == 2 else ("attribute", index, bool(kind))


def answer(word: str, question: str) -> str:
  """The oracle's answer to `question` when the hidden object is `word` (any synonym)."""
  hit = parse(question)
  target = _PARSER.get(("be", normalize(word)))
  if target is None or target[0] != 2:
    raise ValueError(f"unknown object {word!r}")
  if hit is None:
    return INVALID
  kind, index, negated = hit
  if kind == "guess":
    return YES if index == target[1] else NO
  return YES if TABLE[target[1], index] != negated else NO


_MASS_NOUNS = frozenset({"paper", "toothpaste", "glue", "broccoli", "spinach", "corn",
                         "celery"})


def guess_question(word: int) -> str:
  """The canonical guess of object `word` ("Is it a dog?", "Is it a pair of scissors?")."""
  synonyms = SYNONYMS[word]
  pair = next((s for s in synonyms if s.startswith(("pair of ", "pack of "))), None)
  name = synonyms[0]
  if pair is not None:
    return f"Is it a {pair}?"
  if name.endswith("s") and name[:-1] in synonyms:
    name = name[:-1]  # peas -> pea
  if name in _MASS_NOUNS:
    return f"Is it {name}?"
  return f"Is it {'an' if name[0] in 'aeiou' else 'a'} {name}?"


# --- the environment ------------------------------------------------------------------------


class TwentyQuestions(Env):
  """Twenty Questions with a rule-based oracle; see the module docstring.

  Args:
    subset: Play ArCHer's 10-word subset instead of the full 157-word list.
    max_turns: Questions allowed (20).
  """

  name = "twenty_questions"
  invalid_reward = -1.0
  turn_reward = -1.0

  def __init__(self, *, subset: bool = False, max_turns: int = 20):
    super().__init__(max_turns=max_turns)
    self.subset = bool(subset)
    if self.subset:
      self.name = "twenty_questions_subset"
    #: Indices (into WORDS) of the objects this game can hide; public, listed for the subset.
    self.word_ids = np.asarray(SUBSET_IDS if self.subset else range(len(WORDS)), np.int64)
    self._word = -1

  def reference_answer(self) -> str:
    return guess_question(self._word)

  def instructions(self, role: int = 0) -> str:
    del role
    text = (
        "Let's play Twenty Questions. I am thinking of a hidden object, an everyday thing "
        "such as an animal, a fruit, a vehicle, a tool or a piece of furniture. Ask me one "
        "yes/no question per turn to find out what it is, for example \"Is it an animal?\", "
        "\"Does it have wheels?\" or \"Is it bigger than a breadbox?\". I answer \"Yes.\", "
        "\"No.\" or \"Invalid question.\" when I cannot answer the question. To guess, ask "
        "\"Is it a <object>?\", e.g. \"Is it a dog?\"; a correct guess wins the game. You have "
        f"{self.max_turns} questions, and every question costs a point, so find the object "
        "in as few questions as you can.")
    if self.subset:
      names = ", ".join(WORDS[w] for w in self.word_ids)
      text += f" The hidden object is one of these {len(self.word_ids)}: {names}."
    return text

  def _reset(self, rng: np.random.Generator) -> str:
    self._word = int(self.word_ids[rng.integers(len(self.word_ids))])
    self.task_id = WORDS[self._word]
    return "I am thinking of an object. Ask your first yes/no question."

  def _step(self, action: str) -> TimeStep:
    hit = parse(action)
    if hit is None:
      step = self.invalid("not a yes/no question the oracle understands",
                          'Ask e.g. "Is it an animal?" or guess with "Is it a <object>?".')
      return self._closing(dataclasses.replace(step, observation=INVALID))
    kind, index, negated = hit
    if kind == "guess" and index == self._word:
      return TimeStep(f"Yes! You guessed it: the object was {WORDS[self._word]}.", reward=0.0,
                      done=True, info={"success": True})
    if kind == "guess":
      reply = NO
    else:
      reply = YES if TABLE[self._word, index] != negated else NO
    return self._closing(TimeStep(reply, reward=-1.0))

  def _refuse(self, reason: str) -> TimeStep:
    return self._closing(dataclasses.replace(self.invalid(reason), observation=INVALID))

  def _closing(self, step: TimeStep) -> TimeStep:
    if self.turn >= self.max_turns:  # The last question: name the object.
      text = f"{step.observation} Out of questions: the object was {WORDS[self._word]}."
      return dataclasses.replace(step, observation=text)
    return step


# --- scripted policies ----------------------------------------------------------------------


def _expected_costs(n: int) -> np.ndarray:
  """cost[k]: expected further -reward with k candidates left, if every question halved them."""
  cost = np.zeros(n + 1)
  for k in range(2, n + 1):
    guess = (k - 1) / k * (1 + cost[k - 1])
    a, b = (k + 1) // 2, k // 2
    cost[k] = min(guess, 1 + (a * cost[a] + b * cost[b]) / k)
  return cost


_COST = _expected_costs(len(WORDS))


def candidates(env: TwentyQuestions) -> np.ndarray:
  """The objects (indices into WORDS) consistent with the answers in `env.messages()`."""
  ids = env.word_ids
  keep = np.ones(len(ids), bool)
  messages = env.messages()
  for i in range(1, len(messages) - 1):
    if messages[i]["role"] != "assistant":
      continue
    reply = messages[i + 1]["content"]
    hit = parse(messages[i]["content"])
    if hit is None or not reply.startswith((YES, NO)):
      continue
    kind, index, negated = hit
    yes = reply.startswith(YES)
    if kind == "guess":
      keep &= (ids == index) if yes else (ids != index)
    else:
      keep &= (TABLE[ids, index] != negated) == yes
  return ids[keep]


def _strong(env: TwentyQuestions, rng: np.random.Generator) -> str:
  del rng  # Deterministic: ties go to the first attribute / candidate in the fixed order.
  left = candidates(env)
  if len(left) == 0:  # Only after answers this table would not give; restart from scratch.
    left = env.word_ids
  k = len(left)
  if k == 1:
    return guess_question(int(left[0]))
  yes = TABLE[left].sum(axis=0)
  useful = (yes > 0) & (yes < k)
  guess_cost = (k - 1) / k * (1 + _COST[k - 1])
  if useful.any():
    cost = np.where(useful, 1 + (yes * _COST[yes] + (k - yes) * _COST[k - yes]) / k, np.inf)
    best = int(np.argmin(cost))
    if cost[best] < guess_cost - 1e-9:
      return QUESTIONS[best]
  return guess_question(int(left[0]))


def strong_policy(**_: Any):
  """Candidate elimination with the most even split; guesses when that is cheaper."""
  return _strong


def weak_policy(*, guess_probability: float = 0.2, **_: Any):
  """Random canonical questions, and random guesses with probability `guess_probability`."""

  def policy(env: TwentyQuestions, rng: np.random.Generator) -> str:
    if rng.random() < guess_probability:
      return guess_question(int(env.word_ids[rng.integers(len(env.word_ids))]))
    return QUESTIONS[int(rng.integers(len(QUESTIONS)))]

  return policy


_POLICIES = {"strong": strong_policy, "weak": weak_policy}
register("twenty_questions", TwentyQuestions, policies=_POLICIES, subset=False,
         budget=TokenBudget(400, 12),
         normalizer=Normalizer(weak=-19.77, dataset=-13.705, strong=-6.941))
register("twenty_questions_subset", TwentyQuestions, policies=_POLICIES, subset=True,
         budget=TokenBudget(320, 12),
         normalizer=Normalizer(weak=-15.926, dataset=-9.886, strong=-2.911))
