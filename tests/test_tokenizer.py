"""Tests for agentrl.tokenizer: byte-level BPE training, round trips and chat encoding."""

from __future__ import annotations

import functools
import itertools
import re

import numpy as np
import pytest
import tokenizers
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import decoders, models, pre_tokenizers, trainers

from agentrl import tokenizer as tk

VOCAB_SIZE = 400

CONVERSATION = [
    {"role": "system", "content": "You are playing twenty questions."},
    {"role": "user", "content": "I am thinking of something. Ask a question."},
    {"role": "assistant", "content": "Is it an animal?"},
    {"role": "user", "content": "Yes."},
    {"role": "assistant", "content": "Does it live in the water?"},
    {"role": "user", "content": "No. 🐘"},
    {"role": "assistant", "content": "Is it an elephant?"},
    {"role": "user", "content": "Yes! You win."},
]


def _corpus() -> list[str]:
  """A few hundred twenty-questions style lines."""
  things = ["animal", "plant", "tool", "vehicle", "fruit", "bird", "fish", "machine",
            "building", "instrument"]
  questions = ["Is it an {}?", "Is it a kind of {}?", "Does it look like a {}?",
               "Can you eat the {}?", "Is the {} bigger than a car?"]
  answers = ["Yes.", "No.", "Maybe.", "I don't know.", "Yes, it is.", "No, it is not."]
  lines = [q.format(t) for q, t in itertools.product(questions, things)]
  lines += [f"{a} Ask again." for a in answers] * 10
  lines += [f"Question {i}: is it a {t}? Answer: {a}"
            for i, (t, a) in enumerate(itertools.product(things, answers))]
  return lines


@functools.lru_cache(maxsize=None)
def _trained() -> tk.Tokenizer:
  return tk.Tokenizer.train_bpe(_corpus(), VOCAB_SIZE)


@pytest.fixture(name="tok")
def _tok_fixture() -> tk.Tokenizer:
  return _trained()


def _raw_bpe(special_tokens: list[str]) -> tokenizers.Tokenizer:
  """A tiny byte-level BPE built directly with the tokenizers library."""
  raw = tokenizers.Tokenizer(models.BPE())
  raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  raw.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=special_tokens,
                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                show_progress=False)
  raw.train_from_iterator(_corpus(), trainer=trainer)
  return raw


def _render(template: tk.ChatTemplate, messages) -> str:
  return "".join(template.prefix(m["role"]) + m["content"] + template.end_of_turn
                 + template.separator for m in messages)


# -- training and plain text ----------------------------------------------------------------


def test_special_tokens_have_documented_ids(tok):
  for expected_id, token in enumerate(tk.SPECIAL_TOKENS):
    assert tok.token_to_id(token) == expected_id
    assert tok.encode(token) == [expected_id]
  assert (tok.pad_id, tok.eos_id, tok.end_of_turn_id) == (0, 2, 6)
  assert tok.chat_template == tk.ChatTemplate.default()


def test_vocab_size_and_learned_merges(tok):
  assert 256 + len(tk.SPECIAL_TOKENS) < tok.vocab_size <= VOCAB_SIZE
  text = "Is it an animal?"
  assert len(tok.encode(text)) < len(text.encode("utf-8"))


def test_extra_special_tokens():
  tok = tk.Tokenizer.train_bpe(_corpus(), 300, extra_special_tokens=("<|tool|>",))
  assert tok.token_to_id("<|tool|>") == len(tk.SPECIAL_TOKENS)
  assert tok.encode("x<|tool|>y") == [*tok.encode("x"), 7, *tok.encode("y")]


def test_vocab_size_too_small_raises():
  with pytest.raises(ValueError, match="vocab_size"):
    tk.Tokenizer.train_bpe(_corpus(), 100)


