"""HiPER as a trainable algorithm: the reply-format wrapper, reading the format from token ids,
the critic's read positions, the loss pieces against a numpy reference, masking edges, and the
smoke config through the trainer."""

import dataclasses
import functools
import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from agentrl import (algorithms, configs, data, encoding, envs, hiper, policy, rollout,
                     sampling, trainer)
from agentrl.algorithms import Models
from agentrl.algorithms import hiper as H
from agentrl.data import tokenizers as tokenizer_data
from agentrl.envs import hierarchical as fmt
from agentrl.envs.base import Episode
from agentrl.logging_utils import read_metrics
from agentrl.models import decoder
from agentrl.tokenizer import Tokenizer
from agentrl.types import TrajectoryBatch

NAME = "hiper_maze_po"
MAX_TURNS = 6
B, T = 8, 192
CONFIG = {"lr": 1e-3, "value_lr": 1e-3, "epochs": 1, "minibatches": 1, "kl_coef": 0.01}


@functools.lru_cache(maxsize=None)
def tokenizer() -> Tokenizer:
  corpus = tokenizer_data.corpus(NAME, episodes=10, env_kwargs={"max_turns": MAX_TURNS})
  return Tokenizer.train_bpe(corpus, vocab_size=400)


@functools.lru_cache(maxsize=None)
def models() -> Models:
  tok = tokenizer()
  cfg = decoder.DecoderConfig.llama(vocab_size=tok.vocab_size, hidden_size=16, num_layers=1,
                                    num_heads=2, num_kv_heads=1, mlp_dim=32)
  return Models(cfg, decoder.init_params(cfg, jax.random.PRNGKey(0)),
                sampling.SamplingConfig(max_new_tokens=24, temperature=1.0,
                                        stop_token=tok.end_of_turn_id, pad_token=tok.pad_id),
                pad_id=tok.pad_id, tokenizer=tok)


@functools.lru_cache(maxsize=None)
def algo():
  """The one HiPER instance the update tests share (one compile per batch shape)."""
  return algorithms.make("hiper", ml_collections.ConfigDict(CONFIG), models())


@functools.lru_cache(maxsize=None)
def tables() -> H.ReplyTables:
  return H.reply_tables(tokenizer())


def reply(switch, subgoal, action):
  return fmt.format_reply(switch, subgoal, action)


# ----------------------------------------------------------------------------- the wrapper


@pytest.mark.parametrize("text,switch,subgoal,action", [
    ("<switch>SWITCH</switch> <subgoal>go down</subgoal> move down", True, "go down",
     "move down"),
    ("<switch>KEEP</switch><subgoal>go down</subgoal>move down", False, "go down", "move down"),
    ("\n <Switch> keep </SWITCH>\t<SUBGOAL></subgoal>  left", False, "", "left"),
    ("<switch>switch</switch> <subgoal> a <b </subgo c </subgoal> x", True, "a <b </subgo c",
     "x"),
    ("<switch>KEEP</switch> <subgoal>é</subgoal>", False, "é", ""),
])
def test_parse_valid_replies(text, switch, subgoal, action):
  got = fmt.parse_reply(text)
  assert got == fmt.Reply(True, switch, subgoal, action), got


@pytest.mark.parametrize("text,reason", [
    ("", "must start with <switch>"),
    ("move down", "must start with <switch>"),
    ("<switch >KEEP</switch>", "must start with <switch>"),
    ("<switch>MAYBE</switch> <subgoal>x</subgoal> y", "must be SWITCH or KEEP"),
    ("<switch>KEEPS</switch>", "closed by </switch>"),
    ("<switch>KEEP", "closed by </switch>"),
    ("<switch>KEEP</switch> move down", "<subgoal> must follow </switch>"),
    ("<switch>KEEP</switch> <subgoal>go down", "closed by </subgoal>"),
    ("<switch>KEEP</switch> <subgoal>go down</subgoal", "closed by </subgoal>"),
])
def test_parse_malformed_replies_names_the_reason(text, reason):
  got = fmt.parse_reply(text)
  assert not got.ok and reason in got.reason, got


