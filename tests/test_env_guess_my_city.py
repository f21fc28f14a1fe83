"""Guess My City: oracle facts, no name leaks, guess detection, parser phrasings, policies."""

from __future__ import annotations

import numpy as np
import pytest

from agentrl.envs import guess_my_city as g
from agentrl.envs import guess_my_city_data as data
from agentrl.envs import guess_my_city_oracle as oracle
from agentrl.envs.base import play

INDEX = {c.name: i for i, c in enumerate(g.CITIES)}
ALL_COUNTRIES = sorted(set(data.countries().values()))


def ask(city: str, question: str) -> str:
  kind, text = g.respond(INDEX[city], question)
  assert kind == "answer", (city, question, kind, text)
  return text


def env_for(city: str) -> g.GuessMyCity:
  env = g.GuessMyCity()
  for seed in range(10_000):
    env.reset(seed)
    if env.city == INDEX[city]:
      return env
  raise AssertionError(city)


def all_questions() -> list[str]:
  questions = list(g.STRUCTURED_QUESTIONS + g.EXPERT_QUESTIONS)
  questions += ["Is it near the sea?", "What landmarks are there?", "Where is it?",
                "Is it in the southern hemisphere?", "Is the population between 2 and 5 million?",
                "Are there fewer than 3 million inhabitants?", "Is it a big city?"]
  questions += [f"Is it in {c}?" for c in data.CONTINENTS + ("the Americas",)]
  questions += [f"Is it in {r}?" for r in data.REGIONS]
  questions += [f"Is it in {c}?" for c in ALL_COUNTRIES]
  questions += [f"Is it the capital of {c}?" for c in ALL_COUNTRIES]
  questions += [f"Do they speak {lang}?" for lang in oracle._LANGUAGE_KEYS]
  questions += [f"Is the population more than {t} million?" for t in (0.34, 1, 2.5, 5, 10, 20)]
  return questions


def test_there_are_100_distinct_cities_with_valid_attributes():
  assert len(g.CITIES) == 100 and len({c.task_id for c in g.CITIES}) == 100
  countries = set(data.countries().values())
  for c in g.CITIES:
    assert c.country in countries and c.continent in data.CONTINENTS
    assert c.coast in (data.COASTAL, data.NEAR, data.INLAND) and c.climate in data.CLIMATES
    assert c.hemisphere in "NS" and 0.1 < c.population < 40 and c.languages


def test_no_answer_ever_contains_the_city_name():
  questions = all_questions() + ["Is it Paris?", "Is it Tokyo?"]
  filtered = set()
  for i, city in enumerate(g.CITIES):
    names = [g.normalize(n) for n in (city.name,) + city.aliases]
    for question in questions:
      kind, text = g.respond(i, question)
      if kind == "win":
        continue
      assert kind == "answer", (question, text)
      assert city.name.lower() not in text.lower() and names[0] not in g.normalize(text)
      assert not oracle._OWN_NAME_RE[i].search(g.normalize(text)), (city.name, question, text)
      if text == g.CANT_ANSWER:
        filtered.add((city.name, question))
  # The facts are written so that the anti-leak rule only fires on "El Salvador" for Salvador.
  assert {q for _, q in filtered} <= {"Is it in El Salvador?",
                                      "Is it the capital of El Salvador?"}
  assert all(name == "Salvador" for name, _ in filtered)


def test_cities_that_share_a_name_with_their_country():
  assert ask("Singapore", "What country is it in?") == "It is a city-state in Southeast Asia."
  assert ask("Mexico City", "What country is it in?") == "It is in Mexico."
  assert ask("Mexico City", "Is it in Mexico?") == "Yes, it is in Mexico."
  assert g.respond(INDEX["Singapore"], "Is it in Singapore?")[0] == "win"
  assert g.respond(INDEX["Mexico City"], "Is it in Mexico?")[0] == "answer"


