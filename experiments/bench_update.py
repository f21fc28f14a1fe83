r"""ArCHer's update at an experiment config's sizes: steps/s, tokens/s and a FLOP utilisation.

One ArCHer update is `critic_steps` critic steps and `actor_steps` actor steps, each on
`batch_size` utterance transitions from the replay buffer (`agentrl.algorithms.archer`). The
benchmark fills a buffer with scripted episodes of the config's environment, compiles the
update, then times it twice: as a full update (critic and actor) and with the actor off
(`warmup_updates` not reached), which splits the time between the two. It also times a large
float32 matmul in the same process: the machine's measured peak, the denominator of the
utilisation figure.

FLOPs are counted from the model shapes as XLA executes them (padding included), 2 per
multiply-add, forward ×3 for a step with a backward pass:
  decoder, per token: QKV, output, MLP and LM-head matmuls, and 2·2·heads·head_size·context
    for attention scores and values (context = the keys the token attends over: the whole
    row in a teacher-forced pass, the whole cache in the sampler);
  sampler: a prefill of the state (LM head on the last position only) and one decode step
    per generated token; the decode loop's trip count is read from the update's metrics;
  critic: the encoder over states and actions (and the Q/V MLP heads).

  python -m experiments.bench_update --json out.json
  python -m experiments.bench_update --config=experiments/configs/archer_twenty_questions.py:smoke
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from agentrl import configs, encoding, envs, experiment, replay

_CONFIG = flags.DEFINE_string(
    "config", os.path.join(configs.CONFIG_DIR, "archer_twenty_questions.py:cpu"),
    "Experiment config (its algorithm block must be archer).")
_JSON = flags.DEFINE_string("json", None, "Write the figures to this JSON file.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed updates of each kind (median reported).")
_EPISODES = flags.DEFINE_integer("episodes", 256, "Scripted episodes in the replay buffer.")
_MATMUL = flags.DEFINE_integer("matmul", 2048, "Size n of the n x n float32 peak matmul.")


def decoder_token_flops(cfg, context: int, *, head: bool = True) -> float:
  """Forward FLOPs of one decoder token attending over `context` keys."""
  d, q, kv, m = cfg.hidden_size, cfg.num_heads * cfg.head_size, cfg.kv_heads * cfg.head_size, (
      cfg.mlp_size)
  gates = 3 if cfg.activation == "swiglu" else 2
  layer = 2 * d * (q + 2 * kv) + 2 * q * d + 2 * d * m * gates + 2 * 2 * q * context
  return cfg.num_layers * layer + (2 * d * cfg.vocab_size if head else 0)


def encoder_token_flops(cfg, length: int) -> float:
  """Forward FLOPs of one encoder token in a row of `length` tokens."""
  d, m = cfg.hidden_size, cfg.mlp_size
  return cfg.num_layers * (2 * d * 3 * d + 2 * d * d + 2 * 2 * d * m + 2 * 2 * d * length)


def mlp_flops(dims) -> float:
  return sum(2 * a * b for a, b in zip(dims[:-1], dims[1:]))


def update_flops(exp, critic_module, decode_steps: dict[str, float], *, actor: bool) -> dict:
  """Forward+backward FLOPs of one update (see the module docstring)."""
  a = exp.config.algorithm
  n, s, act = int(a.batch_size), int(a.state_tokens), int(a.action_tokens)
  pcfg, ccfg = exp.models.policy_config, critic_module.encoder
  e, hidden = ccfg.hidden_size, tuple(critic_module.hidden_dims)
  heads = critic_module.num_critics
  q_head, v_head = mlp_flops((2 * e, *hidden, 1)) * heads, mlp_flops((e, *hidden, 1)) * heads

  def sampler(steps):
    cache = s + act
    return n * (s * decoder_token_flops(pcfg, cache, head=False) + 2 * pcfg.hidden_size
                * pcfg.vocab_size + steps * decoder_token_flops(pcfg, cache))

  state_enc, action_enc = n * s * encoder_token_flops(ccfg, s), n * act * encoder_token_flops(
      ccfg, act)
  critic_step = (sampler(decode_steps["critic"])
                 + state_enc                                  # target V(s')
                 + state_enc + action_enc + n * q_head        # target Q(s, a_pi)
                 + 3 * (state_enc + action_enc + n * (q_head + v_head)))  # online Q, V + grad
  actor_step = (sampler(decode_steps["actor"]) + state_enc + action_enc + n * (q_head + v_head)
                # Teacher forcing: the output layer runs on the action's act + 1 positions only.
                + 3 * n * ((s + act) * decoder_token_flops(pcfg, s + act, head=False)
                           + (act + 1) * 2 * pcfg.hidden_size * pcfg.vocab_size))
  out = {"critic_step": critic_step, "actor_step": actor_step if actor else 0.0}
  out["update"] = int(a.critic_steps) * critic_step + (int(a.actor_steps) * actor_step
                                                       if actor else 0.0)
  return out


def matmul_peak(n: int, repeats: int = 10) -> float:
  """Measured float32 FLOP/s of an n x n by n x n matmul (median of `repeats`)."""
  x = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
  y = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32)
  f = jax.jit(lambda a, b: a @ b)
  jax.block_until_ready(f(x, y))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(f(x, y))
    times.append(time.perf_counter() - start)
  return 2 * n ** 3 / statistics.median(times)


def scripted_buffer(exp, algo, episodes: int) -> replay.ReplayBuffer:
  """A replay buffer of strong and weak scripted episodes of the config's environment."""
  c = exp.config
  env = envs.make(c.env.name, **c.env.kwargs)
  played = []
  for i in range(episodes):
    kind = "strong" if i % 2 else "weak"
    played += envs.play(env, envs.policy(c.env.name, kind), seed=i, rng=i)
  batch = encoding.encode_episodes(exp.tokenizer, played, max_tokens=c.env.max_tokens,
                                  max_turns=exp.max_turns, system_prompt=c.env.system_prompt)
  spec = algo.source
  buffer = replay.ReplayBuffer(replay.transition_spec(spec.state_tokens, spec.action_tokens),
                               c.replay.capacity)
  buffer.add(spec.transitions(batch, exp.tokenizer.pad_id))
  return buffer


