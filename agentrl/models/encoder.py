"""Bidirectional encoder, BERT / RoBERTa style (all-MiniLM-L6-v2, roberta-base), for critics.

The module is Flax Linen, so a forward pass is the pure function
``Encoder(config).apply({"params": params}, tokens, attention_mask)`` returning
``EncoderOutput(hidden, pooled)``. It reproduces Hugging Face's ``BertModel`` /
``RobertaModel`` in eval mode (no dropout; HF's tanh pooler is not part of it):

  x = LayerNorm(word[tokens] + position[positions] + token_type[token_type_ids])
  per layer (post-norm):  x = LayerNorm(x + Attention(x));  x = LayerNorm(x + MLP(x))

``pooled`` is the mean of ``hidden`` over real tokens (sentence-transformers' mean pooling).

Positions, when not given: real tokens are numbered from ``position_offset`` in order and
padding gets ``max(position_offset - 1, 0)``. For RoBERTa (``position_offset = pad_token_id
+ 1 = 2``) this is HF's ``cumsum(mask) * mask + padding_idx`` exactly (HF builds that mask from
``tokens != pad_token_id``; here it is ``attention_mask``, the same for tokenizer output).
For BERT (offset 0) HF uses ``arange(L)``, which agrees on every real token of a right-padded
batch; with left padding HF's positions depend on the padding, these do not.

Every parameter carries logical axis names (``vocab``, ``embed``, ``heads``, ``kv``, ``mlp``,
``position``; None on the token-type axis) that ``agentrl.parallel`` maps onto mesh axes.

Shapes: B batch, L tokens, E hidden size, H heads, D head size, M MLP size, V vocabulary,
P position table size, T token types.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import chex
import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from agentrl import parallel
from agentrl.models.decoder import (ACTIVATION_AXES, WEIGHT_INIT, dot_product_attention,
                                    with_axes)

Array = jax.Array

# ----------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
  """Architecture of a BERT-style encoder. `bert()` and `roberta()` give each family's defaults."""

  vocab_size: int
  hidden_size: int
  num_layers: int
  num_heads: int
  mlp_dim: int | None = None  # None: 4 * hidden_size
  max_position_embeddings: int = 512  # RoBERTa: 514 (two slots below position_offset)
  type_vocab_size: int = 2  # BERT 2, RoBERTa 1
  norm_eps: float = 1e-12  # BERT 1e-12, RoBERTa 1e-5
  activation: Literal["gelu", "gelu_tanh"] = "gelu"  # "gelu": exact (erf), as HF's "gelu"
  position_offset: int = 0  # position of the first real token: BERT 0, RoBERTa pad_token_id + 1
  pad_token_id: int = 0  # BERT 0, RoBERTa 1; gives the mask when attention_mask is None
  dtype: str = "float32"  # computation dtype
  param_dtype: str = "float32"  # storage dtype of parameters

  def __post_init__(self):
    for name in ("vocab_size", "hidden_size", "num_layers", "num_heads",
                 "max_position_embeddings", "type_vocab_size"):
      if getattr(self, name) < 1:
        raise ValueError(f"EncoderConfig.{name}={getattr(self, name)} must be positive.")
    if self.hidden_size % self.num_heads:
      raise ValueError(f"EncoderConfig.hidden_size={self.hidden_size} is not divisible by "
                       f"num_heads={self.num_heads}.")
    if self.mlp_dim is not None and self.mlp_dim < 1:
      raise ValueError(f"EncoderConfig.mlp_dim={self.mlp_dim} must be positive.")
    if not 0 <= self.position_offset < self.max_position_embeddings:
      raise ValueError(f"EncoderConfig.position_offset={self.position_offset} must lie in "
                       f"[0, max_position_embeddings={self.max_position_embeddings}).")
    if self.norm_eps <= 0:
      raise ValueError(f"EncoderConfig.norm_eps={self.norm_eps} must be positive.")
    if self.activation not in ("gelu", "gelu_tanh"):
      raise ValueError(f"EncoderConfig.activation={self.activation!r}; expected one of "
                       "('gelu', 'gelu_tanh').")

  @property
  def head_size(self) -> int:
    return self.hidden_size // self.num_heads

  @property
  def mlp_size(self) -> int:
    return self.mlp_dim or 4 * self.hidden_size

  def replace(self, **kwargs) -> "EncoderConfig":
    return dataclasses.replace(self, **kwargs)

  @classmethod
  def bert(cls, **kwargs) -> "EncoderConfig":
    """BERT / MiniLM family: two token types, positions from 0, LayerNorm eps 1e-12."""
    defaults = dict(max_position_embeddings=512, type_vocab_size=2, norm_eps=1e-12,
                    activation="gelu", position_offset=0, pad_token_id=0)
    return cls(**{**defaults, **kwargs})

  @classmethod
  def roberta(cls, **kwargs) -> "EncoderConfig":
    """RoBERTa family: one token type, positions from pad_token_id + 1, eps 1e-5."""
    pad = kwargs.get("pad_token_id", 1)
    defaults = dict(max_position_embeddings=514, type_vocab_size=1, norm_eps=1e-5,
                    activation="gelu", position_offset=pad + 1, pad_token_id=pad)
    return cls(**{**defaults, **kwargs})


