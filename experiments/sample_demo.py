r"""A rollout demo: a policy language model plays a multi-turn environment, on a laptop CPU.

Trains a byte-level BPE tokenizer on episodes of the environment's scripted policies, builds
a small random Llama-style policy, and plays a batch of episodes through `agentrl.rollout`
(jitted sampling on one KV cache, the environment stepped between turns). The policy is
untrained, so it mostly asks invalid questions; the demo shows the loop, the batch it
produces, and where the scripted bounds lie (raw returns and LMRL-Gym-style normalised
scores).

  python -m experiments.sample_demo --env twenty_questions --episodes 8
"""

from __future__ import annotations

import time

from absl import app
from absl import flags
import jax
import numpy as np

from agentrl import data, envs, rollout, sampling
from agentrl.models import decoder
from agentrl.tokenizer import Tokenizer

_ENV = flags.DEFINE_string("env", "twenty_questions", "A registered environment.")
_EPISODES = flags.DEFINE_integer("episodes", 8, "Episodes played at once.")
_MAX_NEW = flags.DEFINE_integer("max_new_tokens", 24, "Token budget of one utterance.")
_MAX_TOKENS = flags.DEFINE_integer("max_tokens", 1024, "Tokens per conversation (row).")
_TEMPERATURE = flags.DEFINE_float("temperature", 1.0, "Sampling temperature (0: greedy).")
_SEED = flags.DEFINE_integer("seed", 0, "Random seed.")


def corpus(name: str, episodes: int = 50):
  for which in ("strong", "weak"):
    for seed in range(episodes):
      for episode in envs.play(envs.make(name), envs.policy(name, which), seed):
        yield episode.system
        yield from (m["content"] for m in episode.messages)


def main(argv):
  del argv
  name = _ENV.value
  tokenizer = Tokenizer.train_bpe(corpus(name), vocab_size=1024)
  config = decoder.DecoderConfig.llama(vocab_size=tokenizer.vocab_size, hidden_size=128,
                                       num_layers=2, num_heads=4, num_kv_heads=2, mlp_dim=512)
  params = decoder.init_params(config, jax.random.PRNGKey(_SEED.value))
  print(f"policy: {decoder.count_params(params):,} parameters, "
        f"tokenizer: {tokenizer.vocab_size} tokens")
  policy = rollout.LMPolicy(params, config, sampling.SamplingConfig(
      max_new_tokens=_MAX_NEW.value, temperature=_TEMPERATURE.value,
      stop_token=tokenizer.end_of_turn_id, pad_token=tokenizer.pad_id))

  seeds = range(_EPISODES.value)
  start = time.perf_counter()
  result = rollout.rollout(policy, name, seeds, tokenizer=tokenizer, max_tokens=_MAX_TOKENS.value,
                           rng=jax.random.PRNGKey(_SEED.value))
  elapsed = time.perf_counter() - start

  episode = result.episodes[0]
  print(f"\n--- {name}, task {episode.task_id!r} ---\n[system] {episode.system}")
  for message in episode.messages[:8]:
    print(f"[{'env' if message['role'] == 'user' else 'agent'}] {message['content']!r}")
  batch, s = result.batch, result.stats
  print(f"\nTrajectoryBatch: tokens {batch.tokens.shape}, rewards {batch.rewards.shape}, "
        f"{int(np.asarray(batch.action_mask).sum())} action tokens")
  print(f"{len(result.episodes)} episodes in {elapsed:.1f} s (compile included; "
        f"sampler {s['policy_seconds']:.1f} s, environment {s['env_seconds'] * 1e3:.1f} ms): "
        f"mean return {s['mean_return']:.2f}, success {s['success_rate']:.2f}, "
        f"invalid actions {100 * s['invalid_action_rate']:.0f}%")
  for which in ("weak", "strong"):
    returns = data.scripted_returns(name, which, seeds=list(seeds))
    print(f"scripted {which:>6}: mean return {returns.mean():.2f}")
  if name in data.NORMALIZERS:
    print(f"normalised score of the untrained policy: "
          f"{data.normalized_score(name, s['mean_return']):.1f} (0 weak, 50 dataset, 100 strong)")


if __name__ == "__main__":
  app.run(main)
