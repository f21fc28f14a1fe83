"""Value and Q heads for critics: MLPs on LM hidden states or on pooled encoder embeddings.

All heads are Flax Linen and return float32. Every parameter carries logical axis names:
the first layer maps ``embed`` -> ``mlp``, later hidden layers None -> ``mlp`` (one tensor
never names an axis twice), the output layer ``mlp`` -> None (``embed`` -> None when there
are no hidden layers). An ensemble stacks its members on a new leading axis named None.

  MLPHead          [..., E]            -> float32[..., out_dim] (or [...] when out_dim == 1)
  ValueHead        hidden [B, T, E]    -> float32[B, T]            token-level V (PPO)
  CriticEnsemble   [..., E]            -> float32[N, ..., out_dim] (or [N, ...])
  UtteranceQHead   state, action [B,E] -> float32[N, B]            Q(s, a), ArCHer's twin Q
  UtteranceVHead   state [B, E]        -> float32[N, B]            V(s), ArCHer's twin V

Shapes: B batch, T tokens, E input size, N ensemble members.
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from agentrl.models.decoder import with_axes

Array = jax.Array

_KERNEL_INIT = nn.initializers.lecun_normal()


class MLPHead(nn.Module):
  """Dense layers `hidden_{i}` (with `activation`) then `out`; biases everywhere."""

  hidden_dims: tuple[int, ...] = ()
  out_dim: int = 1
  activation: Callable[[Array], Array] = nn.relu
  squeeze: bool = True  # out_dim == 1: return [...] instead of [..., 1]
  dtype: Any = "float32"  # computation dtype
  param_dtype: Any = "float32"

  @nn.compact
  def __call__(self, x: Array) -> Array:
    def dense(features, names, name):
      return nn.Dense(features, dtype=self.dtype, param_dtype=self.param_dtype,
                      kernel_init=with_axes(_KERNEL_INIT, names),
                      bias_init=with_axes(nn.initializers.zeros, names[-1:]), name=name)

    h = x.astype(self.dtype)
    in_name = "embed"
    for i, width in enumerate(self.hidden_dims):
      h = self.activation(dense(width, (in_name, "mlp"), f"hidden_{i}")(h))
      in_name = None  # the input is now `mlp`-sized; `mlp` names the output axis only
    last_in = "embed" if not self.hidden_dims else "mlp"
    out = dense(self.out_dim, (last_in, None), "out")(h).astype(jnp.float32)
    if self.squeeze and self.out_dim == 1:
      out = out[..., 0]
    return out


class ValueHead(nn.Module):
  """Token-level value V(prefix up to t) from decoder hidden states [B, T, E] -> float32[B, T].

  With no `hidden_dims` it is one Dense to a scalar (the usual PPO value head)."""

  hidden_dims: tuple[int, ...] = ()
  activation: Callable[[Array], Array] = nn.relu
  dtype: Any = "float32"
  param_dtype: Any = "float32"

  @nn.compact
  def __call__(self, hidden: Array) -> Array:
    return MLPHead(self.hidden_dims, out_dim=1, activation=self.activation, squeeze=True,
                   dtype=self.dtype, param_dtype=self.param_dtype, name="head")(hidden)


class CriticEnsemble(nn.Module):
  """`num_critics` independently initialised MLPHeads applied to the same input.

  Parameters live under `members/` with a leading axis of size `num_critics`; member i
  alone is ``ensemble.member().apply({"params": tree_map(lambda p: p[i], params["members"])},
  x)``.
  """

  hidden_dims: tuple[int, ...] = ()
  num_critics: int = 2
  out_dim: int = 1
  activation: Callable[[Array], Array] = nn.relu
  squeeze: bool = True
  dtype: Any = "float32"
  param_dtype: Any = "float32"

  def member(self) -> MLPHead:
    """An unbound MLPHead with the members' architecture."""
    return MLPHead(self.hidden_dims, out_dim=self.out_dim, activation=self.activation,
                   squeeze=self.squeeze, dtype=self.dtype, param_dtype=self.param_dtype,
                   parent=None)

  @nn.compact
  def __call__(self, x: Array) -> Array:
    if self.num_critics < 1:
      raise ValueError(f"CriticEnsemble.num_critics={self.num_critics} must be positive.")
    members = nn.vmap(MLPHead, variable_axes={"params": 0}, split_rngs={"params": True},
                      in_axes=None, out_axes=0, axis_size=self.num_critics,
                      metadata_params={nn.PARTITION_NAME: None})
    return members(self.hidden_dims, out_dim=self.out_dim, activation=self.activation,
                   squeeze=self.squeeze, dtype=self.dtype, param_dtype=self.param_dtype,
                   name="members")(x)


class UtteranceQHead(nn.Module):
  """Q(s, a) from a state embedding [B, E] and an action (utterance) embedding [B, E'].

  The two are concatenated and fed to a CriticEnsemble: float32[num_critics, B]."""

  hidden_dims: tuple[int, ...] = ()
  num_critics: int = 2
  activation: Callable[[Array], Array] = nn.relu
  dtype: Any = "float32"
  param_dtype: Any = "float32"

  @nn.compact
  def __call__(self, state: Array, action: Array) -> Array:
    x = jnp.concatenate([state.astype(self.dtype), action.astype(self.dtype)], axis=-1)
    return CriticEnsemble(self.hidden_dims, num_critics=self.num_critics, out_dim=1,
                          activation=self.activation, dtype=self.dtype,
                          param_dtype=self.param_dtype, name="critic")(x)


class UtteranceVHead(nn.Module):
  """V(s) from a state embedding [B, E]: float32[num_critics, B]."""

  hidden_dims: tuple[int, ...] = ()
  num_critics: int = 2
  activation: Callable[[Array], Array] = nn.relu
  dtype: Any = "float32"
  param_dtype: Any = "float32"

  @nn.compact
  def __call__(self, state: Array) -> Array:
    return CriticEnsemble(self.hidden_dims, num_critics=self.num_critics, out_dim=1,
                          activation=self.activation, dtype=self.dtype,
                          param_dtype=self.param_dtype, name="critic")(state)
