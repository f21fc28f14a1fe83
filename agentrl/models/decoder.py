"""Decoder-only language model: Llama/Qwen2 style and GPT-2 style from one config.

The module is Flax Linen, so a forward pass is the pure function
``Decoder(config).apply({"params": params}, tokens, positions, token_mask, cache)``:
parameters and arrays in, arrays out. Nothing stateful crosses a jit boundary; the
KV cache is an explicit pytree (``KVCache``) passed in and returned.

Every parameter carries logical axis names (``vocab``, ``embed``, ``heads``, ``kv``,
``mlp``, ``position``) that ``agentrl.parallel`` maps onto mesh axes.

Shapes: B batch, L tokens in this call, S cache slots, E hidden size, H query heads,
K key/value heads, D head size, M MLP size, V vocabulary.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

import chex
import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from agentrl import parallel

Array = jax.Array

#: Logical axes of the residual stream [B, L, hidden] (see `agentrl.parallel.constrain`).
ACTIVATION_AXES = ("batch", "length", "embed")

# ----------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
  """Architecture of a decoder LM. `llama()` and `gpt2()` give each family's defaults."""

  vocab_size: int
  hidden_size: int
  num_layers: int
  num_heads: int
  num_kv_heads: int | None = None  # None: same as num_heads (no grouped-query attention)
  head_dim: int | None = None  # None: hidden_size // num_heads
  mlp_dim: int | None = None  # None: 4 * hidden_size
  max_position_embeddings: int = 2048  # size of the learned position table (GPT-2)
  norm: Literal["rms", "layer"] = "rms"
  norm_eps: float = 1e-6
  position: Literal["rope", "learned"] = "rope"
  rope_theta: float = 10000.0
  rope_scaling: Literal["linear", "llama3"] | None = None  # long-context RoPE variants
  rope_factor: float = 1.0  # linear / llama3: how much longer the context became
  rope_low_freq_factor: float = 1.0  # llama3
  rope_high_freq_factor: float = 4.0  # llama3
  rope_original_max_position: int = 8192  # llama3: context length before scaling
  activation: Literal["swiglu", "gelu_tanh", "gelu"] = "swiglu"
  qkv_bias: bool = False  # Qwen2 and GPT-2: True
  out_bias: bool = False  # attention output projection bias (GPT-2)
  mlp_bias: bool = False  # GPT-2: True
  fused_qkv: bool = False  # one QKV projection (GPT-2); needs num_kv_heads == num_heads
  tie_embeddings: bool = False  # the output layer reuses the token embedding
  dtype: str = "float32"  # computation dtype
  param_dtype: str = "float32"  # storage dtype of parameters
  # Rematerialise each block in the backward pass (jax.checkpoint): on TPU and GPU a gradient
  # keeps only the blocks' inputs and recomputes the rest, for about a third more compute.
  # Same parameters and values.
  remat: bool = False

  def __post_init__(self):
    if self.hidden_size % self.num_heads and self.head_dim is None:
      raise ValueError(
          f"hidden_size={self.hidden_size} is not divisible by num_heads={self.num_heads}; "
          "set head_dim explicitly.")
    if self.num_heads % self.kv_heads:
      raise ValueError(f"num_heads={self.num_heads} must be a multiple of "
                       f"num_kv_heads={self.kv_heads}.")
    if self.fused_qkv and self.kv_heads != self.num_heads:
      raise ValueError("fused_qkv needs num_kv_heads == num_heads.")
    for name, value, allowed in (("norm", self.norm, ("rms", "layer")),
                                 ("position", self.position, ("rope", "learned")),
                                 ("activation", self.activation, ("swiglu", "gelu_tanh", "gelu")),
                                 ("rope_scaling", self.rope_scaling, (None, "linear", "llama3"))):
      if value not in allowed:
        raise ValueError(f"DecoderConfig.{name}={value!r}; expected one of {allowed}.")

  @property
  def kv_heads(self) -> int:
    return self.num_kv_heads or self.num_heads

  @property
  def head_size(self) -> int:
    return self.head_dim or self.hidden_size // self.num_heads

  @property
  def mlp_size(self) -> int:
    return self.mlp_dim or 4 * self.hidden_size

  def replace(self, **kwargs) -> "DecoderConfig":
    return dataclasses.replace(self, **kwargs)

  @classmethod
  def llama(cls, **kwargs) -> "DecoderConfig":
    """Llama / Qwen2 family: RMSNorm, RoPE, SwiGLU, grouped-query attention."""
    defaults = dict(norm="rms", norm_eps=1e-6, position="rope", activation="swiglu")
    return cls(**{**defaults, **kwargs})

  @classmethod
  def gpt2(cls, **kwargs) -> "DecoderConfig":
    """GPT-2 family: learned positions, LayerNorm, GELU (tanh), fused QKV, tied output."""
    defaults = dict(norm="layer", norm_eps=1e-5, position="learned", activation="gelu_tanh",
                    qkv_bias=True, out_bias=True, mlp_bias=True, fused_qkv=True,
                    tie_embeddings=True, max_position_embeddings=1024)
    return cls(**{**defaults, **kwargs})


