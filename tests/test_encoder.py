"""The encoder against Hugging Face's PyTorch BertModel and RobertaModel, and its pooling."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from agentrl.models import encoder

VOCAB, HIDDEN, LAYERS, HEADS, MLP, MAX_POS = 99, 32, 2, 4, 37, 64
LENGTHS = [7, 4, 1]
WIDTH = 7


def hf_to_params(state_dict, num_layers, num_heads):
  """Our parameter tree from a BertModel / RobertaModel state_dict."""
  sd = {k: v.detach().numpy().astype(np.float32) for k, v in state_dict.items()}
  hidden = sd["embeddings.word_embeddings.weight"].shape[1]
  head_dim = hidden // num_heads
  norm = lambda prefix: {"scale": sd[prefix + ".weight"], "bias": sd[prefix + ".bias"]}  # noqa
  params = {
      "token_embed": {"embedding": sd["embeddings.word_embeddings.weight"]},
      "pos_embed": {"embedding": sd["embeddings.position_embeddings.weight"]},
      "type_embed": {"embedding": sd["embeddings.token_type_embeddings.weight"]},
      "embed_norm": norm("embeddings.LayerNorm"),
  }
  for i in range(num_layers):
    p = f"encoder.layer.{i}."
    qkv = lambda name: {  # noqa: E731
        "kernel": sd[p + f"attention.self.{name}.weight"].T.reshape(hidden, num_heads, head_dim),
        "bias": sd[p + f"attention.self.{name}.bias"].reshape(num_heads, head_dim)}
    params[f"layer_{i}"] = {
        "attn": {
            "q_proj": qkv("query"), "k_proj": qkv("key"), "v_proj": qkv("value"),
            "o_proj": {
                "kernel": sd[p + "attention.output.dense.weight"].T.reshape(
                    num_heads, head_dim, hidden),
                "bias": sd[p + "attention.output.dense.bias"]},
        },
        "attn_norm": norm(p + "attention.output.LayerNorm"),
        "mlp": {
            "up_proj": {"kernel": sd[p + "intermediate.dense.weight"].T,
                        "bias": sd[p + "intermediate.dense.bias"]},
            "down_proj": {"kernel": sd[p + "output.dense.weight"].T,
                          "bias": sd[p + "output.dense.bias"]},
        },
        "mlp_norm": norm(p + "output.LayerNorm"),
    }
  return jax.tree_util.tree_map(jnp.asarray, params)


def make_pair(family):
  """A random HF model (eval, float32) and the matching config and parameters."""
  torch.manual_seed(0 if family == "bert" else 1)
  common = dict(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS,
                num_attention_heads=HEADS, intermediate_size=MLP, hidden_act="gelu")
  if family == "bert":
    hf_config = transformers.BertConfig(max_position_embeddings=MAX_POS, **common)
    model = transformers.BertModel(hf_config, add_pooling_layer=False)
    config = encoder.EncoderConfig.bert(vocab_size=VOCAB, hidden_size=HIDDEN, num_layers=LAYERS,
                                        num_heads=HEADS, mlp_dim=MLP,
                                        max_position_embeddings=MAX_POS)
  else:
    hf_config = transformers.RobertaConfig(max_position_embeddings=MAX_POS + 2, type_vocab_size=1,
                                           layer_norm_eps=1e-5, pad_token_id=1, **common)
    model = transformers.RobertaModel(hf_config, add_pooling_layer=False)
    config = encoder.EncoderConfig.roberta(vocab_size=VOCAB, hidden_size=HIDDEN,
                                           num_layers=LAYERS, num_heads=HEADS, mlp_dim=MLP,
                                           max_position_embeddings=MAX_POS + 2)
  with torch.no_grad():  # non-trivial norms and biases, larger activations
    for p in model.parameters():
      p.add_(0.1 * torch.randn_like(p))
  model.eval()
  return model, config, hf_to_params(model.state_dict(), LAYERS, HEADS)


def padded_batch(config, rng, lengths=LENGTHS, width=WIDTH):
  tokens = np.full((len(lengths), width), config.pad_token_id, np.int32)
  types = np.zeros((len(lengths), width), np.int32)
  mask = np.zeros((len(lengths), width), bool)
  for row, n in enumerate(lengths):
    tokens[row, :n] = rng.integers(2, VOCAB, n)
    types[row, :n] = rng.integers(0, config.type_vocab_size, n)
    mask[row, :n] = True
  return tokens, types, mask


@functools.partial(jax.jit, static_argnums=0)
def forward(config, params, tokens, mask, types):
  return encoder.Encoder(config).apply({"params": params}, tokens, mask, types)


@pytest.fixture(scope="module")
def bert():
  return make_pair("bert")


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_matches_hf(family, bert):
  model, config, params = bert if family == "bert" else make_pair(family)
  tokens, types, mask = padded_batch(config, np.random.default_rng(0))
  with torch.no_grad():
    ref = model(input_ids=torch.tensor(tokens, dtype=torch.long),
                attention_mask=torch.tensor(mask, dtype=torch.long),
                token_type_ids=torch.tensor(types, dtype=torch.long)).last_hidden_state.numpy()
  out = forward(config, params, tokens, mask, types)
  hidden = np.asarray(out.hidden)
  np.testing.assert_allclose(hidden[mask], ref[mask], atol=1e-4, rtol=1e-4)
  m = mask[..., None].astype(np.float32)
  ref_pooled = (ref * m).sum(1) / np.maximum(m.sum(1), 1e-9)  # sentence-transformers
  np.testing.assert_allclose(np.asarray(out.pooled), ref_pooled, atol=1e-4, rtol=1e-4)


def test_default_positions_match_roberta():
  mask = jnp.array([[True, True, True, False], [True, False, False, False]])
  tokens = jnp.where(mask, 5, 1)
  ref = transformers.models.roberta.modeling_roberta.RobertaEmbeddings \
      .create_position_ids_from_input_ids(torch.tensor(np.asarray(tokens)), 1)
  np.testing.assert_array_equal(encoder.encoder_positions(mask, 2), ref.numpy())
  np.testing.assert_array_equal(encoder.encoder_positions(mask, 0), [[0, 1, 2, 0], [0, 0, 0, 0]])


def test_padding_does_not_change_a_row(bert):
  _, config, params = bert
  tokens, types, mask = padded_batch(config, np.random.default_rng(1), lengths=[4], width=4)
  alone = forward(config, params, tokens, mask, types)
  tokens7, types7, mask7 = padded_batch(config, np.random.default_rng(1), lengths=[4, 0, 7])
  tokens7[1] = 17  # garbage under the padding of an all-padding row
  batched = forward(config, params, tokens7, mask7, types7)
  np.testing.assert_allclose(batched.hidden[0, :4], alone.hidden[0], atol=1e-5)
  np.testing.assert_allclose(batched.pooled[0], alone.pooled[0], atol=1e-5)
  assert np.all(np.isfinite(batched.hidden))
  np.testing.assert_array_equal(batched.pooled[1], np.zeros(HIDDEN))


def test_pooling_helpers():
  hidden = jnp.arange(2 * 3 * 2, dtype=jnp.float32).reshape(2, 3, 2)
  mask = jnp.array([[True, True, False], [False, False, False]])
  np.testing.assert_allclose(encoder.mean_pool(hidden, mask), [[1.0, 2.0], [0.0, 0.0]])
  np.testing.assert_allclose(encoder.cls_pool(hidden), hidden[:, 0])
  unit = encoder.l2_normalize(jnp.array([[3.0, 4.0], [0.0, 0.0]]))
  np.testing.assert_allclose(unit, [[0.6, 0.8], [0.0, 0.0]], rtol=1e-6)
  grad = jax.grad(lambda h: encoder.mean_pool(h, mask).sum())(hidden)
  assert np.all(np.isfinite(grad))


def test_parameter_tree_and_axis_names():
  config = encoder.EncoderConfig.roberta(vocab_size=VOCAB, hidden_size=HIDDEN, num_layers=1,
                                         num_heads=HEADS, mlp_dim=MLP)
  boxed = jax.eval_shape(
      lambda: encoder.init_encoder_params(config, jax.random.PRNGKey(0), boxed=True))
  leaves = jax.tree_util.tree_leaves_with_path(
      boxed, is_leaf=lambda x: isinstance(x, nn.Partitioned))
  got = {"/".join(k.key for k in path): (leaf.value.shape, leaf.names) for path, leaf in leaves}
  d = HIDDEN // HEADS
  expected = {
      "token_embed/embedding": ((VOCAB, HIDDEN), ("vocab", "embed")),
      "pos_embed/embedding": ((514, HIDDEN), ("position", "embed")),
      "type_embed/embedding": ((1, HIDDEN), (None, "embed")),
      "embed_norm/scale": ((HIDDEN,), ("embed",)),
      "embed_norm/bias": ((HIDDEN,), ("embed",)),
      "layer_0/attn/q_proj/kernel": ((HIDDEN, HEADS, d), ("embed", "heads", "kv")),
      "layer_0/attn/k_proj/bias": ((HEADS, d), ("heads", "kv")),
      "layer_0/attn/v_proj/kernel": ((HIDDEN, HEADS, d), ("embed", "heads", "kv")),
      "layer_0/attn/o_proj/kernel": ((HEADS, d, HIDDEN), ("heads", "kv", "embed")),
      "layer_0/attn/o_proj/bias": ((HIDDEN,), ("embed",)),
      "layer_0/attn_norm/bias": ((HIDDEN,), ("embed",)),
      "layer_0/mlp/up_proj/kernel": ((HIDDEN, MLP), ("embed", "mlp")),
      "layer_0/mlp/up_proj/bias": ((MLP,), ("mlp",)),
      "layer_0/mlp/down_proj/kernel": ((MLP, HIDDEN), ("mlp", "embed")),
      "layer_0/mlp/down_proj/bias": ((HIDDEN,), ("embed",)),
      "layer_0/mlp_norm/scale": ((HIDDEN,), ("embed",)),
  }
  for name, want in expected.items():
    assert got[name] == want, name
  assert len(got) == 5 + 16  # every parameter is boxed


def test_config_validation_names_the_key():
  with pytest.raises(ValueError, match="activation"):
    encoder.EncoderConfig.bert(vocab_size=8, hidden_size=8, num_layers=1, num_heads=2,
                               activation="relu")
  with pytest.raises(ValueError, match="hidden_size"):
    encoder.EncoderConfig.bert(vocab_size=8, hidden_size=10, num_layers=1, num_heads=4)
  with pytest.raises(ValueError, match="position_offset"):
    encoder.EncoderConfig.roberta(vocab_size=8, hidden_size=8, num_layers=1, num_heads=2,
                                  max_position_embeddings=2)