def test_wrapper_strips_the_prefix_and_records_the_switch():
  env, plain = envs.make(NAME), envs.make("maze_po")
  env.reset(5), plain.reset(5)
  moves = ["move down", "move down", "move left"]
  said = [(False, "go down"), (False, "go down"), (True, "go left")]  # KEEP on turn 0.
  for move, (switch, goal) in zip(moves, said):
    step, ref = env.step(reply(switch, goal, move)), plain.step(move)
    assert (step.observation, step.reward, step.done) == (ref.observation, ref.reward, ref.done)
    assert not step.info["invalid_action"] and step.info["subgoal"] == goal
    assert step.info["switch"] == switch
  assert env.inner.messages()[1]["content"] == "move down"  # The inner env never sees it.
  assert env.messages()[1]["content"] == reply(False, "go down", "move down")
  # Boundaries: the first turn (even with KEEP) and SWITCH turns.
  env.reset(5)
  infos = [env.step(reply(s, g, m)).info for m, (s, g) in zip(moves, said)]
  assert [i["boundary"] for i in infos] == [True, False, True]
  assert [i["subgoal_changed"] for i in infos] == [False, False, True]
  env.reset(5)
  env.step(reply(True, "go down", "move down"))
  assert env.step(reply(False, "go up", "move down")).info["subgoal_changed"]


def test_malformed_reply_is_an_invalid_action_and_the_inner_env_stays():
  env = envs.make(NAME)
  first = env.reset(2)
  step = env.step("move down")
  assert step.info["invalid_action"]
  assert "must start with <switch>" in step.info["invalid_reason"]
  assert step.reward == env.inner.invalid_reward == -4.0 and not step.last
  assert env.turn == 1 and env.inner.turn == 0
  assert step.observation.startswith("Invalid action:") and first.observation in step.observation
  ok = env.step(reply(True, "go down", "move down"))
  assert not ok.info["invalid_action"] and env.inner.turn == 1 and ok.info["turn"] == 2


def test_registry_wraps_single_role_environments():
  names = envs.names()
  assert {"hiper_maze_po", "hiper_text_nav_po", "hiper_wilt"} <= set(names)
  assert "hiper_tictactoe" not in names
  with pytest.raises(ValueError, match="single-role"):
    envs.make("hiper_tictactoe")
  with pytest.raises(ValueError, match="Unknown environment 'hiper_nope'"):
    envs.make("hiper_nope")
  assert envs.make(NAME, max_turns=3).max_turns == 3
  assert envs.make("hiper_wilt").reference_answer() is None
  # Its returns are the plain environment's, so they are scored with its normaliser.
  assert envs.score_name("hiper_maze_po") == "maze_po"
  assert envs.score_name("maze_po") == "maze_po"
  with pytest.raises(ValueError, match="Unknown environment 'hiper_nope'"):
    envs.score_name("hiper_nope")


@pytest.mark.parametrize("name", ["hiper_maze_po", "hiper_text_nav_po", "hiper_wilt"])
def test_scripted_policies_switch_when_their_subgoal_changes(name):
  plain = name[len("hiper_"):]
  for which in ("strong", "weak"):
    [ep] = envs.play(envs.make(name), envs.policy(name, which), seed=4, rng=1)
    [ref] = envs.play(envs.make(plain), envs.policy(plain, which), seed=4, rng=1)
    parsed = [fmt.parse_reply(a) for a in ep.actions]
    assert all(p.ok for p in parsed) and [p.action for p in parsed] == ref.actions
    assert ep.rewards == ref.rewards
    goals = [p.subgoal for p in parsed]
    assert [p.switch for p in parsed] == [k == 0 or g != goals[k - 1]
                                          for k, g in enumerate(goals)]
  if name == "hiper_text_nav_po":  # The strong policy's two phases.
    [ep] = envs.play(envs.make(name), envs.policy(name, "strong"), seed=4)
    assert list(dict.fromkeys(fmt.parse_reply(a).subgoal for a in ep.actions)) == [
        "get the stale food", "bring the stale food to the fridge"]


# ----------------------------------------------------------------------------- token parsing


def _rows(replies: list[list[int]], width: int):
  """One turn per row: [context token, reply tokens..., end of turn], right-padded."""
  tok = tokenizer()
  b = len(replies)
  tokens = np.full((b, width), tok.pad_id, np.int32)
  act = np.zeros((b, width), bool)
  end = np.zeros((b, width), bool)
  for i, ids in enumerate(replies):
    row = [tok.token_to_id("<|assistant|>")] + list(ids) + [tok.end_of_turn_id]
    tokens[i, :len(row)] = row
    act[i, 1:len(row)] = True
    end[i, len(row) - 1] = True
  return tokens, act, np.where(act, 0, -1).astype(np.int32), end