# ----------------------------------------------------------------------------------------
# KV cache and outputs
# ----------------------------------------------------------------------------------------


@flax.struct.dataclass
class KVCache:
  """Keys and values of every layer for a batch of conversations.

  Slots are written left to right at ``end`` (shared by the batch); ``mask`` marks the
  slots that hold a real token of each row, so left padding, finished rows and the
  padding of appended observations are holes the attention never reads.
  ``next_position`` is each row's position for its next real token (RoPE/learned).
  """

  keys: tuple[Array, ...]  # per layer [B, K, S, D] (heads-major: what attention contracts)
  values: tuple[Array, ...]  # per layer [B, K, S, D]
  mask: Array  # bool[B, S]
  end: Array  # int32[], first free slot
  next_position: Array  # int32[B]

  @property
  def max_length(self) -> int:
    return self.mask.shape[1]


def init_cache(config: DecoderConfig, batch_size: int, max_length: int,
               dtype: Any = None) -> KVCache:
  """An empty cache for `batch_size` conversations of up to `max_length` tokens."""
  dtype = jnp.dtype(dtype or config.dtype)
  shape = (batch_size, config.kv_heads, max_length, config.head_size)
  zeros = tuple(jnp.zeros(shape, dtype) for _ in range(config.num_layers))
  return KVCache(keys=zeros, values=tuple(jnp.zeros(shape, dtype) for _ in zeros),
                 mask=jnp.zeros((batch_size, max_length), bool), end=jnp.zeros((), jnp.int32),
                 next_position=jnp.zeros((batch_size,), jnp.int32))


@flax.struct.dataclass
class DecoderOutput:
  logits: Array  # float32[B, L, V]
  hidden: Array  # [B, L, E], after the final norm (what value heads read)
  cache: KVCache | None


# ----------------------------------------------------------------------------------------
# Layers
# ----------------------------------------------------------------------------------------

WEIGHT_INIT = nn.initializers.normal(stddev=0.02)


def with_axes(init, names):
  """An initialiser whose parameter carries logical axis names (for sharding rules)."""
  return nn.with_logical_partitioning(init, names)


def make_norm(config: DecoderConfig, name: str) -> nn.Module:
  scale = with_axes(nn.initializers.ones, ("embed",))
  if config.norm == "rms":
    return nn.RMSNorm(epsilon=config.norm_eps, dtype=jnp.float32,
                      param_dtype=config.param_dtype, scale_init=scale, name=name)
  return nn.LayerNorm(epsilon=config.norm_eps, dtype=jnp.float32,
                      param_dtype=config.param_dtype, scale_init=scale,
                      bias_init=with_axes(nn.initializers.zeros, ("embed",)), name=name)


