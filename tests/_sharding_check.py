"""Sharded vs. single-device forward and gradient of tiny decoders on 8 fake CPU devices.

Run as a script (``tests/test_parallel.py`` does it in a subprocess, so that the main test
process keeps its single device). Prints one JSON object on the last line of stdout:
``{model: {mesh: {"params": d, "logits": d, "grads": d, "loss": d, "sharded_params": n,
"sharded_grads": n}}}`` where d is a max abs difference from the single-device reference
and n counts leaves whose sharding is not fully replicated.
"""

import os

# 8 fake CPU devices; cheap LLVM optimization keeps the many small compiles fast (the
# reference and the sharded runs are compiled alike).
os.environ["XLA_FLAGS"] = " ".join([
    os.environ.get("XLA_FLAGS", ""), "--xla_force_host_platform_device_count=8",
    "--xla_backend_optimization_level=0", "--xla_llvm_disable_expensive_passes=true"]).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import functools  # noqa: E402
import json  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from agentrl import parallel  # noqa: E402
from agentrl.models import decoder  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")

MODELS = {
    "llama": decoder.DecoderConfig.llama(vocab_size=128, hidden_size=64, num_layers=2,
                                         num_heads=4, num_kv_heads=2, mlp_dim=128),
    "gpt2": decoder.DecoderConfig.gpt2(vocab_size=128, hidden_size=64, num_layers=2,
                                       num_heads=4, mlp_dim=128, max_position_embeddings=32),
}
MESHES = {"8x1x1": (8, 1, 1), "2x2x2": (2, 2, 2), "1x4x2": (1, 4, 2)}
BATCH, LENGTH = 8, 12


def make_batch() -> dict[str, np.ndarray]:
  """8 rows of random tokens; half right-padded, half left-padded, varied lengths."""
  rng = np.random.default_rng(0)
  tokens = rng.integers(1, 128, (BATCH, LENGTH)).astype(np.int32)
  mask = np.zeros((BATCH, LENGTH), bool)
  for row, n in enumerate([12, 3, 7, 10, 5, 12, 2, 9]):
    if row % 2:
      mask[row, LENGTH - n:] = True
    else:
      mask[row, :n] = True
  return {"tokens": np.where(mask, tokens, 0), "mask": mask}


def loss_fn(config, params, batch):
  """Mean next-token cross-entropy over pairs of consecutive real tokens."""
  tokens, mask = batch["tokens"], batch["mask"]
  positions = decoder.positions_from_mask(mask)
  logits = decoder.Decoder(config).apply({"params": params}, tokens, positions, mask).logits
  # Padding is contiguous, so consecutive slots are consecutive real tokens.
  pairs = mask[:, 1:] & mask[:, :-1]
  nll = optax.softmax_cross_entropy_with_integer_labels(logits[:, :-1], tokens[:, 1:])
  return jnp.sum(nll * pairs) / jnp.sum(pairs), logits


def max_diff(a, b) -> float:
  diffs = jax.tree_util.tree_map(
      lambda x, y: float(np.max(np.abs(np.asarray(x) - np.asarray(y)))), a, b)
  return max(jax.tree_util.tree_leaves(diffs))


def count_sharded(tree) -> int:
  return sum(not x.sharding.is_fully_replicated for x in jax.tree_util.tree_leaves(tree))


def main():
  assert jax.device_count() == 8, jax.devices()
  batch = make_batch()
  rng = jax.random.PRNGKey(0)
  report = {}
  for name, config in MODELS.items():
    step = jax.jit(jax.value_and_grad(functools.partial(loss_fn, config), has_aux=True))
    ref_params = decoder.init_params(config, rng)  # eager: sharded_init gives its values
    (ref_loss, ref_logits), ref_grads = step(ref_params, batch)
    report[name] = {}
    for mesh_name, sizes in MESHES.items():
      mesh = parallel.make_mesh(*sizes)
      params, _ = parallel.sharded_init(
          lambda config=config: decoder.init_params(config, rng, boxed=True), mesh)
      (loss, logits), grads = step(params, parallel.shard_batch(batch, mesh))
      report[name][mesh_name] = {
          "params": max_diff(params, ref_params),
          "loss": abs(float(loss) - float(ref_loss)),
          "logits": max_diff(logits, ref_logits),
          "grads": max_diff(grads, ref_grads),
          "sharded_params": count_sharded(params),
          "sharded_grads": count_sharded(grads),
          "num_params": len(jax.tree_util.tree_leaves(params)),
      }
  # "the rest of the devices"
  report["mesh_-1"] = list(parallel.make_mesh(data=-1, tensor=2).devices.shape)
  # A vocabulary that the tensor axis does not divide is refused with the parameter's name.
  odd = MODELS["llama"].replace(vocab_size=127)
  try:
    parallel.logical_shardings(
        jax.eval_shape(lambda: decoder.init_params(odd, rng, boxed=True)),
        parallel.make_mesh(fsdp=4, tensor=2))
    report["uneven_error"] = None
  except ValueError as e:
    report["uneven_error"] = str(e)
  print(json.dumps(report))


if __name__ == "__main__":
  main()
