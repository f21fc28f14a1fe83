"""Batched generation with a KV cache, in one jitted loop.

A batch of conversations lives in a `KVCache`. Each call of `generate` prefills a
left-padded chunk of new tokens (the prompt, or the observation appended after the last
utterance) into the existing cache, then decodes up to `max_new_tokens` tokens per row
inside a `lax.while_loop` that stops early once every row has emitted the stop token
(the chat template's end-of-turn). Nothing before the chunk is recomputed, so a multi-turn
rollout costs one prefill per turn plus one decode step per generated token.

Rows keep their own positions (`cache.next_position`), so left padding, rows that stopped
early and ragged observations are holes in the cache that attention never reads: continuing
a conversation gives the same tokens as generating from the whole, re-padded prefix.

The returned log-probs are log pi(token | prefix) under the distribution the sampler drew
from *before* top-k / top-p truncation: the model's softmax at `temperature` (at 1.0 when
greedy). With temperature 1 they are the behaviour log-probs an RL loss needs.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import chex
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from agentrl.models.decoder import Decoder, DecoderConfig, KVCache, init_cache, positions_from_mask

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
  """How to pick tokens. Hashable: it is a static argument of the jitted sampler."""

  max_new_tokens: int = 64  # per call; the cache needs room for chunk + max_new_tokens
  temperature: float = 1.0  # 0 means greedy (argmax)
  top_k: int = 0  # keep the k most likely tokens; 0 keeps all
  top_p: float = 1.0  # nucleus: smallest set with probability >= top_p; 1.0 keeps all
  stop_token: int | None = None  # a row stops after emitting it (end-of-turn id)
  pad_token: int = 0  # written after a row stops

  def __post_init__(self):
    if self.max_new_tokens < 1:
      raise ValueError(f"SamplingConfig.max_new_tokens={self.max_new_tokens} must be >= 1.")
    if self.temperature < 0:
      raise ValueError(f"SamplingConfig.temperature={self.temperature} must be >= 0.")
    if self.top_k < 0:
      raise ValueError(f"SamplingConfig.top_k={self.top_k} must be >= 0.")
    if not 0.0 < self.top_p <= 1.0:
      raise ValueError(f"SamplingConfig.top_p={self.top_p} must be in (0, 1].")

  @property
  def greedy(self) -> bool:
    return self.temperature == 0.0


@flax.struct.dataclass
class SampleOutput:
  tokens: Array  # int32[B, N]: generated tokens, pad_token after a row stops
  logprobs: Array  # float32[B, N]: log-prob of each generated token, 0 after a row stops
  lengths: Array  # int32[B]: tokens generated per row, the stop token included
  cache: KVCache  # the conversations, now including the chunk and the generated tokens


def filter_logits(logits: Array, *, top_k: int = 0, top_p: float = 1.0) -> Array:
  """Sets the logits outside the top-k / top-p set to -inf. logits float32[B, V].

  Top-p acts on the distribution renormalised over the top-k set (the usual order).
  """
  neg_inf = jnp.finfo(logits.dtype).min
  if top_k > 0:
    kth = jax.lax.top_k(logits, top_k)[0][..., -1:]
    logits = jnp.where(logits < kth, neg_inf, logits)
  if top_p < 1.0:
    sorted_logits = jnp.sort(logits, axis=-1)[..., ::-1]
    probs = jax.nn.softmax(sorted_logits, axis=-1)
    mass_before = jnp.cumsum(probs, axis=-1) - probs
    # The smallest logit still inside the nucleus (the first token is always kept).
    kept = jnp.where(mass_before < top_p, sorted_logits, jnp.inf)
    threshold = jnp.min(kept, axis=-1, keepdims=True)
    logits = jnp.where(logits < threshold, neg_inf, logits)
  return logits


def sample_token(logits: Array, rng: Array, sampling: SamplingConfig) -> tuple[Array, Array]:
  """Draws one token per row; returns (token int32[B], its log-prob float32[B])."""
  temperature = 1.0 if sampling.greedy else sampling.temperature
  log_probs = jax.nn.log_softmax(logits / temperature, axis=-1)
  if sampling.greedy:
    token = jnp.argmax(logits, axis=-1)
  else:
    filtered = filter_logits(logits / temperature, top_k=sampling.top_k, top_p=sampling.top_p)
    token = jax.random.categorical(rng, filtered, axis=-1)
  token = token.astype(jnp.int32)
  return token, jnp.take_along_axis(log_probs, token[:, None], axis=-1)[:, 0]


#: A logits hook: `hook(hook_params, decoder_output) -> logits [B, V]` of the next token, from
#: the decoder's output on the chunk just fed (`.logits[:, -1]`, `.hidden[:, -1]`), e.g.
#: ILQL's Q-guided logits (`value_decoding.QGuidance`). A hashable callable (it is a static
#: argument of the jit); its parameters go in `hook_params`, which are traced.
LogitsHook = Callable[[Any, Any], Array]


def next_logits(out, hook: LogitsHook | None = None, hook_params=None) -> Array:
  """The logits [B, V] the next token is sampled from: the decoder's at the last position,
  or `hook(hook_params, out)`."""
  return out.logits[:, -1] if hook is None else hook(hook_params, out)


def prefill(params, cache: KVCache, tokens: Array, token_mask: Array, *,
            config: DecoderConfig, hook: LogitsHook | None = None, hook_params=None
            ) -> tuple[Array, KVCache]:
  """Writes a left-padded chunk into the cache; returns the last position's logits [B, V]
  (through `hook` when given)."""
  positions = positions_from_mask(token_mask, cache.next_position)
  out = Decoder(config).apply({"params": params}, tokens, positions, token_mask, cache,
                              last_logits_only=True)
  return next_logits(out, hook, hook_params), out.cache


def decode(params, cache: KVCache, logits: Array, rng: Array, done: Array, *,
           config: DecoderConfig, sampling: SamplingConfig, hook: LogitsHook | None = None,
           hook_params=None) -> SampleOutput:
  """Traceable decode loop: samples from `logits` [B, V] (the last prefilled position of each
  row), feeds each token back through the cache, and stops a row at the stop token or after
  `max_new_tokens`. Rows where `done` is already True generate nothing. With `hook`, every
  next token is sampled from `hook(hook_params, decoder_output)` (see `LogitsHook`)."""
  batch = logits.shape[0]
  steps = sampling.max_new_tokens

  def cond(carry):
    step, _, _, _, done, _, _, _ = carry
    return (step < steps) & ~jnp.all(done)

  def body(carry):
    step, cache, logits, rng, done, out_tokens, out_logprobs, lengths = carry
    rng, key = jax.random.split(rng)
    token, logprob = sample_token(logits, key, sampling)
    live = ~done
    token = jnp.where(live, token, sampling.pad_token)
    logprob = jnp.where(live, logprob, 0.0)
    lengths = lengths + live.astype(jnp.int32)
    out_tokens = jax.lax.dynamic_update_slice(out_tokens, token[:, None], (0, step))
    out_logprobs = jax.lax.dynamic_update_slice(out_logprobs, logprob[:, None], (0, step))
    if sampling.stop_token is not None:
      done = done | (token == sampling.stop_token)
    # The token goes into the cache (the stop token too: it is part of the utterance).
    positions = cache.next_position[:, None]
    out = Decoder(config).apply({"params": params}, token[:, None], positions, live[:, None],
                                cache)
    return (step + 1, out.cache, next_logits(out, hook, hook_params), rng, done, out_tokens,
            out_logprobs, lengths)

  carry = (jnp.zeros((), jnp.int32), cache, logits, rng, done,
           jnp.full((batch, steps), sampling.pad_token, jnp.int32),
           jnp.zeros((batch, steps), jnp.float32), jnp.zeros((batch,), jnp.int32))
  _, cache, _, _, _, out_tokens, out_logprobs, lengths = jax.lax.while_loop(cond, body, carry)
  return SampleOutput(tokens=out_tokens, logprobs=out_logprobs, lengths=lengths, cache=cache)


def _generate(params, cache: KVCache, tokens: Array, token_mask: Array, rng: Array,
              active: Array, hook_params=None, *, config: DecoderConfig,
              sampling: SamplingConfig, hook: LogitsHook | None = None) -> SampleOutput:
  chex.assert_rank([tokens, token_mask], 2)
  chex.assert_equal_shape([tokens, token_mask])
  logits, cache = prefill(params, cache, tokens, token_mask & active[:, None], config=config,
                          hook=hook, hook_params=hook_params)
  return decode(params, cache, logits, rng, ~active, config=config, sampling=sampling,
                hook=hook, hook_params=hook_params)


def repeat_rows(cache: KVCache, k: int) -> KVCache:
  """Each row of the cache `k` times in a row (row b becomes rows b*k .. b*k + k - 1)."""
  rep = lambda x: jnp.repeat(x, k, axis=0)  # noqa: E731
  return cache.replace(keys=tuple(map(rep, cache.keys)), values=tuple(map(rep, cache.values)),
                       mask=rep(cache.mask), next_position=rep(cache.next_position))


def take_rows(cache: KVCache, rows: Array) -> KVCache:
  """The cache of the rows `rows` (int[B']) only; the shared write pointer is kept."""
  take = lambda x: jnp.take(x, rows, axis=0)  # noqa: E731
  return cache.replace(keys=tuple(map(take, cache.keys)), values=tuple(map(take, cache.values)),
                       mask=take(cache.mask), next_position=take(cache.next_position))


_generate_jit = jax.jit(_generate, static_argnames=("config", "sampling", "hook"),
                        donate_argnames=("cache",))


def generate(params, cache: KVCache, tokens: Array, token_mask: Array, rng: Array, *,
             config: DecoderConfig, sampling: SamplingConfig,
             active: Array | None = None, hook: LogitsHook | None = None,
             hook_params=None) -> SampleOutput:
  """Prefills `tokens` (left-padded, int32[B, L], real where `token_mask`) into `cache` and
  generates up to `sampling.max_new_tokens` tokens per row. Rows where `active` is False
  generate nothing and write nothing. The cache is donated: use the returned one. With
  `hook`, tokens are sampled from `hook(hook_params, decoder_output)` instead of the LM's
  logits (guided decoding; see `LogitsHook`), and the log-probs are the hooked
  distribution's.

  Every row must have at least one real token in the chunk (the logits of its last
  position start the utterance). Compiles once per (config, sampling, B, L, cache size).
  """
  if active is None:
    active = jnp.ones((tokens.shape[0],), bool)
  free = cache.max_length - int(cache.end)
  needed = tokens.shape[1] + sampling.max_new_tokens
  if needed > free:
    raise ValueError(f"KV cache too small: the chunk ({tokens.shape[1]} tokens) plus "
                     f"max_new_tokens={sampling.max_new_tokens} needs {needed} slots, "
                     f"{free} of {cache.max_length} are free.")
  return _generate_jit(params, cache, jnp.asarray(tokens, jnp.int32),
                       jnp.asarray(token_mask, bool), rng, jnp.asarray(active, bool), hook_params,
                       config=config, sampling=sampling, hook=hook)


def sample_continuations(params, tokens: Array, token_mask: Array, rng: Array, *,
                         config: DecoderConfig, sampling: SamplingConfig) -> SampleOutput:
  """Traceable: one utterance per left-padded prompt, from a fresh cache sized to fit.

  For sampling inside a jitted update (ArCHer's fresh actions): no host check, no donation.
  Returns the same `SampleOutput` as `generate` (its cache can be discarded).
  """
  cache = init_cache(config, tokens.shape[0], tokens.shape[1] + sampling.max_new_tokens)
  active = jnp.ones((tokens.shape[0],), bool)
  return _generate(params, cache, tokens, token_mask, rng, active, config=config,
                   sampling=sampling)


# ----------------------------------------------------------------------------------------
# Host-side helpers: padding into shape buckets
# ----------------------------------------------------------------------------------------


def bucket_length(length: int, buckets: Sequence[int] = (16, 32, 64, 128, 256, 512, 1024, 2048)
                  ) -> int:
  """The smallest bucket >= length (then multiples of the largest), bounding recompiles."""
  for b in buckets:
    if length <= b:
      return b
  top = buckets[-1]
  return -(-length // top) * top


def left_pad(sequences: Sequence[Sequence[int]], *, pad_token: int = 0,
             length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Left-pads token lists into (tokens int32[B, L], mask bool[B, L]); L defaults to the
  bucket of the longest sequence."""
  longest = max((len(s) for s in sequences), default=0)
  length = bucket_length(max(longest, 1)) if length is None else length
  if longest > length:
    raise ValueError(f"A sequence of {longest} tokens does not fit length={length}.")
  tokens = np.full((len(sequences), length), pad_token, np.int32)
  mask = np.zeros((len(sequences), length), bool)
  for i, seq in enumerate(sequences):
    if len(seq):
      tokens[i, length - len(seq):] = seq
      mask[i, length - len(seq):] = True
  return tokens, mask


def generate_text_ids(params, prompts: Sequence[Sequence[int]], rng: Array, *,
                      config: DecoderConfig, sampling: SamplingConfig,
                      cache_length: int | None = None) -> tuple[list[list[int]], SampleOutput]:
  """Convenience: one turn from a list of token-id prompts; returns each row's new ids."""
  tokens, mask = left_pad(prompts, pad_token=sampling.pad_token)
  cache_length = cache_length or bucket_length(tokens.shape[1] + sampling.max_new_tokens)
  cache = init_cache(config, len(prompts), cache_length)
  out = generate(params, cache, tokens, mask, rng, config=config, sampling=sampling)
  toks, lengths = np.asarray(out.tokens), np.asarray(out.lengths)
  return [toks[i, :lengths[i]].tolist() for i in range(len(prompts))], out