def test_hand_checked_facts():
  assert ask("Tokyo", "What continent is your city on?") == "It is in Asia."
  assert ask("Tokyo", "What country is it in?") == "It is in Japan."
  assert ask("Tokyo", "Is it on the coast?") == "It is on the coast, right by the sea."
  assert ask("Tokyo", "Is it a capital?") == "Yes, it is the capital of its country."
  assert ask("Tokyo", "How many people live there?") == "About 37 million people live there."
  assert ask("Tokyo", "What language do people speak?") == "People there mainly speak Japanese."
  assert ask("Moscow", "Is it near the sea?") == "It is inland, away from the sea."
  assert ask("Moscow", "Is it in Europe?") == "Yes, it is in Europe."
  assert "cold winters" in ask("Moscow", "What is the weather like?")
  assert ask("Sydney", "Is it in the northern hemisphere?") == "It is in the southern hemisphere."
  assert ask("Sydney", "Is it a capital city?") == "No, it is not a national capital."
  assert ask("Sydney", "What continent?") == "It is in Oceania."
  assert ask("Cairo", "Is it in Africa?") == "Yes, it is in Africa."
  assert "desert" in ask("Cairo", "Does it rain much?")
  assert ask("Lima", "Is it the capital of Peru?") == "Yes, it is the capital of Peru."
  assert ask("Chicago", "Is it coastal?") == "It is inland, away from the sea."
  assert ask("New York", "Where is it?") == "It is in the United States."
  assert ask("Giza", "What is it famous for?") == ("It is famous for the Great Pyramids and "
                                                   "the Sphinx.")
  assert ask("Paris", "What food is it known for?") == ("Local favourites include croissants "
                                                       "and baguettes.")
  assert ask("Istanbul", "Is it in Asia?").startswith("Partly")
  assert ask("Ankara", "Is it in Asia?") == "Yes, it is in Asia."
  assert ask("Rio de Janeiro", "Is it the capital of Brazil?") == ("No, it is not the capital "
                                                                  "of Brazil.")
  assert ask("Brasília", "Is it the capital of Brazil?") == "Yes, it is the capital of Brazil."
  assert ask("Mumbai", "Is Hindi spoken there?") == "Yes, people there speak Hindi."
  assert ask("Hong Kong", "Do they speak Chinese?") == "Yes, people there speak Cantonese."
  assert ask("Madrid", "Do they speak French?") == "No, French is not a main language there."
  assert ask("Tehran", "Is it in the Middle East?") == "Yes, it is in the Middle East."
  assert ask("Seoul", "Is it in Korea?") == "Yes, it is in South Korea."
  assert ask("Abidjan", "Is it in Ivory Coast?") == "Yes, it is in Côte d'Ivoire."


def test_population_questions():
  assert ask("Tokyo", "Is the population more than 10 million?") == (
      "Yes, more than 10 million people live there.")
  assert ask("Budapest", "Do more than 10,000,000 people live there?") == (
      "No, not more than 10 million people live there.")
  assert ask("Budapest", "Are there fewer than 2m inhabitants?") == (
      "Yes, fewer than 2 million people live there.")
  assert ask("Sukabumi", "How big is it?") == "About 350 thousand people live there."
  assert ask("Sukabumi", "Is the population over 500 thousand?").startswith("No")
  assert ask("Berlin", "Is the population between 3 and five million?") == (
      "Yes, the population is between 3 million and 5 million.")
  assert ask("Berlin", "What is the population?") == "About 3.5 million people live there."


@pytest.mark.parametrize("question,kind", [
    ("What's the population?", "population"), ("How many people live there?", "population"),
    ("Is it a port city?", "coast"), ("Is it landlocked?", "coast"),
    ("Is English spoken there?", "language"), ("Is it Mandarin-speaking?", "language"),
    ("What do people eat there?", "food"), ("What's the local cuisine?", "food"),
    ("Is it hot?", "climate"), ("Does it snow in winter?", "climate"),
    ("What is the climate like?", "climate"), ("What landmarks are there?", "landmark"),
    ("Any famous sights?", "landmark"), ("Is it a national capital?", "capital"),
    ("Is it north of the equator?", "hemisphere"), ("Which continent is it on?", "continent"),
    ("In which country?", "country"), ("Where is it located?", "country"),
    ("Is it in Europe or Asia?", "continent_is"), ("Is it an African city?", "continent_is"),
    ("Is it a Chinese city?", "country_is"), ("IS IT IN THE U.S.???", "country_is"),
    ("Is it in South-East Asia?", "region_is"), ("Is it in Latin America?", "region_is"),
    ("Is it bigger than 5 million people?", "pop_more"), ("Is it Paris?", "guess"),
    ("Is it Paris or London?", "many"), ("hello", "unknown"), ("", "unknown"),
    ("  ?!  ", "unknown"), ("東京ですか", "unknown"), ("What is the name of the city?", "unknown"),
])
def test_parser_phrasings(question, kind):
  assert g.parse(question)[0] == kind


