"""Offline datasets: TFDS build / reopen, seeds, mixtures, replay equality, batches, the CLI."""

from __future__ import annotations

import collections

import numpy as np
import pytest
from absl import app
from absl import flags
from absl.testing import flagsaver

from agentrl import envs
from agentrl.data import episodes_builder, reader
from agentrl.envs.base import Env, TimeStep
from agentrl.tokenizer import Tokenizer
from experiments import make_datasets

GUESS, RACE = "_test_guess_number", "_test_race"


class GuessNumber(Env):
  """Guess a hidden number in [1, high]; -1 per turn, 'higher'/'lower' hints."""

  name = GUESS
  invalid_reward = -1.0

  def __init__(self, *, high: int = 16, max_turns: int = 6):
    super().__init__(max_turns=max_turns)
    self.high = high

  def instructions(self, role: int = 0) -> str:
    return f"Guess my number between 1 and {self.high}."

  def _reset(self, rng):
    self.target = int(rng.integers(1, self.high + 1))
    self.lo, self.hi = 1, self.high
    self.task_id = str(self.target)
    return "Your guess?"

  def _step(self, action):
    text = action.strip()
    if not text.isdigit():
      return self.invalid("not a number", "Answer with digits.")
    guess = int(text)
    if guess == self.target:
      return TimeStep("Correct!", reward=-1.0, done=True, info={"success": True})
    if guess < self.target:
      self.lo = max(self.lo, guess + 1)
    else:
      self.hi = min(self.hi, guess - 1)
    return TimeStep("higher" if guess < self.target else "lower", reward=-1.0)


