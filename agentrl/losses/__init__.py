"""Policy, value, KL, entropy and imitation losses as pure functions of rollout arrays.

`policy` holds the token-level losses (PPO clip, clipped value, KL, entropy, BC) and the
aggregation modes; `turn` the turn- and sequence-level ones (ST-PPO, REFUEL, SeeUPO's
schedule). Everything is re-exported here and looked up by name with `get_loss`.
"""

from typing import Callable

import jax

from agentrl import registry
# pylint: disable=unused-import  (the package's public names)
from agentrl.losses.policy import (AGGREGATIONS, KL_ESTIMATORS, aggregate,  # noqa: F401
                                   bc_loss, clipped_value_loss, entropy_from_logits,
                                   entropy_loss, filtered_bc_mask, kl_loss, kl_penalty,
                                   ppo_clip_loss)
from agentrl.losses.turn import (REFUEL_FORMS, SCHEDULES, refuel_loss,  # noqa: F401
                                 seeupo_schedule, turn_level_ratio, turn_ppo_loss)

Array = jax.Array

LOSSES: dict[str, Callable[..., tuple[Array, dict[str, Array]]]] = {
    "ppo_clip": ppo_clip_loss,
    "turn_ppo": turn_ppo_loss,
    "clipped_value": clipped_value_loss,
    "kl": kl_loss,
    "entropy": entropy_loss,
    "bc": bc_loss,
    "refuel": refuel_loss,
}


def get_loss(name: str) -> Callable[..., tuple[Array, dict[str, Array]]]:
  """The loss registered under `name`; ValueError listing the valid names otherwise."""
  return registry.lookup(LOSSES, name, "loss")