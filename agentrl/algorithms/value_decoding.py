"""Token-level value heads on the policy LM and Q-guided decoding (ILQL, MC returns).

The value-based offline methods of LMRL-Gym (ILQL, MC returns) keep the behaviour policy π_β
(the BC policy) and learn token-level Q/V heads that read the decoder's hidden state h_t, the
state that predicts token t. A Q head is an MLP d → d → |V| whose output is one Q-value per
vocabulary entry ("Q-logits"): Q(s_t, a) for every next token a.

  heads = TokenValueHeads(vocab_size, hidden_dim, num_q=2, with_v=True)
  q, v = heads.apply({"params": value_params}, hidden)   # q [num_q, ..., |V|], v [...]

Decoding is steered by the learned advantage:

  logits_t = logits_β(s_t) + β · (min_k Q_k(s_t, ·) − V(s_t))

i.e. π(a|s) ∝ π_β(a|s)·exp(β·A(s, a)). LMRL-Gym adds β·min(Q1, Q2) to π_β's logits; V(s) is
the same for every token of one state, so subtracting it leaves the distribution unchanged
(it only keeps the added term small), and adding β·A to the raw logits instead of to
log π_β is the same distribution too. With β = 0 the sampler is exactly `sampling.generate`
(same rng, same tokens, bit for bit); with β → ∞ it follows argmax_a min_k Q_k(s, a).

The heads read the *same* hidden state as the LM head, so each decode step is one forward of
the policy decoder with a KV cache (LMRL-Gym keeps two models and two caches: with a trunk
trained by the value loss; here `train_trunk=True` trains the shared trunk jointly with a BC
term instead, see `ilql.py`).

  out = guided_generate(params, value_params, cache, tokens, mask, rng, config=cfg,
                        sampling=sampling, heads=heads, beta=8.0)

`GuidedPolicy` wraps this as a scripted policy `(env, np_rng) -> str` that `rollout.rollout`
accepts: each call re-encodes the conversation (system prompt + `env.messages()`) and decodes
one utterance with a fresh cache. That is correct but re-prefills the whole conversation every
turn and reports behaviour log-probs of 0; it is meant for evaluation. A batched, cached
guided rollout needs a sampler hook in `rollout.rollout` (see `guided_rollout`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from agentrl import rollout as rollout_lib
from agentrl import turns
from agentrl import sampling as sampling_lib
from agentrl.models import heads as heads_lib
from agentrl.models.decoder import DecoderConfig, KVCache, init_cache
from agentrl.types import TrajectoryBatch
from agentrl.sampling import SampleOutput, SamplingConfig

Array = jax.Array


class TokenValueHeads(nn.Module):
  """`num_q` Q-logit heads (MLP d → hidden_dim → vocab_size) and an optional V head (d → 1).

  Returns `(q float32[num_q, ..., vocab_size], v float32[...])`; v is zeros without a V head.
  """

  vocab_size: int
  hidden_dim: int
  num_q: int = 2
  with_v: bool = True

  @nn.compact
  def __call__(self, hidden: Array) -> tuple[Array, Array]:
    q = heads_lib.CriticEnsemble((self.hidden_dim,), num_critics=self.num_q,
                                 out_dim=self.vocab_size, squeeze=False, name="q")(hidden)
    if self.with_v:
      v = heads_lib.MLPHead((self.hidden_dim,), out_dim=1, name="v")(hidden)
    else:
      v = jnp.zeros(hidden.shape[:-1], jnp.float32)
    return q, v


def init_heads(heads: TokenValueHeads, rng: Array, hidden_size: int):
  """Parameters of `heads` for decoder hidden states of width `hidden_size`."""
  return heads.init(rng, jnp.zeros((1, hidden_size), jnp.float32))["params"]


def action_token_mask(batch: TrajectoryBatch) -> Array:
  """Action tokens of valid turns: where the token-level losses are taken [B, T]."""
  return (turns.valid_turn_tokens(batch.action_mask, batch.turn_index, batch.turn_mask)
          & batch.attention_mask)


def token_rewards(batch: TrajectoryBatch) -> tuple[Array, Array]:
  """Turn rewards and terminals moved onto the last action token of each turn.

  Returns `(rewards float32[B, T], dones bool[B, T])`: `rewards[b, t] = batch.rewards[b, k]`
  where token t is the `turn_end` of turn k (0 elsewhere), `dones[b, t] = batch.dones[b, k]`
  there (False elsewhere).
  """
  at_end = action_token_mask(batch) & batch.turn_end
  rewards = turns.turns_to_tokens(batch.rewards.astype(jnp.float32), batch.turn_index, at_end)
  return rewards, turns.turns_to_tokens(batch.dones.astype(bool), batch.turn_index, at_end)


def next_action_index(mask: Array) -> tuple[Array, Array]:
  """For each token t, the next position t' > t with `mask` true: `(index int32[B, T],
  exists bool[B, T])` (index clipped into [0, T) where none exists)."""
  t = mask.shape[1]
  pos = jnp.where(mask, jnp.arange(t, dtype=jnp.int32)[None], t)
  first_from = jax.lax.cummin(pos, axis=1, reverse=True)  # first masked position >= t
  nxt = jnp.concatenate([first_from[:, 1:], jnp.full((mask.shape[0], 1), t, jnp.int32)], 1)
  return jnp.minimum(nxt, t - 1), nxt < t


def reward_to_go(rewards: Array, mask: Array, gamma: float) -> Array:
  """R_t = Σ_{i ≥ t} γ^(i − t) r_i over the masked (action) tokens of each row, i counting
  action tokens only (LMRL-Gym's per-action-token discount); 0 off the mask."""
  def step(carry, x):
    r, m = x
    g = jnp.where(m, r + gamma * carry, carry)
    return g, jnp.where(m, g, 0.0)

  _, out = jax.lax.scan(step, jnp.zeros(rewards.shape[0], jnp.float32),
                        (rewards.T.astype(jnp.float32), mask.T), reverse=True)
  return out.T


def taken(values: Array, tokens: Array) -> Array:
  """values[..., B, T, |V|] at the taken tokens [B, T] -> [..., B, T]."""
  idx = jnp.broadcast_to(tokens[..., None], values.shape[:-1] + (1,))
  return jnp.take_along_axis(values, idx, axis=-1)[..., 0]


def advantage_logits(q: Array, v: Array) -> Array:
  """min_k Q_k(s, ·) − V(s): q [num_q, ..., |V|], v [...] -> [..., |V|]."""
  return jnp.min(q, axis=0) - v[..., None]


@dataclasses.dataclass(frozen=True)
class QGuidance:
  """The logits hook of Q-guided decoding (`sampling.LogitsHook`): the LM's next-token logits
  shifted by β·(min_k Q_k − V) of the heads on the same hidden state; `hook_params` is
  `(value_params, beta)`."""

  heads: TokenValueHeads

  def __call__(self, hook_params, out) -> Array:
    value_params, beta = hook_params
    q, v = self.heads.apply({"params": value_params}, out.hidden[:, -1])
    return out.logits[:, -1] + beta * advantage_logits(q, v)


def _guided_generate(params, value_params, cache: KVCache, tokens: Array, token_mask: Array,
                     rng: Array, active: Array, beta: Array, *, config: DecoderConfig,
                     sampling: SamplingConfig, heads: TokenValueHeads) -> SampleOutput:
  """Traceable guided decoding: `sampling`'s own loop with the `QGuidance` hook."""
  return sampling_lib._generate(params, cache, tokens, token_mask, rng, active,  # pylint: disable=protected-access
                                (value_params, beta), config=config, sampling=sampling,
                                hook=QGuidance(heads))


def guided_generate(params, value_params, cache: KVCache, tokens: Array, token_mask: Array,
                    rng: Array, *, config: DecoderConfig, sampling: SamplingConfig,
                    heads: TokenValueHeads, beta: float, active: Array | None = None
                    ) -> SampleOutput:
  """`sampling.generate` with the logits shifted by β·(min_k Q_k − V) at every step.

  Prefills the left-padded chunk `tokens` into `cache` (donated: use the returned one) and
  decodes up to `sampling.max_new_tokens` tokens per row; temperature / top-k / top-p /
  greedy apply to the guided logits, and the returned log-probs are those of the guided
  distribution. `beta` is traced (changing it does not recompile). `sampling.generate` with the
  `QGuidance` hook; traceable inside another jit through `_guided_generate`.
  """
  return sampling_lib.generate(params, cache, tokens, token_mask, rng, config=config,
                               sampling=sampling, active=active, hook=QGuidance(heads),
                               hook_params=(value_params, jnp.asarray(beta, jnp.float32)))


@dataclasses.dataclass
class GuidedPolicy:
  """Q-guided decoding as a scripted policy `(env, np_rng) -> str` for `rollout.rollout`.

  Each call encodes the acting role's conversation so far (its system prompt when
  `system_prompt`, then `env.messages(role)`, then the assistant prefix), left-pads it to a
  length bucket and decodes one utterance with `guided_generate`. The JAX key is drawn from
  the rollout's numpy generator, so a rollout with a fixed integer `rng` is reproducible.
  """

  params: Any
  value_params: Any
  config: DecoderConfig
  sampling: SamplingConfig
  heads: TokenValueHeads
  beta: float
  tokenizer: Any
  system_prompt: bool = True

  def prompt_ids(self, env) -> list[int]:
    role = int(getattr(env, "to_play", 0))
    messages = list(env.messages(role))
    system = env.instructions(role)
    if system and self.system_prompt:
      messages = [{"role": "system", "content": system}] + messages
    return self.tokenizer.encode_chat(messages, add_generation_prompt=True).tokens.tolist()

  def __call__(self, env, rng: np.random.Generator) -> str:
    ids = self.prompt_ids(env)
    tokens, mask = sampling_lib.left_pad([ids], pad_token=self.sampling.pad_token)
    cache = init_cache(self.config, 1, sampling_lib.bucket_length(
        tokens.shape[1] + self.sampling.max_new_tokens))
    key = jax.random.PRNGKey(int(rng.integers(2**31 - 1)))
    out = guided_generate(self.params, self.value_params, cache, tokens, mask, key,
                          config=self.config, sampling=self.sampling, heads=self.heads,
                          beta=self.beta)
    n = int(out.lengths[0])
    return self.tokenizer.decode_utterance(np.asarray(out.tokens)[0, :n].tolist())


def guided_rollout(guided: GuidedPolicy, env, seeds, *, max_tokens: int, group_size: int = 1,
                   rng: int = 0, **kwargs) -> rollout_lib.RolloutResult:
  """Plays episodes with Q-guided decoding through `rollout.rollout` (scripted-policy path).

  Actions in the returned batch are the re-encoded utterance texts with behaviour log-probs 0
  (evaluation, not training data). `kwargs` go to `rollout.rollout`.
  """
  return rollout_lib.rollout(guided, env, seeds, tokenizer=guided.tokenizer,
                             max_tokens=max_tokens, group_size=group_size, rng=rng,
                             system_prompt=guided.system_prompt, **kwargs)