@pytest.mark.parametrize("text", [
    "", " ", "  leading and trailing  ", "tabs\tand\nnewlines\r\n",
    "日本語のテキスト", "emoji 🙂👍🏽 and family 👨‍👩‍👧", "\x00\x01\x7f\x80\xff",
    "\ufffd\U0010ffff\ud7ff", "Is it an animal? Yes.", "ünïcödé façade — ok",
])
def test_round_trip_examples(tok, text):
  ids = tok.encode(text)
  assert all(0 <= i < tok.vocab_size for i in ids)
  assert tok.decode(ids) == text
  assert tok.decode(np.asarray(ids, np.int32)) == text


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=200))
def test_round_trip_arbitrary_text(text):
  tok = _trained()
  assert tok.decode(tok.encode(text), skip_special_tokens=False) == text


def test_batch_matches_single(tok):
  texts = ["Is it a fish?", "", "No. 🐟", "Yes."]
  batch = tok.encode_batch(texts)
  assert batch == [tok.encode(t) for t in texts]
  assert tok.decode_batch(batch) == texts


def test_decode_skips_special_tokens(tok):
  ids = [tok.token_to_id("<|user|>"), *tok.encode("Yes."), tok.end_of_turn_id]
  assert tok.decode(ids) == "Yes."
  assert tok.decode(ids, skip_special_tokens=False) == "<|user|>Yes.<|end|>"


def test_decode_utterance_cuts_at_end_of_turn(tok):
  ids = [*tok.encode("Is it a bird?"), tok.end_of_turn_id, *tok.encode("garbage")]
  assert tok.decode_utterance(ids) == "Is it a bird?"
  assert tok.decode_utterance(np.asarray(ids[:3])) == tok.decode(ids[:3])
  assert tok.decode_utterance([tok.end_of_turn_id]) == ""


@pytest.mark.parametrize("target", ["dir", "nested/custom.json"])
def test_save_load_round_trip(tok, tmp_path, target):
  path = tok.save(tmp_path / target)
  assert path.is_file()
  loaded = tk.Tokenizer.from_file(tmp_path / target if target == "dir" else path)
  assert loaded.chat_template == tok.chat_template
  assert loaded.vocab_size == tok.vocab_size
  assert loaded.backend.get_vocab() == tok.backend.get_vocab()
  texts = [*_corpus()[:20], "emoji 🙂", "\x00odd\x7f", "<|user|>hi<|end|>"]
  assert loaded.encode_batch(texts) == tok.encode_batch(texts)
  np.testing.assert_array_equal(loaded.encode_chat(CONVERSATION).tokens,
                                tok.encode_chat(CONVERSATION).tokens)


# -- chat encoding --------------------------------------------------------------------------


def _expected(tok: tk.Tokenizer, messages, add_generation_prompt=False):
  """Per-token metadata built by hand from per-segment encodings."""
  tokens, roles, turn_index, action, turn_end = [], [], [], [], []
  turn = 0
  template = tok.chat_template
  for m in messages:
    prefix = tok.encode(template.prefix(m["role"]))
    content = tok.encode(m["content"])
    separator = tok.encode(template.separator)
    is_assistant = m["role"] == "assistant"
    n = len(prefix) + len(content) + 1 + len(separator)
    tokens += [*prefix, *content, tok.end_of_turn_id, *separator]
    roles += [tk.ROLES[m["role"]]] * n
    turn_index += [turn if is_assistant else -1] * n
    action += ([False] * len(prefix) + [is_assistant] * (len(content) + 1)
               + [False] * len(separator))
    turn_end += ([False] * (len(prefix) + len(content)) + [is_assistant]
                 + [False] * len(separator))
    turn += is_assistant
  if add_generation_prompt:
    prefix = tok.encode(template.assistant_prefix)
    tokens += prefix
    roles += [tk.ROLE_ASSISTANT] * len(prefix)
    turn_index += [turn] * len(prefix)
    action += [False] * len(prefix)
    turn_end += [False] * len(prefix)
  return tk.ChatEncoding(tokens, roles, turn_index, action, turn_end)


