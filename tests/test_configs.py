"""Tests for agentrl.configs: loading variants, typed overrides, key errors, absl, resume checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import ml_collections
import pytest

from agentrl import configs

CONFIG_SRC = textwrap.dedent('''
    import ml_collections
    from ml_collections import config_dict

    def get_config(arg=None):
      c = ml_collections.ConfigDict()
      c.seed = 0
      c.total_iterations = 1000
      c.use_wandb = False
      c.tag = ""
      c.maybe = config_dict.placeholder(int)
      c.env = ml_collections.ConfigDict({"name": "maze", "max_turns": 20})
      c.algorithm = ml_collections.ConfigDict(
          {"lr": 3e-4, "clip": True, "hidden": (64, 64), "gammas": (0.9, 0.99)})
      if arg == "smoke":
        c.total_iterations = 2
        c.env.max_turns = 3
      elif arg == "cpu":
        c.algorithm.hidden = (8,)
      elif arg is not None:
        raise ValueError(f"unknown variant {arg}")
      return c
''')


@pytest.fixture
def cfg_path(tmp_path):
  path = tmp_path / "tiny.py"
  path.write_text(CONFIG_SRC)
  return str(path)


def test_variants_and_lock(cfg_path):
  base = configs.load_config(cfg_path)
  smoke = configs.load_config(cfg_path + ":smoke")
  cpu = configs.load_config(cfg_path + ":cpu")
  assert (base.total_iterations, smoke.total_iterations) == (1000, 2)
  assert smoke.env.max_turns == 3 and base.env.max_turns == 20
  assert cpu.algorithm.hidden == (8,)
  with pytest.raises(AttributeError):
    smoke.algorithm.lr_typo = 1.0  # locked: typos in code fail too
  with pytest.raises(ValueError, match="unknown variant"):
    configs.load_config(cfg_path + ":gpu")


def test_overrides_follow_existing_types(cfg_path):
  c = configs.load_config(cfg_path + ":smoke", [
      "seed=3", "algorithm.lr=1e-4", "env.name=wordle", "use_wandb=true",
      "algorithm.clip=0", "algorithm.hidden=(32, 16)", "algorithm.gammas=1,0.5",
      "total_iterations=1e3", "tag=42", "maybe=7"])
  assert c.seed == 3 and type(c.seed) is int
  assert c.algorithm.lr == 1e-4 and type(c.algorithm.lr) is float
  assert c.env.name == "wordle"
  assert c.use_wandb is True and c.algorithm.clip is False
  assert c.algorithm.hidden == (32, 16)
  assert c.algorithm.gammas == (1.0, 0.5) and type(c.algorithm.gammas[0]) is float
  assert c.total_iterations == 1000 and type(c.total_iterations) is int
  assert c.tag == "42"  # a str field stays a str
  assert c.maybe == 7  # placeholder(int)
  assert c.env.max_turns == 3  # untouched variant value


@pytest.mark.parametrize("text,expected", [("True", True), ("false", False), ("1", True),
                                           ("0", False), ("YES", True), ("off", False)])
def test_bool_parsing(text, expected):
  assert configs.convert_value(text, bool) is expected


@pytest.mark.parametrize("override,match", [
    ("use_wandb=maybe", "boolean"), ("seed=1.5", "integer"), ("seed=abc", "seed"),
    ("algorithm.lr=fast", "algorithm.lr"), ("seed", "key=value"), ("env=3", "nested config")])
def test_bad_values(cfg_path, override, match):
  with pytest.raises(ValueError, match=match):
    configs.load_config(cfg_path, [override])


def test_misspelled_key_lists_valid_keys(cfg_path):
  with pytest.raises(ValueError) as e:
    configs.load_config(cfg_path, ["sead=3"])
  msg = str(e.value)
  assert "'sead'" in msg and "did you mean 'seed'" in msg
  assert "algorithm, env, maybe, seed, tag, total_iterations, use_wandb" in msg
  with pytest.raises(ValueError) as e:
    configs.load_config(cfg_path, ["algorithm.lrr=1"])
  msg = str(e.value)
  assert "did you mean 'algorithm.lr'" in msg and "clip, gammas, hidden, lr" in msg
  with pytest.raises(ValueError, match="not a nested config"):
    configs.load_config(cfg_path, ["seed.x=1"])


def test_validate_overrides_argv(cfg_path):
  c = configs.load_config(cfg_path)
  configs.validate_overrides(c, ["prog", "--config=x.py", "--config.seed=1",
                                 "--noconfig.use_wandb", "-config.algorithm.lr", "0.1",
                                 "--other.seed_typo=1"])
  with pytest.raises(ValueError, match=r"--config\.algorithm\.cilp.*did you mean 'algorithm.clip'"):
    configs.validate_overrides(c, ["prog", "--config.algorithm.cilp=false"])
  assert configs.config_arg_from_argv(["p", "--config", "a.py:cpu", "--config.seed=2"]) == "a.py:cpu"


def _run_absl(script_dir, cfg_path, *args):
  script = os.path.join(script_dir, "main.py")
  with open(script, "w") as f:
    f.write(textwrap.dedent(f'''
        from absl import app
        from agentrl import configs
        _CONFIG = configs.define_config_flag("config", {cfg_path!r})
        def main(argv):
          c = _CONFIG.value
          print("RESULT", c.seed, c.algorithm.lr, c.algorithm.clip, c.total_iterations)
        app.run(main)
    '''))
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, PYTHONPATH=repo + os.pathsep + os.environ.get("PYTHONPATH", ""))
  return subprocess.run([sys.executable, script, *args], capture_output=True, text=True,
                        env=env, timeout=60)


def test_absl_flags_with_define_config_flag(cfg_path, tmp_path):
  ok = _run_absl(str(tmp_path), cfg_path, f"--config={cfg_path}:smoke", "--config.seed=5",
                 "--config.algorithm.lr=0.01", "--noconfig.algorithm.clip")
  assert ok.returncode == 0, ok.stderr
  assert "RESULT 5 0.01 False 2" in ok.stdout
  bad = _run_absl(str(tmp_path), cfg_path, "--config.lr_typo=1")  # default config path
  assert bad.returncode == 2
  assert "lr_typo" in bad.stderr and "Traceback" not in bad.stderr
  assert "algorithm, env, maybe, seed, tag, total_iterations, use_wandb" in bad.stderr


def test_save_load_roundtrip(cfg_path, tmp_path):
  c = configs.load_config(cfg_path + ":cpu", ["algorithm.lr=inf"])
  path = configs.save_config(c, str(tmp_path / "run"))
  data = json.load(open(path))  # strict JSON
  assert data["algorithm"]["hidden"] == [8] and data["algorithm"]["lr"] == "inf"
  back = configs.config_from_json(path)
  assert isinstance(back, ml_collections.ConfigDict) and back.env.name == "maze"
  assert configs.diff_configs(c, back) == {}  # tuples vs lists do not count
  assert configs.config_from_json(configs.config_to_json(c)).seed == 0


def test_resume_compatibility(cfg_path, tmp_path):
  run = str(tmp_path / "run")
  configs.save_config(configs.load_config(cfg_path), run)
  longer = configs.load_config(cfg_path, ["total_iterations=5000"])
  configs.check_resume_compatible(run, longer)  # total_iterations is resumable
  changed = configs.load_config(cfg_path, ["algorithm.lr=0.1", "seed=2", "total_iterations=9"])
  with pytest.raises(ValueError) as e:
    configs.check_resume_compatible(run, changed)
  msg = str(e.value)
  assert "algorithm.lr, seed" in msg and "saved=0.0003 current=0.1" in msg
  assert "total_iterations:" not in msg
  configs.check_resume_compatible(run, changed, resumable=("lr", "seed", "total_iterations"))
  assert configs.diff_configs({"a": {"b": 1}}, {"a": {"b": 1, "c": 2}}) == {
      "a.c": ("<missing>", 2)}
