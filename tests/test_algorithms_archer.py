"""ArCHer's update: warm-up, Polyak target, critic fitting, actor direction."""

import functools

import jax
import ml_collections
import numpy as np

from agentrl import algorithms, replay, rollout
from agentrl.algorithms import archer
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


# ----------------------------------------------------------------------------- the Echo task

ECHO = dict(state_tokens=32, action_tokens=4, gamma=0.9, critic_steps=4, batch_size=32,
            critic=dict(hidden_size=32, num_layers=1, num_heads=2, mlp_dim=64, head_dims=(64,)))


def echo_algo(name, **overrides):
  c = config(**{**ECHO, **overrides})
  return algorithms.make(name, c, h.echo_models())


def test_archer_improves_the_echo_task():
  """From a policy that says a random number (return ~0.5 of 2), ArCHer's critic learns that
  saying the named number pays, and the actor follows it."""
  m = h.echo_models()
  alg = echo_algo("archer", lr=3e-3, critic_lr=3e-3, actor_steps=2, warmup_updates=6)
  before = h.echo_return(alg, alg.init(jax.random.PRNGKey(0)), m)
  state, metrics = h.train_on_echo(alg, m, 14, state_tokens=32, action_tokens=4)
  after = h.echo_return(alg, state, m)
  assert algorithms.nonfinite_losses(metrics) == [] and float(metrics["actor/active"]) == 1
  assert before < 0.8 and after > before + 0.4, (before, after)


def test_chai_keeps_the_actor_and_improves_by_reranking():
  m = h.echo_models()
  alg = echo_algo("chai", critic_lr=3e-3, num_candidates=5, warmup_updates=0)
  before = h.echo_return(alg, alg.init(jax.random.PRNGKey(0)), m)
  state, metrics = h.train_on_echo(alg, m, 10, state_tokens=32, action_tokens=4)
  after = h.echo_return(alg, state, m)
  assert float(metrics["actor/active"]) == 0
  jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, state.params["policy"]),
               m.policy_params)  # The actor is frozen.
  assert after > before + 0.4, (before, after)


def test_chai_with_one_candidate_is_plain_sampling():
  m = h.echo_models()
  alg = echo_algo("chai", num_candidates=1)
  state = alg.init(jax.random.PRNGKey(0))
  plain = h.echo_play(rollout.LMPolicy(m.policy_params, m.policy_config, m.sampling),
                      range(8), rng=3).batch
  chai = h.echo_play(h.acting(alg, state, m), range(8), rng=3).batch
  np.testing.assert_array_equal(chai.tokens, plain.tokens)
  np.testing.assert_allclose(chai.behaviour_logprobs, plain.behaviour_logprobs, atol=1e-6)


def test_chai_picks_the_candidates_its_target_critic_prefers():
  """With an untrained (random) target critic, the reranked utterances score higher under
  that critic than plain samples of the same policy do."""
  m = h.echo_models()
  alg = echo_algo("chai", num_candidates=6)
  state = alg.init(jax.random.PRNGKey(0))
  critic, _ = archer.make_critic(config(**ECHO), m.policy_config.vocab_size)

  def mean_min_q(policy):
    batch = h.echo_play(policy, range(32), rng=5).batch
    t = replay.utterance_transitions(batch, max_state_tokens=32, max_action_tokens=4,
                                       pad_id=h.tokenizer().pad_id)
    q, _ = critic.apply({"params": state.frozen["target_critic"]}, t["state"],
                        t["state_mask"], t["action"], t["action_mask"])
    return float(np.min(np.asarray(q), axis=0).mean())

  plain = mean_min_q(rollout.LMPolicy(m.policy_params, m.policy_config, m.sampling))
  assert mean_min_q(h.acting(alg, state, m)) > plain
