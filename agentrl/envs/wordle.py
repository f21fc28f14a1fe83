"""Wordle, in LMRL-Gym's text format: guess a hidden five-letter word in six tries.

Game: a hidden word is drawn from the answer list. Each turn the agent guesses a five-letter
word; the environment answers with one mark per letter: `g` (right letter, right place), `y`
(the letter is in the word, elsewhere) or `b` (not in the word). Repeated letters are marked as
in real Wordle: greens first, then yellows from left to right, each limited by how many copies
of that letter remain in the hidden word after the greens (guessing "speed" for "abide" gives
`b b y b y`: abide has a single `e`, so only the first `e` of speed is marked).

Formats (as LMRL-Gym's reformatted Wordle environment):
  * action: the letters separated by spaces, "c r a n e". Parsing is tolerant: "crane",
    "CRANE", "c-r-a-n-e" and a sentence that ends in the word ("my guess is crane") also work.
  * observation: the marks separated by spaces, "b y g b b". The first observation states the
    task; the last one also says whether the word was found (and reveals it when it was not).

Reward: -1 for every guess that does not solve the word, 0 for the solving guess, so a return
lies in [-6, 0] (LMRL-Gym's normalisers: min -6, dataset -4.12, its scripted upper bound
-1.94). A guess that is not a five-letter word of the vocabulary is invalid: the observation
says why, the reward is -1 and it uses up one of the six guesses (LMRL-Gym's `bad_word_reward`).
After the sixth guess the episode ends as a true terminal (`done`, not truncated); the turn
limit is the number of guesses.

Word lists (package data under `agentrl/envs/data/`): LMRL-Gym draws hidden words from a
400-word subset of the official Wordle list, which cannot be shipped here. Instead:
  * `wordle_words.txt`, the guess vocabulary: all lowercase a-z five-letter words of the Debian
    `wamerican` list 2020.12.07 (SCOWL size 50, Kevin Atkinson's word lists), 4667 words.
  * `wordle_answers.txt`, the hidden words: the five-letter words of `wamerican-small` (SCOWL
    size 35, common words) without likely plurals (ending in "s" but not "ss"), past tenses
    (ending in "ed") and a few offensive words, 2097 words, all in the vocabulary.

Scripted policies:
  * "strong" (privileged only in knowing the answer list, as LMRL-Gym's scripted solver):
    keeps the answers consistent with all feedback so far and guesses the word that minimises
    the expected number of candidates left (a candidate that may win outright is credited for
    it). The first guess is precomputed over the whole vocabulary; later guesses score the
    candidates plus a random sample of vocabulary words (at most `sample` of each).
  * "weak" (LMRL-Gym's data policy): with probability 0.66 a uniformly random vocabulary word,
    otherwise a uniformly random vocabulary word consistent with the feedback so far.
"""

from __future__ import annotations

import functools
import importlib.resources
import re
from typing import Sequence

import numpy as np

from agentrl.envs import Normalizer, TokenBudget, register
from agentrl.envs.base import Env, Policy, TimeStep

WORD_LEN = 5
NUM_GUESSES = 6
#: Pattern code of an all-green answer: sum(2 * 3**i).
SOLVED = 3 ** WORD_LEN - 1
#: The strong policy's first guess: the vocabulary word with the fewest expected answers left
#: over the whole answer list (computed once with `best_guess(all words, all answers)`).
FIRST_GUESS = "raise"

_MARKS = "byg"
_NON_LETTERS = re.compile(r"[^a-z]+")
_TOKENS = re.compile(r"[a-z]+")


def _load(name: str) -> tuple[str, ...]:
  text = importlib.resources.files("agentrl.envs").joinpath("data", name).read_text("utf-8")
  words = (line.strip() for line in text.splitlines())
  return tuple(w for w in words if w and not w.startswith("#"))


@functools.lru_cache(maxsize=None)
def vocabulary() -> tuple[str, ...]:
  """All valid guesses, sorted."""
  return _load("wordle_words.txt")


@functools.lru_cache(maxsize=None)
def answers() -> tuple[str, ...]:
  """The words that can be hidden, sorted (a subset of `vocabulary()`)."""
  return _load("wordle_answers.txt")


@functools.lru_cache(maxsize=None)
def _tables() -> tuple[frozenset[str], np.ndarray, np.ndarray, dict[str, int]]:
  vocab, ans = vocabulary(), answers()
  return frozenset(vocab), encode(vocab), encode(ans), {w: i for i, w in enumerate(vocab)}


