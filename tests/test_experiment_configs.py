"""Every experiment config: its variants load, name registered pieces, and (smoke) train."""

import glob
import os

import pytest

from agentrl import algorithms, configs, envs, trainer
from agentrl.algorithms import defaults, group
from agentrl.logging_utils import read_metrics
from experiments.configs import common

FILES = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(configs.CONFIG_DIR,
                                                                         "*.py"))
               if not os.path.basename(p).startswith(("_", "common")))
VARIANTS = ("smoke", "cpu", "paper")
# The data each algorithm's loop needs from the config (see agentrl/trainer.py).
NEEDS = {"replay": ("replay.capacity", "algorithm.state_tokens", "algorithm.action_tokens"),
         "filtered": ("algorithm.batch_size", "algorithm.top_fraction"),
         "offline": ("algorithm.batch_size",), "rollout": ()}


def get(config, dotted):
  for part in dotted.split("."):
    config = config[part]
  return config


def test_there_are_configs_for_every_algorithm_family():
  assert {"archer_twenty_questions", "chai", "ppo", "turn_ppo", "group", "filtered_bc", "bc",
          "value_offline", "self_play"} <= set(FILES)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", FILES)
def test_variant_loads_and_names_registered_pieces(name, variant):
  config = configs.load_config(f"{name}.py:{variant}")
  assert config.algorithm.name in algorithms.names()
  assert config.env.name in envs.names()
  kind = {"archer": "replay", "chai": "replay", "filtered_bc": "filtered", "bc": "offline",
          "filtered_bc_offline": "offline", "ilql": "offline", "mc_returns": "offline",
          "archer_offline": "offline"}.get(config.algorithm.name, "rollout")
  for key in NEEDS[kind]:
    get(config, key)
  if config.algorithm.name == "self_play":
    assert envs.make(config.env.name).num_roles == 2


# The other algorithms a config file's `algorithm.name` may be set to (its docstring's).
ALTERNATIVES = {"group": ("dr_grpo", "rloo", "reinforce_pp", "gigpo"),
                "filtered_bc": ("filtered_bc_offline",), "value_offline": ("mc_returns",),
                "ppo": ("turn_ppo",), "archer_twenty_questions": ("chai",)}


def knob_keys(cls, prefix=""):
  out = set()
  for f in defaults.dataclasses.fields(cls):
    nested = f.default if defaults.dataclasses.is_dataclass(f.default) else None
    out |= knob_keys(type(nested), f"{prefix}{f.name}.") if nested else {prefix + f.name}
  return out


def config_keys(block, prefix=""):
  out = set()
  for key in block.keys():
    value = block[key]
    out |= config_keys(value, f"{prefix}{key}.") if hasattr(value, "keys") else {prefix + key}
  return out


@pytest.mark.parametrize("name", FILES)
def test_every_knob_of_the_algorithm_is_a_config_key(name):
  """Each field of an algorithm's `Defaults` is a key of every config that runs it, and each
  key of the block is a knob (`defaults.read` accepts the block)."""
  for variant in VARIANTS:
    config = configs.load_config(f"{name}.py:{variant}")
    blocks = [(config.algorithm.name, config.algorithm), ("bc", config.bc)]
    blocks += [(alt, config.algorithm) for alt in ALTERNATIVES.get(name, ())]
    for algo, block in blocks:
      knobs = algorithms.knobs(algo)
      assert knob_keys(knobs) <= config_keys(block), (name, variant, algo)
      defaults.read(knobs, {k: block[k] for k in block.keys() if k != "steps"}, algo)


