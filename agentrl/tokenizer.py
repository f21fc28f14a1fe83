"""Text <-> token ids for agents: a thin layer over Hugging Face ``tokenizers``.

* ``Tokenizer`` wraps a ``tokenizers.Tokenizer`` (the Rust library does all BPE work) and a
  ``ChatTemplate``. It loads a checkpoint's ``tokenizer.json`` or trains a small byte-level
  BPE on an environment's corpus, so every string (emoji, control bytes) round-trips.
  ``encode`` never inserts BOS/EOS; chat structure comes only from ``encode_chat``.
* Segment-wise chat encoding. A message renders as ``prefix + content + end_of_turn +
  separator``; prefix, content and separator are encoded on their own and the end-of-turn
  marker is one token, so BPE merges never cross a segment boundary. Hence::

      encode_chat(msgs).tokens == concat([encode_turn(m).tokens for m in msgs])

  (+ ``generation_prefix()``), so a rollout appending turns piece by piece (a sampled
  utterance is followed by ``turn_separator()``) holds exactly the ids of a re-encoding.
* ``ChatEncoding`` holds per-token metadata for RL losses: role, assistant turn index,
  ``action_mask`` (what the policy produces: assistant content and its end-of-turn token,
  not the role prefix or separator) and ``turn_end`` (each assistant end-of-turn token).

Content spelling a marker (``"<|end|>"``) maps to the marker's id, as in Hugging Face;
metadata comes from message structure, never from ids. ``save`` keeps no custom template.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import tokenizers
from tokenizers import decoders, models, pre_tokenizers, trainers

ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT = 0, 1, 2
ROLES = {"system": ROLE_SYSTEM, "user": ROLE_USER, "assistant": ROLE_ASSISTANT}

PAD, BOS, EOS = "<|pad|>", "<|bos|>", "<|eos|>"
SPECIAL_TOKENS = (PAD, BOS, EOS, "<|system|>", "<|user|>", "<|assistant|>", "<|end|>")
CHATML_START, CHATML_END, ENDOFTEXT = "<|im_start|>", "<|im_end|>", "<|endoftext|>"
TOKENIZER_FILE = "tokenizer.json"


def _role_id(role: str) -> int:
  """Maps a role name to its ROLE_* constant, rejecting unknown roles."""
  if role not in ROLES:
    raise ValueError(f"unknown role {role!r}; expected one of {sorted(ROLES)}")
  return ROLES[role]


@dataclasses.dataclass(frozen=True)
class ChatTemplate:
  """Layout of a message: ``<role>_prefix + content + end_of_turn + separator``.

  Attributes:
    system_prefix: Text opening a system message.
    user_prefix: Text opening a user message.
    assistant_prefix: Text opening an assistant message (also the generation prompt).
    end_of_turn: Marker closing every message; must be a single token id.
    separator: Text the template writes after the end-of-turn marker.
    markers: Special tokens the template relies on; each must be one vocabulary token.
  """

  system_prefix: str
  user_prefix: str
  assistant_prefix: str
  end_of_turn: str
  separator: str = ""
  markers: tuple[str, ...] = ()

  @classmethod
  def default(cls) -> ChatTemplate:
    """Our markers (ids 3..6 of ``train_bpe``): ``<|user|>content<|end|>``."""
    return cls(*SPECIAL_TOKENS[3:], markers=SPECIAL_TOKENS[3:])

  @classmethod
  def chatml(cls) -> ChatTemplate:
    """Qwen2 / ChatML: ``<|im_start|>user\\ncontent<|im_end|>\\n``."""
    return cls(*(f"{CHATML_START}{role}\n" for role in ROLES), CHATML_END, "\n",
               markers=(CHATML_START, CHATML_END))

  def prefix(self, role: str) -> str:
    """The text opening a message of ``role``."""
    _role_id(role)
    return getattr(self, f"{role}_prefix")


_DTYPES = {"tokens": np.int32, "roles": np.int32, "turn_index": np.int32,
           "action_mask": np.bool_, "turn_end": np.bool_}


@dataclasses.dataclass(frozen=True)
class ChatEncoding:
  """A tokenized conversation with per-token metadata; all arrays have shape [T].

  Attributes:
    tokens: Token ids (int32).
    roles: ROLE_SYSTEM / ROLE_USER / ROLE_ASSISTANT of the message each token is in.
    turn_index: Index of the assistant turn for assistant tokens, -1 elsewhere.
    action_mask: True on tokens the policy produces (assistant content + end of turn).
    turn_end: True on the end-of-turn token of each assistant turn.
  """

  tokens: np.ndarray
  roles: np.ndarray
  turn_index: np.ndarray
  action_mask: np.ndarray
  turn_end: np.ndarray

  def __post_init__(self):
    for name, dtype in _DTYPES.items():
      object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=dtype))
    shapes = {getattr(self, name).shape for name in _DTYPES}
    if len(shapes) != 1 or len(next(iter(shapes))) != 1:
      raise ValueError(f"ChatEncoding arrays must be 1-D of one length, got {shapes}")

  def __len__(self) -> int:
    return int(self.tokens.shape[0])

  @property
  def num_turns(self) -> int:
    """Number of assistant turns (including a trailing generation prompt)."""
    return int(self.turn_index.max(initial=-1)) + 1

  @classmethod
  def concatenate(cls, parts: Sequence[ChatEncoding]) -> ChatEncoding:
    """Joins encodings in order, renumbering assistant turns consecutively."""
    offset, turn_index = 0, []
    for part in parts:
      turn_index.append(np.where(part.turn_index >= 0, part.turn_index + offset, -1))
      offset += part.num_turns
    fields = {name: [getattr(part, name) for part in parts] for name in _DTYPES}
    fields["turn_index"] = turn_index
    return cls(**{name: np.concatenate(arrays) if arrays else np.zeros(0, _DTYPES[name])
                  for name, arrays in fields.items()})


class Tokenizer:
  """A ``tokenizers.Tokenizer`` plus a chat template, with RL-oriented chat encoding."""

  def __init__(self, tokenizer: tokenizers.Tokenizer,
               chat_template: ChatTemplate | None = None):
    """Wraps ``tokenizer``; ``chat_template=None`` picks one from the vocabulary.

    Raises:
      ValueError: A template marker is missing or does not encode to one token id.
    """
    self._tok = tokenizer
    self.chat_template = template = chat_template or _default_template(tokenizer)
    for marker in dict.fromkeys((*template.markers, template.end_of_turn)):
      if tokenizer.token_to_id(marker) is None:
        raise ValueError(f"chat template token {marker!r} is missing from the vocabulary")
      if len(self.encode(marker)) != 1:
        raise ValueError(f"chat template token {marker!r} does not encode to one token id")
    self._end_of_turn_id = self.token_to_id(template.end_of_turn)
    self._prefix_ids = {role: self.encode(template.prefix(role)) for role in ROLES}
    self._separator_ids = self.encode(template.separator)
    self._eos_id = self._first_id((EOS, ENDOFTEXT), self._end_of_turn_id)
    self._pad_id = self._first_id((PAD, ENDOFTEXT), self._eos_id)

  @classmethod
  def from_file(cls, path_or_dir: str | os.PathLike,
                chat_template: ChatTemplate | None = None) -> Tokenizer:
    """Loads ``tokenizer.json``, given as a file or as the directory holding it."""
    path = pathlib.Path(path_or_dir)
    path = path / TOKENIZER_FILE if path.is_dir() else path
    if not path.is_file():
      raise FileNotFoundError(f"no tokenizer file at {path}")
    return cls(tokenizers.Tokenizer.from_file(str(path)), chat_template)

  @classmethod
  def train_bpe(cls, corpus: Iterable[str], vocab_size: int, *, min_frequency: int = 2,
                extra_special_tokens: Sequence[str] = ()) -> Tokenizer:
    """Trains a byte-level BPE tokenizer; SPECIAL_TOKENS get ids 0..6, extras follow."""
    special = list(dict.fromkeys((*SPECIAL_TOKENS, *extra_special_tokens)))
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if vocab_size < len(special) + len(alphabet):
      raise ValueError(f"vocab_size={vocab_size} < {len(alphabet)} bytes + specials")
    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                  special_tokens=special, initial_alphabet=alphabet,
                                  show_progress=False)
    tok.train_from_iterator(corpus, trainer=trainer)
    return cls(tok, ChatTemplate.default())

  def save(self, path: str | os.PathLike) -> pathlib.Path:
    """Writes ``tokenizer.json`` (into ``path`` unless it ends in .json); returns it."""
    path = pathlib.Path(path)
    path = path / TOKENIZER_FILE if path.is_dir() or path.suffix != ".json" else path
    path.parent.mkdir(parents=True, exist_ok=True)
    self._tok.save(str(path))
    return path

  @property
  def backend(self) -> tokenizers.Tokenizer:
    """The wrapped ``tokenizers.Tokenizer``."""
    return self._tok

  @property
  def vocab_size(self) -> int:
    """Number of ids, special tokens included."""
    return self._tok.get_vocab_size(with_added_tokens=True)

  @property
  def pad_id(self) -> int:
    """``<|pad|>``, else ``<|endoftext|>``, else ``eos_id``; padding is always masked."""
    return self._pad_id

  @property
  def eos_id(self) -> int:
    """``<|eos|>``, else ``<|endoftext|>``, else the end-of-turn id."""
    return self._eos_id

  @property
  def end_of_turn_id(self) -> int:
    """The id closing every turn; sampling of an utterance stops on it."""
    return self._end_of_turn_id

  def token_to_id(self, token: str) -> int:
    """The id of ``token``; KeyError naming it when it is not in the vocabulary."""
    token_id = self._tok.token_to_id(token)
    if token_id is None:
      raise KeyError(f"token {token!r} is not in the vocabulary")
    return token_id

  def _first_id(self, candidates: Sequence[str], default: int) -> int:
    return next((i for i in map(self._tok.token_to_id, candidates) if i is not None), default)

  def encode(self, text: str) -> list[int]:
    """Token ids of ``text``; no special tokens are added."""
    return self._tok.encode(text, add_special_tokens=False).ids

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    return [e.ids for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]

  def decode(self, ids: Sequence[int] | np.ndarray, skip_special_tokens: bool = True) -> str:
    return self._tok.decode(_as_ids(ids), skip_special_tokens=skip_special_tokens)

  def decode_batch(self, batch: Sequence[Sequence[int]] | np.ndarray,
                   skip_special_tokens: bool = True) -> list[str]:
    return self._tok.decode_batch([_as_ids(ids) for ids in batch], skip_special_tokens)

  def decode_utterance(self, ids: Sequence[int] | np.ndarray,
                       skip_special_tokens: bool = True) -> str:
    """Decodes sampled ids up to (excluding) the first end-of-turn id."""
    ids = _as_ids(ids)
    if self._end_of_turn_id in ids:
      ids = ids[:ids.index(self._end_of_turn_id)]
    return self.decode(ids, skip_special_tokens)

  def generation_prefix(self) -> list[int]:
    """Ids of the assistant role prefix, appended before sampling an utterance."""
    return list(self._prefix_ids["assistant"])

  def turn_separator(self) -> list[int]:
    """Ids the template writes after each end-of-turn id (ChatML: ``\\n``; ours: none)."""
    return list(self._separator_ids)

  def encode_turn(self, role: str, content: str) -> ChatEncoding:
    """Encodes one message; an assistant message is turn 0 (``concatenate`` renumbers)."""
    role_id = _role_id(role)
    prefix, body = self._prefix_ids[role], self.encode(content)
    tokens = [*prefix, *body, self._end_of_turn_id, *self._separator_ids]
    n, start, end = len(tokens), len(prefix), len(prefix) + len(body)
    is_assistant = role_id == ROLE_ASSISTANT
    action_mask, turn_end = np.zeros(n, bool), np.zeros(n, bool)
    action_mask[start:end + 1] = turn_end[end] = is_assistant
    return ChatEncoding(tokens, np.full(n, role_id), np.full(n, 0 if is_assistant else -1),
                        action_mask, turn_end)

  def encode_chat(self, messages: Sequence[Mapping[str, str]], *,
                  add_generation_prompt: bool = False) -> ChatEncoding:
    """Encodes ``[{"role": ..., "content": ...}, ...]`` segment by segment.

    Args:
      messages: Messages with role "system", "user" or "assistant".
      add_generation_prompt: Append the assistant prefix (not an action) to sample from.

    Returns:
      The concatenation of ``encode_turn`` for every message, plus the generation prefix.
    """
    parts = [self.encode_turn(m["role"], m["content"]) for m in messages]
    if add_generation_prompt:
      n = len(self._prefix_ids["assistant"])  # An empty assistant turn, cut after its prefix.
      turn = dataclasses.asdict(self.encode_turn("assistant", ""))
      parts.append(ChatEncoding(**{name: array[:n] for name, array in turn.items()}))
    return ChatEncoding.concatenate(parts)


def _default_template(tokenizer: tokenizers.Tokenizer) -> ChatTemplate:
  """ChatML when the vocabulary has its markers, else our own template."""
  if all(tokenizer.token_to_id(t) is not None for t in (CHATML_START, CHATML_END)):
    return ChatTemplate.chatml()
  return ChatTemplate.default()


def _as_ids(ids: Sequence[int] | np.ndarray) -> list[int]:
  return np.asarray(ids, dtype=np.int64).reshape(-1).tolist()
