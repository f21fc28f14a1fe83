"""Word list, oracle, question parser, rewards and scripted policies of Twenty Questions."""

from __future__ import annotations

import numpy as np
import pytest

from agentrl import envs
from agentrl.envs import twenty_questions as tq
from agentrl.envs import twenty_questions_data as tq_data


def _seeds_by_word(subset: bool = False) -> dict[str, int]:
  """The first seed that hides each word (found by resetting, as any user could)."""
  env = tq.TwentyQuestions(subset=subset)
  found: dict[str, int] = {}
  for seed in range(20000):
    found.setdefault(env.reset(seed).info["task_id"], seed)
    if len(found) == len(env.word_ids):
      return found
  raise AssertionError("some word is never drawn")


SEEDS = _seeds_by_word()


def _env_hiding(word: str) -> tq.TwentyQuestions:
  env = tq.TwentyQuestions()
  env.reset(SEEDS[word])
  assert env.task_id == word
  return env


# --- the word list and the attribute table --------------------------------------------------


def test_word_list_has_157_words_in_17_categories():
  assert len(tq_data.CATEGORIES) == 17
  assert len(tq.WORDS) == 157 == len(set(tq.WORDS))
  assert tq.WORDS[:3] == ("basketball", "football", "baseball")
  assert tq.SYNONYMS[tq.WORDS.index("airplane")] == ("airplane", "plane")
  assert tq.SYNONYMS[tq.WORDS.index("pliers")] == ("pliers", "plier", "pair of pliers")


def test_subset_is_archers_ten_words():
  expected = ["football", "dog", "banana", "truck", "pants", "computer", "piano", "chair", "pen",
              "scissors"]
  assert [tq.WORDS[i] for i in tq.SUBSET_IDS] == expected
  # ArCHer's subset takes every tenth word of the flat list, starting at index 1.
  assert list(tq.SUBSET_IDS) == list(range(1, 100, 10))
  env = envs.make("twenty_questions_subset")
  assert sorted(_seeds_by_word(subset=True)) == sorted(expected)
  assert all(w in env.instructions() for w in expected)
  assert "football" not in envs.make("twenty_questions").instructions()


def test_every_word_has_a_distinct_attribute_vector():
  assert tq.TABLE.shape == (157, len(tq.ATTRIBUTE_NAMES)) and tq.TABLE.shape[1] >= 40
  rows = {row.tobytes() for row in tq.TABLE}
  assert len(rows) == len(tq.WORDS)
  # Only the two animal-class questions are "no" for everything (there are no aquatic
  # animals, birds, fish, insects or reptiles in the list); every other question splits.
  counts = tq.TABLE.sum(axis=0)
  always_no = {tq.ATTRIBUTE_NAMES[i] for i in np.flatnonzero(counts == 0)}
  assert always_no == {"lives_in_water", "bird_fish_insect_or_reptile"}
  assert (counts < len(tq.WORDS)).all()