def _mutations(rng, ids: list[int], vocab: int) -> list[int]:
  """Up to two random token-level edits of a reply's ids."""
  tok = tokenizer()
  ids = list(ids)
  for _ in range(rng.integers(0, 3)):
    if not ids:
      break
    kind, j = rng.integers(5), int(rng.integers(len(ids)))
    if kind == 0:
      del ids[j]
    elif kind == 1:
      ids.insert(j, ids[j])
    elif kind == 2:
      ids[j] = int(rng.integers(7, vocab))  # Any non-special token.
    elif kind == 3:  # Respell a token character by character (not canonical BPE).
      text = tok.decode([ids[j]])
      ids[j:j + 1] = [i for ch in text for i in tok.encode(ch)]
    else:
      ids.insert(j, tok.pad_id)  # A special token inside the reply (decodes to nothing).
  return ids


def test_token_parser_agrees_with_the_environment_parser():
  """On canonical replies and random token-level mutations of them (dropped, doubled,
  replaced and respelled tokens, special tokens inside), the update's token automaton and the
  wrapper's text parser agree on well-formedness and the decision, and the update's parts
  decode to the text's parts."""
  tok, rng = tokenizer(), np.random.default_rng(0)
  goals = ["go down", "go left", "", "a </subgo b", "get the <food>"]
  texts = [reply(bool(rng.integers(2)), goals[rng.integers(len(goals))],
                 ["move down", "move left", "left", ""][rng.integers(4)]) for _ in range(96)]
  texts += ["  " + texts[0].upper(), texts[1].replace(" ", "\n"), "move up", ""]
  ids = [_mutations(rng, tok.encode(t), tok.vocab_size) if i % 2 else tok.encode(t)
         for i, t in enumerate(texts)]
  tokens, act, turn, end = _rows(ids, 64)
  out = jax.jit(functools.partial(H.parse_replies, tables=tables(), num_turns=1))(
      tokens, act, turn, end)
  wf, sw = np.asarray(out["well_formed"])[:, 0], np.asarray(out["said_switch"])[:, 0]
  region = np.asarray(out["region"])
  checked = 0
  for i, row in enumerate(ids):
    text = tok.decode_utterance(row)
    ref = fmt.parse_reply(text)
    assert (bool(wf[i]), bool(sw[i])) == (ref.ok, ref.ok and ref.switch), (text, row)
    if ref.ok:
      parts = {p: tok.decode(tokens[i][act[i] & (region[i] == p)])
               for p in (fmt.SWITCH_PART, fmt.SUBGOAL_PART, fmt.ACTION_PART)}
      assert "".join(parts.values()) == text
      assert fmt.parse_reply(parts[fmt.SWITCH_PART] + parts[fmt.SUBGOAL_PART]) == dataclasses.replace(ref, action="")
      assert parts[fmt.ACTION_PART].strip() == ref.action.strip()
      checked += 1
  assert 40 < checked < len(ids)


def test_switch_flags_reach_the_batch_through_the_rollout():
  """Scripted replies (with some broken ones) and a random LM's samples, played through
  `rollout.rollout`: the flags the update reads from the batch are the environment's."""
  tok = tokenizer()
  strong = envs.policy(NAME, "strong", max_turns=MAX_TURNS)

  def sloppy(env, rng):
    text = strong(env, rng)
    return text.replace("</switch>", "") if rng.random() < 0.3 else text

  m = models()
  players = [sloppy, rollout.LMPolicy(m.policy_params, m.policy_config, m.sampling)]
  for player in players:
    key = jax.random.PRNGKey(0) if isinstance(player, rollout.LMPolicy) else 0
    result = rollout.rollout(player, NAME, range(6), tokenizer=tok, max_tokens=T,
                             env_kwargs={"max_turns": MAX_TURNS}, rng=key, system_prompt=False)
    b = result.batch
    out = jax.jit(functools.partial(H.parse_replies, tables=tables(), num_turns=MAX_TURNS))(
        b.tokens, b.action_mask, b.turn_index, b.turn_end)
    seen = 0
    for i, ep in enumerate(result.episodes):
      for k, text in enumerate(ep.actions[:int(b.turn_mask[i].sum())]):
        ref = fmt.parse_reply(text)
        assert bool(out["well_formed"][i, k]) == ref.ok, text
        assert bool(out["said_switch"][i, k]) == (ref.ok and ref.switch), text
        seen += 1
      assert ep.invalid_actions >= sum(not fmt.parse_reply(a).ok for a in ep.actions)
    assert seen > 6


