"""Policy token ids -> BERT WordPiece ids inside jit, through lookup tables.

An utterance critic whose encoder starts from all-MiniLM-L6-v2 must read MiniLM WordPiece
ids, while the ids flowing through the jitted update are the policy's (a byte-level BPE,
`agentrl.tokenizer.Tokenizer`). The tables are built once on the host; `translate` gathers
on device and packs each row as `[CLS] pieces... [SEP]`:

  tables = build_tables(policy_tokenizer, minilm_tokenizer, words=env_corpus)  # pytree
  ids, mask = translate(tokens, token_mask, tables, length=128, cls_id=101, sep_id=102)

**Per-token reading** (`build_table`, int32[V, max_pieces]). Each source token's decoded
text goes through the target's own normalizer (lowercasing, accent stripping, removal of
control characters and U+FFFD, CJK splitting) and BERT pre-tokenizer, so punctuation inside
a token is split exactly as BERT splits it. Then:

* the pad id maps to nothing; every other special token (chat role markers, end of turn,
  BOS/EOS) maps to `[SEP]`; whitespace-only tokens map to nothing;
* a word start maps to WordPiece's ids of the word;
* a token continuing a word (its text starts with a word character: not whitespace, not
  punctuation) maps to continuation pieces by greedy longest match over the `##`
  vocabulary from its first character. That is exactly what WordPiece does on the rest of a
  word once a piece ends at the token boundary (tokenizing "prefix + text" and dropping the
  prefix's pieces is not exact: the greedy pieces may straddle the boundary);
* text WordPiece cannot cover maps to `[UNK]`; a token's reading is cut to `max_pieces`
  (its first pieces are kept).

**Context** (`build_tables`). A space-less token is a word start at the start of a row,
after a role marker, a newline or punctuation ("well-known") and, in small vocabularies,
after a lone " " token; elsewhere it continues a word. The context-free table reads it as
a continuation; `Tables` also holds each token's word-start reading and whether it ends a
word (`breaks`), and `translate` picks the reading from the previous real token.

**Whole words** (`build_tables`). Token-by-token WordPiece equals WordPiece on the word only
when every BPE boundary inside the word is also a boundary of WordPiece's greedy
segmentation of the word. A small BPE splits most words elsewhere ("an|i|ma|l" reads
`an ##i ##ma ##l`, WordPiece says `animal`). So `Tables` also holds a dictionary from the
source-token sequence of a word to the word's WordPiece ids: every whole word of the target
vocabulary plus `words` (e.g. the environment's corpus), each spelt lower-case,
Capitalised, UPPER and given as-is, with and without a leading space. `translate` finds
each word (a run of real tokens from a word start up to the next), hashes its ids (two
32-bit polynomial hashes and the length, checked against the entry) and, on a hit, puts
the word's pieces in place of its tokens' pieces.

**Exactness** (tests/test_retokenize.py checks both directions against `target.encode`).
With `build_tables`, the ids equal WordPiece's ids of the decoded text, [CLS]/[SEP]
included, whenever each BERT word is a single token, or is in the dictionary, or has its
BPE boundaries on WordPiece boundaries: with a 300-token BPE, all of 31 test sentences
(multi-token words, capitals, digits, punctuation, newlines, chat markers) match, where
the per-token reading (context, no dictionary) matches 5. The known gaps:

* a multi-token word outside the dictionary whose BPE boundaries are not WordPiece
  boundaries reads token by token: an invented "Zorblax" (BPE "Z|o|r|b|l|a|x") reads
  `z ##o ##r ##b ##l ##a ##x`, WordPiece says `z ##or ##bla ##x`; so do numbers outside
  the vocabulary ("31415": WordPiece `314 ##15`) and words with a token that also holds a
  break (a pre-tokenizer making "-known" one token). Adding the word to `words` fixes it;
* a multi-byte character split over byte tokens decodes to U+FFFD per token, which BERT's
  normalizer deletes: the character is lost, and its word is not looked up ("café" with
  "é" in two byte tokens reads `ca ##f`, WordPiece `cafe`); a character held in one token
  reads exactly;
* a word outside the dictionary that WordPiece maps to one `[UNK]` becomes one `[UNK]` per
  failing token next to the pieces of the others; `max_input_chars_per_word` applies per
  token;
* `translate` truncates by pieces (keeping the first or the last ones), so a word at the
  cut may lose pieces;
* dictionary entries whose first hash collides with another's are dropped (they read token
  by token); a false hit needs both 32-bit hashes and the length to collide (~K / 2**64).
"""