def _assert_encodings_equal(actual: tk.ChatEncoding, expected: tk.ChatEncoding):
  for field in ("tokens", "roles", "turn_index", "action_mask", "turn_end"):
    a, e = getattr(actual, field), getattr(expected, field)
    assert a.dtype == e.dtype, field
    np.testing.assert_array_equal(a, e, err_msg=field)


def test_encode_chat_three_turns(tok):
  enc = tok.encode_chat(CONVERSATION)
  _assert_encodings_equal(enc, _expected(tok, CONVERSATION))
  assert enc.tokens.dtype == np.int32 and enc.action_mask.dtype == np.bool_
  assert enc.num_turns == 3
  assert tok.decode(enc.tokens, skip_special_tokens=False) == _render(
      tok.chat_template, CONVERSATION)
  # Action tokens are exactly each assistant utterance followed by the end of turn.
  for turn, message in enumerate(m for m in CONVERSATION if m["role"] == "assistant"):
    ids = enc.tokens[enc.action_mask & (enc.turn_index == turn)]
    assert ids.tolist() == [*tok.encode(message["content"]), tok.end_of_turn_id]
    assert tok.decode_utterance(ids) == message["content"]
  assert np.all(enc.tokens[enc.turn_end] == tok.end_of_turn_id)
  assert enc.turn_end.sum() == 3
  assert not np.any(enc.action_mask & (enc.roles != tk.ROLE_ASSISTANT))


def test_concatenation_stability(tok):
  whole = tok.encode_chat(CONVERSATION, add_generation_prompt=True)
  incremental: list[int] = []
  for m in CONVERSATION:
    incremental += tok.encode_turn(m["role"], m["content"]).tokens.tolist()
  incremental += tok.generation_prefix()
  assert whole.tokens.tolist() == incremental
  pieces = [tok.encode_turn(m["role"], m["content"]) for m in CONVERSATION]
  gen = tok.encode_chat([], add_generation_prompt=True)
  _assert_encodings_equal(whole, tk.ChatEncoding.concatenate([*pieces, gen]))
  # Any split point of the conversation gives the same ids.
  for k in range(len(CONVERSATION) + 1):
    head = tok.encode_chat(CONVERSATION[:k])
    tail = tok.encode_chat(CONVERSATION[k:], add_generation_prompt=True)
    _assert_encodings_equal(whole, tk.ChatEncoding.concatenate([head, tail]))


def _simulated_rollout(tok: tk.Tokenizer, messages) -> list[int]:
  """Builds ids the way a sampler does: prompt, sampled utterance, separator, observation."""
  ids: list[int] = []
  for m in messages:
    if m["role"] == "assistant":
      sampled = [*tok.encode(m["content"]), tok.end_of_turn_id]
      ids += [*tok.generation_prefix(), *sampled, *tok.turn_separator()]
    else:
      ids += tok.encode_turn(m["role"], m["content"]).tokens.tolist()
  return ids


def test_simulated_rollout_matches_reencoding(tok):
  assert tok.turn_separator() == []
  assert _simulated_rollout(tok, CONVERSATION) == tok.encode_chat(CONVERSATION).tokens.tolist()


def test_single_assistant_turn(tok):
  messages = [{"role": "user", "content": "Ask."}, {"role": "assistant", "content": "Yes."}]
  enc = tok.encode_chat(messages)
  _assert_encodings_equal(enc, _expected(tok, messages))
  assert enc.num_turns == 1
  assert enc.action_mask.sum() == len(tok.encode("Yes.")) + 1
  assert enc.turn_end[-1] and enc.action_mask[-1]