def encode(words: Sequence[str]) -> np.ndarray:
  """Words as an int8 array of letter indices, shape (len(words), 5)."""
  flat = np.frombuffer("".join(words).encode("ascii"), dtype=np.uint8)
  return (flat.reshape(len(words), WORD_LEN) - ord("a")).astype(np.int8)


def patterns(guesses: np.ndarray, hidden: np.ndarray) -> np.ndarray:
  """Feedback codes of every guess against every hidden word, shape (G, H), int16.

  `guesses` (G, 5) and `hidden` (H, 5) are `encode`d words. A code is sum(mark_i * 3**i)
  with mark 0 = b, 1 = y, 2 = g; `SOLVED` (242) is all green.
  """
  g = guesses[:, None, :]
  h = hidden[None, :, :]
  green = g == h  # (G, H, 5)
  code = np.zeros(green.shape[:2], dtype=np.int16)
  for i in range(WORD_LEN):
    gi = g[:, :, i]
    # Copies of letter i in the hidden word outside its green positions...
    left = np.zeros(code.shape, dtype=np.int8)
    for k in range(WORD_LEN):
      left += (h[:, :, k] == gi) & ~green[:, :, k]
    # ...minus those already claimed by earlier non-green copies in the guess.
    for j in range(i):
      left -= (g[:, :, j] == gi) & ~green[:, :, j]
    mark = np.where(green[:, :, i], 2, (left > 0).astype(np.int16))
    code += mark.astype(np.int16) * 3 ** i
  return code


def pattern(guess: str, hidden: str) -> int:
  """The feedback code of one guess (as `patterns`, for a single pair without numpy)."""
  marks = [0] * WORD_LEN
  left: dict[str, int] = {}
  for i in range(WORD_LEN):
    if guess[i] == hidden[i]:
      marks[i] = 2
    else:
      left[hidden[i]] = left.get(hidden[i], 0) + 1
  for i in range(WORD_LEN):
    if not marks[i] and left.get(guess[i], 0) > 0:
      marks[i] = 1
      left[guess[i]] -= 1
  return sum(m * 3 ** i for i, m in enumerate(marks))


def feedback(guess: str, hidden: str) -> str:
  """The marks of `guess` against `hidden` as LMRL-Gym writes them, e.g. "b y g b b"."""
  return decode(pattern(guess, hidden))


def decode(code: int) -> str:
  """A pattern code as space-separated marks."""
  marks = []
  for _ in range(WORD_LEN):
    code, mark = divmod(code, 3)
    marks.append(_MARKS[mark])
  return " ".join(marks)


def parse_guess(action: str) -> str | None:
  """The guessed word in `action` (lowercase), or None when no five-letter word is found.

  Accepts "c r a n e", "crane", "CRANE!", "c-r-a-n-e" and sentences ending in the word.
  """
  text = action.lower()
  letters = _NON_LETTERS.sub("", text)
  if len(letters) == WORD_LEN:
    return letters
  tokens = _TOKENS.findall(text)
  if len(tokens) >= WORD_LEN and all(len(t) == 1 for t in tokens[-WORD_LEN:]):
    return "".join(tokens[-WORD_LEN:])
  words = [t for t in tokens if len(t) == WORD_LEN]
  return words[-1] if words else None


class Wordle(Env):
  """Wordle with LMRL-Gym's space-separated letters and b/y/g feedback.

  Args:
    max_guesses: Guesses allowed (also the turn limit); the episode ends after the last one.
  """

  name = "wordle"
  invalid_reward = -1.0
  turn_reward = -1.0

  def __init__(self, *, max_guesses: int = NUM_GUESSES):
    super().__init__(max_turns=max_guesses)
    self.max_guesses = max_guesses
    self.hidden = ""
    #: (guess, pattern code) of every valid guess so far.
    self.history: list[tuple[str, int]] = []

  def reference_answer(self) -> str:
    return _guess_text(self.hidden)

  def instructions(self, role: int = 0) -> str:
    del role
    return (f"Let's play Wordle. Guess the hidden five-letter English word in "
            f"{self.max_guesses} tries. Write each guess as its letters separated by spaces, "
            "e.g. \"c r a n e\". After each guess you get one mark per letter: g = right letter "
            "in the right place, y = the letter is in the word but elsewhere, b = the letter "
            "is not in the word (a repeated letter is marked y only as often as it occurs).")

  def _reset(self, rng: np.random.Generator) -> str:
    words = answers()
    self.hidden = words[int(rng.integers(len(words)))]
    self.task_id = self.hidden
    self.history = []
    return (f"Wordle: guess the hidden five-letter word. You have {self.max_guesses} guesses. "
            "Write a guess as letters separated by spaces, e.g. \"c r a n e\".")

  def _guesses_left(self) -> int:
    return self.max_guesses - self.turn

  def _step(self, action: str) -> TimeStep:
    word = parse_guess(action)
    valid, _, _, _ = _tables()
    if word is None or word not in valid:
      reason = ("no five-letter word found in the guess" if word is None
                else f"\"{word}\" is not in the word list")
      step = self.invalid(reason, "Guess a five-letter English word written as letters "
                          "separated by spaces, e.g. \"c r a n e\".")
      if self._guesses_left() <= 0:
        return TimeStep(f"{step.observation}\nOut of guesses: the word was "
                        f"\"{' '.join(self.hidden)}\".", reward=step.reward, done=True,
                        info={**step.info, "success": False})
      return step
    code = pattern(word, self.hidden)
    self.history.append((word, code))
    marks = decode(code)
    if code == SOLVED:
      return TimeStep(f"{marks}\nSolved in {self.turn} guesses.", reward=0.0, done=True,
                      info={"success": True, "guess": word})
    if self._guesses_left() <= 0:
      return TimeStep(f"{marks}\nOut of guesses: the word was \"{' '.join(self.hidden)}\".",
                      reward=-1.0, done=True, info={"success": False, "guess": word})
    return TimeStep(marks, reward=-1.0, info={"guess": word})