# ----------------------------------------------------------------------------- pure pieces


def test_shaped_rewards_by_hand():
  r = np.array([[-1.0, -1.0, -1.0, 0.0], [1.0, 0.0, 0.0, 0.0]], np.float32)
  mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], bool)
  keep = np.array([[0, 1, 1, 1], [1, 0, 0, 0]], bool)
  bad = np.array([[0, 0, 0, 0], [0, 1, 0, 0]], bool)
  changed = np.array([[0, 0, 1, 1], [0, 0, 0, 0]], bool)
  kw = dict(keep_consistency=-0.5, invalid_penalty=0.1)
  got = H.shaped_rewards(r, mask, keep, bad, changed, keep_penalty=-0.3,
                         keep_penalty_mode="normalized", **kw)
  np.testing.assert_allclose(got, [[-1.0, -1.1, -1.6, 0.0], [1.0 - 0.15, -0.1, 0.0, 0.0]],
                             rtol=1e-6)
  got = H.shaped_rewards(r, mask, keep, bad, changed, keep_penalty=-0.3,
                         keep_penalty_mode="fixed", **kw)
  np.testing.assert_allclose(got, [[-1.0, -1.3, -1.8, 0.0], [0.7, -0.1, 0.0, 0.0]], rtol=1e-6)
  with pytest.raises(ValueError, match="keep_penalty_mode='sometimes'"):
    H.shaped_rewards(r, mask, keep, bad, changed, keep_penalty=-0.3,
                     keep_penalty_mode="sometimes", **kw)


def test_subgoal_changed_compares_with_the_last_well_formed_turn():
  h = np.array([[5, 5, 7, 9, 7, 7]], np.int32)
  ok = np.array([[1, 1, 1, 0, 1, 1]], bool)
  keep = np.array([[1, 1, 1, 1, 1, 0]], bool)  # Turn 0 says KEEP: nothing to compare with.
  mask = np.array([[1, 1, 1, 1, 1, 1]], bool)
  got = np.asarray(H.subgoal_changed(h, ok, keep, mask))
  assert got.tolist() == [[False, False, True, False, False, False]]


def _token_row(texts):
  """A one-row batch of consecutive turns: [obs, reply tokens, end of turn] per turn."""
  tok = tokenizer()
  tokens, act, turn, end = [], [], [], []
  for k, text in enumerate(texts):
    ids = tok.encode(text) + [tok.end_of_turn_id]
    tokens += [tok.token_to_id("<|assistant|>")] + ids
    act += [False] + [True] * len(ids)
    turn += [-1] + [k] * len(ids)
    end += [False] * len(ids) + [True]
  return [np.asarray([x]) for x in (tokens, act, turn, end)]


