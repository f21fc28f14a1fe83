"""Shared fixtures for algorithm tests: a toy environment, a tiny policy, data and evaluation.

The toy task is `toy_envs.GuessNumber` (find a number in [1, 8] from higher/lower answers,
6 turns, -1 per wrong guess, -1 for a guess with no number). A random policy scores about
-6; the bisecting scripted policy about -1.6. Algorithms are tested on whether they move a
tiny policy (2 layers, width 32) clearly towards the scripted one within a bounded number of
updates.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from agentrl import envs, rollout, sampling
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
    for policy in (toy_envs.bisect_policy, toy_envs.random_policy):
      [episode] = envs.play(make_env(), policy, seed)
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
  return rollout.encode_episodes(tokenizer(), episodes(policy, seeds, rng),
                                 max_tokens=MAX_TOKENS, max_turns=MAX_TURNS)


def play(params, seeds, *, rng: int = 0, group_size: int = 1, greedy: bool = False,
         m: Models | None = None) -> rollout.RolloutResult:
  """The policy `params` plays the toy task (sampled, or greedy)."""
  m = m or models()
  cfg = m.sampling if not greedy else sampling.SamplingConfig(
      max_new_tokens=m.sampling.max_new_tokens, temperature=0.0,
      stop_token=m.sampling.stop_token, pad_token=m.sampling.pad_token)
  return rollout.rollout(rollout.LMPolicy(params, m.policy_config, cfg), make_env, list(seeds),
                         tokenizer=tokenizer(), max_tokens=MAX_TOKENS, group_size=group_size,
                         rng=jax.random.PRNGKey(rng))


def mean_return(params, seeds=range(100, 132), **kwargs) -> float:
  return float(np.mean([e.episode_return for e in play(params, seeds, **kwargs).episodes]))