@pytest.mark.parametrize("word,question,expected", [
    ("dog", "Is it an animal?", "Yes."),
    ("dog", "Does it have legs?", "Yes."),
    ("dog", "Is it a mammal?", "Yes."),
    ("dog", "Is it man-made?", "No."),
    ("dog", "Can you eat it?", "No."),
    ("banana", "Is it edible?", "Yes."),
    ("banana", "Is it a fruit?", "Yes."),
    ("banana", "Is it made of metal?", "No."),
    ("banana", "Is it yellow?", "Yes."),
    ("banana", "Is it alive?", "No."),
    ("truck", "Does it have wheels?", "Yes."),
    ("truck", "Is it a vehicle?", "Yes."),
    ("truck", "Is it bigger than a breadbox?", "Yes."),
    ("truck", "Can it fly?", "No."),
    ("piano", "Is it a musical instrument?", "Yes."),
    ("piano", "Does it have keys?", "Yes."),
    ("piano", "Is it made of wood?", "Yes."),
    ("piano", "Does it need electricity?", "No."),
    ("computer", "Is it electronic?", "Yes."),
    ("computer", "Does it need electricity?", "Yes."),
    ("pants", "Is it clothing?", "Yes."),
    ("pants", "Is it soft?", "Yes."),
    ("chair", "Is it furniture?", "Yes."),
    ("chair", "Do you sit on it?", "Yes."),
    ("pen", "Can it fit in your pocket?", "Yes."),
    ("pen", "Is it bigger than a breadbox?", "No."),
    ("scissors", "Is it used for cutting?", "Yes."),
    ("scissors", "Is it a tool?", "Yes."),
    ("football", "Is it used for sports?", "Yes."),
    ("football", "Is it round?", "No."),
    ("basketball", "Is it round?", "Yes."),
    ("airplane", "Can it fly?", "Yes."),
    ("boat", "Does it travel on water?", "Yes."),
    ("elephant", "Does it have a trunk?", "Yes."),
    ("elephant", "Is it bigger than a person?", "Yes."),
    ("cat", "Is it a pet?", "Yes."),
    ("tree", "Is it alive?", "Yes."),
    ("tree", "Is it a plant?", "Yes."),
    ("rock", "Is it natural?", "Yes."),
    ("ocean", "Is it salty?", "Yes."),
    ("river", "Does it flow?", "Yes."),
    ("refrigerator", "Is it found in a kitchen?", "Yes."),
    ("hammer", "Is it a tool?", "Yes."),
    ("hammer", "Is it made of metal?", "Yes."),
    ("spoon", "Is it made of metal?", "Yes."),
    ("carrot", "Is it a vegetable?", "Yes."),
    ("carrot", "Does it grow underground?", "Yes."),
    ("ring", "Is it jewelry?", "Yes."),
    ("mountain", "Is it bigger than a house?", "Yes."),
    ("lion", "Does it live in water?", "No."),
])
def test_hand_checked_facts(word, question, expected):
  assert tq.answer(word, question) == expected
  env = _env_hiding(word)
  step = env.step(question)
  assert (step.observation, step.reward, step.last) == (expected, -1.0, False)


# --- the parser -----------------------------------------------------------------------------


@pytest.mark.parametrize("question,attribute,negated", [
    ("Is it an animal?", "is_animal", False),
    ("Is the object an animal?", "is_animal", False),
    ("Is it a type of animal?", "is_animal", False),
    ("Are they animals?", "is_animal", False),
    ("is it an ANIMAL", "is_animal", False),
    ("  Is  it   an animal ?!", "is_animal", False),
    ("Okay, my next question is: is it an animal?", "is_animal", False),
    ("Is it alive?", "is_alive", False),
    ("Is it a living thing?", "is_alive", False),
    ("Does it have wheels?", "has_wheels", False),
    ("Can you eat it?", "is_edible", False),
    ("Is it edible?", "is_edible", False),
    ("Is it food?", "is_edible", False),
    ("Can it be eaten?", "is_edible", False),
    ("Is it something you can eat?", "is_edible", False),
    ("Is it bigger than a breadbox?", "bigger_than_a_breadbox", False),
    ("Is it smaller than a breadbox?", "bigger_than_a_breadbox", True),
    ("Is it man-made?", "man_made", False),
    ("Is it manmade?", "man_made", False),
    ("Is it natural?", "man_made", True),
    ("Is it a vehicle?", "is_vehicle", False),
    ("Is it a mode of transportation?", "is_vehicle", False),
    ("Is it a kind of fruit?", "is_fruit", False),
    ("Is it a piece of furniture?", "is_furniture", False),
    ("Is it an article of clothing?", "is_clothing", False),
    ("Is it made out of wood?", "made_of_wood", False),
    ("Is it wooden?", "made_of_wood", False),
    ("Would you find it in a kitchen?", "found_in_kitchen", False),
    ("Is it found in the kitchen?", "found_in_kitchen", False),
    ("Is it used outdoors?", "used_outdoors", False),
    ("Is it found indoors?", "used_outdoors", True),
    ("Is it able to fly?", "can_fly", False),
    ("Does it fly?", "can_fly", False),
    ("Is it an electronic device?", "electronic", False),
    ("Does it use electricity?", "needs_electricity", False),
    ("Is it a musical instrument?", "is_instrument", False),
    ("Do people get milk from it?", "gives_milk", False),
    ("Can you wear it?", "wearable", False),
])
def test_parser_phrasings(question, attribute, negated):
  assert tq.parse(question) == ("attribute", tq.ATTRIBUTE_NAMES.index(attribute), negated)