def test_token_masks_and_head_positions_by_hand():
  tok = tokenizer()
  texts = [reply(False, "go down", "move down"),  # Turn 0: a boundary despite KEEP.
           reply(False, "go down", "move down"),  # KEEP: its subgoal gets no loss.
           "<switch>SWITCH</switch> <subgoal>go",  # Broken in the subgoal.
           "move up",  # Broken at once.
           reply(True, "go left", "move left")]
  tokens, act, turn, end = _token_row(texts)
  k = len(texts)
  parsed = H.parse_replies(tokens, act, turn, end, tables=tables(), num_turns=k)
  assert np.asarray(parsed["well_formed"])[0].tolist() == [True, True, False, False, True]
  assert np.asarray(parsed["said_switch"])[0].tolist() == [False] * 4 + [True]
  boundary = np.array([[True, False, False, False, True]])
  masks = H.token_masks(parsed["region"], parsed["well_formed"], boundary, turn, act)
  text_of = lambda m, j: tok.decode(tokens[0][np.asarray(m)[0] & (turn[0] == j)])  # noqa: E731
  for j in range(k):
    whole = tok.decode(tokens[0][act[0] & (turn[0] == j)])
    got = {name: text_of(masks[name], j) for name in ("term", "high", "low")}
    if j in (2, 3):  # Malformed: everything is the executor's.
      assert got == {"term": "", "high": "", "low": whole}
    else:
      assert got["term"] == whole[:whole.index(" <")]
      assert got["high"] == ("" if j == 1 else whole[whole.index(" <"):whole.index(" move")])
      assert got["low"] == whole[whole.index(" move"):]
  assert not np.any(np.asarray(masks["low"]) & np.asarray(masks["high"]))
  assert not np.any((np.asarray(masks["low"]) | np.asarray(masks["term"])) & ~act)
  start, low = (np.asarray(x)[0] for x in H.head_positions(parsed["region"], act, turn, k))
  for j in range(k):
    first = int(np.flatnonzero(act[0] & (turn[0] == j))[0])
    assert start[j] == first
    after = tok.decode(tokens[0][first:low[j]])
    if j == 3:
      assert low[j] == first  # Nothing parsed: the first token.
    elif j == 2:
      assert after == "<switch>SWITCH</switch>"  # Fallback: after </switch>.
    else:
      assert after.endswith("</subgoal>") and tok.decode([tokens[0][low[j]]]) == " move"


def test_critic_reads_before_the_parts_it_values():
  """V_high and V_term of a turn see nothing of its reply, V_low sees its switch and subgoal
  but not its action."""
  m, s = models(), H.settings(ml_collections.ConfigDict(CONFIG), models())
  critic = s.critic.init(jax.random.PRNGKey(1), jnp.zeros((1, 1, 16)))["params"]
  texts = [reply(True, "go down", "move down"), reply(False, "go down", "move down")]

  def values(texts):
    tokens, act, turn, end = _token_row(texts)
    parsed = H.parse_replies(tokens, act, turn, end, tables=tables(), num_turns=2)
    start, low = H.head_positions(parsed["region"], act, turn, 2)
    pos = np.arange(tokens.shape[1])[None]
    out = policy.evaluate(m.policy_params, m.policy_config, tokens, pos, np.ones_like(act))
    return {k: np.asarray(v)[0] for k, v in H.critic_values(critic, s, out.hidden, start,
                                                            low).items()}

  base = values(texts)
  action = values([texts[0].replace("move down", "move left"), texts[1]])
  subgoal = values([texts[0].replace("go down", "go left"), texts[1]])
  for k in ("high", "low", "term"):
    assert action[k][0] == pytest.approx(base[k][0], abs=1e-6)  # Turn 0 reads before it.
    assert abs(action[k][1] - base[k][1]) > 1e-7  # Turn 1 sees turn 0's action.
  assert subgoal["high"][0] == pytest.approx(base["high"][0], abs=1e-6)
  assert subgoal["term"][0] == pytest.approx(base["term"][0], abs=1e-6)
  assert abs(subgoal["low"][0] - base["low"][0]) > 1e-7


# ----------------------------------------------------------------------------- the update


def _episode(actions, rewards, done):
  obs = [{"role": "user", "content": "There are walls to your left, below you."}]
  messages = [m for a in actions for m in (*obs, {"role": "assistant", "content": a})]
  return Episode(env=NAME, seed=0, task_id="", role=0, system="", messages=messages,
                 rewards=list(rewards), done=done, success=done)


@functools.lru_cache(maxsize=None)
def loss_batch():
  """Ragged rows: scripted episodes (truncated and done), broken replies, a KEEP that changes
  the subgoal, a one-turn row, a row with no turn; behaviour log-probs = the policy's own."""
  env = envs.make(NAME, max_turns=MAX_TURNS)
  eps = [envs.play(env, envs.policy(NAME, w, max_turns=MAX_TURNS), seed=s, rng=s)[0]
         for w, s in (("strong", 0), ("strong", 9), ("weak", 1), ("weak", 2))]
  eps += [
      _episode([reply(True, "go down", "move down"), "move down",
                reply(False, "go up", "move up"), "<switch>KEEP</switch> <subgoal>x"],
               [-1.0, -4.0, -1.0, -4.0], False),
      _episode([reply(False, "go left", "move left")], [0.0], True),
      _episode([reply(True, "go down", "move down"), reply(False, "go down", "move down"),
                reply(False, "go down", "move down")], [-1.0, -1.0, 0.0], True),
      _episode([], [], False),
  ]
  batch = encoding.encode_episodes(tokenizer(), eps, max_tokens=T, max_turns=MAX_TURNS,
                                  system_prompt=False)
  m = models()
  lp = policy.evaluate(m.policy_params, m.policy_config, batch.tokens, batch.positions,
                       batch.attention_mask).logprobs
  lp = np.where(batch.action_mask, np.asarray(lp), 0.0).astype(np.float32)
  return batch.replace(behaviour_logprobs=lp), eps


