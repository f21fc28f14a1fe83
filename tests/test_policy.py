"""Teacher-forced log-probs and entropies against the sampler and a numpy reference."""

import jax
import jax.numpy as jnp
import numpy as np

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
