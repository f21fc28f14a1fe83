r"""A multi-turn sampling demo: the rollout machinery end to end, on a laptop CPU.

Trains a byte-level BPE tokenizer on a small Twenty-Questions-style corpus, builds a tiny
random Llama-style policy, and plays a batch of conversations for a few turns: each turn
the policy samples an utterance (jitted, KV cache, stop at end-of-turn), then a scripted
"oracle" answers and its tokens are prefilled into the same cache. The policy is untrained,
so its questions are noise; what the demo shows is the loop, the masks and the speed.

  python -m experiments.sample_demo --batch 8 --turns 3
"""

from __future__ import annotations

import time

from absl import app
from absl import flags
import jax
import numpy as np

from agentrl import sampling
from agentrl.models import decoder
from agentrl.tokenizer import Tokenizer

_BATCH = flags.DEFINE_integer("batch", 8, "Conversations played at once.")
_TURNS = flags.DEFINE_integer("turns", 3, "Agent turns per conversation.")
_MAX_NEW = flags.DEFINE_integer("max_new_tokens", 24, "Token budget of one utterance.")
_TEMPERATURE = flags.DEFINE_float("temperature", 1.0, "Sampling temperature (0: greedy).")
_SEED = flags.DEFINE_integer("seed", 0, "Random seed.")

_WORDS = ["dog", "banana", "truck", "piano", "chair", "pen", "scissors", "computer", "football"]
_QUESTIONS = ["Is it an animal?", "Is it a fruit?", "Can you eat it?", "Is it made of metal?",
              "Is it bigger than a car?", "Is it used for music?", "Is it found in an office?",
              "Does it have wheels?", "Is it a tool?", "Can you hold it in one hand?"]


def corpus():
  for word in _WORDS:
    yield f"Is it a {word}?"
    for q in _QUESTIONS:
      yield q
      yield "Yes." if hash((q, word)) % 2 else "No."
  yield "Questions about an object. Ask yes/no questions, then guess the object."


def oracle(turn: int, row: int) -> str:
  return ("Yes." if (turn + row) % 2 else "No.") + " Ask another question."


def main(argv):
  del argv
  batch, turns = _BATCH.value, _TURNS.value
  tokenizer = Tokenizer.train_bpe(corpus(), vocab_size=384)
  config = decoder.DecoderConfig.llama(vocab_size=tokenizer.vocab_size, hidden_size=64,
                                       num_layers=2, num_heads=4, num_kv_heads=2, mlp_dim=128)
  params = decoder.init_params(config, jax.random.PRNGKey(_SEED.value))
  print(f"policy: {decoder.count_params(params):,} parameters, "
        f"tokenizer: {tokenizer.vocab_size} tokens")

  sample_cfg = sampling.SamplingConfig(
      max_new_tokens=_MAX_NEW.value, temperature=_TEMPERATURE.value,
      stop_token=tokenizer.end_of_turn_id, pad_token=tokenizer.pad_id)
  system = [{"role": "system", "content": "Guess the hidden object in as few questions as "
                                          "possible."},
            {"role": "user", "content": "I am thinking of an object. Ask your first question."}]
  first = tokenizer.encode_chat(system, add_generation_prompt=True).tokens.tolist()
  chunk_len = sampling.bucket_length(len(first))
  obs_len = 32
  cache_len = chunk_len + turns * (obs_len + _MAX_NEW.value)
  cache = decoder.init_cache(config, batch, cache_len)
  chunk, mask = sampling.left_pad([first] * batch, pad_token=tokenizer.pad_id, length=chunk_len)

  transcripts = [[] for _ in range(batch)]
  rng = jax.random.PRNGKey(_SEED.value)
  generated, start = 0, time.perf_counter()
  for turn in range(turns):
    rng, key = jax.random.split(rng)
    out = sampling.generate(params, cache, chunk, mask, key, config=config, sampling=sample_cfg)
    cache = out.cache
    tokens, lengths = np.asarray(out.tokens), np.asarray(out.lengths)
    generated += int(lengths.sum())
    observations = []
    for row in range(batch):
      utterance = tokenizer.decode_utterance(tokens[row, :lengths[row]].tolist())
      answer = oracle(turn, row)
      transcripts[row] += [("agent", utterance), ("oracle", answer)]
      # If the utterance hit the token budget, close the turn before the observation.
      closed = [] if lengths[row] and tokens[row, lengths[row] - 1] == tokenizer.end_of_turn_id \
          else [tokenizer.end_of_turn_id]
      observation = tokenizer.encode_turn("user", answer).tokens.tolist()
      observations.append(closed + observation + tokenizer.generation_prefix())
    chunk, mask = sampling.left_pad(observations, pad_token=tokenizer.pad_id, length=obs_len)
  elapsed = time.perf_counter() - start

  for row in range(min(batch, 2)):
    print(f"\n--- conversation {row} ---")
    for who, text in transcripts[row]:
      print(f"{who:>7}: {text!r}")
  print(f"\n{batch} conversations x {turns} turns: {generated} agent tokens in {elapsed:.2f} s "
        f"(compile included), cache {int(cache.end)}/{cache_len} slots used.")


if __name__ == "__main__":
  app.run(main)
