"""Offline datasets of scripted-policy episodes, their readers, and normalised scores.

  builder = agentrl.data.build_dataset("wordle", episodes=20_000)   # TFDS, ArrayRecord files
  episodes = agentrl.data.load_episodes("wordle", "train", episodes=20_000)
  batches = agentrl.data.trajectory_batches(episodes, tokenizer, batch_size=32,
                                            max_tokens=512, max_turns=8, seed=0)
  agentrl.data.normalized_score("wordle", raw_return)     # 0 weak, 50 dataset, 100 strong
"""

from __future__ import annotations

from agentrl.data.episodes_builder import (DEFAULT_MIXTURE, EVAL_SEED_START, AgentrlEpisodes,
                                           EpisodesConfig, build_dataset, check_mixture,
                                           default_data_dir, split_seeds)
from agentrl.data.reader import EpisodeSource, load_episodes, open_dataset, trajectory_batches
from agentrl.data.scores import (LMRL_GYM_PAPER, NORMALIZERS, Normalizer, compute_normalizers,
                                 normalized_score, scripted_returns)

__all__ = ["AgentrlEpisodes", "DEFAULT_MIXTURE", "EVAL_SEED_START", "EpisodeSource",
           "EpisodesConfig", "LMRL_GYM_PAPER", "NORMALIZERS", "Normalizer", "build_dataset",
           "check_mixture", "compute_normalizers", "default_data_dir", "load_episodes",
           "normalized_score", "open_dataset", "scripted_returns", "split_seeds",
           "trajectory_batches"]