def rope_inverse_frequencies(config: DecoderConfig) -> Array:
  """float32[D/2] rotation speeds, with the config's long-context scaling applied.

  llama3 (Llama 3.1+): wavelengths longer than original_max_position / low_freq_factor are
  slowed by `rope_factor`, those shorter than original_max_position / high_freq_factor are
  kept, and the band between is interpolated smoothly. linear: all are slowed by the factor.
  """
  d = config.head_size
  inv_freq = 1.0 / (config.rope_theta ** (jnp.arange(0, d, 2, dtype=jnp.float32) / d))
  if config.rope_scaling == "linear":
    return inv_freq / config.rope_factor
  if config.rope_scaling == "llama3":
    old_len, factor = config.rope_original_max_position, config.rope_factor
    low, high = config.rope_low_freq_factor, config.rope_high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    smooth = (old_len / wavelen - low) / (high - low)
    interpolated = (1 - smooth) * inv_freq / factor + smooth * inv_freq
    return jnp.where(wavelen > old_len / low, inv_freq / factor,
                     jnp.where(wavelen < old_len / high, inv_freq, interpolated))
  return inv_freq


def rope_frequencies(positions: Array, inv_freq: Array) -> tuple[Array, Array]:
  """cos and sin of RoPE angles, float32[B, L, D], in the half-split (Llama/HF) layout."""
  angles = positions.astype(jnp.float32)[..., None] * inv_freq  # [B, L, D/2]
  angles = jnp.concatenate([angles, angles], axis=-1)
  return jnp.cos(angles), jnp.sin(angles)


def apply_rope(x: Array, cos: Array, sin: Array) -> Array:
  """Rotates x [B, L, N, D] by the angles; pairs are (i, i + D/2) as in Llama."""
  x32 = x.astype(jnp.float32)
  half = x.shape[-1] // 2
  rotated = jnp.concatenate([-x32[..., half:], x32[..., :half]], axis=-1)
  out = x32 * cos[:, :, None, :] + rotated * sin[:, :, None, :]
  return out.astype(x.dtype)


def attention_mask(query_slots: Array, key_mask: Array) -> Array:
  """bool[B, L, S]: query at slot i sees key slot s if s <= i and the slot holds a token."""
  key_slots = jnp.arange(key_mask.shape[1])
  causal = key_slots[None, None, :] <= query_slots[:, :, None]
  return causal & key_mask[:, None, :]


def dot_product_attention(q: Array, k: Array, v: Array, mask: Array) -> Array:
  """Grouped-query attention. q [B,L,H,D], k/v [B,S,K,D], mask bool[B,L,S] -> [B,L,H,D]."""
  return heads_major_attention(q, k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3), mask)


def heads_major_attention(q: Array, k: Array, v: Array, mask: Array) -> Array:
  """Grouped-query attention with k/v in the cache layout [B,K,S,D]; q [B,L,H,D] -> [B,L,H,D].

  Batch and kv-head axes lead so both contractions are plain batched matmuls: XLA then
  reads the cache in place instead of transposing all of it at every decode step.
  """
  b, l, h, d = q.shape
  kv_heads, s = k.shape[1], k.shape[2]
  g = h // kv_heads
  q = q.reshape(b, l, kv_heads, g, d).transpose(0, 2, 3, 1, 4).reshape(b, kv_heads, g * l, d)
  scores = jnp.einsum("bkqd,bksd->bkqs", q, k, preferred_element_type=jnp.float32)
  scores = scores.reshape(b, kv_heads, g, l, s) / math.sqrt(d)
  scores = jnp.where(mask[:, None, None], scores, jnp.finfo(jnp.float32).min)
  probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype).reshape(b, kv_heads, g * l, s)
  out = jnp.einsum("bkqs,bksd->bkqd", probs, v)
  return out.reshape(b, kv_heads, g, l, d).transpose(0, 3, 1, 2, 4).reshape(b, l, h, d)