from __future__ import annotations

import string
import unicodedata
from collections.abc import Iterable
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import tokenizers

from agentrl.tokenizer import Tokenizer

Array = jax.Array

_KEEP = ("first", "last")
_BASES = (1_000_003, 998_244_353)  # odd multipliers of the two word hashes (mod 2**32)


class Tables(NamedTuple):
  """Everything `translate` needs for context-aware, whole-word translation (a pytree).

  Attributes:
    table: int32[V, P], each token's reading inside a word (`build_table`), -1 padded.
    start_table: int32[V, P], each token's reading as the start of a word.
    breaks: bool[V], the token ends a word (whitespace or punctuation last, or special).
    leads: bool[V], the token starts a word wherever it is (leading space or punctuation).
    clean: bool[V], the token is one piece of one word (no whitespace inside or after it,
      no punctuation, some text): only runs of clean tokens are looked up as words.
    word_hash: uint32[K, 2], the two hashes of each dictionary word's token ids, sorted by
      the first hash (unique).
    word_length: int32[K], its number of tokens (>= 2).
    word_pieces: int32[K, P], its WordPiece ids, -1 padded.
  """

  table: np.ndarray
  start_table: np.ndarray
  breaks: np.ndarray
  leads: np.ndarray
  clean: np.ndarray
  word_hash: np.ndarray
  word_length: np.ndarray
  word_pieces: np.ndarray


def _is_punctuation(char: str) -> bool:
  """BERT's punctuation: ASCII punctuation (symbols included) or a Unicode P* category."""
  return char in string.punctuation or unicodedata.category(char).startswith("P")


def _is_punct_word(word: str) -> bool:
  """A BERT word that is one punctuation character (BERT splits each one off)."""
  return len(word) == 1 and _is_punctuation(word)


class _Reading(NamedTuple):
  """How one source token reads (see `_WordPiece.read`)."""

  inside: list[int]  # pieces when it follows a word character
  start: list[int]  # pieces when it starts a word
  breaks: bool
  leads: bool
  clean: bool


class _WordPiece:
  """Greedy longest-match-first WordPiece over a target vocabulary (as HF `tokenizers`)."""

  def __init__(self, target: tokenizers.Tokenizer):
    model = target.model
    if not isinstance(model, tokenizers.models.WordPiece):
      raise ValueError(f"target must be a WordPiece tokenizer, got {type(model).__name__}")
    self.vocab = target.get_vocab(with_added_tokens=True)
    self.prefix = model.continuing_subword_prefix
    self.max_chars = model.max_input_chars_per_word
    self.unk_id = self._id(model.unk_token)
    self.sep_id = self._id("[SEP]")
    self.normalizer, self.pre_tokenizer = target.normalizer, target.pre_tokenizer
    self.added = set(target.get_added_tokens_decoder().values())

  def _id(self, token: str) -> int:
    if token not in self.vocab:
      raise ValueError(f"target vocabulary has no {token!r}")
    return self.vocab[token]

  def pieces(self, word: str, continuation: bool) -> list[int]:
    """Greedy pieces of `word`; `continuation` makes the first piece a `##` piece too."""
    if len(word) > self.max_chars:
      return [self.unk_id]
    ids, start = [], 0
    while start < len(word):
      for end in range(len(word), start, -1):
        piece = word[start:end]
        piece = self.prefix + piece if start > 0 or continuation else piece
        if piece in self.vocab:
          ids.append(self.vocab[piece])
          start = end
          break
      else:  # no piece matches: WordPiece's whole-word [UNK]
        return [self.unk_id]
    return ids

  def words(self, text: str) -> tuple[str, list[tuple[str, int]]]:
    """(normalized text, its BERT words with their start offsets)."""
    norm = self.normalizer.normalize_str(text) if self.normalizer is not None else text
    if self.pre_tokenizer is None:
      return norm, [(w, 0) for w in norm.split()[:1]]
    return norm, [(w, offsets[0]) for w, offsets in self.pre_tokenizer.pre_tokenize_str(norm)]

  def read(self, text: str) -> _Reading:
    """The readings of one token's text, and how it joins its neighbours."""
    norm, words = self.words(text)
    if not words:  # whitespace breaks; text the normalizer deletes is transparent
      space = text.strip() == ""
      return _Reading([], [], breaks=space, leads=space, clean=False)
    (first, begin), (last, _) = words[0], words[-1]
    leads = begin > 0 or text[:1].isspace() or _is_punct_word(first)
    rest = [i for w, _ in words[1:] for i in self.pieces(w, False)]
    start = self.pieces(first, False) + rest
    inside = start if leads else self.pieces(first, True) + rest
    clean = len(words) == 1 and not _is_punct_word(first) and not norm[-1].isspace()
    return _Reading(inside, start, norm[-1].isspace() or _is_punct_word(last), leads, clean)


