"""ArCHer's update: warm-up, Polyak target, critic fitting, actor direction."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from agentrl import algorithms
from tests import algo_harness as h

STATE, ACTION = 48, 8


def config(**overrides):
  c = ml_collections.ConfigDict(dict(
      lr=1e-3, critic_lr=1e-3, gamma=0.9, tau=0.1, critic_steps=2, actor_steps=1, batch_size=8,
      warmup_updates=1, token_baseline=False, baseline_lr=1e-3, state_tokens=STATE,
      action_tokens=ACTION,
      critic=dict(hidden_size=32, num_layers=1, num_heads=2, mlp_dim=64, head_dims=(32,))))
  c.update(overrides)
  return c


@functools.lru_cache(maxsize=None)
def algo(**overrides):
  return algorithms.make("archer", config(**dict(overrides)), h.models(max_new_tokens=ACTION))


def fake_batch(seed=0, c=2, a=1, n=8):
  """Random left-padded states, right-padded actions, rewards and dones."""
  rng = np.random.default_rng(seed)
  vocab = h.tokenizer().vocab_size

  def left(shape):
    tokens = rng.integers(10, vocab, size=shape).astype(np.int32)
    lengths = rng.integers(1, shape[-1] + 1, size=shape[:-1])
    mask = np.arange(shape[-1]) >= shape[-1] - lengths[..., None]
    return np.where(mask, tokens, 0), mask

  s, sm = left((c, n, STATE))
  ns, nsm = left((c, n, STATE))
  act = rng.integers(10, vocab, size=(c, n, ACTION)).astype(np.int32)
  am = np.arange(ACTION) < rng.integers(1, ACTION + 1, size=(c, n, 1))
  ast, astm = left((a, n, STATE))
  return dict(state=s, state_mask=sm, action=np.where(am, act, 0), action_mask=am,
              reward=rng.normal(size=(c, n)).astype(np.float32), next_state=ns,
              next_state_mask=nsm, done=rng.random((c, n)) < 0.3, actor_state=ast,
              actor_state_mask=astm)


def test_warmup_then_actor_and_polyak_target():
  alg = algo()
  state = alg.init(jax.random.PRNGKey(0))
  policy0 = jax.tree.map(np.asarray, state.params["policy"])
  critic0 = jax.tree.map(np.asarray, state.params["critic"])
  state, m = alg.update(state, fake_batch(0), jax.random.PRNGKey(1))
  assert float(m["actor/active"]) == 0 and algorithms.nonfinite_losses(m) == []
  jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, state.params["policy"]),
               policy0)  # Warm-up: the actor is untouched.
  # Two critic steps of Polyak averaging from target = critic0: target lags the critic.
  target = jax.tree.map(np.asarray, state.frozen["target_critic"])
  critic = jax.tree.map(np.asarray, state.params["critic"])
  moved = jax.tree.map(lambda t, c0, c: np.abs(t - c0).sum() < np.abs(c - c0).sum() + 1e-12,
                       target, critic0, critic)
  assert all(jax.tree.leaves(moved))
  state, m = alg.update(state, fake_batch(1), jax.random.PRNGKey(2))
  assert float(m["actor/active"]) == 1 and np.isfinite(float(m["actor/loss"]))
  changed = jax.tree.map(lambda a, b: np.abs(np.asarray(a) - b).max(), state.params["policy"],
                         policy0)
  assert max(jax.tree.leaves(changed)) > 0


def test_polyak_rate_with_one_critic_step():
  alg = algo(critic_steps=1, warmup_updates=100)
  state = alg.init(jax.random.PRNGKey(0))
  before = jax.tree.map(np.asarray, state.frozen["target_critic"])
  state, _ = alg.update(state, fake_batch(0, c=1), jax.random.PRNGKey(1))
  critic = jax.tree.map(np.asarray, state.params["critic"])
  expected = jax.tree.map(lambda t, c: 0.9 * t + 0.1 * c, before, critic)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
               jax.tree.map(np.asarray, state.frozen["target_critic"]), expected)


def test_critic_fits_a_fixed_batch():
  alg = algo(warmup_updates=1000, critic_lr=3e-3)
  state = alg.init(jax.random.PRNGKey(0))
  batch = fake_batch(3)
  losses = []
  for i in range(25):
    state, m = alg.update(state, batch, jax.random.PRNGKey(i))
    losses.append(float(m["critic/q_loss"]))
  assert losses[-1] < 0.5 * losses[0], losses