class Attention(nn.Module):
  config: DecoderConfig

  @nn.compact
  def __call__(self, x, cos, sin, mask, cache_kv=None, cache_end=None):
    cfg = self.config
    dense = lambda features, names, bias, name: nn.DenseGeneral(  # noqa: E731
        features=features, use_bias=bias, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
        kernel_init=with_axes(WEIGHT_INIT, ("embed",) + names),
        bias_init=with_axes(nn.initializers.zeros, names), name=name)
    heads, kv_heads, d = cfg.num_heads, cfg.kv_heads, cfg.head_size
    if cfg.fused_qkv:
      qkv = dense((3, heads, d), (None, "heads", "kv"), cfg.qkv_bias, "qkv_proj")(x)
      q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    else:
      q = dense((heads, d), ("heads", "kv"), cfg.qkv_bias, "q_proj")(x)
      k = dense((kv_heads, d), ("heads", "kv"), cfg.qkv_bias, "k_proj")(x)
      v = dense((kv_heads, d), ("heads", "kv"), cfg.qkv_bias, "v_proj")(x)
    if cfg.position == "rope":
      q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    new_kv = None
    k, v = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)  # [B, K, L, D]
    if cache_kv is not None:
      cache_k, cache_v = cache_kv
      start = (0, 0, cache_end, 0)
      k = jax.lax.dynamic_update_slice(cache_k, k.astype(cache_k.dtype), start)
      v = jax.lax.dynamic_update_slice(cache_v, v.astype(cache_v.dtype), start)
      new_kv = (k, v)
    out = heads_major_attention(q, k.astype(q.dtype), v.astype(q.dtype), mask)
    out = nn.DenseGeneral(
        features=cfg.hidden_size, axis=(-2, -1), use_bias=cfg.out_bias, dtype=cfg.dtype,
        param_dtype=cfg.param_dtype, kernel_init=with_axes(WEIGHT_INIT, ("heads", "kv", "embed")),
        bias_init=with_axes(nn.initializers.zeros, ("embed",)), name="o_proj")(out)
    return out, new_kv


class MLP(nn.Module):
  config: DecoderConfig

  @nn.compact
  def __call__(self, x):
    cfg = self.config
    dense = lambda features, names, name: nn.Dense(  # noqa: E731
        features, use_bias=cfg.mlp_bias, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
        kernel_init=with_axes(WEIGHT_INIT, names),
        bias_init=with_axes(nn.initializers.zeros, names[-1:]), name=name)
    if cfg.activation == "swiglu":
      h = nn.silu(dense(cfg.mlp_size, ("embed", "mlp"), "gate_proj")(x))
      h = h * dense(cfg.mlp_size, ("embed", "mlp"), "up_proj")(x)
    else:
      h = nn.gelu(dense(cfg.mlp_size, ("embed", "mlp"), "up_proj")(x),
                  approximate=cfg.activation == "gelu_tanh")
    return dense(cfg.hidden_size, ("mlp", "embed"), "down_proj")(h)


class Block(nn.Module):
  """Pre-norm transformer block (both families)."""

  config: DecoderConfig

  @nn.compact
  def __call__(self, x, cos, sin, mask, cache_kv=None, cache_end=None):
    cfg = self.config
    h = make_norm(cfg, "attn_norm")(x).astype(cfg.dtype)
    h, new_kv = Attention(cfg, name="attn")(h, cos, sin, mask, cache_kv, cache_end)
    x = x + h
    h = make_norm(cfg, "mlp_norm")(x).astype(cfg.dtype)
    x = x + MLP(cfg, name="mlp")(h)
    return x, new_kv


# ----------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------


