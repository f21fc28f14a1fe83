r"""Sampling throughput: our jitted KV-cache sampler vs `transformers` generate (PyTorch).

Both run the same random Llama-style model, in the same process, on the same prompts,
greedy, after warm-up: our parameters are exported with `agentrl.models.hf.save_pretrained`,
re-imported for our sampler and loaded by `transformers` for its `generate`. Ours runs
before PyTorch is imported, so neither runtime's idle worker threads slow the other.
Prints and writes tokens/s of each, their ratio, our compile time and how many generated
tokens agree (a parity check of the two models).

  python -m experiments.bench_sampling --json out.json
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import tempfile
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from agentrl import sampling
from agentrl.models import decoder
from agentrl.models import hf

_JSON = flags.DEFINE_string("json", None, "Write the figures to this JSON file.")
_BATCH = flags.DEFINE_integer("batch", 32, "Conversations per batch.")
_PROMPT = flags.DEFINE_integer("prompt_len", 64, "Prompt tokens per row.")
_NEW = flags.DEFINE_integer("new_tokens", 64, "Generated tokens per row.")
_LAYERS = flags.DEFINE_integer("layers", 4, "Transformer layers.")
_WIDTH = flags.DEFINE_integer("width", 256, "Hidden size.")
_HEADS = flags.DEFINE_integer("heads", 4, "Attention heads (head size = width / heads).")
_VOCAB = flags.DEFINE_integer("vocab", 4096, "Vocabulary size.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed runs of each sampler (median is reported).")
_TORCH_THREADS = flags.DEFINE_integer("torch_threads", 0,
                                      "torch.set_num_threads; 0 keeps PyTorch's default.")


def _median_time(fn, repeats: int) -> float:
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def main(argv):
  del argv
  batch, prompt_len, new_tokens = _BATCH.value, _PROMPT.value, _NEW.value
  width = _WIDTH.value
  model_config = decoder.DecoderConfig.llama(
      vocab_size=_VOCAB.value, hidden_size=width, num_layers=_LAYERS.value,
      num_heads=_HEADS.value, mlp_dim=4 * width, norm_eps=1e-6)
  checkpoint = tempfile.mkdtemp(prefix="bench_sampling_")
  hf.save_pretrained(model_config, decoder.init_params(model_config, jax.random.PRNGKey(0)),
                     checkpoint)
  config, params = hf.load_pretrained(checkpoint)
  params = jax.device_put(params)

  rng = np.random.default_rng(0)
  prompts = rng.integers(1, _VOCAB.value, size=(batch, prompt_len)).astype(np.int32)

  # --- ours ---
  sample_cfg = sampling.SamplingConfig(max_new_tokens=new_tokens, temperature=0.0)
  cache_len = sampling.bucket_length(prompt_len + new_tokens)
  mask = np.ones_like(prompts, bool)
  active = jnp.ones((batch,), bool)
  cache = decoder.init_cache(config, batch, cache_len)
  start = time.perf_counter()
  compiled = sampling._generate_jit.lower(  # pylint: disable=protected-access
      params, cache, prompts, mask, jax.random.PRNGKey(0), active, config=config,
      sampling=sample_cfg).compile()
  compile_s = time.perf_counter() - start

  def run_ours():
    c = decoder.init_cache(config, batch, cache_len)
    out = compiled(params, c, prompts, mask, jax.random.PRNGKey(0), active)
    return np.asarray(jax.block_until_ready(out.tokens))

  ours_tokens = run_ours()  # warm-up
  ours_s = _median_time(run_ours, _REPEATS.value)

  # --- transformers ---
  import torch  # pylint: disable=import-outside-toplevel  (the reference, imported late)
  import transformers  # pylint: disable=import-outside-toplevel

  if _TORCH_THREADS.value:
    torch.set_num_threads(_TORCH_THREADS.value)
  torch_model = transformers.LlamaForCausalLM.from_pretrained(
      checkpoint, dtype=torch.float32).eval()
  shutil.rmtree(checkpoint, ignore_errors=True)
  input_ids = torch.from_numpy(prompts.astype(np.int64))
  attention = torch.ones_like(input_ids)

  def run_torch():
    with torch.inference_mode():
      out = torch_model.generate(input_ids=input_ids, attention_mask=attention,
                                 max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                 do_sample=False, pad_token_id=0)
    return out[:, prompt_len:].numpy()

  torch_tokens = run_torch()  # warm-up
  torch_s = _median_time(run_torch, _REPEATS.value)

  generated = batch * new_tokens
  result = {
      "device": jax.devices()[0].device_kind,
      "cpu_count": os.cpu_count(),
      "machine": platform.machine(),
      "model": dict(layers=_LAYERS.value, width=_WIDTH.value, heads=_HEADS.value,
                    vocab=_VOCAB.value, params=decoder.count_params(params)),
      "batch": batch, "prompt_len": prompt_len, "new_tokens": new_tokens,
      "ours_tokens_per_s": generated / ours_s,
      "torch_tokens_per_s": generated / torch_s,
      "speedup": torch_s / ours_s,
      "ours_compile_s": compile_s,
      "greedy_token_agreement": float((ours_tokens == torch_tokens).mean()),
      "jax_version": jax.__version__, "torch_version": torch.__version__,
      "torch_threads": torch.get_num_threads(),
  }
  print(f"ours:          {result['ours_tokens_per_s']:10.0f} tokens/s  "
        f"(compile {compile_s:.1f} s)")
  print(f"transformers:  {result['torch_tokens_per_s']:10.0f} tokens/s")
  print(f"speedup:       {result['speedup']:10.1f}x")
  print(f"greedy tokens that agree: {result['greedy_token_agreement']:.1%}")
  if _JSON.value:
    with open(_JSON.value, "w", encoding="utf-8") as f:
      json.dump(result, f, indent=2)


if __name__ == "__main__":
  app.run(main)
