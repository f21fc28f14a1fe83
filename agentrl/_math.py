"""Numerical one-liners the estimators and losses share: float casting, a division that is 0
where its denominator is, and a masked mean.

Masks are boolean (or 0/1) arrays; masked entries are selected away with `jnp.where` before any
arithmetic, so garbage there (padding, inf, NaN) reaches neither a value nor a gradient.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def as_float(x: Array) -> Array:
  """x as an array, cast to float32 unless it already has a floating dtype (kept as is)."""
  x = jnp.asarray(x)
  return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.float32)


def safe_div(num: Array, den: Array) -> Array:
  """num / den elementwise, and 0 where den == 0 (no NaN in the value or the gradient)."""
  ok = den != 0
  return jnp.where(ok, num / jnp.where(ok, den, 1.0), 0.0)


def masked_mean(x: Array, mask: Array) -> Array:
  """Mean of `x` over the entries where `mask` is true: a scalar, 0 when there are none.

  Σ x·m / max(Σ m, 1) over every axis; `mask` has x's shape.
  """
  mask = mask.astype(bool)
  count = jnp.sum(mask.astype(jnp.float32))
  return jnp.sum(jnp.where(mask, x, 0.0)) / jnp.maximum(count, 1.0)
