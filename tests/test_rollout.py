"""The rollout loop: text <-> tokens, turn bookkeeping, returns, log-probs, two roles, limits."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tokenizers

from agentrl import encoding, envs, rollout, sampling
from agentrl.models import decoder
from agentrl.tokenizer import Tokenizer
from tests import toy_envs

CORPUS = ["Guess my number between 1 and 8.", "Your first guess?", "higher", "lower",
          "Correct!", "I guess 4", "take 1", "take 2", "There are 5 stones. Your move.",
          "You are player 0. Take 1 or 2 stones; whoever takes the last stone wins.",
          "Secret 123. Invalid action: no number in the guess. Answer with a number."] * 3


@functools.lru_cache(maxsize=None)
def tokenizer(template="default"):
  if template == "default":
    return Tokenizer.train_bpe(CORPUS, vocab_size=300)
  # A ChatML vocabulary: the template writes a newline after every <|im_end|>.
  raw = tokenizers.Tokenizer(tokenizers.models.BPE())
  raw.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
  raw.decoder = tokenizers.decoders.ByteLevel()
  raw.train_from_iterator(CORPUS, trainer=tokenizers.trainers.BpeTrainer(
      vocab_size=320, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
      initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
  tok = Tokenizer(raw)
  assert tok.turn_separator()
  return tok


@functools.lru_cache(maxsize=None)
def lm(max_new_tokens=6, temperature=1.0, template="default"):
  tok = tokenizer(template)
  config = decoder.DecoderConfig.llama(vocab_size=tok.vocab_size, hidden_size=32, num_layers=2,
                                       num_heads=4, num_kv_heads=2, mlp_dim=64)
  params = decoder.init_params(config, jax.random.PRNGKey(1))
  cfg = sampling.SamplingConfig(max_new_tokens=max_new_tokens, temperature=temperature,
                                stop_token=tok.end_of_turn_id, pad_token=tok.pad_id)
  return rollout.LMPolicy(params, config, cfg)


def check_turn_structure(result, tok):
  """Action tokens decode to exactly what the env received, turn by turn."""
  batch = result.batch.validate()
  for b, episode in enumerate(result.episodes):
    actions = np.asarray(batch.action_mask[b])
    turn = np.asarray(batch.turn_index[b])
    assert ((turn >= 0) == actions).all()  # Every action token maps to a turn, nothing else.
    assert np.asarray(batch.turn_end[b]).sum() == episode.num_turns
    assert (np.asarray(batch.turn_end[b]) <= actions).all()
    assert np.asarray(batch.turn_mask[b]).sum() == episode.num_turns
    for k, text in enumerate(episode.actions):
      ids = np.asarray(batch.tokens[b])[turn == k]
      assert tok.decode_utterance(ids) == text
      last = np.flatnonzero(turn == k)[-1]
      assert batch.turn_end[b, last]
    np.testing.assert_allclose(np.asarray(batch.rewards[b, :episode.num_turns]), episode.rewards)
    assert bool(np.asarray(batch.dones[b]).any()) == episode.done
    n = int(np.asarray(batch.attention_mask[b]).sum())
    assert np.asarray(batch.attention_mask[b, :n]).all()  # Right padding.
    np.testing.assert_array_equal(batch.positions[b, :n], np.arange(n))


@pytest.mark.parametrize("template", ["default", "chatml"])
def test_scripted_policy_in_rollout_matches_direct_play(template):
  tok = tokenizer(template)
  env = lambda: toy_envs.GuessNumber()  # noqa: E731
  seeds = list(range(12))
  for policy in (toy_envs.bisect_policy, toy_envs.random_policy):
    result = rollout.rollout(policy, env, seeds, tokenizer=tok, max_tokens=256, rng=5)
    direct = [envs.play(toy_envs.GuessNumber(), policy, s, rng=np.random.default_rng(5))[0]
              for s in seeds]
    if policy is toy_envs.bisect_policy:  # Deterministic: identical episodes.
      assert [e.rewards for e in result.episodes] == [d.rewards for d in direct]
      assert [e.messages for e in result.episodes] == [d.messages for d in direct]
      assert all(e.success for e in result.episodes)
    check_turn_structure(result, tok)
    # The same episodes, re-encoded from text, give the same batch.
    again = encoding.encode_episodes(tok, result.episodes, max_tokens=256, max_turns=6)
    bare = rollout.rollout(policy, env, seeds, tokenizer=tok, max_tokens=256, rng=5,
                           system_prompt=False)
    bare_again = encoding.encode_episodes(tok, bare.episodes, max_tokens=256, max_turns=6,
                                         system_prompt=False)
    np.testing.assert_array_equal(bare.batch.tokens, bare_again.tokens)
    assert (np.asarray(bare.batch.attention_mask).sum()
            < np.asarray(result.batch.attention_mask).sum())
    for name in ("tokens", "action_mask", "turn_index", "turn_end", "rewards", "turn_mask",
                 "dones", "attention_mask", "positions"):
      np.testing.assert_array_equal(getattr(again, name), getattr(result.batch, name), name)


@pytest.mark.parametrize("template", ["default", "chatml"])
def test_lm_rollout_turns_rewards_and_logprobs(template):
  tok, policy = tokenizer(template), lm(template=template)
  result = rollout.rollout(policy, lambda: toy_envs.GuessNumber(), [0, 1, 2], group_size=2,
                           tokenizer=tok, max_tokens=192, rng=jax.random.PRNGKey(0))
  batch = result.batch
  assert batch.tokens.shape == (6, 192) and batch.rewards.shape == (6, 6)
  np.testing.assert_array_equal(batch.group_id, [0, 0, 1, 1, 2, 2])
  check_turn_structure(result, tok)
  assert result.stats["policy_tokens"] == np.asarray(batch.action_mask).sum()
  # An untrained policy mostly writes garbage, which the env answers as invalid.
  assert result.stats["invalid_action_rate"] > 0
  # Behaviour log-probs equal a teacher-forced forward pass over the compact rows.
  logits = decoder.Decoder(policy.config).apply(
      {"params": policy.params}, jnp.asarray(batch.tokens), jnp.asarray(batch.positions),
      jnp.asarray(batch.attention_mask)).logits
  logp = jax.nn.log_softmax(logits[:, :-1], axis=-1)
  ref = jnp.take_along_axis(logp, jnp.asarray(batch.tokens)[:, 1:, None], axis=-1)[..., 0]
  mask = np.asarray(batch.action_mask)[:, 1:]
  np.testing.assert_allclose(np.where(mask, ref, 0), np.asarray(batch.behaviour_logprobs)[:, 1:],
                             atol=2e-5)


def test_budget_hit_utterance_is_closed_as_context():
  tok, policy = tokenizer(), lm(max_new_tokens=1)
  result = rollout.rollout(policy, lambda: toy_envs.GuessNumber(max_turns=2), [3], tokenizer=tok,
                           max_tokens=128, rng=jax.random.PRNGKey(2))
  batch = result.batch
  tokens, actions = np.asarray(batch.tokens[0]), np.asarray(batch.action_mask[0])
  for k in range(result.episodes[0].num_turns):
    (pos,) = np.flatnonzero(np.asarray(batch.turn_index[0]) == k)  # One token per turn.
    if tokens[pos] != tok.end_of_turn_id:  # Closed by a non-action end-of-turn.
      assert tokens[pos + 1] == tok.end_of_turn_id and not actions[pos + 1]
  check_turn_structure(result, tok)


def test_two_roles_get_separate_rows_with_private_observations():
  tok = tokenizer()
  result = rollout.rollout(toy_envs.nim_policy, lambda: toy_envs.Nim(), [0, 1, 2, 3],
                           tokenizer=tok, max_tokens=256)
  batch = result.batch
  assert batch.tokens.shape[0] == 8
  for b, episode in enumerate(result.episodes):
    assert episode.role == b % 2
    assert (np.asarray(batch.role[b]) == episode.role).all()
    text = tok.decode(np.asarray(batch.tokens[b])[np.asarray(batch.attention_mask[b])])
    env = toy_envs.Nim()
    env.reset(episode.seed)
    assert f"Secret {env.secrets[episode.role]}" in text
    assert f"Secret {env.secrets[1 - episode.role]}" not in text
  # Zero-sum: the two rows of an episode have opposite returns, and they match direct play.
  returns = np.array([e.episode_return for e in result.episodes]).reshape(4, 2)
  np.testing.assert_array_equal(returns.sum(1), 0)
  direct = [[e.episode_return for e in envs.play(toy_envs.Nim(), toy_envs.nim_policy, s)]
            for s in range(4)]
  np.testing.assert_array_equal(returns, direct)
  check_turn_structure(result, tok)


def test_context_limit_cuts_rows_without_terminal():
  tok = tokenizer()
  long = rollout.rollout(toy_envs.random_policy, lambda: toy_envs.GuessNumber(), range(6),
                         tokenizer=tok, max_tokens=256, rng=1)
  short = rollout.rollout(toy_envs.random_policy, lambda: toy_envs.GuessNumber(), range(6),
                          tokenizer=tok, max_tokens=40, rng=1)
  assert short.stats["context_truncated"] > 0
  for e_long, e_short in zip(long.episodes, short.episodes):
    if e_short.num_turns < e_long.num_turns:
      assert not e_short.done
  check_turn_structure(short, tok)
  # Nothing cut: the scored return is the return. Cut rows are completed with -1 (the
  # game's turn_reward) for each of the 6 turns they had left.
  assert long.stats["context_truncated"] == 0
  assert long.stats["scored_return"] == long.stats["mean_return"]
  cut = [not e.done and e.num_turns < 6 for e in short.episodes]
  assert sum(cut) == short.stats["context_truncated"]
  by_hand = [e.episode_return - (6 - e.num_turns) * c for e, c in zip(short.episodes, cut)]
  np.testing.assert_allclose(short.stats["scored_return"], np.mean(by_hand))
  assert short.stats["scored_return"] < short.stats["mean_return"]


def test_a_full_shared_cache_is_rebuilt_not_cut():
  # The shared KV cache also spends slots on each turn's padding. A small one fills after a
  # few turns; the rows must then be re-read into an empty cache and play on exactly as with
  # a cache that never fills (greedy, so the same logits give the same tokens).
  tok, policy = tokenizer(), lm(temperature=0.0)
  play = functools.partial(rollout.rollout, policy, lambda: toy_envs.GuessNumber(), range(4),
                           tokenizer=tok, max_tokens=160, rng=jax.random.PRNGKey(3))
  roomy, tight = play(cache_tokens=2048), play(cache_tokens=200)
  assert roomy.stats["cache_refills"] == 0 and tight.stats["cache_refills"] >= 1
  assert tight.stats["context_truncated"] == roomy.stats["context_truncated"]
  assert [e.messages for e in tight.episodes] == [e.messages for e in roomy.episodes]
  np.testing.assert_array_equal(tight.batch.tokens, roomy.batch.tokens)
  np.testing.assert_allclose(tight.batch.behaviour_logprobs, roomy.batch.behaviour_logprobs,
                             atol=2e-5)
  check_turn_structure(tight, tok)
  # A cache that cannot hold even one row and a reply cuts the running rows.
  cramped = play(cache_tokens=60)
  assert cramped.stats["context_truncated"] == 4


def test_encode_episodes_cuts_long_episodes_at_turn_boundaries():
  tok = tokenizer()
  [episode] = envs.play(toy_envs.GuessNumber(), toy_envs.random_policy, 0, rng=3)
  assert episode.num_turns >= 3
  full = encoding.encode_episodes(tok, [episode], max_tokens=256, max_turns=6)
  cut = encoding.encode_episodes(tok, [episode], max_tokens=256, max_turns=2)
  assert np.asarray(cut.turn_mask).sum() == 2 and not np.asarray(cut.dones).any()
  n = int(np.asarray(cut.attention_mask).sum())
  np.testing.assert_array_equal(cut.tokens[0, :n], full.tokens[0, :n])
  assert cut.turn_end[0, n - 1]


def test_sampling_config_must_stop_at_end_of_turn():
  tok, policy = tokenizer(), lm()
  bad = rollout.LMPolicy(policy.params, policy.config,
                         sampling.SamplingConfig(max_new_tokens=4, stop_token=None,
                                                 pad_token=tok.pad_id))
  with pytest.raises(ValueError, match="stop_token"):
    rollout.rollout(bad, lambda: toy_envs.GuessNumber(), [0], tokenizer=tok, max_tokens=64)


def test_rollout_records_reference_answers():
  tok = tokenizer()
  result = rollout.rollout(toy_envs.bisect_policy, toy_envs.GuessNumber, [0, 1], tokenizer=tok,
                           max_tokens=160, group_size=2, answer_length=8)
  answers = np.asarray(result.batch.validate().answer_tokens)
  assert answers.shape == (4, 8)
  for row, episode in zip(answers, result.episodes):
    ids = row[row >= 0]
    assert ids[-1] == tok.end_of_turn_id and (row[len(ids):] == -1).all()
    assert tok.decode(ids[:-1].tolist()) == f"I guess {episode.task_id}"
  # Without answer_length the field is empty; a game has no answer; too narrow is an error.
  assert rollout.rollout(toy_envs.bisect_policy, toy_envs.GuessNumber, [0], tokenizer=tok,
                         max_tokens=160).batch.answer_tokens.shape == (1, 0)
  games = rollout.rollout(toy_envs.nim_policy, toy_envs.Nim, [0], tokenizer=tok,
                          max_tokens=160, answer_length=4).batch
  assert (np.asarray(games.answer_tokens) == -1).all() and games.answer_tokens.shape == (2, 4)
  with pytest.raises(ValueError, match="answer_length=2"):
    rollout.rollout(toy_envs.bisect_policy, toy_envs.GuessNumber, [0], tokenizer=tok,
                    max_tokens=160, answer_length=2)


def test_fixed_opponents_play_their_roles_and_leave_the_result():
  tok = tokenizer()
  take_one = lambda env, rng: "take 1"  # noqa: E731
  for seat in (0, 1):
    other = 1 - seat
    result = rollout.rollout(take_one, toy_envs.Nim, range(4), tokenizer=tok, max_tokens=256,
                             opponents={other: toy_envs.nim_policy})
    assert result.batch.tokens.shape[0] == 4 and (np.asarray(result.batch.role) == seat).all()
    direct = [envs.play(toy_envs.Nim(), [take_one, toy_envs.nim_policy][::1 if seat == 0
                                                                         else -1], s)[seat]
              for s in range(4)]
    assert [e.episode_return for e in result.episodes] == [e.episode_return for e in direct]
    check_turn_structure(result, tok)
  # The LM plays seat 1 against the optimal player: only its own tokens are actions.
  result = rollout.rollout(lm(), toy_envs.Nim, range(3), tokenizer=tok, max_tokens=256,
                           rng=jax.random.PRNGKey(0), opponents={0: toy_envs.nim_policy})
  assert (np.asarray(result.batch.role) == 1).all()
  assert result.stats["policy_tokens"] == np.asarray(result.batch.action_mask).sum()
  check_turn_structure(result, tok)
  with pytest.raises(ValueError, match="leave at least one role"):
    rollout.rollout(take_one, toy_envs.Nim, [0], tokenizer=tok, max_tokens=256,
                    opponents={0: take_one, 1: take_one})


def test_max_tokens_too_small_for_the_opening_is_a_clear_error():
  tok, policy = tokenizer(), lm()
  opening = len(rollout._observation_ids(tok, toy_envs.GuessNumber().reset(0).observation))
  reply = policy.sampling.max_new_tokens + 1 + len(tok.turn_separator())
  play = lambda pi, max_tokens, rng: rollout.rollout(  # noqa: E731
      pi, lambda: toy_envs.GuessNumber(), [0], tokenizer=tok, max_tokens=max_tokens, rng=rng,
      system_prompt=False)
  # One token short of the opening plus one worst-case reply: refused before any sampling.
  with pytest.raises(ValueError, match=f"max_tokens={opening + reply - 1} cannot hold"):
    play(policy, opening + reply - 1, jax.random.PRNGKey(0))
  with pytest.raises(ValueError, match="env.max_tokens"):
    play(toy_envs.random_policy, opening - 1, 0)
  # Exactly enough: the episode plays (then stops, cut, after its first turn at most).
  assert play(policy, opening + reply, jax.random.PRNGKey(0)).episodes[0].num_turns >= 1