class Decoder(nn.Module):
  """Decoder-only LM.

  Call with ``tokens``/``positions`` int32[B, L] and ``token_mask`` bool[B, L] (True on real
  tokens; padding anywhere is allowed since positions are explicit). Without a cache the
  attention is causal over the call's real tokens. With a cache the L tokens are written at
  ``cache.end`` and attend to every real token already cached; the returned cache has
  ``end`` advanced by L and ``next_position`` advanced by each row's count of real tokens.
  ``last_logits_only`` returns logits and hidden states of the last position only ([B, 1, .]).
  ``logits_from`` = f computes the logits of positions f.. only ([B, L - f, V]; hidden states
  stay [B, L, E]): scoring a suffix (an utterance after a long state) skips the output layer on
  the prefix, the largest activation of a big-vocabulary model.
  """

  config: DecoderConfig

  def setup(self):
    cfg = self.config
    self.embed = nn.Embed(cfg.vocab_size, cfg.hidden_size, dtype=cfg.dtype,
                          param_dtype=cfg.param_dtype,
                          embedding_init=with_axes(WEIGHT_INIT, ("vocab", "embed")))
    if cfg.position == "learned":
      self.pos_embed = nn.Embed(cfg.max_position_embeddings, cfg.hidden_size, dtype=cfg.dtype,
                                param_dtype=cfg.param_dtype,
                                embedding_init=with_axes(WEIGHT_INIT, ("position", "embed")))
    block = nn.remat(Block) if cfg.remat else Block
    self.layers = [block(cfg, name=f"layer_{i}") for i in range(cfg.num_layers)]
    self.final_norm = make_norm(cfg, "final_norm")
    if not cfg.tie_embeddings:
      self.lm_head = nn.Dense(cfg.vocab_size, use_bias=False, dtype=cfg.dtype,
                              param_dtype=cfg.param_dtype,
                              kernel_init=with_axes(WEIGHT_INIT, ("embed", "vocab")))

  def __call__(self, tokens: Array, positions: Array, token_mask: Array | None = None,
               cache: KVCache | None = None, *, last_logits_only: bool = False,
               logits_from: int = 0) -> DecoderOutput:
    cfg = self.config
    chex.assert_rank([tokens, positions], 2)
    chex.assert_equal_shape([tokens, positions])
    if token_mask is None:
      token_mask = jnp.ones(tokens.shape, bool)
    batch, length = tokens.shape
    x = self.embed(tokens)
    if cfg.position == "learned":
      x = x + self.pos_embed(positions)
    x = parallel.constrain(x, ACTIVATION_AXES)
    cos = sin = None
    if cfg.position == "rope":
      cos, sin = rope_frequencies(positions, rope_inverse_frequencies(cfg))

    if cache is None:
      slots = jnp.broadcast_to(jnp.arange(length), (batch, length))
      mask = attention_mask(slots, token_mask)
      new_cache = None
      for layer in self.layers:
        x, _ = layer(x, cos, sin, mask)
        x = parallel.constrain(x, ACTIVATION_AXES)
    else:
      key_mask = jax.lax.dynamic_update_slice(cache.mask, token_mask, (0, cache.end))
      slots = jnp.broadcast_to(cache.end + jnp.arange(length), (batch, length))
      mask = attention_mask(slots, key_mask)
      keys, values = [], []
      for i, layer in enumerate(self.layers):
        x, (k, v) = layer(x, cos, sin, mask, (cache.keys[i], cache.values[i]), cache.end)
        keys.append(k)
        values.append(v)
      new_cache = KVCache(
          keys=tuple(keys), values=tuple(values), mask=key_mask, end=cache.end + length,
          next_position=cache.next_position + token_mask.sum(-1).astype(jnp.int32))

    hidden = self.final_norm(x).astype(cfg.dtype)
    if last_logits_only:  # a prefill needs only the next-token logits: skip [B, L, V]
      hidden = hidden[:, -1:]
    if not 0 <= logits_from < hidden.shape[1]:
      raise ValueError(f"logits_from={logits_from} must lie in [0, {hidden.shape[1]}) (the "
                       "tokens of this call).")
    scored = hidden[:, logits_from:] if logits_from else hidden
    if cfg.tie_embeddings:
      logits = self.embed.attend(scored)
    else:
      logits = self.lm_head(scored)
    logits = parallel.constrain(logits, ("batch", "length", "vocab"))
    return DecoderOutput(logits=logits.astype(jnp.float32), hidden=hidden, cache=new_cache)


def positions_from_mask(token_mask: Array, start: Array | int = 0) -> Array:
  """Positions of real tokens counted per row from `start` (int or int32[B]); pads get the
  position of the next real token, which is harmless since they are masked out."""
  start = jnp.asarray(start, jnp.int32)
  if start.ndim == 1:
    start = start[:, None]
  return start + jnp.cumsum(token_mask.astype(jnp.int32), axis=-1) - token_mask.astype(jnp.int32)


def init_params(config: DecoderConfig, rng: Array, *, boxed: bool = False) -> Any:
  """Random parameters. `boxed=True` keeps the logical-axis metadata (nn.Partitioned)."""
  tokens = jnp.zeros((1, 1), jnp.int32)
  variables = Decoder(config).init(rng, tokens, tokens)
  params = variables["params"]
  return params if boxed else nn.meta.unbox(params)


def count_params(params: Any) -> int:
  return sum(int(x.size) for x in jax.tree_util.tree_leaves(nn.meta.unbox(params)))
