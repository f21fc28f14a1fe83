"""Text episodes -> `TrajectoryBatch`: the one encoding that rollouts and offline data share.

  batch = encoding.encode_episodes(tokenizer, episodes, max_tokens=1024, max_turns=20)

`fill_row` writes one conversation row and its per-turn arrays; `agentrl.rollout` fills its
sampled rows with it, and `encode_episodes` the rows of text episodes (offline datasets,
replay prefill), so both produce exactly the same batch for the same conversation.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from agentrl.envs.base import Episode
from agentrl.tokenizer import ChatEncoding, Tokenizer
from agentrl.types import TrajectoryBatch


def fill_row(batch: dict, i: int, tokens, action, turn, turn_end, logprobs, episode: Episode,
              max_turns: int):
  """Writes one right-padded row and its per-turn arrays (turns beyond K are an error)."""
  n = len(tokens)
  batch["tokens"][i, :n] = tokens
  batch["positions"][i, :n] = np.arange(n)
  batch["attention_mask"][i, :n] = True
  batch["action_mask"][i, :n] = action
  batch["turn_index"][i, :n] = turn
  batch["turn_end"][i, :n] = turn_end
  batch["behaviour_logprobs"][i, :n] = logprobs
  batch["role"][i, :] = episode.role  # A row is one role's view, padding included.
  turns = int(turn.max(initial=-1)) + 1
  if turns > max_turns:
    raise ValueError(f"row {i} has {turns} agent turns, more than max_turns={max_turns}")
  batch["rewards"][i, :turns] = episode.rewards[:turns]
  batch["turn_mask"][i, :turns] = True
  if turns and episode.done and turns == episode.num_turns:
    batch["dones"][i, turns - 1] = True


def encode_episodes(tokenizer: Tokenizer, episodes: Sequence[Episode], *, max_tokens: int,
                    max_turns: int, system_prompt: bool = True) -> TrajectoryBatch:
  """Tokenizes text episodes (e.g. an offline dataset) into a right-padded `TrajectoryBatch`.

  Each row is the system prompt followed by the episode's messages, encoded with the chat
  template. An episode longer than `max_tokens` tokens or `max_turns` turns keeps its first
  turns that fit and is treated as truncated there (`dones` stays False). `group_id` is
  the same for episodes of the same (environment, seed); behaviour log-probs are 0.
  `system_prompt=False` leaves the system message out, as the rollout option of that name.
  """
  b, t, k = len(episodes), max_tokens, max_turns
  batch = {name: np.array(value) for name, value in
           dataclasses.asdict(TrajectoryBatch.zeros(b, t, k)).items()}
  batch["tokens"][:] = tokenizer.pad_id
  for i, episode in enumerate(episodes):
    messages = ([{"role": "system", "content": episode.system}]
                if episode.system and system_prompt else [])
    encoding = fit_turns(tokenizer.encode_chat(messages + list(episode.messages)), t, k)
    # The batch gives a turn index to action tokens only (the chat encoding also numbers the
    # assistant prefix).
    turn_index = np.where(encoding.action_mask, encoding.turn_index, -1)
    fill_row(batch, i, encoding.tokens, encoding.action_mask, turn_index, encoding.turn_end,
             np.zeros(len(encoding), np.float32), episode, k)
  keys = {}
  batch["group_id"] = np.array([keys.setdefault((ep.env, ep.seed), len(keys)) for ep in episodes],
                               np.int32)
  return TrajectoryBatch(**batch)


def fit_turns(encoding: ChatEncoding, max_tokens: int, max_turns: int) -> ChatEncoding:
  """Cuts an encoding after its last whole agent turn that fits both limits."""
  if len(encoding) <= max_tokens and encoding.num_turns <= max_turns:
    return encoding
  ends = np.flatnonzero(encoding.turn_end)
  keep = [e + 1 for j, e in enumerate(ends) if e + 1 <= max_tokens and j < max_turns]
  n = keep[-1] if keep else min(len(encoding), max_tokens)
  fields = dataclasses.asdict(encoding)
  cut = ChatEncoding(**{name: value[:n] for name, value in fields.items()})
  if not keep:  # Not even one turn fits: keep the context, no actions.
    cut = dataclasses.replace(cut, action_mask=np.zeros(n, bool), turn_end=np.zeros(n, bool),
                              turn_index=np.full(n, -1, np.int32))
  return cut
