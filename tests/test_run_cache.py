"""agentrl.run_cache: a grid cell is trained once, its wall time kept, its BC policy shared."""

import json
import os

import ml_collections
import pytest

from agentrl import run_cache, trainer


def _config(bc_steps=10):
  return ml_collections.ConfigDict({"bc": {"steps": bc_steps}})


@pytest.fixture
def fake_train(monkeypatch):
  """trainer.train replaced by a recorder that writes a BC checkpoint unless one was copied."""
  calls = []

  def train(config, run_dir):
    bc = os.path.join(run_dir, "bc")
    copied = os.path.isdir(bc)
    calls.append((run_dir, copied))
    os.makedirs(bc, exist_ok=True)
    if not copied:
      with open(os.path.join(bc, "origin"), "w") as f:
        f.write(run_dir)

  monkeypatch.setattr(trainer, "train", train)
  return calls


def test_a_finished_run_is_read_not_retrained(tmp_path, fake_train):
  run = str(tmp_path / "a")
  seconds = run_cache.train_once(_config(), run)
  assert fake_train == [(run, False)]
  assert run_cache.finished(run) and seconds >= 0
  with open(os.path.join(run, run_cache.WALL_TIME), "w") as f:
    json.dump({"seconds": 123.5}, f)
  assert run_cache.train_once(_config(), run) == 123.5
  assert len(fake_train) == 1


def test_bc_comes_from_the_first_finished_sibling(tmp_path, fake_train):
  a, b, c = (str(tmp_path / n) for n in "abc")
  run_cache.train_once(_config(), a)
  # c is not finished: it is skipped, a's BC is copied.
  run_cache.train_once(_config(), b, bc_from=[c, a])
  assert fake_train[-1] == (b, True)
  with open(os.path.join(b, "bc", "origin")) as f:
    assert f.read() == a


def test_no_bc_copy_without_bc_steps_or_finished_sibling(tmp_path, fake_train):
  a, b, c = (str(tmp_path / n) for n in "abc")
  run_cache.train_once(_config(), a)
  run_cache.train_once(_config(bc_steps=0), b, bc_from=[a])
  assert fake_train[-1] == (b, False)
  run_cache.train_once(_config(), c, bc_from=[str(tmp_path / "never")])
  assert fake_train[-1] == (c, False)


def test_wall_time_of_an_unfinished_run_names_the_file(tmp_path):
  with pytest.raises(FileNotFoundError, match="wall_time.json"):
    run_cache.wall_time(str(tmp_path))


def test_restore_does_not_train_a_missing_bc(tmp_path, monkeypatch):
  monkeypatch.setattr(trainer, "build", lambda config: object())
  with pytest.raises(FileNotFoundError, match="holds no BC checkpoint"):
    run_cache.restore(_config(), str(tmp_path))
