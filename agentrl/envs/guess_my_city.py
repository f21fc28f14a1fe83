"""Guess My City: find a hidden city among 100 large world cities by asking questions.

Game (ArCHer's / LMRL-Gym's task with a rule-based oracle instead of a fine-tuned T5): the
environment thinks of one of the 100 cities of LMRL-Gym's `global_cities.txt` (facts in
`guess_my_city_data`, the oracle in `guess_my_city_oracle`). The agent asks free-form
questions; the oracle answers with templated sentences about the city's continent, country,
population, coast, languages, weather, landmarks, food, capital status and hemisphere,
including yes/no variants ("Is it in Europe?", "Is it the capital of Japan?", "Do they speak
Spanish?", "Is the population more than 10 million?", "Is it in the Middle East?"). A question
that names the hidden city (any spelling in the data, e.g. "Is it Bombay?" for Mumbai) wins;
one that names another city is answered "No, it is not Paris.". Answers never contain the
hidden city's names: a sentence that would is replaced by "I can't answer that question."
(ArCHer's anti-hacking rule), and the facts are written so that this never happens
(Singapore's country answer is "It is a city-state in Southeast Asia.").

Formats:
  * action: one question in English, e.g. "What continent is it on?" or "Is it Tokyo?".
    Parsing is case-, accent- and punctuation-insensitive and keyword based.
  * observation: the first one explains the game; then each one is the answer to the last
    question; the closing one of a won game names the city.

Reward: -1 per question, 0 for the question that names the city (the episode then ends as
`done` with `info["success"]`). A question the parser does not understand, or one that names
several cities at once, is an invalid action that costs -1 like any question
(`invalid_reward`). Horizon: 20 questions, then truncation. `task_id` is "City, Country".

Deviations from ArCHer (whose win test is "the city name is a substring of the question"):
  * names are matched as whole words of the normalised question (so "climate" does not guess
    Lima and "comparison" does not guess Paris), and old spellings count too;
  * a question naming two or more cities is invalid, so listing cities cannot win;
  * the oracle is deterministic and rule based, and its answers are open-ended templated
    sentences (ArCHer's T5 oracle answers freely; LMRL-Gym's collapses to yes/no).

Scripted policies (all read only the conversation, so one object serves many interleaved
environments):
  * "strong": keeps the cities consistent with every answer so far (by asking the oracle
    what each candidate would have answered, i.e. it knows the same world facts), asks a
    question whose answers split the candidates about best (answer entropy within 10% of the
    highest, drawn at random for varied data) among country, continent, population, coast,
    language, weather, capital and hemisphere questions and "Is the population more than X
    million?" thresholds between candidates, and guesses a candidate once at most two are
    left, nothing splits them, or on the last turn. Over seeds 0-199 it wins every game in
    2.8 questions on average (at most 4), a mean return of -1.78.
  * "expert": "strong" that may also ask about landmarks and food, which name the city to
    anyone who knows them, so it wins on the second question (mean return -1.01).
  * "weak": with probability 0.2 guesses a uniformly random city, otherwise asks a random
    question from a fixed list (mean return -19.5, success 0.06).
"""

from __future__ import annotations

import functools
import unicodedata
import weakref
from typing import Callable

import numpy as np

from agentrl.envs import Normalizer, TokenBudget, register
from agentrl.envs.base import Env, TimeStep
from agentrl.envs import guess_my_city_data as data
from agentrl.envs.guess_my_city_oracle import (  # noqa: F401  (re-exported: the oracle)
    CANT_ANSWER, normalize, parse, respond)

CITIES = data.CITIES
MAX_TURNS = 20
HINT = ("Ask about the city's country, continent, population, language, climate, coast, "
        "landmarks or food.")
FIRST_OBSERVATION = ("I am thinking of one of 100 large cities of the world. Ask me questions "
                     "about it, and guess it by naming it, e.g. \"Is it Paris?\".")


class GuessMyCity(Env):
  """The hidden-city guessing game; see the module docstring."""

  name = "guess_my_city"
  invalid_reward = -1.0
  turn_reward = -1.0

  def __init__(self, *, max_turns: int = MAX_TURNS):
    super().__init__(max_turns=max_turns)
    self.city = 0

  def reference_answer(self) -> str:
    return f"Is it {CITIES[self.city].name}?"

  def instructions(self, role: int = 0) -> str:
    del role
    return ("Let's play Guess My City. I am thinking of one of the 100 largest cities of the "
            "world. Ask one question per turn about it: its country, continent, population, "
            "languages, weather, coast, landmarks, food, whether it is a capital, or which "
            "hemisphere it is in. To guess, name the city in a question, e.g. \"Is it "
            f"Paris?\". You have {self.max_turns} questions; each one that does not name my "
            "city costs 1 point.")

  def _reset(self, rng: np.random.Generator) -> str:
    self.city = int(rng.integers(len(CITIES)))
    self.task_id = CITIES[self.city].task_id
    return FIRST_OBSERVATION

  def _step(self, action: str) -> TimeStep:
    if any(unicodedata.category(ch) == "Cc" and ch not in "\t\n\r" for ch in action):
      return self.invalid("the question contains control characters", HINT)
    kind, text = respond(self.city, action)
    if kind == "invalid":
      return self.invalid(text, HINT)
    if kind == "win":
      return TimeStep(text, reward=0.0, done=True, info={"success": True})
    return TimeStep(text, reward=-1.0)


