"""Value and Q heads: shapes, independent ensemble members, gradients, axis names."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from agentrl.models import heads

E = 8
KEY = jax.random.PRNGKey(0)


def init(module, *args):
  """Boxed parameters, initialised under one jit (much faster than op-by-op on CPU)."""
  return jax.jit(lambda *a: module.init(KEY, *a)["params"])(*args)


def init_apply(module, *args):
  """(parameters, output) of a fresh module, both from one jit."""
  def fn(*a):
    params = nn.meta.unbox(module.init(KEY, *a)["params"])
    return params, module.apply({"params": params}, *a)
  return jax.jit(fn)(*args)


def boxed_names(boxed):
  leaves = jax.tree_util.tree_leaves_with_path(
      boxed, is_leaf=lambda x: isinstance(x, nn.Partitioned))
  return {"/".join(k.key for k in path): leaf.names for path, leaf in leaves}


def out_shape(module, *args):
  return jax.eval_shape(lambda: init_apply(module, *args))[1]


def test_shapes():
  x = jnp.ones((2, 3, E))
  assert out_shape(heads.MLPHead((16,)), x).shape == (2, 3)
  assert out_shape(heads.MLPHead((16, 4), out_dim=3), x).shape == (2, 3, 3)
  assert out_shape(heads.MLPHead((), squeeze=False), x).shape == (2, 3, 1)

  _, v = init_apply(heads.ValueHead(dtype="bfloat16"), x.astype(jnp.bfloat16))
  assert v.shape == (2, 3) and v.dtype == jnp.float32 and np.all(np.isfinite(v))

  s, a = jnp.ones((5, E)), jnp.ones((5, 6))
  assert out_shape(heads.UtteranceQHead((16,), num_critics=2), s, a).shape == (2, 5)
  out = out_shape(heads.UtteranceVHead((16,), num_critics=3), s)
  assert out.shape == (3, 5) and out.dtype == jnp.float32


def test_ensemble_members_are_independent_mlp_heads():
  x = jax.random.normal(jax.random.PRNGKey(1), (4, E))
  ensemble = heads.CriticEnsemble((16, 8), num_critics=3, out_dim=2)
  params, out = init_apply(ensemble, x)
  kernel = params["members"]["hidden_0"]["kernel"]
  assert kernel.shape == (3, E, 16)
  assert out.shape == (3, 4, 2)
  single = jax.jit(lambda p: ensemble.member().apply({"params": p}, x))
  for i in range(3):
    member = jax.tree_util.tree_map(lambda p: p[i], params["members"])  # noqa: B023
    np.testing.assert_allclose(out[i], single(member), rtol=1e-6, atol=1e-6)
    for j in range(i):
      assert not np.allclose(kernel[i], kernel[j])
      assert not np.allclose(out[i], out[j])


def test_gradient_reaches_every_parameter():
  s, a = jax.random.normal(KEY, (3, E)), jax.random.normal(jax.random.PRNGKey(2), (3, E))
  q_head = heads.UtteranceQHead((16,), num_critics=2)
  params = nn.meta.unbox(init(q_head, s, a))
  # Biases start at zero, so a target away from the output makes every gradient nonzero.
  loss = lambda p, s: jnp.sum((q_head.apply({"params": p}, s, a) - 1.0) ** 2)  # noqa: E731
  grads, grad_s = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, s)
  for g in jax.tree_util.tree_leaves(grads):
    assert np.all(np.isfinite(g)) and np.any(g != 0)
  assert np.any(grad_s != 0)


def test_logical_axis_names():
  q_head = heads.UtteranceQHead((16, 8), num_critics=2)
  args = jnp.ones((1, E)), jnp.ones((1, E))
  names = boxed_names(jax.eval_shape(lambda: init(q_head, *args)))
  assert names == {
      "critic/members/hidden_0/kernel": (None, "embed", "mlp"),
      "critic/members/hidden_0/bias": (None, "mlp"),
      "critic/members/hidden_1/kernel": (None, None, "mlp"),
      "critic/members/hidden_1/bias": (None, "mlp"),
      "critic/members/out/kernel": (None, "mlp", None),
      "critic/members/out/bias": (None, None),
  }
  value = heads.ValueHead()
  assert boxed_names(jax.eval_shape(lambda: init(value, jnp.ones((1, 2, E))))) == {
      "head/out/kernel": ("embed", None), "head/out/bias": (None,)}