@flax.struct.dataclass
class EncoderOutput:
  hidden: Array  # [B, L, E], last layer (HF's last_hidden_state)
  pooled: Array  # float32[B, E], mean of hidden over real tokens


# ----------------------------------------------------------------------------------------
# Pooling
# ----------------------------------------------------------------------------------------


def mean_pool(hidden: Array, mask: Array) -> Array:
  """float32[B, E]: mean of hidden [B, L, E] over the tokens where mask bool[B, L] is True.

  A row without real tokens gives zeros (the count is clamped to 1, never divided by 0)."""
  m = mask.astype(jnp.float32)[..., None]
  total = jnp.sum(hidden.astype(jnp.float32) * m, axis=-2)
  return total / jnp.maximum(jnp.sum(m, axis=-2), 1.0)


def cls_pool(hidden: Array) -> Array:
  """[B, E]: the first token's vector ([CLS] / <s>)."""
  return hidden[..., 0, :]


def l2_normalize(x: Array, eps: float = 1e-12) -> Array:
  """x / max(||x||, eps) along the last axis (torch's F.normalize); zeros stay zeros."""
  x32 = x.astype(jnp.float32)
  norm = jnp.sqrt(jnp.sum(x32 * x32, axis=-1, keepdims=True))
  return (x32 / jnp.maximum(norm, eps)).astype(x.dtype)


def encoder_positions(mask: Array, offset: int = 0) -> Array:
  """int32[B, L]: real tokens numbered from `offset`; padding gets max(offset - 1, 0)."""
  m = mask.astype(jnp.int32)
  return jnp.where(mask, offset + jnp.cumsum(m, axis=-1) - 1, max(offset - 1, 0))


# ----------------------------------------------------------------------------------------
# Layers
# ----------------------------------------------------------------------------------------


def _layer_norm(config: EncoderConfig, name: str) -> nn.Module:
  return nn.LayerNorm(epsilon=config.norm_eps, dtype=jnp.float32, param_dtype=config.param_dtype,
                      scale_init=with_axes(nn.initializers.ones, ("embed",)),
                      bias_init=with_axes(nn.initializers.zeros, ("embed",)), name=name)


class EncoderAttention(nn.Module):
  """Bidirectional multi-head self-attention with biases on q/k/v/o."""

  config: EncoderConfig

  @nn.compact
  def __call__(self, x, mask):
    cfg = self.config
    shape = (cfg.num_heads, cfg.head_size)
    dense = lambda name: nn.DenseGeneral(  # noqa: E731
        features=shape, use_bias=True, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
        kernel_init=with_axes(WEIGHT_INIT, ("embed", "heads", "kv")),
        bias_init=with_axes(nn.initializers.zeros, ("heads", "kv")), name=name)
    q, k, v = dense("q_proj")(x), dense("k_proj")(x), dense("v_proj")(x)
    out = dot_product_attention(q, k, v, mask)
    return nn.DenseGeneral(
        features=cfg.hidden_size, axis=(-2, -1), use_bias=True, dtype=cfg.dtype,
        param_dtype=cfg.param_dtype, kernel_init=with_axes(WEIGHT_INIT, ("heads", "kv", "embed")),
        bias_init=with_axes(nn.initializers.zeros, ("embed",)), name="o_proj")(out)