# --- scripted policies ----------------------------------------------------------------------


def consistent(words: np.ndarray, history: Sequence[tuple[str, int]]) -> np.ndarray:
  """Boolean mask of the `encode`d `words` that would have produced every feedback so far."""
  mask = np.ones(len(words), dtype=bool)
  for guess, code in history:
    mask &= patterns(encode([guess]), words)[0] == code
  return mask


def expected_left(codes: np.ndarray) -> np.ndarray:
  """Per guess row of `codes` (G, H): expected candidates left, a win counting as none."""
  num = codes.shape[1]
  scores = np.empty(len(codes))
  for r, row in enumerate(codes):
    counts = np.bincount(row, minlength=SOLVED + 1)
    scores[r] = (float(counts @ counts) - counts[SOLVED]) / num
  return scores


def best_guess(guesses: np.ndarray, candidates: np.ndarray) -> int:
  """Index into `guesses` of the guess with the fewest expected candidates left (first wins)."""
  return int(np.argmin(expected_left(patterns(guesses, candidates))))


def _guess_text(word: str) -> str:
  return " ".join(word)


def strong_policy(*, sample: int = 100, **_) -> Policy:
  """Expected-size minimiser over the consistent answers (see the module docstring)."""

  def act(env: Wordle, rng: np.random.Generator) -> str:
    _, vocab_codes, answer_codes, _ = _tables()
    if not env.history:
      return _guess_text(FIRST_GUESS)
    words = answers()
    alive = np.flatnonzero(consistent(answer_codes, env.history))
    if len(alive) == 0:  # Cannot happen with the shipped lists; stay valid regardless.
      return _guess_text(FIRST_GUESS)
    if len(alive) <= 2:
      return _guess_text(words[alive[0]])
    pool = alive if len(alive) <= sample else rng.choice(alive, sample, replace=False)
    extra = vocab_codes[rng.choice(len(vocab_codes), sample, replace=False)]
    guesses = np.concatenate([answer_codes[pool], extra])
    scores = expected_left(patterns(guesses, answer_codes[alive]))
    best = int(np.argmin(scores))  # Candidates come first, so they win ties.
    return _guess_text(words[pool[best]] if best < len(pool)
                       else "".join(chr(c + 97) for c in guesses[best]))

  return act


def weak_policy(*, explore: float = 0.66, **_) -> Policy:
  """LMRL-Gym's data policy: random word w.p. `explore`, else a random consistent word."""

  def act(env: Wordle, rng: np.random.Generator) -> str:
    vocab = vocabulary()
    if rng.random() < explore or not env.history:
      return _guess_text(vocab[int(rng.integers(len(vocab)))])
    _, vocab_codes, _, _ = _tables()
    ok = np.flatnonzero(consistent(vocab_codes, env.history))
    pick = int(rng.choice(ok)) if len(ok) else int(rng.integers(len(vocab)))
    return _guess_text(vocab[pick])

  return act


# A row holds all 6 guesses at the full reply length even when every one is invalid (37
# opening tokens + 5 x (12 + end of turn + 60 of the invalid-guess message) + 13): a policy
# that cannot yet spell plays its six guesses instead of being cut after three.
register("wordle", Wordle, policies={"strong": strong_policy, "weak": weak_policy},
         budget=TokenBudget(448, 12, turn_limit_key="max_guesses"),
         normalizer=Normalizer(weak=-4.84, dataset=-3.782, strong=-2.555))
