"""Normalised scores: the LMRL-Gym formula, the harness and the normalizer table command."""

from __future__ import annotations

import numpy as np
import pytest
from absl import app, flags
from absl.testing import flagsaver

from agentrl.data import scores
from experiments import make_datasets
from tests.test_data import GUESS, RACE, register_toys


@pytest.fixture
def toys(monkeypatch):
  register_toys(monkeypatch)


def test_anchors_map_to_0_50_100_and_beyond():
  n = scores.Normalizer(weak=-20.0, dataset=-17.0, strong=-12.0)
  assert n(-20.0) == 0.0 and n(-17.0) == 50.0 and n(-12.0) == 100.0
  assert n(-18.5) == pytest.approx(25.0) and n(-14.5) == pytest.approx(75.0)
  assert n(-22.0) == pytest.approx(-100 / 3) and n(-7.0) == pytest.approx(150.0)
  raw = np.linspace(-25.0, -5.0, 41)
  assert np.all(np.diff(n(raw)) > 0)  # Strictly increasing, continuous at the dataset mean.
  assert isinstance(n(-17.0), float) and n(raw).shape == (41,)


def test_paper_constants_reproduce_a_published_cell():
  # LMRL-Gym Table 4 raw -> Table 2 normalised: Wordle ILQL -2.04 -> 97.7, FO Maze ILQL
  # -6.97 -> 99.9.
  assert scores.LMRL_GYM_PAPER["wordle"](-2.04) == pytest.approx(97.7, abs=0.1)
  assert scores.LMRL_GYM_PAPER["maze_fo"](-6.97) == pytest.approx(99.9, abs=0.1)
  assert scores.LMRL_GYM_PAPER["twenty_questions"] == scores.Normalizer(-20.0, -17.3, -12.6)


def test_degenerate_and_missing_normalizers_raise():
  with pytest.raises(ValueError, match="'flat'.*weak < dataset < strong"):
    scores.normalized_score("flat", 1.0, table={"flat": scores.Normalizer(0.0, 1.0, 1.0)})
  with pytest.raises(KeyError, match="no score normalizer for environment 'nowhere'"):
    scores.normalized_score("nowhere", 1.0, table={})
  table = {"x": scores.Normalizer(0.0, 1.0, 3.0)}
  assert scores.normalized_score("x", 2.0, table=table) == 75.0


def test_scripted_returns_deterministic_and_ordered(toys):
  seeds = scores.eval_seeds(100)
  strong = scores.scripted_returns(GUESS, "strong", seeds=seeds)
  assert strong.shape == (100,) and strong.dtype == np.float64
  np.testing.assert_array_equal(strong, scores.scripted_returns(GUESS, "strong", seeds=seeds))
  weak = scores.scripted_returns(GUESS, "weak", seeds=seeds)
  mix = scores.scripted_returns(GUESS, {"strong": 0.5, "weak": 0.5}, seeds=seeds)
  np.testing.assert_array_equal(mix, scores.scripted_returns(GUESS, {"weak": 0.5, "strong": 0.5},
                                                             seeds=seeds))
  assert weak.mean() < mix.mean() < strong.mean()
  assert strong.min() == -5.0  # Bisection over 1..16 needs at most 5 guesses.
  # Each mixture episode equals the policy it drew on that seed.
  assert np.all((mix == strong) | (mix == weak))
  with pytest.raises(ValueError, match="no policy 'expert'"):
    scores.scripted_returns(GUESS, "expert", seeds=seeds)


def test_multi_role_reports_role_zero(toys):
  seeds = range(40)
  zero = scores.scripted_returns(RACE, "weak", seeds=seeds)
  one = scores.scripted_returns(RACE, "weak", seeds=seeds, role=1)
  np.testing.assert_array_equal(zero, -one)
  assert set(np.unique(zero)) <= {-1.0, 1.0}
  # The first player wins with the strong policy whatever the opponent does.
  strong = scores.scripted_returns(RACE, "strong", seeds=seeds, opponent="weak")
  assert np.all(strong == 1.0)
  versus = scores.scripted_returns(RACE, "weak", seeds=seeds, opponent="strong")
  assert versus.mean() < 0.0
  table = scores.compute_normalizers([RACE], episodes=100)
  assert table[RACE].weak < table[RACE].dataset < table[RACE].strong == 1.0


def test_normalizers_command_prints_table_source(toys, capsys):
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
  with flagsaver.flagsaver(normalizers=True, env=GUESS, normalizer_episodes=50):
    make_datasets.main(["make_datasets"])
  out = capsys.readouterr().out
  table = scores.compute_normalizers([GUESS], episodes=50)
  namespace = {"Normalizer": scores.Normalizer}
  exec(out.split("\n\n")[0], namespace)  # pylint: disable=exec-used
  parsed = namespace["NORMALIZERS"][GUESS]
  for field in ("weak", "dataset", "strong"):
    assert getattr(parsed, field) == pytest.approx(getattr(table[GUESS], field), rel=1e-5)
  assert table[GUESS].weak < table[GUESS].dataset < table[GUESS].strong
  assert f"| {GUESS} |" in out
  assert scores.normalized_score(GUESS, table[GUESS].strong, table=table) == 100.0


def test_normalizers_command_refuses_a_wrapper_scored_as_its_environment():
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
  with flagsaver.flagsaver(normalizers=True, env="hiper_maze_po"):
    with pytest.raises(app.UsageError, match="scored as maze_po's"):
      make_datasets.main(["make_datasets"])


@pytest.mark.parametrize("name", ["maze_fo", "tictactoe"])
def test_normalizer_table_is_reproduced_by_the_harness(name):
  """The committed constants are what `make_datasets --normalizers` measures (to 6 digits)."""
  [(got_name, got)] = scores.compute_normalizers([name]).items()
  want = scores.NORMALIZERS[name]
  np.testing.assert_allclose([got.weak, got.dataset, got.strong],
                             [want.weak, want.dataset, want.strong], rtol=1e-5)
  assert set(scores.NORMALIZERS) >= {"twenty_questions", "guess_my_city", "wordle", "maze_po",
                                     "text_nav_po", "wilt", "kuhn_poker"}