def test_canonical_questions_and_guesses_parse_to_themselves():
  for index, question in enumerate(tq.QUESTIONS):
    assert tq.parse(question) == ("attribute", index, False), question
  for word in range(len(tq.WORDS)):
    assert tq.parse(tq.guess_question(word)) == ("guess", word, False)
  assert tq.guess_question(tq.WORDS.index("scissors")) == "Is it a pair of scissors?"
  assert tq.guess_question(tq.WORDS.index("apple")) == "Is it an apple?"


@pytest.mark.parametrize("question,word", [
    ("Is it a dog?", "dog"), ("Is it an apple?", "apple"), ("Is the object a dog?", "dog"),
    ("Is it dogs?", "dog"), ("Is it a plane?", "airplane"), ("Is it an airplane?", "airplane"),
    ("Is it a TV?", "television"), ("Is it a pair of scissors?", "scissors"),
    ("Is it scissors?", "scissors"), ("Is it pants?", "pants"), ("Is it a pant?", "pants"),
    ("Is it a pack of batteries?", "battery"), ("Is it batteries?", "battery"),
    ("Is it a frying pan?", "pan"), ("Is it a pot?", "cooking pot"), ("Is it knives?", "knife"),
    ("Is it a cactus?", "cactus"), ("Is it cacti?", "cactus"), ("Is it a pea?", "peas"),
    ("Is it a jigsaw puzzle?", "puzzle"), ("Could it be a horse?", "horse"),
    ("My guess is: is it a horse?", "horse"), ("Is it a soccer ball?", "soccer ball"),
    ("Is it a computer keyboard?", "computer keyboard"), ("Is it a keyboard?", "computer keyboard"),
])
def test_guesses_accept_synonyms_and_plurals(question, word):
  assert tq.parse(question) == ("guess", tq.WORDS.index(word), False)
  step = _env_hiding(word).step(question)
  assert step.done and step.info["success"] and step.reward == 0.0
  assert word in step.observation


@pytest.mark.parametrize("question", [
    "", "   ", "?", "\x00\xff", "ünïcödé ☃", "asdfgh", "Is it?", "Is it a zebra?",
    "Is it a dog or a cat?", "Is it made of metal or wood?", "Tell me the word.", "dog dog dog",
    "Is it an animal? Is it a dog?", "x" * 999, "Is it a " + "very " * 150 + "big dog?",
])
def test_unrecognised_questions_are_invalid(question):
  assert tq.parse(question) is None
  assert tq.answer("dog", question) == "Invalid question."
  env = _env_hiding("dog")
  step = env.step(question)
  assert step.observation == "Invalid question."
  assert step.info["invalid_action"] and step.reward == -1.0 and not step.last


# --- rewards and episodes -------------------------------------------------------------------


def test_rewards_wrong_guess_and_win():
  env = _env_hiding("banana")
  first = env.messages()[0]["content"]
  assert "first" in first and "question" in first
  wrong = env.step("Is it an apple?")
  assert (wrong.observation, wrong.reward, wrong.last) == ("No.", -1.0, False)
  assert not wrong.info["invalid_action"] and not wrong.info["success"]
  win = env.step("is it bananas")
  assert win.done and not win.truncated and win.reward == 0.0 and win.info["success"]
  assert win.info["task_id"] == "banana" and win.info["turn"] == 2
  assert "guessed" in win.observation and "banana" in win.observation


