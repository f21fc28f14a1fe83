"""The project's tokenizer for an environment: a byte-level BPE trained on its episodes.

For policies trained from scratch: the corpus is the system prompts and messages of
`episodes` scripted episodes (strong and weak policies, fixed seeds), so the vocabulary
covers the environment's questions, answers and instructions. Trained once and cached as
`tokenizer.json` under `<data_dir>/tokenizers/<env>-<vocab>-<hash>/`.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Mapping

from agentrl import envs
from agentrl.data import episodes_builder
from agentrl.tokenizer import Tokenizer


def corpus(env_name: str, *, episodes: int, env_kwargs: Mapping[str, Any] | None = None):
  """Texts of `episodes` strong and `episodes` weak scripted episodes (seeds 0..episodes-1)."""
  env_kwargs = dict(env_kwargs or {})
  env = envs.make(env_name, **env_kwargs)
  for which in ("strong", "weak"):
    policy = envs.policy(env_name, which, **env_kwargs)
    for seed in range(episodes):
      for episode in envs.play(env, policy, seed):
        yield episode.system
        for message in episode.messages:
          yield message["content"]
        yield episode.final_observation


def environment_tokenizer(env_name: str, *, vocab_size: int, episodes: int = 200,
                          env_kwargs: Mapping[str, Any] | None = None,
                          data_dir: str | os.PathLike | None = None) -> Tokenizer:
  """The cached BPE tokenizer of `env_name` (trained on first use)."""
  key = json.dumps({"env": env_name, "vocab": vocab_size, "episodes": episodes,
                    "kwargs": dict(env_kwargs or {})}, sort_keys=True)
  digest = hashlib.sha256(key.encode()).hexdigest()[:8]
  directory = os.path.join(episodes_builder.default_data_dir(data_dir), "tokenizers",
                           f"{env_name}-{vocab_size}-{digest}")
  if os.path.exists(os.path.join(directory, "tokenizer.json")):
    return Tokenizer.from_file(directory)
  tokenizer = Tokenizer.train_bpe(corpus(env_name, episodes=episodes, env_kwargs=env_kwargs),
                                  vocab_size=vocab_size)
  os.makedirs(directory, exist_ok=True)
  tmp = directory + ".tmp"
  os.makedirs(tmp, exist_ok=True)
  tokenizer.save(tmp)
  os.replace(os.path.join(tmp, "tokenizer.json"), os.path.join(directory, "tokenizer.json"))
  os.rmdir(tmp)
  return tokenizer
