"""Teacher-forced log-probs and entropies against the sampler and a numpy reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agentrl import policy, rollout
from tests import test_rollout, toy_envs


def test_logprobs_equal_the_samplers_and_entropy_matches_numpy():
  tok, lm = test_rollout.tokenizer(), test_rollout.lm()
  result = rollout.rollout(lm, lambda: toy_envs.GuessNumber(), [0, 1], tokenizer=tok,
                           max_tokens=160, rng=jax.random.PRNGKey(3))
  b = result.batch
  out = jax.jit(policy.evaluate, static_argnums=1)(lm.params, lm.config, b.tokens, b.positions,
                                                    b.attention_mask)
  actions = np.asarray(b.action_mask)
  np.testing.assert_allclose(np.where(actions, out.logprobs, 0), b.behaviour_logprobs, atol=2e-5)
  assert np.all(np.asarray(out.logprobs)[:, 0] == 0)
  assert np.all(np.asarray(out.logprobs)[~np.asarray(b.attention_mask)] == 0)
  # Entropy of the next-token distribution at one position, by hand.
  from agentrl.models import decoder
  logits = decoder.Decoder(lm.config).apply({"params": lm.params}, jnp.asarray(b.tokens),
                                            jnp.asarray(b.positions),
                                            jnp.asarray(b.attention_mask)).logits
  p = np.asarray(jax.nn.softmax(logits[0, 9]), np.float64)
  np.testing.assert_allclose(out.entropy[0, 10], -(p * np.log(p)).sum(), rtol=1e-5)
  np.testing.assert_allclose(policy.sequence_logprob(out.logprobs, b.action_mask),
                             np.where(actions, b.behaviour_logprobs, 0).sum(-1), atol=1e-4)


def test_answer_logprobs_equal_scoring_each_truncated_conversation():
  """Per turn: the conversation up to the turn's first action token, then the answer, scored
  alone without padding (a slow, obvious reference); edge rows have no answer or few turns."""
  tok, lm = test_rollout.tokenizer(), test_rollout.lm()
  result = rollout.rollout(lm, lambda: toy_envs.GuessNumber(), [0, 1, 2], tokenizer=tok,
                           max_tokens=160, rng=jax.random.PRNGKey(3), answer_length=8)
  b = result.batch
  answers = np.array(b.answer_tokens)
  answers[2] = -1  # A row without an answer.
  k = b.rewards.shape[1]
  evaluate = jax.jit(policy.evaluate, static_argnums=1)
  got = np.asarray(jax.jit(policy.answer_logprobs, static_argnums=(1, 8))(
      lm.params, lm.config, b.tokens, b.positions, b.attention_mask, b.action_mask,
      b.turn_index, answers, k))
  assert got.shape == (3, k)
  tokens, turn = np.asarray(b.tokens), np.asarray(b.turn_index)
  for row in range(3):
    ans = answers[row][answers[row] >= 0]
    for t in range(k):
      starts = np.flatnonzero(turn[row] == t)
      if len(starts) == 0 or len(ans) == 0:
        assert got[row, t] == 0
        continue
      seq = np.concatenate([tokens[row, :starts[0]], ans])
      n = len(seq)  # Right padding to one width (one compile) is causally invisible.
      lp = np.asarray(evaluate(lm.params, lm.config, np.pad(seq, (0, 176 - n))[None],
                               np.arange(176)[None], (np.arange(176) < n)[None]).logprobs)[0]
      np.testing.assert_allclose(got[row, t], lp[starts[0]:n].mean(), atol=1e-5)
  assert (got[:2, 0] < 0).all() and b.turn_mask[:2, 1].any()


def test_rematerialised_blocks_give_the_same_parameters_values_and_gradients():
  from agentrl.models import decoder
  config = decoder.DecoderConfig.llama(vocab_size=64, hidden_size=32, num_layers=2, num_heads=4,
                                       num_kv_heads=2, mlp_dim=48)
  remat = config.replace(remat=True)
  params = decoder.init_params(config, jax.random.PRNGKey(0))
  assert (jax.tree.structure(decoder.init_params(remat, jax.random.PRNGKey(0)))
          == jax.tree.structure(params))
  tokens = jax.random.randint(jax.random.PRNGKey(1), (3, 12), 0, 64)
  positions = jnp.broadcast_to(jnp.arange(12), (3, 12))
  mask = jnp.arange(12)[None, :] < jnp.array([[12], [7], [1]])

  def loss(p, cfg):
    out = policy.evaluate(p, cfg, tokens, positions, mask)
    return jnp.sum(out.logprobs * jnp.arange(12)) + jnp.sum(out.hidden ** 2) * 1e-3

  value_and_grad = jax.jit(jax.value_and_grad(loss), static_argnums=1)
  (value, grads), (value_r, grads_r) = (value_and_grad(params, c) for c in (config, remat))
  np.testing.assert_allclose(value_r, value, rtol=1e-6)
  for g, g_r in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_r)):
    np.testing.assert_allclose(g_r, g, rtol=1e-5, atol=1e-6)
  # The jaxpr of the gradient recomputes the blocks: it holds one checkpoint per layer.
  jaxpr = str(jax.make_jaxpr(jax.grad(loss), static_argnums=1)(params, remat))
  assert jaxpr.count("remat") + jaxpr.count("checkpoint") >= config.num_layers
  # Decoding with a KV cache still works with remat on.
  cache = decoder.init_cache(remat, 3, 16)
  prefill = jax.jit(lambda cfg, c: decoder.Decoder(cfg).apply(
      {"params": params}, tokens[:, :4], positions[:, :4], mask[:, :4], c), static_argnums=0)
  out = prefill(remat, cache)
  ref = prefill(config, decoder.init_cache(config, 3, 16))
  np.testing.assert_allclose(out.logits, ref.logits, rtol=1e-5, atol=1e-5)


def test_scoring_a_suffix_equals_the_full_pass_there():
  from agentrl.models import decoder
  for config in (decoder.DecoderConfig.llama(vocab_size=64, hidden_size=32, num_layers=1,
                                             num_heads=4, num_kv_heads=2, mlp_dim=48),
                 decoder.DecoderConfig.gpt2(vocab_size=64, hidden_size=32, num_layers=1,
                                            num_heads=4, mlp_dim=48)):
    params = decoder.init_params(config, jax.random.PRNGKey(0))
    tokens = jax.random.randint(jax.random.PRNGKey(1), (3, 10), 0, 64)
    positions = jnp.broadcast_to(jnp.arange(10), (3, 10))
    # Left padding in row 1, a short row 2: the suffix starts inside and after the padding.
    mask = (jnp.arange(10)[None, :] >= jnp.array([[0], [3], [0]])) & (
        jnp.arange(10)[None, :] < jnp.array([[10], [10], [7]]))
    evaluate = jax.jit(policy.evaluate, static_argnums=1, static_argnames="score_from")
    full = evaluate(params, config, tokens, positions, mask)
    for start in (1, 4, 9, 10):
      part = evaluate(params, config, tokens, positions, mask, score_from=start)
      for got, want in ((part.logprobs, full.logprobs), (part.entropy, full.entropy)):
        np.testing.assert_allclose(got[:, start:], want[:, start:], rtol=1e-5, atol=1e-6)
        assert np.all(np.asarray(got)[:, :start] == 0)
      np.testing.assert_allclose(part.hidden, full.hidden, rtol=1e-5, atol=1e-6)
    out = decoder.Decoder(config).apply({"params": params}, tokens, positions, mask,
                                        logits_from=6)
    assert out.logits.shape == (3, 4, 64) and out.hidden.shape == (3, 10, 32)
  with pytest.raises(ValueError, match="score_from=0"):
    policy.evaluate(params, config, tokens, positions, mask, score_from=0)
