"""The rollout loop: a token policy plays batches of multi-turn text episodes.

  result = rollout.rollout(rollout.LMPolicy(params, config, sampling), "twenty_questions",
                           seeds=range(8), tokenizer=tok, group_size=4, max_tokens=1024,
                           rng=jax.random.PRNGKey(0))
  result.batch      # TrajectoryBatch [B = 8 seeds x 4 episodes, T = 1024 tokens, K turns]
  result.episodes   # the same episodes as text (agentrl.envs.Episode)

Every episode is one row of one KV cache. Each turn the acting rows get their new
observation (user message + assistant prefix) prefilled into the cache and sample one
utterance, stopping at the template's end-of-turn token; nothing before is recomputed. The
utterance is decoded and sent to the environment, whose answer becomes the row's next chunk.
Rows whose episode has ended, and in two-player games the rows of the role that is waiting,
are inactive: they neither write to the cache nor sample.

In two-player games each (episode, role) pair is its own row: a role sees only its own
observations, so hidden information (Kuhn poker's cards) stays hidden, and `role` in the
batch is that row's role. `opponents` hands roles to fixed scripted policies (evaluation
against the Nash or minimax player): those roles act without the policy and their rows are
left out of the result, so its batch, episodes and stats are the policy's side only.

`agentrl.encoding.encode_episodes` turns text episodes (offline datasets) into the same
`TrajectoryBatch`.

Conventions shared with `agentrl.types`:
  * Action tokens are exactly the sampled ones, end-of-turn included; their `turn_index` is
    the row's agent turn, and `turn_end` marks the last sampled token of each utterance.
  * An utterance that hits `max_new_tokens` without ending is closed by an end-of-turn token
    that the policy did not sample: it is context (not an action) in the batch.
  * `dones` is set on the last turn only when the environment terminated; a turn limit, or
    a conversation that no longer fits `max_tokens`, leaves it False (bootstrap there).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np

from agentrl import encoding
from agentrl import envs as envs_lib
from agentrl import sampling as sampling_lib
from agentrl.envs.base import Env, Episode, EpisodeRecorder, Policy
from agentrl.models import decoder
from agentrl.tokenizer import Tokenizer
from agentrl.types import TrajectoryBatch


@dataclasses.dataclass(frozen=True)
class LMPolicy:
  """A decoder language model used as the token policy of a rollout.

  `generate_fn` replaces `sampling.generate` (same signature and `SampleOutput`), e.g. with
  Q-guided decoding (`agentrl.algorithms.value_decoding.guided_generate` with its value
  heads bound). With `context_tokens` > 0 it is also given `context` and `context_mask`:
  the last `context_tokens` tokens of every row's conversation before the utterance (the
  pending observation included), left-padded int32/bool[B, context_tokens], for decoders that
  score candidates with an utterance-level critic (CHAI's best-of-k).
  """

  params: Any
  config: decoder.DecoderConfig
  sampling: sampling_lib.SamplingConfig
  generate_fn: Callable[..., sampling_lib.SampleOutput] | None = None
  context_tokens: int = 0


@dataclasses.dataclass
class RolloutResult:
  """A batch of played episodes, as arrays and as text, with timing.

  Attributes:
    batch: The `TrajectoryBatch` (numpy arrays), rows ordered (seed, group member, role).
    episodes: One `Episode` per row, in the same order.
    stats: mean_return, success_rate, mean_turns, invalid_action_rate, context_truncated
      (the number of rows cut because the conversation no longer fit `max_tokens`),
      scored_return (mean_return with every cut row completed by the environment's
      `turn_reward` for each turn left to its turn limit: the return to compare with
      scripted policies that played to the limit), env_seconds, policy_seconds,
      policy_tokens, cache_refills (times the shared KV cache was rebuilt).
  """

  batch: TrajectoryBatch
  episodes: list[Episode]
  stats: dict[str, float]


class _Row:
  """The growing token log of one row: everything the policy saw and produced."""

  def __init__(self):
    self.tokens: list[int] = []
    self.action: list[bool] = []
    self.turn: list[int] = []
    self.turn_end: list[bool] = []
    self.logprobs: list[float] = []
    self.pending: list[int] = []  # Context tokens not yet fed to the policy.
    self.num_turns = 0

  def add_context(self, ids: Sequence[int]):
    ids = list(ids)
    self.pending += ids
    self.tokens += ids
    self.action += [False] * len(ids)
    self.turn += [-1] * len(ids)
    self.turn_end += [False] * len(ids)
    self.logprobs += [0.0] * len(ids)

  def add_action(self, ids: Sequence[int], logprobs: Sequence[float]):
    n = len(ids)
    self.tokens += list(ids)
    self.action += [True] * n
    self.turn += [self.num_turns] * n
    self.turn_end += [False] * (n - 1) + [True]
    self.logprobs += [float(x) for x in logprobs]
    self.num_turns += 1


def rollout(policy: LMPolicy | Policy, env: str | Callable[[], Env], seeds: Sequence[int], *,
            tokenizer: Tokenizer, max_tokens: int, group_size: int = 1,
            max_turns: int | None = None, rng: jax.Array | int | None = None,
            env_kwargs: dict | None = None, cache_tokens: int | None = None,
            system_prompt: bool = True, answer_length: int = 0,
            opponents: Mapping[int, Policy] | None = None) -> RolloutResult:
  """Plays `group_size` episodes of every task seed in `seeds` and returns them as a batch.

  Args:
    policy: An `LMPolicy` (sampled with the KV cache) or a scripted policy
      `(env, np_rng) -> str` (its text is tokenized; behaviour log-probs are 0).
    env: A registered environment name, or a zero-argument factory returning an `Env`.
    seeds: Task seeds; the `group_size` episodes of one seed share a `group_id`.
    tokenizer: Chat tokenizer; its end-of-turn id stops sampling.
    max_tokens: T, the length of each row. A conversation that no longer fits is cut there
      (not done; counted in stats["context_truncated"]).
    group_size: Episodes per task seed (G, for group baselines).
    max_turns: K, agent turns per row (default: the environment's turn limit).
    rng: A JAX key for an `LMPolicy`, or an int seed for a scripted policy.
    env_kwargs: Keyword arguments for `agentrl.envs.make` when `env` is a name.
    cache_tokens: KV cache length (default 2 * max_tokens). The cache is shared by all rows
      and also spends slots on padding, so it fills faster than a row does; when it is full,
      an empty one re-reads every row's conversation (stats["cache_refills"] counts these).
      It must hold the longest row (bucketed) and a reply, or the running rows are cut.
    system_prompt: Start each row with the environment's instructions as a system message.
      A policy trained from scratch learns nothing from a constant prompt: leaving it out
      saves its tokens in every row (the `Episode`s still record it).
    answer_length: L, the width of `batch.answer_tokens`: each row gets its task's
      `env.reference_answer()` tokenized, end-of-turn appended (-1 padding; all -1 where the
      environment has none). 0 (default) records no answers.
    opponents: {role: scripted policy} for roles that a fixed opponent plays; they are not
      part of the result (at least one role must be left to `policy`).

  Returns:
    A `RolloutResult` with B = len(seeds) * group_size * (num_roles - len(opponents)) rows.
  """
  if group_size < 1:
    raise ValueError(f"group_size must be >= 1, got {group_size}")
  make = (lambda: envs_lib.make(env, **(env_kwargs or {}))) if isinstance(env, str) else env
  tasks = [int(s) for s in seeds for _ in range(group_size)]
  group_of = [i // group_size for i in range(len(tasks))]
  episodes_envs = [make() for _ in tasks]
  num_roles = episodes_envs[0].num_roles if episodes_envs else 1
  max_turns = max_turns or (episodes_envs[0].max_turns if episodes_envs else 1)
  opponents = dict(opponents or {})
  if any(not 0 <= role < num_roles for role in opponents) or len(opponents) >= num_roles:
    raise ValueError(f"opponents={sorted(opponents)}: roles must lie in [0, {num_roles}) and "
                     "leave at least one role to the policy.")
  is_lm = isinstance(policy, LMPolicy)
  if is_lm:
    _check_sampling(policy.sampling, tokenizer)
    rng = jax.random.PRNGKey(0) if rng is None else rng
    np_rng = np.random.default_rng(0)  # For the opponents' moves.
  else:
    np_rng = np.random.default_rng(0 if rng is None else rng)

  rows = [_Row() for _ in range(len(tasks) * num_roles)]
  row_of = lambda e, role: e * num_roles + role  # noqa: E731
  recorders, steps = [], []
  env_seconds = policy_seconds = 0.0
  for e, (env_obj, seed) in enumerate(zip(episodes_envs, tasks)):
    t0 = time.perf_counter()
    step = env_obj.reset(seed)
    env_seconds += time.perf_counter() - t0
    recorders.append(EpisodeRecorder(env_obj, step))
    steps.append(step)
    for role in range(num_roles):
      system = env_obj.instructions(role)
      if system and system_prompt:
        rows[row_of(e, role)].add_context(tokenizer.encode_turn("system", system).tokens)
    rows[row_of(e, step.to_play)].add_context(_observation_ids(tokenizer, step.observation))

  # A row that cannot hold its opening context and one reply would end before its first turn:
  # that is a max_tokens too small for the environment, not a long conversation.
  # (An LM's worst-case reply: max_new_tokens, the end of turn, the separator.)
  reply = policy.sampling.max_new_tokens + 1 + len(tokenizer.turn_separator()) if is_lm else 0
  for r, row in enumerate(rows):
    if r % num_roles not in opponents and len(row.tokens) + reply > max_tokens:
      raise ValueError(
          f"max_tokens={max_tokens} cannot hold the opening of task seed {tasks[r // num_roles]}"
          f" (role {r % num_roles}): {len(row.tokens)} tokens of system prompt and first "
          f"observation plus a reply of up to {reply}; raise env.max_tokens or turn "
          "env.system_prompt off.")

  cache = None
  if is_lm:
    cache = decoder.init_cache(policy.config, len(rows), cache_tokens or 2 * max_tokens)
  separator = tokenizer.turn_separator()
  cut = np.zeros(len(rows), bool)
  policy_tokens = cache_refills = 0
  def scripted(r: int, act: Policy) -> tuple[list[int], list[float]] | None:
    """A scripted move of row r as tokens (None, and the row cut, if it does not fit)."""
    text = envs_lib.base.as_text(act(episodes_envs[r // num_roles], np_rng))
    ids = tokenizer.encode(text) + [tokenizer.end_of_turn_id]
    if len(rows[r].tokens) + len(ids) + len(separator) > max_tokens:
      cut[r] = True
      return None
    return ids, [0.0] * len(ids)

  while True:
    acting = [row_of(e, s.to_play) for e, s in enumerate(steps)
              if not s.last and not cut[row_of(e, s.to_play)]]
    fixed = [r for r in acting if r % num_roles in opponents]
    acting = [r for r in acting if r % num_roles not in opponents]
    if is_lm:  # Worst case: a full utterance, a closing end-of-turn, the separator.
      worst = policy.sampling.max_new_tokens + 1 + len(separator)
      for r in acting:
        cut[r] |= len(rows[r].tokens) + worst > max_tokens
      acting = [r for r in acting if not cut[r]]
    if not acting and not fixed:
      break
    t0 = time.perf_counter()
    utterances = {}
    if is_lm and acting:
      chunk_len = sampling_lib.bucket_length(max(len(rows[r].pending) for r in acting))
      if cache.max_length - int(cache.end) < chunk_len + policy.sampling.max_new_tokens:
        # The shared cache is full (it also spends slots on padding, so it fills before the
        # rows do): start an empty one and re-read every row's conversation so far, at most
        # max_tokens each. Rows end on their own budget, not on the cache's.
        for row in rows:
          row.pending = list(row.tokens)
        chunk_len = sampling_lib.bucket_length(max(len(rows[r].pending) for r in acting))
        if cache.max_length < chunk_len + policy.sampling.max_new_tokens:
          cut[acting] = True  # Not even an empty cache holds the rows: they stop here.
          break
        cache = decoder.init_cache(policy.config, len(rows), cache.max_length)
        cache_refills += 1
      active = np.zeros(len(rows), bool)
      active[acting] = True
      tokens, mask = sampling_lib.left_pad(
          [row.pending if on else [] for row, on in zip(rows, active)],
          pad_token=tokenizer.pad_id, length=chunk_len)
      rng, key = jax.random.split(rng)
      generate = policy.generate_fn or sampling_lib.generate
      extra = {}
      if policy.context_tokens:
        n = policy.context_tokens
        extra["context"], extra["context_mask"] = sampling_lib.left_pad(
            [row.tokens[-n:] if on else [] for row, on in zip(rows, active)],
            pad_token=tokenizer.pad_id, length=n)
      out = generate(policy.params, cache, tokens, mask, key, config=policy.config,
                     sampling=policy.sampling, active=active, **extra)
      cache = out.cache
      out_tokens, out_lp, lengths = (np.asarray(out.tokens), np.asarray(out.logprobs),
                                     np.asarray(out.lengths))
      utterances = {r: (out_tokens[r, :lengths[r]].tolist(), out_lp[r, :lengths[r]].tolist())
                    for r in acting}
    elif not is_lm:
      utterances = {r: move for r in acting if (move := scripted(r, policy)) is not None}
    policy_seconds += time.perf_counter() - t0
    for r in fixed:
      if (move := scripted(r, opponents[r % num_roles])) is not None:
        utterances[r] = move

    for r, (ids, logprobs) in utterances.items():
      e, row = r // num_roles, rows[r]
      policy_tokens += len(ids) if r % num_roles not in opponents else 0
      row.pending = []
      row.add_action(ids, logprobs)
      if ids[-1] != tokenizer.end_of_turn_id:  # Budget hit: close the turn as context.
        row.add_context([tokenizer.end_of_turn_id])
      row.add_context(separator)
      text = tokenizer.decode_utterance(ids)
      t0 = time.perf_counter()
      actor = steps[e].to_play
      step = episodes_envs[e].step(text)
      env_seconds += time.perf_counter() - t0
      recorders[e].record(actor, text, step)
      steps[e] = step
      if not step.last:
        nxt = row_of(e, step.to_play)
        ids = _observation_ids(tokenizer, step.observation)
        if len(rows[nxt].tokens) + len(ids) > max_tokens:
          cut[nxt] = True  # The next observation does not fit: the row ends here.
        else:
          rows[nxt].add_context(ids)

  keep = [r for r in range(len(rows)) if r % num_roles not in opponents]
  episodes = [recorders[r // num_roles].episodes[r % num_roles] for r in keep]
  batch = _rows_to_batch([rows[r] for r in keep], episodes,
                         [group_of[r // num_roles] for r in keep],
                         max_tokens=max_tokens, max_turns=max_turns, pad_id=tokenizer.pad_id)
  if answer_length:
    answers = {e: answer_ids(tokenizer, env_obj, answer_length)
               for e, env_obj in enumerate(episodes_envs)}
    batch = batch.replace(answer_tokens=np.asarray(
        [answers[r // num_roles] for r in keep], np.int32).reshape(len(keep), answer_length))
  returns = np.array([ep.episode_return for ep in episodes])
  turns = np.array([ep.num_turns for ep in episodes])
  # A row the token budget cut is completed as failing every turn left to the turn limit.
  envs_of = [episodes_envs[r // num_roles] for r in keep]
  scored = returns + np.array([(env.max_turns - ep.num_turns) * env.turn_reward * cut[r]
                               for r, env, ep in zip(keep, envs_of, episodes)])
  stats = {
      "mean_return": float(returns.mean()) if len(returns) else 0.0,
      "scored_return": float(scored.mean()) if len(scored) else 0.0,
      "success_rate": float(np.mean([ep.success for ep in episodes])) if episodes else 0.0,
      "mean_turns": float(turns.mean()) if len(turns) else 0.0,
      "invalid_action_rate": float(sum(ep.invalid_actions for ep in episodes)
                                   / max(1, turns.sum())),
      "context_truncated": float(cut[keep].sum()),
      "env_seconds": env_seconds, "policy_seconds": policy_seconds,
      "policy_tokens": float(policy_tokens), "cache_refills": float(cache_refills),
  }
  return RolloutResult(batch=batch, episodes=episodes, stats=stats)


def answer_ids(tokenizer: Tokenizer, env: Env, length: int) -> list[int]:
  """`env.reference_answer()` as an utterance (its tokens and end-of-turn), right-padded with
  -1 to `length`; all -1 when the environment has no answer."""
  text = env.reference_answer()
  ids = [] if text is None else tokenizer.encode(text) + [tokenizer.end_of_turn_id]
  if len(ids) > length:
    raise ValueError(f"{env.name} task {env.seed}: the reference answer {text!r} is {len(ids)} "
                     f"tokens long, more than answer_length={length}.")
  return ids + [-1] * (length - len(ids))


def _observation_ids(tokenizer: Tokenizer, observation: str) -> list[int]:
  """A user message followed by the assistant prefix the policy samples after."""
  return tokenizer.encode_turn("user", observation).tokens.tolist() + tokenizer.generation_prefix()


def _check_sampling(sampling: sampling_lib.SamplingConfig, tokenizer: Tokenizer):
  if sampling.stop_token != tokenizer.end_of_turn_id:
    raise ValueError(f"SamplingConfig.stop_token={sampling.stop_token} must be the tokenizer's "
                     f"end-of-turn id {tokenizer.end_of_turn_id}, or utterances never end.")
  if sampling.pad_token != tokenizer.pad_id:
    raise ValueError(f"SamplingConfig.pad_token={sampling.pad_token} must be the tokenizer's "
                     f"pad id {tokenizer.pad_id}.")


def _rows_to_batch(rows: Sequence[_Row], episodes: Sequence[Episode], group_ids: Sequence[int],
                   *, max_tokens: int, max_turns: int, pad_id: int) -> TrajectoryBatch:
  b, t, k = len(rows), max_tokens, max_turns
  batch = {name: np.array(value) for name, value in
           dataclasses.asdict(TrajectoryBatch.zeros(b, t, k)).items()}
  batch["tokens"][:] = pad_id
  for i, (row, episode) in enumerate(zip(rows, episodes)):
    n = len(row.tokens)
    if n > t:
      raise ValueError(f"row {i} has {n} tokens, more than max_tokens={t}")
    encoding.fill_row(batch, i, np.array(row.tokens), np.array(row.action), np.array(row.turn),
                      np.array(row.turn_end), np.array(row.logprobs, np.float32), episode, k)
  batch["group_id"] = np.asarray(group_ids, np.int32)
  return TrajectoryBatch(**batch)