def test_twenty_turns_then_truncated_with_return_minus_20():
  env = _env_hiding("truck")
  rewards = []
  for turn in range(20):
    step = env.step("Is it a dog?" if turn % 2 else "gibberish")
    rewards.append(step.reward)
  assert rewards == [-1.0] * 20 and sum(rewards) == -20
  assert step.truncated and not step.done and not step.info["success"]
  assert step.observation.startswith("No.") and "truck" in step.observation
  with pytest.raises(RuntimeError):
    env.step("Is it a truck?")


def test_reset_is_deterministic_and_task_id_is_the_word():
  env = envs.make("twenty_questions")
  ids = [env.reset(seed).info["task_id"] for seed in range(50)]
  assert ids == [env.reset(seed).info["task_id"] for seed in range(50)]
  assert set(ids) <= set(tq.WORDS) and len(set(ids)) > 30


# --- scripted policies ----------------------------------------------------------------------


def _measure(name: str, which: str, seeds=range(200)):
  env, policy = envs.make(name), envs.policy(name, which)
  episodes = [envs.play(env, policy, seed=s)[0] for s in seeds]
  returns = np.array([e.episode_return for e in episodes])
  return returns.mean(), np.mean([e.success for e in episodes]), episodes


def test_strong_policy_is_near_optimal_and_weak_is_far_below():
  strong_return, strong_success, episodes = _measure("twenty_questions", "strong")
  weak_return, weak_success, _ = _measure("twenty_questions", "weak")
  # Measured: strong -7.10 (success 1.0), weak -19.84 (success 0.015); log2(157) = 7.3.
  assert strong_success >= 0.95 and strong_return >= -8.0
  assert weak_return <= strong_return - 8 and weak_success <= 0.2
  assert all(e.invalid_actions == 0 for e in episodes)  # canonical phrasings all parse
  assert all(e.num_turns <= 12 for e in episodes)


def test_strong_policy_on_the_subset():
  strong_return, strong_success, _ = _measure("twenty_questions_subset", "strong")
  weak_return, _, _ = _measure("twenty_questions_subset", "weak")
  # Measured: strong -3.03 (success 1.0), weak -16.36; with perfect halving the best is -2.8.
  assert strong_success == 1.0 and strong_return >= -3.5
  assert weak_return <= strong_return - 8


def test_strong_policy_finds_every_word():
  env, policy = envs.make("twenty_questions"), envs.policy("twenty_questions", "strong")
  for word, seed in SEEDS.items():
    [episode] = envs.play(env, policy, seed=seed)
    assert episode.success and episode.task_id == word and episode.num_turns <= 12, word


def test_policies_work_interleaved_across_environments():
  policy = envs.policy("twenty_questions", "strong")
  solo = {}
  for seed in (3, 4, 5):
    [episode] = envs.play(envs.make("twenty_questions"), policy, seed=seed)
    solo[seed] = episode.actions
  games = {seed: envs.make("twenty_questions") for seed in (3, 4, 5)}
  steps = {seed: env.reset(seed) for seed, env in games.items()}
  actions = {seed: [] for seed in games}
  rng = np.random.default_rng(0)
  while not all(step.last for step in steps.values()):
    for seed, env in games.items():  # one turn of each game in turn
      if not steps[seed].last:
        actions[seed].append(policy(env, rng))
        steps[seed] = env.step(actions[seed][-1])
  assert actions == solo


def test_candidates_follow_the_answers():
  env = _env_hiding("dog")
  assert len(tq.candidates(env)) == 157
  env.step("Is it an animal?")
  left = {tq.WORDS[w] for w in tq.candidates(env)}
  assert left == {w.lower() for w in tq_data.CATEGORIES["Animals"]}
  env.step("Is it a cat?")
  env.step("nonsense")  # invalid: no information
  assert {tq.WORDS[w] for w in tq.candidates(env)} == left - {"cat"}