def test_generation_prompt_after_user_turn(tok):
  messages = CONVERSATION[:4]
  enc = tok.encode_chat(messages, add_generation_prompt=True)
  _assert_encodings_equal(enc, _expected(tok, messages, add_generation_prompt=True))
  prefix = tok.generation_prefix()
  assert prefix == [tok.token_to_id("<|assistant|>")]
  assert enc.tokens[-len(prefix):].tolist() == prefix
  assert not enc.action_mask[-len(prefix):].any()
  assert np.all(enc.turn_index[-len(prefix):] == 1)
  assert np.all(enc.roles[-len(prefix):] == tk.ROLE_ASSISTANT)


def test_empty_conversation_and_empty_content(tok):
  assert len(tok.encode_chat([])) == 0
  assert tok.encode_chat([], add_generation_prompt=True).tokens.tolist() == (
      tok.generation_prefix())
  enc = tok.encode_turn("assistant", "")
  assert enc.tokens.tolist() == [*tok.generation_prefix(), tok.end_of_turn_id]
  assert enc.action_mask.tolist() == [False, True]
  assert enc.turn_end.tolist() == [False, True]


def test_chat_encoding_rejects_ragged_arrays():
  with pytest.raises(ValueError, match="one length"):
    tk.ChatEncoding([1, 2], [0, 0], [-1], [False, False], [False, False])


# -- ChatML vocabularies --------------------------------------------------------------------


def test_from_file_picks_chatml(tmp_path):
  raw = _raw_bpe(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
  raw.save(str(tmp_path / "tokenizer.json"))
  tok = tk.Tokenizer.from_file(tmp_path)
  assert tok.chat_template == tk.ChatTemplate.chatml()
  start, end = tok.token_to_id("<|im_start|>"), tok.token_to_id("<|im_end|>")
  assert tok.encode("<|im_start|>") == [start] and tok.encode("<|im_end|>") == [end]
  assert tok.end_of_turn_id == end
  assert tok.eos_id == tok.pad_id == tok.token_to_id("<|endoftext|>")
  assert tok.generation_prefix() == [start, *tok.encode("assistant\n")]
  enc = tok.encode_chat(CONVERSATION[1:3])
  _assert_encodings_equal(enc, _expected(tok, CONVERSATION[1:3]))
  assert tok.decode(enc.tokens, skip_special_tokens=False) == _render(
      tok.chat_template, CONVERSATION[1:3])
  # The newline after <|im_end|> is written by the template, not by the policy.
  newline = tok.encode("\n")
  assert enc.tokens[-len(newline):].tolist() == newline
  assert not enc.action_mask[-len(newline):].any()
  assert enc.turn_end[-len(newline) - 1]
  assert tok.turn_separator() == newline
  assert _simulated_rollout(tok, CONVERSATION) == tok.encode_chat(CONVERSATION).tokens.tolist()


# -- errors ---------------------------------------------------------------------------------


def test_unknown_role_raises(tok):
  with pytest.raises(ValueError, match="narrator"):
    tok.encode_chat([{"role": "narrator", "content": "Once upon a time."}])
  with pytest.raises(ValueError, match="narrator"):
    tok.encode_turn("narrator", "hi")


def test_missing_token_raises(tok):
  with pytest.raises(KeyError, match=re.escape("<|nope|>")):
    tok.token_to_id("<|nope|>")


def test_missing_template_marker_raises(tmp_path):
  raw = _raw_bpe([t for t in tk.SPECIAL_TOKENS if t != "<|end|>"])
  raw.save(str(tmp_path / "tokenizer.json"))
  with pytest.raises(ValueError, match=re.escape("'<|end|>'")):
    tk.Tokenizer.from_file(tmp_path / "tokenizer.json")


def test_explicit_template_must_match_vocab(tok):
  with pytest.raises(ValueError, match=re.escape("<|im_start|>")):
    tk.Tokenizer(tok.backend, tk.ChatTemplate.chatml())


def test_from_file_missing_file(tmp_path):
  with pytest.raises(FileNotFoundError):
    tk.Tokenizer.from_file(tmp_path)
