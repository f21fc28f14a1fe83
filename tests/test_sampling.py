"""The sampler against slow references: full forward passes without a cache."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agentrl import sampling
from agentrl.models import decoder

CONFIG = decoder.DecoderConfig.llama(vocab_size=61, hidden_size=32, num_layers=2, num_heads=4,
                                     num_kv_heads=2, mlp_dim=48)
PAD = 0
PROMPTS = [[5, 9, 11, 3], [7], [12, 13, 14, 15, 16, 17, 18], [20, 21]]


@pytest.fixture(scope="module")
def params():
  p = decoder.init_params(CONFIG, jax.random.PRNGKey(0))
  # Larger weights make the random model's distributions peaked (no argmax near-ties).
  return jax.tree_util.tree_map(lambda x: x * 3.0 if x.ndim > 1 else x, p)


@jax.jit
def _full_logits(params, tokens, mask):
  positions = decoder.positions_from_mask(mask)
  return decoder.Decoder(CONFIG).apply({"params": params}, tokens, positions, mask).logits


def reference_greedy(params, prompt, steps, stop_token=None, width=32):
  """Step-by-step argmax of full forward passes over one unpadded row."""
  seq = list(prompt)
  out = []
  for _ in range(steps):
    tokens = np.zeros((1, width), np.int32)
    mask = np.zeros((1, width), bool)
    tokens[0, :len(seq)] = seq
    mask[0, :len(seq)] = True
    logits = _full_logits(params, tokens, mask)[0, len(seq) - 1]
    tok = int(jnp.argmax(logits))
    out.append(tok)
    seq.append(tok)
    if tok == stop_token:
      break
  return out


def reference_logprobs(params, prompt, generated, width=32):
  seq = list(prompt) + list(generated)
  tokens = np.zeros((1, width), np.int32)
  mask = np.zeros((1, width), bool)
  tokens[0, :len(seq)] = seq
  mask[0, :len(seq)] = True
  logp = jax.nn.log_softmax(_full_logits(params, tokens, mask)[0])
  return np.array([logp[len(prompt) - 1 + i, t] for i, t in enumerate(generated)])


def run(params, prompts, sampling_config, rng=0, cache_length=32):
  tokens, mask = sampling.left_pad(prompts, pad_token=PAD, length=8)
  cache = decoder.init_cache(CONFIG, len(prompts), cache_length)
  return sampling.generate(params, cache, tokens, mask, jax.random.PRNGKey(rng), config=CONFIG,
                           sampling=sampling_config)


def rows(out):
  toks, lengths = np.asarray(out.tokens), np.asarray(out.lengths)
  return [toks[i, :lengths[i]].tolist() for i in range(toks.shape[0])]


def test_greedy_equals_stepwise_argmax(params):
  out = run(params, PROMPTS, sampling.SamplingConfig(max_new_tokens=6, temperature=0.0))
  for prompt, got in zip(PROMPTS, rows(out)):
    assert got == reference_greedy(params, prompt, 6)
  assert np.asarray(out.lengths).tolist() == [6] * len(PROMPTS)


def test_greedy_stops_per_row_at_stop_token(params):
  free = run(params, PROMPTS, sampling.SamplingConfig(max_new_tokens=6, temperature=0.0))
  stop = rows(free)[0][2]  # row 0 emits this token third: it must stop there
  out = run(params, PROMPTS, sampling.SamplingConfig(max_new_tokens=6, temperature=0.0,
                                                     stop_token=stop, pad_token=PAD))
  got = rows(out)
  assert got[0][-1] == stop and len(got[0]) <= 3
  for prompt, row in zip(PROMPTS, got):
    assert row == reference_greedy(params, prompt, 6, stop_token=stop)
  toks = np.asarray(out.tokens)
  for i, n in enumerate(np.asarray(out.lengths)):
    assert (toks[i, n:] == PAD).all()
    assert (np.asarray(out.logprobs)[i, n:] == 0).all()


@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, 0, 1.0), (0.7, 5, 0.9)])
def test_logprobs_match_full_forward(params, temperature, top_k, top_p):
  cfg = sampling.SamplingConfig(max_new_tokens=8, temperature=temperature, top_k=top_k,
                                top_p=top_p)
  out = run(params, PROMPTS, cfg, rng=3)
  logprobs = np.asarray(out.logprobs)
  for i, (prompt, row) in enumerate(zip(PROMPTS, rows(out))):
    ref = reference_logprobs(params, prompt, row)
    if temperature != 1.0:  # the sampler reports log-probs at its temperature
      tokens = np.zeros((1, 32), np.int32)
      mask = np.zeros((1, 32), bool)
      seq = prompt + row
      tokens[0, :len(seq)], mask[0, :len(seq)] = seq, True
      logits = _full_logits(params, tokens, mask)[0] / temperature
      logp = jax.nn.log_softmax(logits)
      ref = np.array([logp[len(prompt) - 1 + j, t] for j, t in enumerate(row)])
    np.testing.assert_allclose(logprobs[i, :len(row)], ref, atol=1e-5)


def test_sampling_is_deterministic_given_rng_and_top_k_1_is_greedy(params):
  cfg = sampling.SamplingConfig(max_new_tokens=5, temperature=1.0)
  a, b = run(params, PROMPTS, cfg, rng=7), run(params, PROMPTS, cfg, rng=7)
  np.testing.assert_array_equal(a.tokens, b.tokens)
  greedy = run(params, PROMPTS, sampling.SamplingConfig(max_new_tokens=5, temperature=0.0))
  top1 = run(params, PROMPTS, sampling.SamplingConfig(max_new_tokens=5, top_k=1), rng=1)
  np.testing.assert_array_equal(greedy.tokens, top1.tokens)
  nucleus = run(params, PROMPTS, sampling.SamplingConfig(max_new_tokens=5, top_p=1e-6), rng=2)
  np.testing.assert_array_equal(greedy.tokens, nucleus.tokens)


def test_filter_logits_against_numpy():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(3, 11)).astype(np.float32)
  for top_k, top_p in [(3, 1.0), (0, 0.5), (4, 0.6)]:
    got = np.asarray(sampling.filter_logits(jnp.asarray(logits), top_k=top_k, top_p=top_p))
    for row, out in zip(logits, got):
      order = np.argsort(-row)
      keep = order[:top_k] if top_k else order
      # top-p acts on the distribution renormalised over the top-k set.
      probs = np.exp(row[keep] - row[keep].max())
      probs /= probs.sum()
      mass, kept = 0.0, set()
      for idx, p in zip(keep, probs):
        if mass < top_p:
          kept.add(idx)
        mass += p
      assert {i for i in range(11) if out[i] > -1e30} == kept


def test_continuation_equals_generation_from_whole_prefix(params):
  """Turn 2 generated on the cache of turn 1 == turn 2 generated from the re-padded prefix."""
  greedy = dict(temperature=0.0, pad_token=PAD)
  first = run(params, PROMPTS, sampling.SamplingConfig(max_new_tokens=6, **greedy))
  stop = rows(first)[1][1]  # make the rows stop at different lengths
  cfg = sampling.SamplingConfig(max_new_tokens=6, stop_token=stop, **greedy)
  tokens, mask = sampling.left_pad(PROMPTS, pad_token=PAD, length=8)
  cache = decoder.init_cache(CONFIG, len(PROMPTS), 40)
  turn1 = sampling.generate(params, cache, tokens, mask, jax.random.PRNGKey(0), config=CONFIG,
                            sampling=cfg)
  observations = [[30, 31], [32, 33, 34, 35], [36], [37, 38, 39]]
  obs_tokens, obs_mask = sampling.left_pad(observations, pad_token=PAD, length=4)
  turn2 = sampling.generate(params, turn1.cache, obs_tokens, obs_mask, jax.random.PRNGKey(1),
                            config=CONFIG, sampling=cfg)
  whole = [p + g + o for p, g, o in zip(PROMPTS, rows(turn1), observations)]
  w_tokens, w_mask = sampling.left_pad(whole, pad_token=PAD, length=24)
  fresh = sampling.generate(params, decoder.init_cache(CONFIG, len(PROMPTS), 32), w_tokens, w_mask,
                            jax.random.PRNGKey(1), config=CONFIG, sampling=cfg)
  assert rows(turn2) == rows(fresh)
  np.testing.assert_allclose(turn2.logprobs, fresh.logprobs, atol=1e-5)
  np.testing.assert_array_equal(turn2.cache.next_position, fresh.cache.next_position)


def test_inactive_rows_generate_and_write_nothing(params):
  tokens, mask = sampling.left_pad(PROMPTS, pad_token=PAD, length=8)
  cache = decoder.init_cache(CONFIG, len(PROMPTS), 32)
  active = np.array([True, False, True, False])
  out = sampling.generate(params, cache, tokens, mask, jax.random.PRNGKey(0), config=CONFIG,
                          sampling=sampling.SamplingConfig(max_new_tokens=4), active=active)
  assert np.asarray(out.lengths).tolist() == [4, 0, 4, 0]
  assert (np.asarray(out.tokens)[~active] == PAD).all()
  written = np.asarray(out.cache.mask)
  assert written[active, 8:12].all() and not written[~active].any()
  assert not written[:, 12:].any()


def test_one_compile_per_shape_bucket(params):
  counted = jax.jit(chex.assert_max_traces(sampling._generate, n=2),
                    static_argnames=("config", "sampling"))
  cfg = sampling.SamplingConfig(max_new_tokens=3)
  for prompts in (PROMPTS, [[1, 2, 3]] * 4, [[4] * 20] * 4, [[5] * 17] * 4):
    tokens, mask = sampling.left_pad(prompts)  # lengths 16, 16, 32, 32
    cache = decoder.init_cache(CONFIG, 4, 64)
    counted(params, cache, tokens, mask, jax.random.PRNGKey(0), jnp.ones(4, bool), config=CONFIG,
            sampling=cfg)


def test_cache_too_small_is_a_clear_error(params):
  tokens, mask = sampling.left_pad(PROMPTS, length=8)
  cache = decoder.init_cache(CONFIG, len(PROMPTS), 10)
  with pytest.raises(ValueError, match="KV cache too small"):
    sampling.generate(params, cache, tokens, mask, jax.random.PRNGKey(0), config=CONFIG,
                      sampling=sampling.SamplingConfig(max_new_tokens=4))


def test_bad_sampling_config_names_the_field():
  with pytest.raises(ValueError, match="top_p"):
    sampling.SamplingConfig(top_p=0.0)


def test_lengths_are_right_when_pad_and_stop_token_coincide(params):
  """Some tokenizers pad with their end-of-turn id: lengths must not be read off the pads."""
  free = run(params, PROMPTS, sampling.SamplingConfig(max_new_tokens=6, temperature=0.0))
  stop = rows(free)[0][2]
  out = run(params, PROMPTS, sampling.SamplingConfig(max_new_tokens=6, temperature=0.0,
                                                     stop_token=stop, pad_token=stop))
  for prompt, n in zip(PROMPTS, np.asarray(out.lengths)):
    assert n == len(reference_greedy(params, prompt, 6, stop_token=stop))
