r"""CHAI (ArCHer's baseline): a frozen BC actor acting by best-of-k under an utterance critic.

  python -m experiments.train --config=experiments/configs/chai.py:cpu

The critic, replay and rollout settings of `archer_twenty_questions.py` with
`algorithm.name = "chai"`: the actor never trains; it samples `num_candidates` utterances and
keeps the one the target critic rates highest, and the critic's V target is that best-of-k
action (`agentrl/algorithms/archer.py`).
"""

from __future__ import annotations

import ml_collections

from experiments.configs import archer_twenty_questions


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = archer_twenty_questions.get_config(arg)
  c.algorithm.name = "chai"
  c.algorithm.num_candidates = 5  # Utterances sampled per state (official: 5).
  return c
