"""agentrl.grid: a cell's overrides, config and run directory; training order, BC groups, tables."""

import json
import os
import tempfile

import pytest

from agentrl import grid, trainer
from agentrl.grid import Method

METHODS = {
    "PPO": Method("online_ppo", "ppo.py", ["train.total_iterations=3"]),
    "% BC": Method("filtered_bc", "filtered_bc.py", envs=("maze_po",)),
    "HiPER": Method("hiper", "hiper.py", bc_group="hiper"),
}


def make_grid(smoke=False, **kwargs):
  return grid.Grid.create("nb", smoke=smoke, methods=METHODS, envs=("wilt", "maze_po"),
                          seeds=(0, 1), overrides=["eval.episodes=5"],
                          env_overrides={"wilt": ["train.total_iterations=7"]}, **kwargs)


def test_a_cell_has_its_overrides_config_and_run_dir():
  g = make_grid()
  assert g.variant == "cpu" and g.envs == ("wilt", "maze_po")
  # seed, the grid's, the method's, the environment's: the last one wins.
  assert g.overrides_for("wilt", "PPO", 1) == [
      "seed=1", "eval.episodes=5", "train.total_iterations=3", "train.total_iterations=7"]
  config = g.config("wilt", "PPO", 1)
  assert (config.seed, config.eval.episodes, config.train.total_iterations) == (1, 5, 7)
  assert config.env.name == "wilt" and config.algorithm.name == "ppo"
  assert g.config("maze_po", "PPO", 0).train.total_iterations == 3
  assert g.run_dir("maze_po", "% BC", 1) == os.path.join(
      grid.REPO, "runs", "notebooks", "nb", "maze_po-cpu-filtered_bc-seed1")
  assert g.results_path("t.csv") == os.path.join(grid.REPO, "experiments", "results", "t.csv")
  assert g.shown(g.results_path("t.csv")) == os.path.join("experiments", "results", "t.csv")


def test_a_config_that_picks_its_environment_by_variant():
  g = grid.Grid.create("nb", smoke=False, seeds=(0,), envs=("twenty_questions",),
                       methods={"ArCHer": Method("a", "archer_twenty_questions.py",
                                                 env_in_variant=False)})
  assert g.config("twenty_questions", "ArCHer", 0).env.name == "twenty_questions"


def test_cells_orders_envs_and_bc_groups():
  g = make_grid()
  assert g.methods_for("wilt") == ["PPO", "HiPER"]
  assert g.cells(("env", "seed", "method"))[:4] == [
      ("wilt", "PPO", 0), ("wilt", "HiPER", 0), ("wilt", "PPO", 1), ("wilt", "HiPER", 1)]
  assert g.cells()[:4] == [
      ("wilt", "PPO", 0), ("wilt", "PPO", 1), ("wilt", "HiPER", 0), ("wilt", "HiPER", 1)]
  assert len(g.cells()) == 2 * 2 + 3 * 2
  with pytest.raises(ValueError, match="order"):
    g.cells(("method", "env", "seed"))
  # HiPER's BC policy is its own; the others share one.
  assert g.bc_from("maze_po", "PPO", 1) == [g.run_dir("maze_po", m, 1) for m in ("PPO", "% BC")]
  assert g.bc_from("maze_po", "HiPER", 1) == [g.run_dir("maze_po", "HiPER", 1)]


def test_train_all_trains_each_cell_once_in_a_temporary_directory(tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
  calls = []

  def train(config, run_dir):
    calls.append(run_dir)
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "metrics.jsonl"), "w") as f:
      for step in range(config.seed + 2):  # Seed s logs s + 2 evaluations.
        f.write(json.dumps({"step": step, "episodes": 4 * step, "eval/mean_return": -step})
                + "\n")
        f.write(json.dumps({"step": step, "train/loss": 1.0}) + "\n")

  monkeypatch.setattr(trainer, "train", train)
  g = make_grid(smoke=True)
  assert g.variant == "smoke" and g.runs_dir.startswith(str(tmp_path))
  assert g.overrides[-1] == f"data_dir={os.path.join(g.results_dir, 'data')}"
  runs = g.train_all(describe=lambda r: f"{r.env} {r.method} {r.seed} {len(r.rows)}")
  assert calls == [g.run_dir(*cell) for cell in g.cells()]
  assert "wilt PPO 1 3" in capsys.readouterr().out
  assert [row["step"] for row in runs[1].rows] == [0, 1, 2]  # Only the evaluation records.
  assert runs[1].last["eval/mean_return"] == -2
  assert [r.run_dir for r in g.train_all()] == calls and len(calls) == len(g.cells())
  x, y = grid.curves(runs, "eval/mean_return", env="wilt", method="PPO")
  assert x.tolist() == [0, 4] and y.tolist() == [[0, -1], [0, -1]]  # The shortest run's rows.
  assert grid.total_minutes(runs) == pytest.approx(sum(r.seconds for r in runs) / 60)


def test_write_csv(tmp_path):
  path = str(tmp_path / "sub" / "t.csv")
  grid.write_csv(path, [{"a": "x", "b": 0.5, "c": 3, "d": 0.25},
                        {"a": "y", "b": 1.0, "c": 4, "d": ""}], formats={"d": "{:.1f}"})
  with open(path) as f:
    assert f.read() == "a,b,c,d\nx,0.5000,3,0.2\ny,1.0000,4,\n"