# --- scripted policies ----------------------------------------------------------------------

STRUCTURED_QUESTIONS = (
    "What country is it in?", "What continent is it on?", "How many people live there?",
    "Is it on the coast?", "What language do people speak there?", "What is the weather like?",
    "Is it a capital city?", "Is it in the northern hemisphere?")
EXPERT_QUESTIONS = ("What is it famous for?", "What food is it known for?")
_POP = np.array([c.population for c in CITIES])


@functools.lru_cache(maxsize=None)
def _answer_ids(questions: tuple[str, ...]) -> np.ndarray:
  """[question, city] -> small int naming the oracle's answer (equal ids, equal answers)."""
  table = np.zeros((len(questions), len(CITIES)), np.int64)
  for q, question in enumerate(questions):
    texts = [respond(c, question)[1] for c in range(len(CITIES))]
    ids = {t: i for i, t in enumerate(dict.fromkeys(texts))}
    table[q] = [ids[t] for t in texts]
  return table


def _entropy(ids: np.ndarray) -> float:
  _, counts = np.unique(ids, return_counts=True)
  p = counts / counts.sum()
  return float(-(p * np.log2(p)).sum())


class _Tracker:
  """Candidate cities consistent with an environment's conversation, updated incrementally."""

  def __init__(self):
    self._state: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

  def candidates(self, env: Env) -> np.ndarray:
    messages = env.messages()
    pairs = [(messages[i]["content"], messages[i + 1]["content"])
             for i in range(1, len(messages) - 1, 2)]
    seed, done, alive = self._state.get(env, (None, [], None))
    if seed != env.seed or alive is None or pairs[:len(done)] != done:
      done, alive = [], np.arange(len(CITIES))
    for question, answer in pairs[len(done):]:
      if answer.startswith("Invalid action:"):
        continue
      alive = np.array([c for c in alive if respond(c, question)[1] == answer], np.int64)
    self._state[env] = (env.seed, pairs, alive)
    return alive


def _search_policy(questions: tuple[str, ...]) -> Callable[[Env, np.random.Generator], str]:
  tracker = _Tracker()

  def act(env: Env, rng: np.random.Generator) -> str:
    alive = tracker.candidates(env)
    if len(alive) == 0:  # the conversation contradicts the facts: start over
      alive = np.arange(len(CITIES))
    asked = {m["content"] for m in env.messages() if m["role"] == "assistant"}
    options, scores = [], []
    if len(alive) > 2 and env.turn < env.max_turns - 1:
      table = _answer_ids(questions)[:, alive]
      for q, question in enumerate(questions):
        if question not in asked:
          options.append(question)
          scores.append(_entropy(table[q]))
      pops = np.unique(_POP[alive])
      for t in (pops[1:] + pops[:-1]) / 2:
        options.append(f"Is the population more than {round(float(t), 3):g} million?")
        scores.append(_entropy(_POP[alive] > round(float(t), 3)))
    if options and max(scores) > 1e-9:
      best = np.flatnonzero(np.array(scores) >= 0.9 * max(scores) - 1e-9)
      return options[int(rng.choice(best))]
    return f"Is it {CITIES[int(rng.choice(alive))].name}?"

  return act


def strong_policy(**_) -> Callable[[Env, np.random.Generator], str]:
  """Entropy-greedy questions on structured facts, then a guess; see the module docstring."""
  return _search_policy(STRUCTURED_QUESTIONS)


def expert_policy(**_) -> Callable[[Env, np.random.Generator], str]:
  """As `strong_policy`, also asking about landmarks and food (wins on the second turn)."""
  return _search_policy(STRUCTURED_QUESTIONS + EXPERT_QUESTIONS)


def weak_policy(**_) -> Callable[[Env, np.random.Generator], str]:
  """Random questions, and a random city guess with probability 0.2."""
  countries = sorted({c.country for c in CITIES})

  def act(env: Env, rng: np.random.Generator) -> str:
    del env
    if rng.random() < 0.2:
      return f"Is it {CITIES[int(rng.integers(len(CITIES)))].name}?"
    kind = int(rng.integers(4))
    if kind == 0:
      return f"Is it in {data.CONTINENTS[int(rng.integers(len(data.CONTINENTS)))]}?"
    if kind == 1:
      country = countries[int(rng.integers(len(countries)))]
      return f"Is it in {data.COUNTRY_DISPLAY.get(country, country)}?"
    if kind == 2:
      return f"Is the population more than {int(rng.choice([1, 2, 5, 10, 20]))} million?"
    options = STRUCTURED_QUESTIONS + EXPERT_QUESTIONS
    return options[int(rng.integers(len(options)))]

  return act


register("guess_my_city", GuessMyCity,
         policies={"strong": strong_policy, "weak": weak_policy, "expert": expert_policy},
         budget=TokenBudget(512, 16),
         normalizer=Normalizer(weak=-19.661, dataset=-11.221, strong=-1.852))