def time_updates(algo, buffer, repeats: int) -> tuple[float, dict, float]:
  """(median seconds per update, last metrics, compile seconds)."""
  state = algo.init(jax.random.PRNGKey(0))
  batches = [algo.source.sample(buffer, np.random.default_rng(i)) for i in range(repeats + 1)]
  start = time.perf_counter()
  state, metrics = algo.update(state, batches[0], jax.random.PRNGKey(0))
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - start
  times = []
  for i in range(repeats):
    start = time.perf_counter()
    state, metrics = algo.update(state, batches[i + 1], jax.random.PRNGKey(i + 1))
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - start)
  return statistics.median(times), jax.device_get(metrics), compile_s


def main(argv):
  del argv
  from agentrl import algorithms  # pylint: disable=import-outside-toplevel
  from agentrl.algorithms import archer  # pylint: disable=import-outside-toplevel

  config = configs.load_config(_CONFIG.value)
  if config.algorithm.name != "archer":
    raise ValueError(f"bench_update times ArCHer; {_CONFIG.value} has algorithm.name="
                     f"{config.algorithm.name!r}")
  exp = experiment.build(config)
  buffer = scripted_buffer(exp, exp.algorithm, _EPISODES.value)
  a = config.algorithm
  critic_module, _ = archer.make_critic(a, exp.models.policy_config.vocab_size,
                                         exp.tokenizer)
  runs = {}
  for label, warmup in (("full", 0), ("critic_only", 10 ** 9)):
    cfg = a.copy_and_resolve_references()
    with cfg.unlocked():
      cfg.warmup_updates = warmup
    algo = algorithms.make("archer", cfg, exp.models)
    seconds, metrics, compile_s = time_updates(algo, buffer, _REPEATS.value)
    steps = {"critic": float(metrics["critic/decode_steps"]),
             "actor": float(metrics.get("actor/decode_steps", 0.0))}
    flops = update_flops(exp, critic_module, steps, actor=label == "full")
    runs[label] = dict(seconds=seconds, compile_s=compile_s, decode_steps=steps,
                       flops=flops["update"], flops_per_s=flops["update"] / seconds)
  peak = matmul_peak(_MATMUL.value)

  full, critic_only = runs["full"], runs["critic_only"]
  critic_s = critic_only["seconds"] / int(a.critic_steps)
  actor_s = (full["seconds"] - critic_only["seconds"]) / int(a.actor_steps)
  tokens = int(a.batch_size) * (int(a.state_tokens) + int(a.action_tokens))
  result = {
      "config": _CONFIG.value,
      "device": jax.devices()[0].device_kind, "cpu_count": os.cpu_count(),
      "machine": platform.machine(), "jax_version": jax.__version__,
      "batch_size": int(a.batch_size), "state_tokens": int(a.state_tokens),
      "action_tokens": int(a.action_tokens), "critic_steps": int(a.critic_steps),
      "actor_steps": int(a.actor_steps),
      "update_s": full["seconds"], "updates_per_s": 1.0 / full["seconds"],
      "critic_steps_per_s": 1.0 / critic_s, "actor_steps_per_s": 1.0 / actor_s,
      "transition_tokens_per_s": tokens * (int(a.critic_steps) + int(a.actor_steps))
                                 / full["seconds"],
      "update_flops": full["flops"], "achieved_flops_per_s": full["flops_per_s"],
      "critic_only_flops_per_s": critic_only["flops_per_s"],
      "matmul_peak_flops_per_s": peak,
      "utilisation": full["flops_per_s"] / peak,
      "compile_s": full["compile_s"], "runs": runs,
  }
  print(f"update ({a.critic_steps} critic + {a.actor_steps} actor steps of {a.batch_size}): "
        f"{full['seconds']:.2f} s  ({result['updates_per_s']:.2f} updates/s, compile "
        f"{full['compile_s']:.0f} s)")
  print(f"critic steps/s {result['critic_steps_per_s']:.2f}   actor steps/s "
        f"{result['actor_steps_per_s']:.2f}   transition tokens/s "
        f"{result['transition_tokens_per_s']:.0f}")
  print(f"achieved {full['flops_per_s'] / 1e9:.1f} GFLOP/s of a measured float32 matmul peak "
        f"{peak / 1e9:.1f} GFLOP/s: {result['utilisation']:.1%} "
        f"(critic-only update {critic_only['flops_per_s'] / peak:.1%})")
  if _JSON.value:
    with open(_JSON.value, "w", encoding="utf-8") as f:
      json.dump(result, f, indent=2)


if __name__ == "__main__":
  app.run(main)
