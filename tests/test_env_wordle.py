"""Rules, word lists and scripted policies of the Wordle environment."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from agentrl.envs import play
from agentrl.envs import wordle


def _reference_feedback(guess: str, hidden: str) -> str:
  """Real Wordle's two passes, written plainly: greens, then yellows from remaining counts."""
  marks = ["b"] * 5
  left: dict[str, int] = {}
  for i, (g, h) in enumerate(zip(guess, hidden)):
    if g == h:
      marks[i] = "g"
    else:
      left[h] = left.get(h, 0) + 1
  for i, g in enumerate(guess):
    if marks[i] != "g" and left.get(g, 0) > 0:
      marks[i] = "y"
      left[g] -= 1
  return " ".join(marks)


@pytest.mark.parametrize("guess,hidden,marks", [
    ("crane", "crane", "g g g g g"),
    ("speed", "abide", "b b y b y"),   # one e in abide: only the first e of speed is yellow
    ("geese", "those", "b b b g g"),   # the e of those is already green: no yellow e
    ("abbey", "kebab", "y y g y b"),   # one b green, the other b yellow from the remaining b
    ("eerie", "there", "y b y b g"),
    ("llama", "hello", "y y b b b"),
    ("hello", "llama", "b b y y b"),
    ("sissy", "missy", "b g g g g"),
    ("melee", "eerie", "b g b y g"),
])
def test_feedback_classic_repeated_letters(guess, hidden, marks):
  assert wordle.feedback(guess, hidden) == marks
  assert _reference_feedback(guess, hidden) == marks


def test_vectorised_patterns_match_reference_on_random_pairs():
  rng = np.random.default_rng(0)
  vocab = wordle.vocabulary()
  guesses = [vocab[i] for i in rng.choice(len(vocab), 60, replace=False)]
  # Words with repeated letters stress the yellow counting.
  guesses += ["geese", "llama", "mamma", "sissy", "eerie", "abbey"]
  hidden = [vocab[i] for i in rng.choice(len(vocab), 60, replace=False)] + ["those", "kebab"]
  codes = wordle.patterns(wordle.encode(guesses), wordle.encode(hidden))
  for (i, g), (j, h) in itertools.product(enumerate(guesses), enumerate(hidden)):
    assert wordle.decode(int(codes[i, j])) == _reference_feedback(g, h), (g, h)
    assert wordle.pattern(g, h) == codes[i, j]


def test_word_lists():
  vocab, answers = wordle.vocabulary(), wordle.answers()
  assert len(vocab) >= 2000 and 300 <= len(answers) <= 2200
  assert set(answers) <= set(vocab)
  assert all(len(w) == 5 and w.isascii() and w.isalpha() and w.islower() for w in vocab)
  assert len(set(vocab)) == len(vocab)
  assert not any(w.endswith("ed") for w in answers)


@pytest.mark.parametrize("text,word", [
    ("c r a n e", "crane"), ("crane", "crane"), ("C R A N E\n", "crane"), ("CRANE!", "crane"),
    ("c-r-a-n-e", "crane"), ("My guess is crane.", "crane"), ("guess: c r a n e", "crane"),
    ("", None), ("\x00\xff", None), ("abc", None), ("wonderful", None),
])
def test_parse_guess(text, word):
  assert wordle.parse_guess(text) == word


def test_rewards_solve_and_invalid_guesses():
  env = wordle.Wordle()
  env.reset(1)
  env.hidden = "abide"
  step = env.step("s p e e d")
  assert step.observation == "b b y b y" and step.reward == -1.0 and not step.last
  step = env.step("xqzvw")
  assert step.info["invalid_action"] and step.reward == -1.0
  assert "not in the word list" in step.observation and env.turn == 2
  step = env.step("")
  assert step.info["invalid_action"] and "no five-letter word" in step.observation
  step = env.step("A B I D E")
  assert step.done and not step.truncated and step.reward == 0.0 and step.info["success"]
  assert step.observation.startswith("g g g g g")


def test_six_wrong_guesses_end_the_game():
  env = wordle.Wordle()
  env.reset(2)
  env.hidden = "abide"
  rewards = []
  for action in ["crane", "stomp", "zzzzz", "lucky", "fight", "rough"]:
    step = env.step(action)
    rewards.append(step.reward)
  assert rewards == [-1.0] * 6 and step.done and not step.truncated
  assert not step.info["success"] and "a b i d e" in step.observation
  # An invalid sixth guess also ends it.
  env.reset(3)
  env.hidden = "abide"
  for _ in range(5):
    assert not env.step("crane").last
  step = env.step("zzzzz")
  assert step.done and step.info["invalid_action"] and not step.info["success"]


def test_hidden_word_is_a_function_of_the_seed():
  env = wordle.Wordle()
  words = [env.reset(s).info["task_id"] for s in (5, 6, 5)]
  assert words[0] == words[2] and all(w in wordle.answers() for w in words)


def test_first_guess_is_the_best_opener():
  _, vocab_codes, answer_codes, index = wordle._tables()
  scores = np.concatenate([wordle.expected_left(wordle.patterns(vocab_codes[i:i + 800],
                                                                answer_codes))
                           for i in range(0, len(vocab_codes), 800)])
  assert scores[index[wordle.FIRST_GUESS]] == pytest.approx(scores.min())


def test_consistent_filter():
  words = wordle.encode(["abide", "aside", "crane", "spade"])
  mask = wordle.consistent(words, [("speed", wordle.patterns(wordle.encode(["speed"]),
                                                             wordle.encode(["abide"]))[0, 0])])
  assert mask.tolist() == [True, False, False, False]


def test_strong_policy_is_near_optimal_and_beats_weak():
  env = wordle.Wordle()
  strong, weak = wordle.strong_policy(), wordle.weak_policy()
  s = [play(env, strong, seed=seed)[0] for seed in range(100)]
  w = [play(env, weak, seed=seed)[0] for seed in range(100)]
  s_ret = np.mean([e.episode_return for e in s])
  w_ret = np.mean([e.episode_return for e in w])
  assert all(e.success for e in s) and s_ret >= -3.0
  assert all(e.invalid_actions == 0 for e in s + w)
  assert w_ret <= -4.0 and np.mean([e.success for e in w]) < 0.8