def _bisect(**_):
  return lambda env, rng: str((env.lo + env.hi) // 2)


def _random(high=16, **_):
  return lambda env, rng: str(int(rng.integers(1, high + 1))) if rng.random() > 0.1 else "??"


class Race(Env):
  """Two players add 1 or 2 to a counter from 0; whoever reaches 5 wins (+1, loser -1)."""

  name = RACE
  num_roles = 2

  def __init__(self, *, max_turns: int = 10):
    super().__init__(max_turns=max_turns)

  def _reset(self, rng):
    self.count = int(rng.integers(0, 2))
    self.task_id = str(self.count)
    return f"count {self.count}"

  def _step(self, action):
    if action.strip() not in ("1", "2"):
      return self.invalid("say 1 or 2")
    self.count += int(action.strip())
    me = self.to_play
    if self.count >= 5:
      rewards = (1.0, -1.0) if me == 0 else (-1.0, 1.0)
      return TimeStep("over", reward=1.0, done=True, rewards=rewards,
                      info={"success": [me == 0, me == 1]})
    return TimeStep(f"count {self.count}", to_play=1 - me, rewards=(0.0, 0.0))


def _race_strong(**_):
  return lambda env, rng: str(max(1, min(2, (2 - env.count) % 3 or 1)))


def _race_weak(**_):
  return lambda env, rng: str(int(rng.integers(1, 3)))


def register_toys(monkeypatch):
  """Registers the toy environments in a copy of the registry that `monkeypatch` restores
  (so they never leak into other tests), and stops the registry importing other modules."""
  monkeypatch.setattr(envs, "_MODULES", ())
  monkeypatch.setattr(envs, "_REGISTRY", dict(envs._REGISTRY))
  envs.register(GUESS, GuessNumber, policies={"strong": _bisect, "weak": _random}, high=16)
  envs.register(RACE, Race, policies={"strong": _race_strong, "weak": _race_weak})


@pytest.fixture
def toys(monkeypatch):
  """The toy environments, registered for one test."""
  register_toys(monkeypatch)


@pytest.fixture(scope="module")
def tokenizer():
  corpus = ["Guess my number between 1 and 16.", "Your guess?", "higher lower Correct!",
            " ".join(str(i) for i in range(20)), "Invalid action: not a number."] * 20
  return Tokenizer.train_bpe(corpus, vocab_size=300)


def _replay(record_episode, policies):
  env = envs.make(record_episode.env)
  played = envs.play(env, [envs.policy(record_episode.env, p) for p in policies],
                     record_episode.seed)
  return played[record_episode.role]


def test_build_reopen_metadata_seeds_and_replay(toys, tmp_path, monkeypatch):
  builder = episodes_builder.build_dataset(GUESS, episodes=50, data_dir=tmp_path, seed=7)
  meta = dict(builder.info.metadata)
  assert meta["env"] == GUESS and meta["episodes"] == 50 and meta["seed"] == 7
  assert meta["mixture"] == {"strong": 0.5, "weak": 0.5} and meta["env_kwargs"] == {}
  assert meta["resolved_env_kwargs"] == {"high": 16} and meta["num_roles"] == 1
  assert meta["split_seeds"] == {"train": [7, 52], "test": [52, 57]}
  train = reader.EpisodeSource(builder, "train")
  test = reader.EpisodeSource(builder, "test")
  assert (len(train), len(test)) == (45, 5)
  train_seeds, test_seeds = {e.seed for e in train}, {e.seed for e in test}
  assert train_seeds == set(range(7, 52)) and test_seeds == set(range(52, 57))
  for source in (train, test):
    for i in range(len(source)):
      episode, policy = source.record(i)
      assert episode == _replay(episode, [policy])
      assert episode.system == "Guess my number between 1 and 16."
  returns = [e.episode_return for e in train]
  assert meta["train_stats"]["mean_return"] == pytest.approx(np.mean(returns), rel=1e-6)
  assert sum(meta["train_stats"]["policy_counts"].values()) == 45

  # The second call reads the files: generating again would fail.
  monkeypatch.setattr(envs, "play", lambda *a, **k: pytest.fail("regenerated"))
  again = episodes_builder.build_dataset(GUESS, episodes=50, data_dir=tmp_path, seed=7)
  assert again.data_path == builder.data_path and dict(again.info.metadata) == meta
  reopened = reader.open_dataset(builder.data_path)
  assert dict(reopened.info.metadata) == meta
  assert reader.EpisodeSource(reopened, "test")[:] == test[:]
  other = episodes_builder.make_config(GUESS, episodes=50, seed=8)
  assert other.name != builder.builder_config.name


def test_data_dir_from_environment_variable(monkeypatch, tmp_path):
  monkeypatch.setenv("AGENTRL_DATA_DIR", str(tmp_path))
  assert episodes_builder.default_data_dir() == str(tmp_path)
  assert episodes_builder.default_data_dir("/x") == "/x"
  monkeypatch.delenv("AGENTRL_DATA_DIR")
  assert episodes_builder.default_data_dir().endswith(".cache/agentrl/datasets")


def test_mixture_fractions_and_single_policy(toys, tmp_path):
  builder = episodes_builder.build_dataset(GUESS, episodes=400, mixture={"strong": 0.8,
                                                                          "weak": 0.2},
                                           data_dir=tmp_path, test_fraction=0.25)
  records = [reader.EpisodeSource(builder, s).record(i) for s in ("train", "test")
             for i in range(len(reader.EpisodeSource(builder, s)))]
  strong = sum(policy == "strong" for _, policy in records)
  assert len(records) == 400 and 280 <= strong <= 360  # Binomial(400, 0.8): mean 320, sd 8.
  by_policy = {p: np.mean([e.episode_return for e, q in records if q == p])
               for p in ("strong", "weak")}
  assert by_policy["strong"] > by_policy["weak"]
  meta = builder.info.metadata
  assert meta["train_stats"]["policy_counts"]["strong"] + meta["test_stats"]["policy_counts"][
      "strong"] == strong
  only = episodes_builder.build_dataset(GUESS, episodes=10, mixture={"weak": 1.0},
                                        data_dir=tmp_path)
  assert {reader.EpisodeSource(only, "train").record(i)[1] for i in range(9)} == {"weak"}


def test_env_kwargs_reach_env_and_policies(toys, tmp_path):
  builder = episodes_builder.build_dataset(GUESS, episodes=20, env_kwargs={"high": 4},
                                           data_dir=tmp_path)
  assert builder.info.metadata["env_kwargs"] == {"high": 4}
  assert builder.info.metadata["resolved_env_kwargs"] == {"high": 4}
  assert builder.builder_config.name != episodes_builder.make_config(GUESS, episodes=20).name
  source = reader.EpisodeSource(builder, "train")
  for i in range(len(source)):
    episode, policy = source.record(i)
    assert 1 <= int(episode.task_id) <= 4
    assert all(a == "??" or 1 <= int(a) <= 4 for a in episode.actions)
    replay = envs.play(envs.make(GUESS, high=4), envs.policy(GUESS, policy, high=4),
                       episode.seed)
    assert replay == [episode]


def test_multi_role_examples_per_role(toys, tmp_path):
  builder = episodes_builder.build_dataset(RACE, episodes=20, data_dir=tmp_path)
  source = reader.EpisodeSource(builder, "train")
  assert len(source) == 2 * 18
  pairs = {}
  for i in range(len(source)):
    episode, policy = source.record(i)
    pairs.setdefault(episode.seed, {})[episode.role] = (episode, policy)
  assert len(pairs) == 18 and all(set(p) == {0, 1} for p in pairs.values())
  for roles in pairs.values():
    names = [roles[0][1], roles[1][1]]
    for episode, _ in roles.values():
      assert episode == _replay(episode, names)
    assert roles[0][0].episode_return == -roles[1][0].episode_return  # Zero-sum.


def test_workers_give_the_same_dataset(tmp_path):
  # Spawned workers (forking a process that runs JAX can deadlock) see only registered envs.
  one = episodes_builder.build_dataset("maze_fo", episodes=30, data_dir=tmp_path / "a")
  two = episodes_builder.build_dataset("maze_fo", episodes=30, data_dir=tmp_path / "b",
                                       num_workers=2)
  for split in ("train", "test"):
    a, b = reader.EpisodeSource(one, split), reader.EpisodeSource(two, split)
    assert sorted(map(repr, a)) == sorted(map(repr, b))


def test_bad_arguments_raise(toys, tmp_path):
  with pytest.raises(ValueError, match="sum to 1"):
    episodes_builder.make_config(GUESS, episodes=10, mixture={"strong": 0.5, "weak": 0.4})
  with pytest.raises(ValueError, match="no policy 'expert'"):
    episodes_builder.make_config(GUESS, episodes=10, mixture={"expert": 1.0})
  with pytest.raises(ValueError, match="Unknown environment"):
    episodes_builder.make_config("_nope", episodes=10)
  with pytest.raises(ValueError, match="at least 2"):
    episodes_builder.make_config(GUESS, episodes=1)


def test_text_round_trips_exactly(toys, tmp_path):
  config = episodes_builder.make_config(GUESS, episodes=10)
  features = episodes_builder.AgentrlEpisodes(config=config, data_dir=tmp_path).info.features
  episode = envs.Episode(env="e", seed=3, task_id="\ud800x", role=0, system="",
                         messages=[{"role": "user", "content": "\x00\xff é"},
                                   {"role": "assistant", "content": ""}],
                         rewards=[0.5], done=False, success=False)
  example = episodes_builder.episode_to_example(episode, "weak", ["weak"])
  stored = features.deserialize_example_np(features.serialize_example(example))
  assert episodes_builder.example_to_episode(stored) == (episode, "weak")


def test_trajectory_batches(toys, tmp_path, tokenizer):
  episodes = reader.load_episodes(GUESS, "train", episodes=24, data_dir=tmp_path)
  assert len(episodes) == 22
  def key(tokens):
    return tuple(int(t) for t in tokens)
  by_key = {key(tokenizer.encode_chat([{"role": "system", "content": e.system}, *e.messages])
                .tokens): e for e in episodes}
  batches = list(reader.trajectory_batches(episodes, tokenizer, batch_size=4, max_tokens=256,
                                           max_turns=6, seed=1, epochs=2))
  assert len(batches) == 2 * (22 // 4)
  rows = []
  for batch in batches:
    batch.validate()
    assert batch.tokens.shape == (4, 256) and isinstance(batch.rewards, np.ndarray)
    for row in range(4):
      rows.append(key(batch.tokens[row][batch.attention_mask[row]]))
      episode = by_key[rows[-1]]
      k = episode.num_turns
      np.testing.assert_allclose(batch.rewards[row, :k], episode.rewards)
      assert batch.turn_mask[row].sum() == k and batch.dones[row, k - 1] == episode.done
  all_rows = collections.Counter(key(tokenizer.encode_chat(
      [{"role": "system", "content": e.system}, *e.messages]).tokens) for e in episodes)
  assert not collections.Counter(rows[:20]) - all_rows  # No repeats within an epoch.
  again = list(reader.trajectory_batches(episodes, tokenizer, batch_size=4, max_tokens=256,
                                         max_turns=6, seed=1, epochs=2))
  assert all((a.tokens == b.tokens).all() for a, b in zip(batches, again))
  assert not (batches[0].tokens == batches[5].tokens).all()  # Epoch 2 is reshuffled.
  tail = list(reader.trajectory_batches(episodes, tokenizer, batch_size=4, max_tokens=256,
                                        max_turns=6, seed=1, epochs=1, drop_remainder=False))
  assert [b.batch_size for b in tail] == [4] * 5 + [2]
  forever = reader.trajectory_batches(episodes, tokenizer, batch_size=4, max_tokens=256,
                                      max_turns=6, seed=1)
  assert len([next(forever) for _ in range(12)]) == 12
  with pytest.raises(ValueError, match="cannot fill"):
    next(reader.trajectory_batches(episodes[:3], tokenizer, batch_size=4, max_tokens=64,
                                   max_turns=6, seed=0))


def test_cli_builds_and_names_bad_flags(toys, tmp_path, capsys):
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
  with flagsaver.flagsaver(env=GUESS, episodes=12, data_dir=str(tmp_path)):
    make_datasets.main(["make_datasets"])
  out = capsys.readouterr().out
  assert str(tmp_path) in out and "mean return" in out and "success rate" in out
  assert '"mixture": {"strong": 0.5, "weak": 0.5}' in out
  bad = [({"env": "_nope"}, "--env"), ({"env": GUESS, "mixture": "strong=0.5,weak=0.6"},
                                        "--mixture: .*sum to 1"),
         ({"env": GUESS, "mixture": "expert=1"}, "--mixture: .*no policy 'expert'"),
         ({"env": GUESS, "mixture": "strong:1"}, "--mixture: expected name=weight"),
         ({"env": GUESS, "env_kwargs": "[1]"}, "--env_kwargs")]
  for values, message in bad:
    with flagsaver.flagsaver(data_dir=str(tmp_path), episodes=12, **values):
      with pytest.raises(app.UsageError, match=message):
        make_datasets.main(["make_datasets"])


@pytest.mark.parametrize("name", ["twenty_questions", "kuhn_poker"])
def test_real_environment_dataset_replays_and_batches(name, tmp_path, tokenizer):
  """A small dataset of a real environment: episodes replay exactly and batch cleanly."""
  builder = episodes_builder.build_dataset(name, episodes=24, data_dir=tmp_path)
  source = reader.EpisodeSource(builder, "train")
  env = envs.make(name)
  assert len(source) == 22 * env.num_roles  # 10% test split, one example per role.
  episode, _ = source.record(0)
  assert episode.env == name and episode.messages[0]["role"] == "user"
  returns = np.array([source[i].episode_return for i in range(len(source))])
  assert np.isfinite(returns).all()
  batch = next(reader.trajectory_batches(list(source), tokenizer, batch_size=4, max_tokens=768,
                                         max_turns=env.max_turns, seed=0))
  batch.validate()
  assert np.asarray(batch.action_mask).any()