def _special_ids(source: Tokenizer) -> set[int]:
  """Ids of the source's special added tokens (markers, pad, BOS/EOS)."""
  decoder = source.backend.get_added_tokens_decoder()
  return {i for i, token in decoder.items() if token.special}


def _pad(rows: list[list[int]], width: int) -> np.ndarray:
  """Rows cut to `width` and padded with -1."""
  out = np.full((len(rows), width), -1, np.int32)
  for i, row in enumerate(rows):
    row = row[:width]
    out[i, :len(row)] = row
  return out


def _readings(source: Tokenizer, wordpiece: _WordPiece) -> list[_Reading]:
  """The reading of every source id."""
  texts = source.backend.decode_batch([[i] for i in range(source.vocab_size)],
                                      skip_special_tokens=False)
  specials = _special_ids(source)
  out = []
  for i, text in enumerate(texts):
    if i in specials:
      sep = [] if i == source.pad_id else [wordpiece.sep_id]
      out.append(_Reading(sep, sep, breaks=True, leads=True, clean=False))
    else:
      out.append(wordpiece.read(text))
  return out


def _word_hashes(ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
  """uint32[K, 2] hashes sum_k (id_k + 1) * base**k mod 2**32 of -1 padded id rows."""
  k = np.arange(ids.shape[1], dtype=np.uint64)
  out = []
  for base in _BASES:
    powers = np.array([pow(base, int(j), 2**32) for j in k], np.uint64)
    terms = (ids.astype(np.uint64) + 1) * powers % 2**32
    terms = np.where(k[None, :] < lengths[:, None], terms, 0)
    out.append(terms.sum(1) % 2**32)
  return np.stack(out, 1).astype(np.uint32)


def _dictionary(source: Tokenizer, wordpiece: _WordPiece, readings: list[_Reading],
                words: Iterable[str], vocab_words: bool, max_pieces: int):
  """(hashes, lengths, pieces) of the multi-token spellings of every dictionary word."""
  candidates = []
  if vocab_words:
    candidates += [w for w in wordpiece.vocab if not w.startswith(wordpiece.prefix)
                   and w not in wordpiece.added]
  for text in words:  # BERT words of the raw text, case kept
    if wordpiece.pre_tokenizer is None:
      candidates += text.split()
    else:
      candidates += [w for w, _ in wordpiece.pre_tokenizer.pre_tokenize_str(text)]
  spellings = {s for w in dict.fromkeys(candidates)
               if w and not any(c.isspace() or _is_punctuation(c) for c in w)
               for s in (w, w.lower(), w.capitalize(), w.upper())}
  spellings = sorted(spellings)
  encodings = source.encode_batch([*spellings, *(" " + s for s in spellings)])
  keys, pieces = {}, {}
  for word, ids in zip(spellings * 2, encodings):
    while ids and readings[ids[0]].leads and not readings[ids[0]].clean:
      ids = ids[1:]  # the space before the word is its own token
    if len(ids) < 2 or not all(readings[i].clean for i in ids):
      continue
    if word not in pieces:
      normalized = wordpiece.words(word)[1]
      pieces[word] = wordpiece.pieces(normalized[0][0], False) if len(normalized) == 1 else None
    if pieces[word] is not None:
      keys[tuple(ids)] = pieces[word]
  if not keys:
    return np.zeros((0, 2), np.uint32), np.zeros(0, np.int32), np.zeros((0, max_pieces), np.int32)
  width = max(map(len, keys), default=2)
  ids = np.full((len(keys), width), -1, np.int64)
  for i, key in enumerate(keys):
    ids[i, :len(key)] = key
  lengths = np.array([len(key) for key in keys], np.int32)
  hashes = _word_hashes(ids, lengths)
  order = np.argsort(hashes[:, 0], kind="stable")
  order = order[np.r_[True, np.diff(hashes[order, 0].astype(np.int64)) != 0]]  # unique
  return hashes[order], lengths[order], _pad(list(keys.values()), max_pieces)[order]


def build_table(source: Tokenizer, target: tokenizers.Tokenizer, *,
                max_pieces: int = 4) -> np.ndarray:
  """The context-free table: the WordPiece ids of every source token, read inside a word.

  A token with a leading space (or starting with punctuation) reads as a word start, one
  starting with a word character as a continuation (`##` pieces); `build_tables` adds the
  context that reads the first word of a row, a message or a line as a word start, and
  whole words.

  Args:
    source: The policy's tokenizer (byte-level BPE: a token's decoded text keeps its space).
    target: A BERT-style WordPiece `tokenizers.Tokenizer` (e.g. MiniLM's `tokenizer.json`).
    max_pieces: Pieces kept per source token; longer readings keep their first pieces.

  Returns:
    int32[source.vocab_size, max_pieces], row i the target ids of source token i, padded
    with -1: nothing for the pad id and whitespace, `[SEP]` for other special tokens.
  """
  if max_pieces < 1:
    raise ValueError(f"max_pieces must be >= 1, got {max_pieces}")
  return _pad([r.inside for r in _readings(source, _WordPiece(target))], max_pieces)


def build_tables(source: Tokenizer, target: tokenizers.Tokenizer, *, max_pieces: int = 4,
                 words: Iterable[str] = (), vocab_words: bool = True) -> Tables:
  """`build_table` plus word-start readings and a whole-word dictionary (module docstring).

  Args:
    source: The policy's tokenizer, as for `build_table`.
    target: The WordPiece tokenizer, as for `build_table`.
    max_pieces: Pieces kept per source token and per dictionary word.
    words: Texts whose words join the dictionary (e.g. the environment's corpus); words
      WordPiece splits keep their pieces, cut to `max_pieces`.
    vocab_words: Add every whole word of the target vocabulary (a few seconds for MiniLM).

  Returns:
    The `Tables` pytree (numpy arrays), for `translate`.
  """
  if max_pieces < 1:
    raise ValueError(f"max_pieces must be >= 1, got {max_pieces}")
  wordpiece = _WordPiece(target)
  readings = _readings(source, wordpiece)
  flags = {name: np.array([getattr(r, name) for r in readings], bool)
           for name in ("breaks", "leads", "clean")}
  word_hash, word_length, word_pieces = _dictionary(source, wordpiece, readings, words,
                                                    vocab_words, max_pieces)
  return Tables(_pad([r.inside for r in readings], max_pieces),
                _pad([r.start for r in readings], max_pieces), **flags,
                word_hash=word_hash, word_length=word_length, word_pieces=word_pieces)


def _powers(base: int, n: int) -> np.ndarray:
  return np.array([pow(base, j, 2**32) for j in range(n)], np.uint32)


def _with_context(ids: Array, mask: Array, tables: Tables) -> Array:
  """Pieces [N, L, P] of every token, word starts and dictionary words resolved."""
  n, l = ids.shape
  position = jnp.broadcast_to(jnp.arange(l), (n, l))
  last_real = jax.lax.cummax(jnp.where(mask, position, -1), axis=1)
  prev_real = jnp.concatenate([jnp.full((n, 1), -1, last_real.dtype), last_real[:, :-1]], 1)
  prev_ids = jnp.take_along_axis(ids, jnp.maximum(prev_real, 0), axis=1)
  at_start = (prev_real < 0) | jnp.asarray(tables.breaks)[prev_ids]
  pieces = jnp.where(at_start[..., None], jnp.asarray(tables.start_table)[ids],
                     jnp.asarray(tables.table)[ids])
  num_words = tables.word_length.shape[0]
  if num_words == 0:
    return pieces
  # Words: runs of real tokens from a word start; segment = row * L + start position.
  new_word = mask & (at_start | jnp.asarray(tables.leads)[ids])
  word_start = jax.lax.cummax(jnp.where(new_word, position, -1), axis=1)
  rank = jnp.cumsum(mask, axis=1) - 1  # index among the row's real tokens
  offset = rank - jnp.take_along_axis(rank, jnp.maximum(word_start, 0), axis=1)
  segment = jnp.where(mask, jnp.arange(n)[:, None] * l + word_start, n * l).reshape(-1)
  sums = lambda x: jax.ops.segment_sum(x.reshape(-1), segment, num_segments=n * l + 1)
  code = (ids + 1).astype(jnp.uint32)
  offset = jnp.clip(offset, 0, l - 1)
  hashes = [sums(jnp.where(mask, code * jnp.asarray(_powers(b, l))[offset], 0))
            for b in _BASES]
  length = sums(mask.astype(jnp.int32))
  dirty = sums((mask & ~jnp.asarray(tables.clean)[ids]).astype(jnp.int32))
  word_hash = jnp.asarray(tables.word_hash)
  entry = jnp.clip(jnp.searchsorted(word_hash[:, 0], hashes[0]), 0, num_words - 1)
  found = ((word_hash[entry, 0] == hashes[0]) & (word_hash[entry, 1] == hashes[1])
           & (jnp.asarray(tables.word_length)[entry] == length) & (dirty == 0))
  token_found = found[segment].reshape(n, l)
  token_entry = entry[segment].reshape(n, l)
  word_pieces = jnp.asarray(tables.word_pieces)[token_entry]
  word_pieces = jnp.where((offset == 0)[..., None], word_pieces, -1)
  return jnp.where(token_found[..., None], word_pieces, pieces)


def translate(tokens: Array, mask: Array, table: Array | Tables, *, length: int,
              cls_id: int, sep_id: int, keep: str = "last") -> tuple[Array, Array]:
  """Translates token rows through `table` into packed `[CLS] pieces... [SEP]` rows.

  Jittable with `length`, `cls_id`, `sep_id` and `keep` static; no loop over rows or
  positions (cumsums rank the kept pieces, a scatter packs them).

  Args:
    tokens: int[N, L] source ids, any padding (masked entries may hold any value).
    mask: bool[N, L], True on real tokens (left, right or interior padding).
    table: int[V, P] from `build_table` (each token read on its own), or `Tables` from
      `build_tables` (word starts from context, whole words from the dictionary).
    length: Output length T >= 2.
    cls_id: Target `[CLS]` id, always first.
    sep_id: Target `[SEP]` id, always right after the last kept piece.
    keep: When there are more than T - 2 pieces: "last" keeps the last ones (states: the
      latest context matters), "first" the first ones (utterances).

  Returns:
    (ids int32[N, T], mask bool[N, T]): left-aligned, 0 / False after the `[SEP]`.
  """
  tables = table if isinstance(table, Tables) else None
  table = jnp.asarray(tables.table if tables is not None else table)
  chex.assert_rank([tokens, mask, table], [2, 2, 2])
  chex.assert_equal_shape([tokens, mask])
  chex.assert_type([tokens, table], [int, int])
  if length < 2:
    raise ValueError(f"length must be >= 2 for [CLS] and [SEP], got {length}")
  if keep not in _KEEP:
    raise ValueError(f"keep must be one of {_KEEP}, got {keep!r}")
  n, _ = tokens.shape
  mask = jnp.asarray(mask, bool)
  ids = jnp.clip(jnp.asarray(tokens), 0, table.shape[0] - 1).astype(jnp.int32)
  if tables is not None:
    pieces = _with_context(ids, mask, tables)
  else:
    pieces = table.astype(jnp.int32)[ids]  # [N, L, P]
  valid = (mask[..., None] & (pieces >= 0)).reshape(n, -1)
  pieces = pieces.reshape(n, -1)
  rank = jnp.cumsum(valid, axis=1, dtype=jnp.int32) - 1  # index among the row's pieces
  count = jnp.sum(valid, axis=1, dtype=jnp.int32)
  capacity = length - 2
  kept = jnp.minimum(count, capacity)
  first = jnp.maximum(count - capacity, 0) if keep == "last" else jnp.zeros_like(count)
  slot = rank - first[:, None] + 1  # output position, after [CLS]
  slot = jnp.where(valid & (slot >= 1) & (slot <= kept[:, None]), slot, length)
  rows = jnp.arange(n)[:, None]
  out = jnp.zeros((n, length), jnp.int32).at[rows, slot].set(pieces, mode="drop")
  out = out.at[:, 0].set(cls_id).at[jnp.arange(n), kept + 1].set(sep_id)
  out_mask = jnp.arange(length)[None, :] < (kept + 2)[:, None]
  return out, out_mask