def test_guess_detection():
  tokyo = INDEX["Tokyo"]
  for question in ("Is it Tokyo?", "IS IT TOKYO", "tokyo", "Is your city Tokyo, Japan?"):
    assert g.respond(tokyo, question)[0] == "win", question
  for city, question in (("Mumbai", "Is it Bombay?"), ("São Paulo", "Is it Sao Paulo?"),
                         ("Xi'an", "Is it Xian?"), ("Kyiv", "Is it Kiev?"),
                         ("Bogotá", "is it bogota"), ("Delhi", "Is it New Delhi?"),
                         ("Saint Petersburg", "Is it St. Petersburg?"),
                         ("Mexico City", "Is it Mexico City?")):
    assert g.respond(INDEX[city], question)[0] == "win", question
  # Whole words only: these name no city.
  assert g.respond(INDEX["Lima"], "What is the climate like?")[0] == "answer"
  assert g.respond(INDEX["Paris"], "Population comparison: more than 5 million?")[0] == "answer"
  assert g.respond(INDEX["Salvador"], "Is it in El Salvador?") == ("answer", g.CANT_ANSWER)
  assert g.parse("Is it in Mexico?")[0] == "country_is"
  assert g.respond(tokyo, "Is it Paris?") == ("answer", "No, it is not Paris.")
  assert g.respond(tokyo, "Is it Tokyo or Osaka?")[0] == "invalid"


def test_rewards_turns_and_invalid_actions():
  env = env_for("Tokyo")
  assert env.task_id == "Tokyo, Japan"
  step = env.step("What country is it in?")
  assert (step.reward, step.done, step.observation) == (-1.0, False, "It is in Japan.")
  step = env.step("Is it Paris?")
  assert (step.reward, step.done, step.info["invalid_action"]) == (-1.0, False, False)
  step = env.step("Tell me a joke")
  assert step.reward == -1.0 and step.info["invalid_action"] and not step.done
  assert "I don't understand the question" in step.observation and "landmarks" in step.observation
  step = env.step("Is it \x00 Tokyo?")
  assert step.info["invalid_action"] and not step.done
  step = env.step("Is it Tokyo?")
  assert step.reward == 0.0 and step.done and step.info["success"] and env.turn == 5
  assert [m["role"] for m in env.messages()] == ["user", "assistant"] * 5 + ["user"]

  env = env_for("Moscow")
  for _ in range(g.MAX_TURNS):
    step = env.step("Is it in Asia?")
  assert step.truncated and not step.done and not step.info["success"] and env.turn == 20


def test_policies_strong_expert_and_weak():
  env = g.GuessMyCity()
  results = {}
  for which, factory in (("strong", g.strong_policy), ("expert", g.expert_policy),
                         ("weak", g.weak_policy)):
    policy = factory()
    episodes = [play(env, policy, seed=s, rng=s)[0] for s in range(200)]
    results[which] = (np.mean([e.episode_return for e in episodes]),
                      np.mean([e.success for e in episodes]),
                      max(e.num_turns for e in episodes))
    assert sum(e.invalid_actions for e in episodes) == 0
  strong, expert, weak = results["strong"], results["expert"], results["weak"]
  assert strong[1] == 1.0 and strong[0] > -2.0 and strong[2] <= 5, strong  # measured -1.78
  assert expert[1] == 1.0 and expert[0] >= -1.1 and expert[2] <= 3, expert  # measured -1.01
  assert weak[0] < -18.0 and weak[1] < 0.2, weak  # measured -19.5, 0.06


def test_one_policy_object_serves_interleaved_environments():
  seeds = list(range(12))
  policy = g.strong_policy()
  sequential = [play(g.GuessMyCity(), policy, seed=s, rng=s)[0].actions for s in seeds]
  envs, rngs, steps = [], [], []
  for s in seeds:
    envs.append(g.GuessMyCity())
    steps.append(envs[-1].reset(s))
    rngs.append(np.random.default_rng(s))
  while not all(step.last for step in steps):
    for k in reversed(range(len(seeds))):  # a different order than the sequential run
      if not steps[k].last:
        steps[k] = envs[k].step(policy(envs[k], rngs[k]))
  interleaved = [[m["content"] for m in env.messages() if m["role"] == "assistant"]
                 for env in envs]
  assert interleaved == sequential
  # Reusing an env with a new seed, or the same seed again, starts the candidates afresh.
  env = g.GuessMyCity()
  first = play(env, policy, seed=3, rng=0)[0].actions
  assert play(env, policy, seed=3, rng=0)[0].actions == first
