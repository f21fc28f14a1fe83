"""Shared fixtures for algorithm tests: a toy environment, a tiny policy, data and evaluation.

The toy task is `toy_envs.GuessNumber` (find a number in [1, 8] from higher/lower answers,
6 turns, -1 per wrong guess, -1 for a guess with no number). A random policy scores about
-6; the bisecting scripted policy about -1.6. Algorithms are tested on whether they move a
tiny policy (2 layers, width 32) clearly towards the scripted one within a bounded number of
updates.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import ml_collections
import numpy as np

from agentrl import algorithms, encoding, envs, policy, replay, rollout, sampling
from agentrl.algorithms import Models
from agentrl.models import decoder
from agentrl.tokenizer import Tokenizer
from tests import toy_envs

MAX_TOKENS = 160
MAX_TURNS = 6


def make_env():
  return toy_envs.GuessNumber(max_turns=MAX_TURNS)


@functools.lru_cache(maxsize=None)
def tokenizer() -> Tokenizer:
  text = []
  for seed in range(30):
    for scripted in (toy_envs.bisect_policy, toy_envs.random_policy):
      [episode] = envs.play(make_env(), scripted, seed)
      text += [episode.system] + [m["content"] for m in episode.messages]
  return Tokenizer.train_bpe(text * 3, vocab_size=280)


@functools.lru_cache(maxsize=None)
def models(seed: int = 0, max_new_tokens: int = 6, temperature: float = 1.0) -> Models:
  tok = tokenizer()
  config = decoder.DecoderConfig.llama(vocab_size=tok.vocab_size, hidden_size=32, num_layers=2,
                                       num_heads=4, num_kv_heads=2, mlp_dim=64)
  params = decoder.init_params(config, jax.random.PRNGKey(seed))
  return Models(config, params, sampling.SamplingConfig(
      max_new_tokens=max_new_tokens, temperature=temperature, stop_token=tok.end_of_turn_id,
      pad_token=tok.pad_id), pad_id=tok.pad_id)


def episodes(policy, seeds, rng: int = 0):
  return [envs.play(make_env(), policy, s, rng=rng + s)[0] for s in seeds]


def offline_batch(policy, seeds, rng: int = 0):
  """Scripted episodes of the toy task as a `TrajectoryBatch`."""
  return encoding.encode_episodes(tokenizer(), episodes(policy, seeds, rng),
                                 max_tokens=MAX_TOKENS, max_turns=MAX_TURNS)


ANSWER_LENGTH = 6  # Width of `batch.answer_tokens` in the toy task's rollouts.


def play(params, seeds, *, rng: int = 0, group_size: int = 1, greedy: bool = False,
         m: Models | None = None, answer_length: int = 0) -> rollout.RolloutResult:
  """The policy `params` plays the toy task (sampled, or greedy)."""
  m = m or models()
  cfg = m.sampling if not greedy else sampling.SamplingConfig(
      max_new_tokens=m.sampling.max_new_tokens, temperature=0.0,
      stop_token=m.sampling.stop_token, pad_token=m.sampling.pad_token)
  return rollout.rollout(rollout.LMPolicy(params, m.policy_config, cfg), make_env, list(seeds),
                         tokenizer=tokenizer(), max_tokens=MAX_TOKENS, group_size=group_size,
                         rng=jax.random.PRNGKey(rng), answer_length=answer_length)


def mean_return(params, seeds=range(100, 132), **kwargs) -> float:
  return float(np.mean([e.episode_return for e in play(params, seeds, **kwargs).episodes]))


@functools.lru_cache(maxsize=None)
def warm():
  """A cheaply BC-warmed policy (bisect + random episodes) and one of its rollout batches
  (with the tasks' reference answers recorded)."""
  m = models()
  bc = algorithms.make("bc", ml_collections.ConfigDict({"lr": 3e-3}), m)
  state = bc.init(jax.random.PRNGKey(0))
  data = jax.tree.map(lambda a, b: np.concatenate([a, b]),
                      offline_batch(toy_envs.bisect_policy, range(24)),
                      offline_batch(toy_envs.random_policy, range(24, 48)))
  rng = np.random.default_rng(0)
  for _ in range(30):
    rows = rng.choice(48, size=16, replace=False)
    state, _ = bc.update(state, jax.tree.map(lambda x: x[rows], data), jax.random.PRNGKey(0))
  params = jax.tree.map(np.asarray, state.params["policy"])
  batch = play(params, range(8), group_size=4, rng=0, answer_length=ANSWER_LENGTH).batch
  return dataclasses.replace(m, policy_params=params), batch


def is_return(params, batch):
  """Self-normalised importance-sampling estimate of the policy's expected return per group,
  from the sampled batch: the off-policy value of `params` on the batch's tasks."""
  m = models()
  lp = np.asarray(policy.evaluate(params, m.policy_config, batch.tokens, batch.positions,
                                  batch.attention_mask).logprobs)
  log_w = np.where(batch.action_mask, lp - batch.behaviour_logprobs, 0.0).sum(1)
  ret = np.where(batch.turn_mask, batch.rewards, 0.0).sum(1)
  out = []
  for g in np.unique(batch.group_id):
    rows = batch.group_id == g
    w = np.exp(log_w[rows] - log_w[rows].max())
    out.append(np.sum(w * ret[rows]) / np.sum(w))
  return float(np.mean(out))


# --------------------------------------------------------------------------- the Echo task


def echo_episodes(policy, seeds):
  return [envs.play(toy_envs.Echo(), policy, s, rng=s)[0] for s in seeds]


@functools.lru_cache(maxsize=None)
def echo_models() -> Models:
  """The tiny policy behaviour-cloned on random Echo answers: it says 1-4 at random."""
  m = models(max_new_tokens=4)
  bc = algorithms.make("bc", ml_collections.ConfigDict({"lr": 3e-3}), m)
  state = bc.init(jax.random.PRNGKey(0))
  data = encoding.encode_episodes(tokenizer(), echo_episodes(toy_envs.random_echo_policy,
                                                            range(64)),
                                 max_tokens=48, max_turns=2)
  rng = np.random.default_rng(0)
  for _ in range(40):
    rows = rng.choice(64, size=16, replace=False)
    state, _ = bc.update(state, jax.tree.map(lambda x: x[rows], data), jax.random.PRNGKey(0))
  return dataclasses.replace(m, policy_params=jax.tree.map(np.asarray, state.params["policy"]))


def echo_play(policy: rollout.LMPolicy, seeds, rng: int = 0) -> rollout.RolloutResult:
  return rollout.rollout(policy, toy_envs.Echo, list(seeds), tokenizer=tokenizer(),
                         max_tokens=48, rng=jax.random.PRNGKey(rng))


def acting(algo, state, m: Models) -> rollout.LMPolicy:
  base = rollout.LMPolicy(state.params["policy"], m.policy_config, m.sampling)
  return algo.acting_policy(state, base) if algo.acting_policy else base


def echo_return(algo, state, m: Models, seeds=range(500, 564)) -> float:
  return float(echo_play(acting(algo, state, m), seeds, rng=7).stats["mean_return"])


def train_on_echo(algo, m: Models, iterations: int, *, state_tokens: int, action_tokens: int,
                  seeds_per_iteration: int = 16):
  """The trainer's replay loop in miniature: roll out, add transitions, sample, update."""
  buffer = replay.ReplayBuffer(replay.transition_spec(state_tokens, action_tokens), 4096)
  state = algo.init(jax.random.PRNGKey(0))
  metrics = {}
  for it in range(iterations):
    seeds = range(it * seeds_per_iteration, (it + 1) * seeds_per_iteration)
    batch = echo_play(acting(algo, state, m), seeds, rng=it).batch
    buffer.add(replay.utterance_transitions(batch, max_state_tokens=state_tokens,
                                            max_action_tokens=action_tokens,
                                            pad_id=tokenizer().pad_id))
    state, metrics = algo.update(state, algo.source.sample(buffer, np.random.default_rng(it)),
                                 jax.random.PRNGKey(it))
  return state, metrics