def test_a_knob_without_a_default_value_is_settable_and_a_typo_is_named():
  config = configs.load_config("group.py:cpu", ["algorithm.clip_high=0.28",
                                                "algorithm.aggregation=token-mean"])
  h = defaults.read(group.Defaults, config.algorithm, "grpo")
  assert (h.clip_high, h.aggregation, h.dual_clip) == (0.28, "token-mean", None)
  config = configs.load_config("ppo.py:cpu", ["algorithm.shared_trunk=true",
                                              "algorithm.value_hidden_dims=(8,)"])
  h = defaults.read(algorithms.knobs("ppo"), config.algorithm, "ppo")
  assert h.shared_trunk and h.value_hidden_dims == (8,)
  with pytest.raises(ValueError, match="clip_hihg"):
    defaults.read(group.Defaults, {"lr": 1e-3, "clip_hihg": 0.3}, "grpo")
  with pytest.raises(ValueError, match="grpo.epochs=1.5"):
    defaults.read(group.Defaults, {"epochs": 1.5}, "grpo")


def test_env_option_and_bad_arguments():
  assert configs.load_config("ppo.py:smoke,env=wordle").env.name == "wordle"
  with pytest.raises(ValueError, match="env='nope'"):
    configs.load_config("ppo.py:cpu,env=nope")
  with pytest.raises(ValueError, match="expected a variant"):
    configs.load_config("group.py:fast")


@pytest.mark.parametrize("name,overrides,gamma", [
    ("gigpo", [], 0.95), ("grpo", [], 1.0), ("rloo", ["algorithm.credit=turn"], 1.0),
    ("gigpo", ["algorithm.gamma=1.0"], 1.0), ("grpo", ["algorithm.gamma=0.9"], 0.9)])
def test_group_config_discount_is_the_estimators_unless_set(name, overrides, gamma):
  config = configs.load_config("group.py:cpu", [f"algorithm.name={name}", *overrides])
  assert group.advantage_options(config.algorithm, name)["gamma"] == gamma


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("env", sorted(common.ENVS))
def test_every_env_builds_from_every_variant(env, variant):
  """Env keyword arguments a variant sets (smoke: a 4-turn limit) are ones the env takes."""
  config = configs.load_config(f"ppo.py:{variant},env={env}")
  made = envs.make(config.env.name, **config.env.kwargs)
  if variant == "smoke":
    assert made.max_turns == 4


SMOKE_RUNS = [("ppo", "ppo"), ("turn_ppo", "turn_ppo"), ("group", "gigpo"),
              ("filtered_bc", "filtered_bc"), ("filtered_bc", "filtered_bc_offline"),
              ("bc", "bc"), ("value_offline", "ilql"), ("value_offline", "mc_returns"),
              ("chai", "chai"), ("self_play", "self_play")]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("data"))


@pytest.mark.parametrize("name,algorithm", SMOKE_RUNS)
def test_smoke_variant_trains_end_to_end(name, algorithm, data_dir, tmp_path):
  config = configs.load_config(f"{name}.py:smoke", [f"data_dir={data_dir}",
                                                    f"algorithm.name={algorithm}",
                                                    "train.total_iterations=1"])
  final = trainer.train(config, str(tmp_path))
  rows = read_metrics(str(tmp_path))
  assert [r["step"] for r in rows] == [0, 1]
  assert algorithms.nonfinite_losses(final) == []
  assert "eval/mean_return" in rows[-1]
  assert ("eval_greedy/mean_return" in rows[-1]) == bool(config.eval.greedy)
  opponent = config.eval.get("opponent", "")  # Self-play: each seat vs the scripted player.
  assert (f"eval_vs_{opponent}/win_rate" in rows[-1]) == bool(opponent)
  if opponent:
    assert 0 <= rows[-1][f"eval_vs_{opponent}/seat1_win_rate"] <= 1


def test_information_gain_credit_trains_end_to_end(data_dir, tmp_path):
  """The trainer asks the rollout for the answers the algorithm scores (A²TGPO)."""
  config = configs.load_config("group.py:smoke,env=twenty_questions", [
      f"data_dir={data_dir}", "algorithm.credit=a2tgpo", "train.total_iterations=1"])
  final = trainer.train(config, str(tmp_path))
  assert algorithms.nonfinite_losses(final) == []
  assert 0 < final["grpo/answer_prob"] < 1 and final["grpo/clip_range"] > 0
