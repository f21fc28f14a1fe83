r"""Environment cost, and where rollout time goes.

1. Pure environment cost: every registered environment is stepped by its strong and weak
   scripted policies; only `env.step` is timed (the policy's own time is reported apart).
2. Rollout split: a small random Llama-style policy (the `--layers`/`--hidden` flags) plays
   `--episodes` episodes of each environment through `agentrl.rollout`; the share of wall
   time spent in `env.step` versus the jitted sampler is printed. A first rollout per
   environment compiles and is not timed.

  python -m experiments.bench_envs --json out.json
"""

from __future__ import annotations

import json
import time

from absl import app
from absl import flags
import jax
import numpy as np

from agentrl import envs, rollout, sampling
from agentrl.models import decoder
from agentrl.tokenizer import Tokenizer

_JSON = flags.DEFINE_string("json", None, "Write the figures to this JSON file.")
_STEPS = flags.DEFINE_integer("steps", 20_000, "Environment steps per (env, policy) in part 1.")
_EPISODES = flags.DEFINE_integer("episodes", 32, "Episodes per rollout in part 2.")
_HIDDEN = flags.DEFINE_integer("hidden", 128, "Policy width in part 2.")
_LAYERS = flags.DEFINE_integer("layers", 2, "Policy depth in part 2.")
_MAX_NEW = flags.DEFINE_integer("max_new_tokens", 24, "Utterance budget in part 2.")
_MAX_TOKENS = flags.DEFINE_integer("max_tokens", 1024, "Row length in part 2.")
_ENVS = flags.DEFINE_list("envs", None, "Environments (default: all registered).")
_SKIP_ROLLOUT = flags.DEFINE_bool("skip_rollout", False, "Only measure part 1.")


def env_steps_per_second(name: str, which: str, steps: int) -> dict:
  env, policy = envs.make(name), envs.policy(name, which)
  rng = np.random.default_rng(0)
  env_time = policy_time = 0.0
  done_steps = episodes = 0
  while done_steps < steps:
    t0 = time.perf_counter()
    step = env.reset(episodes)
    env_time += time.perf_counter() - t0
    episodes += 1
    while not step.last:
      t0 = time.perf_counter()
      action = policy(env, rng)
      t1 = time.perf_counter()
      step = env.step(action)
      t2 = time.perf_counter()
      policy_time += t1 - t0
      env_time += t2 - t1
      done_steps += 1
  return {"env_steps_per_s": done_steps / env_time, "policy_ms_per_step":
          1e3 * policy_time / done_steps, "steps": done_steps, "episodes": episodes}


def corpus(names, episodes=20):
  for name in names:
    for which in ("strong", "weak"):
      for seed in range(episodes):
        for episode in envs.play(envs.make(name), envs.policy(name, which), seed):
          yield episode.system
          for message in episode.messages:
            yield message["content"]


def rollout_split(name: str, policy: rollout.LMPolicy, tokenizer: Tokenizer) -> dict:
  seeds = list(range(_EPISODES.value))
  kwargs = dict(tokenizer=tokenizer, max_tokens=_MAX_TOKENS.value)
  rollout.rollout(policy, name, seeds, rng=jax.random.PRNGKey(0), **kwargs)  # Compiles.
  start = time.perf_counter()
  result = rollout.rollout(policy, name, seeds, rng=jax.random.PRNGKey(1), **kwargs)
  wall = time.perf_counter() - start
  s = result.stats
  return {"wall_s": wall, "env_share": s["env_seconds"] / wall,
          "sampler_share": s["policy_seconds"] / wall,
          "other_share": 1 - (s["env_seconds"] + s["policy_seconds"]) / wall,
          "agent_tokens_per_s": s["policy_tokens"] / wall, "mean_turns": s["mean_turns"]}


def main(argv):
  del argv
  names = _ENVS.value or envs.names()
  report = {"env_cost": {}, "rollout": {}}
  print(f"{'environment':<26}{'policy':<8}{'env steps/s':>14}{'policy ms/step':>16}")
  for name in names:
    for which in ("strong", "weak"):
      r = env_steps_per_second(name, which, _STEPS.value)
      report["env_cost"][f"{name}/{which}"] = r
      print(f"{name:<26}{which:<8}{r['env_steps_per_s']:>14,.0f}{r['policy_ms_per_step']:>16.3f}")
  if not _SKIP_ROLLOUT.value:
    tokenizer = Tokenizer.train_bpe(corpus(names), vocab_size=1024)
    config = decoder.DecoderConfig.llama(
        vocab_size=tokenizer.vocab_size, hidden_size=_HIDDEN.value, num_layers=_LAYERS.value,
        num_heads=4, num_kv_heads=2, mlp_dim=4 * _HIDDEN.value)
    params = decoder.init_params(config, jax.random.PRNGKey(0))
    policy = rollout.LMPolicy(params, config, sampling.SamplingConfig(
        max_new_tokens=_MAX_NEW.value, stop_token=tokenizer.end_of_turn_id,
        pad_token=tokenizer.pad_id))
    print(f"\nrollout of {_EPISODES.value} episodes, policy {decoder.count_params(params):,} "
          f"parameters ({_LAYERS.value} layers x {_HIDDEN.value}), jax {jax.__version__} on "
          f"{jax.devices()[0].platform}")
    print(f"{'environment':<26}{'wall s':>8}{'env %':>8}{'sampler %':>11}{'other %':>9}"
          f"{'tokens/s':>10}")
    for name in names:
      r = rollout_split(name, policy, tokenizer)
      report["rollout"][name] = r
      print(f"{name:<26}{r['wall_s']:>8.2f}{100 * r['env_share']:>8.2f}"
            f"{100 * r['sampler_share']:>11.1f}{100 * r['other_share']:>9.1f}"
            f"{r['agent_tokens_per_s']:>10,.0f}")
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump(report, f, indent=2)


if __name__ == "__main__":
  app.run(main)