class EncoderMLP(nn.Module):
  config: EncoderConfig

  @nn.compact
  def __call__(self, x):
    cfg = self.config
    dense = lambda features, names, name: nn.Dense(  # noqa: E731
        features, use_bias=True, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
        kernel_init=with_axes(WEIGHT_INIT, names),
        bias_init=with_axes(nn.initializers.zeros, names[-1:]), name=name)
    h = dense(cfg.mlp_size, ("embed", "mlp"), "up_proj")(x)
    h = nn.gelu(h, approximate=cfg.activation == "gelu_tanh")
    return dense(cfg.hidden_size, ("mlp", "embed"), "down_proj")(h)


class EncoderBlock(nn.Module):
  """Post-norm transformer block (HF BertLayer)."""

  config: EncoderConfig

  @nn.compact
  def __call__(self, x, mask):
    cfg = self.config
    x = _layer_norm(cfg, "attn_norm")(x + EncoderAttention(cfg, name="attn")(x, mask))
    x = x.astype(cfg.dtype)
    x = _layer_norm(cfg, "mlp_norm")(x + EncoderMLP(cfg, name="mlp")(x))
    return x.astype(cfg.dtype)


# ----------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------


class Encoder(nn.Module):
  """BERT-style encoder.

  Call with ``tokens`` int32[B, L] and ``attention_mask`` bool[B, L] (True on real tokens;
  None: ``tokens != pad_token_id``). Every token attends to every real token of its row;
  padding may be anywhere. ``token_type_ids`` int32[B, L] default to 0 and ``positions``
  int32[B, L] to ``encoder_positions(attention_mask, position_offset)``. Hidden vectors at
  padding are computed but meaningless; ``pooled`` ignores them.
  """

  config: EncoderConfig

  def setup(self):
    cfg = self.config
    embed = lambda num, names: nn.Embed(  # noqa: E731
        num, cfg.hidden_size, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
        embedding_init=with_axes(WEIGHT_INIT, names))
    self.token_embed = embed(cfg.vocab_size, ("vocab", "embed"))
    self.pos_embed = embed(cfg.max_position_embeddings, ("position", "embed"))
    self.type_embed = embed(cfg.type_vocab_size, (None, "embed"))
    self.embed_norm = _layer_norm(cfg, "embed_norm")
    self.layers = [EncoderBlock(cfg, name=f"layer_{i}") for i in range(cfg.num_layers)]

  def __call__(self, tokens: Array, attention_mask: Array | None = None,
               token_type_ids: Array | None = None,
               positions: Array | None = None) -> EncoderOutput:
    cfg = self.config
    chex.assert_rank(tokens, 2)
    if attention_mask is None:
      attention_mask = tokens != cfg.pad_token_id
    attention_mask = attention_mask.astype(bool)
    chex.assert_equal_shape([tokens, attention_mask])
    if token_type_ids is None:
      token_type_ids = jnp.zeros_like(tokens)
    if positions is None:
      positions = encoder_positions(attention_mask, cfg.position_offset)
    chex.assert_equal_shape([tokens, token_type_ids, positions])

    x = self.token_embed(tokens) + self.pos_embed(positions) + self.type_embed(token_type_ids)
    x = parallel.constrain(self.embed_norm(x).astype(cfg.dtype), ACTIVATION_AXES)
    mask = attention_mask[:, None, :]  # [B, 1, L]: every query sees its row's real tokens
    for layer in self.layers:
      x = parallel.constrain(layer(x, mask), ACTIVATION_AXES)
    return EncoderOutput(hidden=x, pooled=mean_pool(x, attention_mask))


def init_encoder_params(config: EncoderConfig, rng: Array, *, boxed: bool = False) -> Any:
  """Random parameters. `boxed=True` keeps the logical-axis metadata (nn.Partitioned)."""
  tokens = jnp.zeros((1, 1), jnp.int32)
  variables = Encoder(config).init(rng, tokens, jnp.ones((1, 1), bool))
  params = variables["params"]
  return params if boxed else nn.meta.unbox(params)