def _whiten(x, m):
  mu = x[m].mean() if m.any() else 0.0
  var = ((x[m] - mu) ** 2).mean() if m.any() else 0.0
  return np.where(m, (x - mu) / np.sqrt(var + 1e-8), 0.0)


def reference_targets(batch, eps, values):
  """The update's targets by a slow route: the text parser per turn, the shaping and the
  whitening as loops, the token parts from character offsets, HAE from `agentrl.hiper`."""
  tok = tokenizer()
  b, k = batch.rewards.shape
  mask = np.asarray(batch.turn_mask)
  ok, switch, keep, changed = (np.zeros((b, k), bool) for _ in range(4))
  r = np.zeros((b, k))
  for i, ep in enumerate(eps):
    prev, n = None, mask[i].sum()
    for j in range(n):
      p = fmt.parse_reply(ep.actions[j])
      ok[i, j], switch[i, j], keep[i, j] = p.ok, p.ok and p.switch, p.ok and not p.switch
      changed[i, j] = keep[i, j] and prev is not None and p.subgoal != prev
      prev = p.subgoal if p.ok else prev
      r[i, j] = (batch.rewards[i, j] - 0.3 * keep[i, j] / n - 0.1 * (not p.ok)
                 - 0.3 * changed[i, j])
  hae = {key: np.asarray(v) for key, v in hiper.hiper_advantages(
      r, batch.dones, mask, switch, values["low"], values["high"], values["term"],
      gamma=1.0, lambda_turn=1.0, lambda_seg=0.95, bootstrap_truncated=True).items()}
  part = np.zeros((b, T), int)  # 1 switch, 2 subgoal (boundary turns), 3 executor.
  for i, ep in enumerate(eps):
    for j in range(mask[i].sum()):
      text, idx = ep.actions[j], np.flatnonzero(batch.action_mask[i] & (batch.turn_index[i] == j))
      p = fmt.parse_reply(text)
      cut1 = text.index("</switch>") + len("</switch>") if p.ok else 0
      cut2 = text.index("</subgoal>") + len("</subgoal>") if p.ok else 0
      offset = 0
      for t in idx:
        where = 3 if not p.ok or offset >= cut2 else (2 if offset >= cut1 else 1)
        part[i, t] = 0 if where == 2 and not hae["boundary"][i, j] else where
        offset += len(tok.decode([batch.tokens[i, t]]))
  has = {name: np.zeros((b, k), bool) for name in ("term", "high", "low")}
  for (i, t), p in np.ndenumerate(part):
    if p:
      has[("term", "high", "low")[p - 1]][i, batch.turn_index[i, t]] = True
  adv = {name: _whiten(hae[f"{name}_adv"], has[name]) for name in has}
  token_adv = np.zeros((b, T))
  for (i, t), p in np.ndenumerate(part):
    if p:
      token_adv[i, t] = adv[("term", "high", "low")[p - 1]][i, batch.turn_index[i, t]]
  assert changed.any() and (mask & ~ok).any() and keep.any()  # Every shaping term is used.
  return token_adv, part > 0, hae


