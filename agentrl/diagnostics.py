"""What the algorithms' estimators give on a batch, measured from outside the update.

To compare advantage estimators on the same batches (their spread, the share of tokens they
give no gradient, the noise of the policy gradient they give), without training:

* `group_advantages(batch, config)`: the token advantages of a critic-free group method
  (GRPO, RLOO, GiGPO, ..., with any multi-turn credit, A2TGPO's and IGPO's information gain
  included) as its update computes them from `config` (an algorithm block);
* `critic_advantages(config, models)`: a jitted function of (train state, batch) giving the
  token advantages of a method with a critic (`ppo`, `turn_ppo`, `hiper`) with that state's
  critic, as its update computes them before the first step;
* `policy_gradient` and `gradient_noise`: the policy gradient of fixed advantages on a batch,
  and the agreement and noise-to-signal ratio of such gradients across batches.

This module is the one place outside `agentrl/algorithms/` that calls into the algorithm
modules' update internals (`group.advantage_options`, `group.group_turn_advantages`,
`ppo.settings`, `ppo.prepare`, `hiper.settings`, `hiper.prepare`); notebooks read those
quantities through it.
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from agentrl import credit, policy, turns
from agentrl.algorithms import Models, TrainState, group, hiper, ppo
from agentrl.models.decoder import DecoderConfig
from agentrl.types import TrajectoryBatch

Array = jax.Array

#: The algorithms with a critic whose advantages `critic_advantages` computes.
CRITIC_ALGORITHMS = ("ppo", "turn_ppo", "hiper")


def action_tokens(batch: TrajectoryBatch) -> Array:
  """bool[B, T]: the real tokens the policy generated (the tokens an advantage applies to)."""
  return batch.action_mask.astype(bool) & batch.attention_mask.astype(bool)


def group_advantages(batch: TrajectoryBatch, config, *, params=None,
                     policy_config: DecoderConfig | None = None, temperature: float = 1.0
                     ) -> tuple[Array, Array]:
  """(token advantages [B, T], token mask [B, T]) of the group method `config` on `batch`.

  Args:
    batch: Groups of episodes (`rollout.rollout(..., group_size=G)`).
    config: The method's algorithm block (`config.algorithm` of an experiment): the estimator
      is `config.estimator` when set, else `config.name` (grpo, rloo, gigpo, ...), with its
      credit option and the other options the update reads.
    params, policy_config: The policy whose answer log-probs feed information-gain credit
      (`credit=a2tgpo` or `igpo`); unused otherwise.
    temperature: The sampler's temperature, for those log-probs.

  Returns:
    The per-turn advantages broadcast to each turn's action tokens, and `action_tokens`.
  """
  options = group.advantage_options(config, config.name)
  answer_lp = None
  if options["credit_mode"] in credit.ANSWER_CREDITS:
    if params is None or policy_config is None:
      raise ValueError(f"credit={options['credit_mode']!r} needs the policy's params and "
                       f"policy_config for the answer log-probs.")
    answer_lp = policy.answer_logprobs(
        params, policy_config, batch.tokens, batch.positions, batch.attention_mask,
        batch.action_mask, batch.turn_index, batch.answer_tokens, batch.turn_mask.shape[1],
        temperature=temperature)
  turn_adv, _ = group.group_turn_advantages(batch, answer_logprob=answer_lp, **options)
  return (turns.turns_to_tokens(turn_adv, batch.turn_index, batch.action_mask),
          action_tokens(batch))


def critic_advantages(config, models: Models
                      ) -> Callable[[TrainState, TrajectoryBatch], tuple[Array, Array]]:
  """A jitted `f(state, batch) -> (token advantages [B, T], token mask [B, T])`.

  The advantages the update of `config.name` (one of `CRITIC_ALGORITHMS`, built from the
  algorithm block `config` and `models`) computes for `batch` before its first step, with the
  policy, critic and reference policy of the train `state` (the policy when it has no
  reference): `ppo` token-level GAE, `turn_ppo` turn-level GAE, `hiper` HiPER's hierarchical
  advantages; whitened when the config whitens. The mask is the tokens the policy loss reads
  (HiPER's well-formed reply parts; otherwise `action_tokens`).
  """
  if config.name == "hiper":
    s = hiper.settings(config, models)
    prepare = jax.jit(lambda p, v, r, b: hiper.prepare(p, v, r, b, s)[0])
  elif config.name in ("ppo", "turn_ppo"):
    s = ppo.settings(config, models, turn_level=config.name == "turn_ppo")
    prepare = jax.jit(lambda p, v, r, b: ppo.prepare(p, v, r, b, s)[0])
  else:
    raise ValueError(f"critic_advantages: algorithm {config.name!r}; valid: "
                     f"{', '.join(CRITIC_ALGORITHMS)}.")

  def advantages_of(state: TrainState, batch: TrajectoryBatch) -> tuple[Array, Array]:
    params = state.params["policy"]
    data = prepare(params, state.params["value"], state.frozen.get("reference", params), batch)
    return data["advantages"], data.get("policy_mask", action_tokens(batch))

  return advantages_of


@functools.partial(jax.jit, static_argnums=1)
def policy_gradient(params, policy_config: DecoderConfig, batch: TrajectoryBatch,
                    token_adv: Array, mask: Array) -> Array:
  """∇θ of mean over `mask` of `token_adv` · log π(token), flattened into one vector.

  The policy-gradient direction fixed advantages give on a batch (log-probs at temperature 1).
  """
  def objective(p):
    lp = policy.evaluate(p, policy_config, batch.tokens, batch.positions,
                         batch.attention_mask).logprobs
    return jnp.sum(jnp.where(mask, token_adv * lp, 0.0)) / jnp.maximum(mask.sum(), 1)
  grads = jax.grad(objective)(params)
  return jnp.concatenate([g.ravel() for g in jax.tree.leaves(grads)])


def gradient_noise(grads: Sequence[Array]) -> tuple[float, float]:
  """(mean pairwise cosine, noise-to-signal ratio) of n gradient vectors of separate batches.

  The cosine is 1 when every batch points the same way. The ratio is tr Var(g) / ‖E g‖², with
  ‖E g‖² estimated without the bias of the batch mean (‖ḡ‖² − tr Var(g) / n); inf when that
  estimate is not positive. Both are independent of the gradients' scale; n = 1 gives
  (nan, inf).
  """
  g = np.stack([np.asarray(x, np.float64) for x in grads])
  n = len(g)
  unit = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-30)
  cos = unit @ unit.T
  pairwise = float(cos[~np.eye(n, dtype=bool)].mean()) if n > 1 else float("nan")
  var = float(g.var(axis=0, ddof=1).sum()) if n > 1 else float("nan")
  signal = float(np.sum(g.mean(axis=0) ** 2)) - var / n
  return pairwise, (var / signal if signal > 0 else float("inf"))