def test_targets_and_first_losses_match_a_slow_reference():
  batch, eps = loss_batch()
  m, a = models(), algo()
  state = a.init(jax.random.PRNGKey(0))
  s = H.settings(ml_collections.ConfigDict(CONFIG), m)
  data, _ = H.prepare(state.params["policy"], state.params["value"], state.frozen["reference"],
                      batch, s)
  values = {name: np.asarray(data[f"old_{name}"]) for name in ("low", "high", "term")}
  token_adv, policy_mask, hae = reference_targets(batch, eps, values)
  np.testing.assert_array_equal(np.asarray(data["policy_mask"]), policy_mask)
  np.testing.assert_allclose(np.asarray(data["advantages"]), token_adv, rtol=1e-4, atol=1e-5)
  assert not np.asarray(data["advantages"])[-1].any()  # The row with no turn.
  assert policy_mask[5].any() and hae["boundary"][5, 0]  # One turn, KEEP: still a boundary.
  # First minibatch step, ratio 1: the surrogate is −token-mean(Â); each value loss is
  # ½·mean((V − R)²) over its turns.
  _, metrics = a.update(a.init(jax.random.PRNGKey(0)), batch, jax.random.PRNGKey(0))
  assert float(metrics["hiper/first_pg_loss"]) == pytest.approx(
      -token_adv[policy_mask].mean(), abs=1e-5)
  masks = {"low": batch.turn_mask, "high": hae["boundary"], "term": batch.turn_mask}
  value_loss = sum(0.5 * np.mean((values[n] - hae[f"{n}_ret"])[masks[n]] ** 2) for n in masks)
  assert float(metrics["hiper/first_value_loss"]) == pytest.approx(value_loss, rel=1e-4)
  assert algorithms.nonfinite_losses(metrics) == []
  assert float(metrics["hiper/well_formed_rate"]) == pytest.approx(
      np.mean([fmt.parse_reply(x).ok for e in eps for x in e.actions]), abs=1e-6)


def test_all_masked_batch_is_finite_and_leaves_the_policy():
  a, m = algo(), models()
  empty = TrajectoryBatch.zeros(B, T, MAX_TURNS)
  empty = dataclasses.replace(empty, attention_mask=np.ones((B, T), bool))
  state, metrics = a.update(a.init(jax.random.PRNGKey(0)), empty, jax.random.PRNGKey(0))
  assert algorithms.nonfinite_losses(metrics) == []
  assert all(np.isfinite(float(v)) for v in metrics.values())
  jax.tree.map(lambda x, y: np.testing.assert_allclose(np.asarray(x), y, atol=1e-7),
               state.params["policy"], m.policy_params)


def test_the_update_needs_the_tokenizer_and_valid_keys():
  m = dataclasses.replace(models(), tokenizer=None)
  with pytest.raises(ValueError, match="Models.tokenizer"):
    algorithms.make("hiper", ml_collections.ConfigDict({"lr": 1e-3}), m)
  with pytest.raises(ValueError, match="keep_penalty_mode"):
    algorithms.make("hiper", ml_collections.ConfigDict({"lr": 1e-3, "keep_penalty_mode": "x"}),
                    models())


# ----------------------------------------------------------------------------- the config


@pytest.mark.parametrize("env", ["maze_po", "text_nav_po", "wilt"])
@pytest.mark.parametrize("variant", ["smoke", "cpu", "paper"])
def test_config_variants_build_the_wrapped_environment(env, variant):
  config = configs.load_config(f"hiper.py:{variant},env={env}")
  assert config.env.name == f"hiper_{env}" and config.algorithm.name == "hiper"
  made = envs.make(config.env.name, **config.env.kwargs)
  assert isinstance(made, fmt.Hierarchical) and made.inner.name == re.sub("_[pf]o$", "", env)
  assert config.sampling.max_new_tokens >= 24


def test_smoke_config_trains_end_to_end(tmp_path):
  config = configs.load_config("hiper.py:smoke", [f"data_dir={tmp_path / 'data'}",
                                                  "train.total_iterations=1",
                                                  "eval.greedy=false"])
  final = trainer.train(config, str(tmp_path / "run"))
  rows = read_metrics(str(tmp_path / "run"))
  assert [r["step"] for r in rows] == [0, 1]
  assert algorithms.nonfinite_losses(final) == []
  assert "eval/mean_return" in rows[-1] and "hiper/well_formed_rate" in rows[-1]
  assert rows[-1]["eval/score"] == pytest.approx(
      data.normalized_score("maze_po", rows[-1]["eval/scored_return"]), rel=1e-5)
  # Maze charges -1 per move, so a cut row is completed below its partial return.
  assert rows[-1]["eval/scored_return"] <= rows[-1]["eval/mean_return"]
