"""HiPER: hierarchical PPO with a planner, an executor and a switch head (Peng et al. 2026,
arXiv 2602.16165, as in the official `HiPER-agent` trainer).

The policy plays an environment wrapped in HiPER's reply format (`hiper_<env>`, see
`agentrl.envs.hierarchical`): each turn is `<switch>SWITCH|KEEP</switch> <subgoal>…</subgoal>`
then the action. Boundaries are the first turn and every SWITCH turn; a segment runs to the
turn before the next boundary.

Reading the format. The update finds the parts of every reply from the token ids alone: the
reply automaton of `agentrl.envs.hierarchical` is lifted to tokens (`reply_tables`: for each
(state, token) the state after the token and the part its first byte is in) and run over
each turn's action tokens with a `lax.scan` (`parse_replies`). The environment parses the
decoded text with the same automaton, so both agree on which turns are well formed and which
said SWITCH. Nothing needs to ride on `TrajectoryBatch`, so offline batches, every rollout
path and every existing caller work unchanged, and the update stays one jitted function on
any mesh. A malformed turn (which the environment answered as an invalid action) is no
boundary unless it is the first turn, and all of its tokens count as action tokens.

  critic       three heads (`heads.MLPHead`, out_dim 3; with `value_hidden_dims` they share
               hidden layers) on the policy's hidden states (`stop_gradient` unless
               `shared_trunk`), read where `policy.evaluate(...).hidden` predicts a token,
               i.e. the state after everything before it:
                 V_high(s_k), V_term(s_k)  at the turn's first action token: after the
                                           observation and the assistant prefix, before
                                           "<switch>" (the reference's "first response
                                           token"; V_high is used at boundary turns only);
                 V_low(s_k)                at the first token of the action part: after
                                           "</subgoal>" (fallback, malformed turns: the first
                                           token after "</switch>", else the first token).
               The reference's critic is a separate LM (verl); here the heads read the policy
               trunk, as `turn_ppo`'s value head does.
  reward       r_k = R_k + keep_k − c_inv·1[turn k malformed] + c_cons·1[KEEP, subgoal
               changed] (the reference's shaping, before estimation):
                 keep_k = c_keep on every KEEP turn ("fixed"), or c_keep / #turns of the row
                 ("normalized": a trajectory's total is c_keep · KEEP ratio);
               "subgoal changed": the KEEP turn's subgoal tokens differ from those of the
               previous well-formed turn (compared as token ids, tags included).
  advantage    `agentrl.hiper.hiper_advantages` (HAE: executor GAE within segments with the
               SMDP bootstrap from V_high, planner SMDP GAE over segments, switch head
               G̃ − V_term); with `whiten`, a separate batch z-score for each head over the
               turns that have at least one token of its mask (`advantages.whiten`,
               population variance, ε 1e-8). Token advantages: Â^low on action-part tokens,
               Â^high on subgoal-part tokens (tags included) of boundary turns only, Â^term
               on switch-part tokens; the three masks are disjoint and their sum is the
               token advantage. Subgoal tokens of KEEP turns get no loss.
  loss         PPO clip (`losses.ppo_clip_loss`, token-mean) on the union of the three masks
               + kl_coef · KL to the frozen initial policy (`losses.kl_loss`, k3 clamped at
               ±10: verl's low_var_kl, on every action token) − entropy_coef · entropy, and
               value_coef · (clipped value losses of V_low, V_high and V_term on R^low (valid
               turns), R^high (boundary turns) and G̃ (valid turns)) for the critic.

One `update` computes the targets once with the parameters at its start, then takes `epochs`
passes over `minibatches` row slices (as `ppo`), each one step of the policy optimizer and
one of the critic's.

Config (`config.algorithm`): the knobs of `Defaults` below (`value_*`: the critic's optimizer,
each falling back to the policy optimizer's key when None).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np

from agentrl import advantages, hiper, losses, policy, sources, turns
from agentrl._math import masked_mean as _masked_mean
from agentrl.algorithms.base import (Algorithm, Models, Term, TrainState, jit_update, optimizer,
                                     term)
from agentrl.algorithms import defaults, ppo
from agentrl.algorithms.defaults import knob
from agentrl.envs import hierarchical
from agentrl.models import heads
from agentrl.models.decoder import DecoderConfig
from agentrl.turns import first_position
from agentrl.types import TrajectoryBatch

Array = jax.Array

KEEP_PENALTY_MODES = ("normalized", "fixed")
#: Output columns of the critic.
HIGH, LOW, TERM = 0, 1, 2
_HASH_MULT = 0x01000193  # FNV prime: the subgoal tokens' polynomial hash.


# ----------------------------------------------------------------------------- the format


@dataclasses.dataclass(frozen=True)
class ReplyTables:
  """The reply automaton over token ids (`hierarchical.token_tables`) and its key states."""

  next: np.ndarray  # int32[S, V]
  region: np.ndarray  # int8[S, V]
  start: int
  accept_switch: int
  accept_keep: int


def reply_tables(tokenizer) -> ReplyTables:
  """`ReplyTables` of a tokenizer: each id's bytes as it decodes alone (special tokens:
  none), so the automaton sees what `decode_utterance` gives the environment."""
  ids = [[i] for i in range(tokenizer.vocab_size)]
  texts = tokenizer.decode_batch(ids, skip_special_tokens=True)
  nxt, region = hierarchical.token_tables([t.encode("utf-8", "surrogatepass") for t in texts])
  a = hierarchical.AUTOMATON
  return ReplyTables(nxt, region, a.start, a.accept_switch, a.accept_keep)


def parse_replies(tokens: Array, action_mask: Array, turn_index: Array, turn_end: Array, *,
                  tables: ReplyTables, num_turns: int) -> dict[str, Array]:
  """Runs the reply automaton over every turn's action tokens (jittable).

  Args:
    tokens, action_mask, turn_index, turn_end: the batch's token arrays [B, T].
    tables: `reply_tables` of the policy's tokenizer.
    num_turns: K.

  Returns:
    dict with `region` int32[B, T] (the part of each action token: `hierarchical.SWITCH_PART`,
    `SUBGOAL_PART`, `ACTION_PART`, or `MALFORMED` in a broken reply; 0 off action tokens),
    and per turn [B, K]: `well_formed`, `said_switch`, `said_keep` (bool) and `subgoal_hash`
    (int32, a hash of the turn's subgoal-part token ids).
  """
  chex.assert_rank([tokens, action_mask, turn_index, turn_end], 2)
  chex.assert_equal_shape([tokens, action_mask, turn_index, turn_end])
  act = action_mask.astype(bool) & (turn_index >= 0)
  starts = turns.turn_starts(turn_index, act)
  nxt, reg = jnp.asarray(tables.next), jnp.asarray(tables.region, jnp.int32)
  vocab = nxt.shape[1]
  tok = jnp.clip(tokens, 0, vocab - 1)
  mult = jnp.uint32(_HASH_MULT)

  def step(carry, xs):
    state, h = carry
    t, a, first = xs
    state = jnp.where(first, tables.start, state)
    h = jnp.where(first, jnp.uint32(0), h)
    region = reg[state, t]
    new = nxt[state, t]
    in_subgoal = a & (region == hierarchical.SUBGOAL_PART)
    h = jnp.where(in_subgoal, h * mult + t.astype(jnp.uint32) + jnp.uint32(1), h)
    state = jnp.where(a, new, state)
    return (state, h), (jnp.where(a, region, 0), state, h)

  b = tokens.shape[0]
  init = (jnp.zeros((b,), jnp.int32), jnp.zeros((b,), jnp.uint32))
  _, (region, states, hashes) = jax.lax.scan(step, init, (tok.T, act.T, starts.T))
  region, states, hashes = region.T, states.T, hashes.T
  last = act & turn_end.astype(bool)
  final = turns.tokens_to_turns(states, last, turn_index, num_turns)
  subgoal_hash = turns.tokens_to_turns(jax.lax.bitcast_convert_type(hashes, jnp.int32),
                                       last, turn_index, num_turns)
  said_switch = final == tables.accept_switch
  said_keep = final == tables.accept_keep
  return {"region": region, "well_formed": said_switch | said_keep, "said_switch": said_switch,
          "said_keep": said_keep, "subgoal_hash": subgoal_hash}


def subgoal_changed(subgoal_hash: Array, well_formed: Array, said_keep: Array,
                    turn_mask: Array) -> Array:
  """bool[B, K]: KEEP turns whose subgoal differs from the previous well-formed turn's (the
  reference's keep-consistency indicator; false when no earlier turn is well formed)."""
  chex.assert_rank([subgoal_hash, well_formed, said_keep, turn_mask], 2)
  chex.assert_equal_shape([subgoal_hash, well_formed, said_keep, turn_mask])
  ok = well_formed.astype(bool) & turn_mask.astype(bool)

  def step(carry, xs):
    seen, prev = carry
    h, good, keep = xs
    changed = good & keep & seen & (h != prev)
    return (seen | good, jnp.where(good, h, prev)), changed

  b = subgoal_hash.shape[0]
  init = (jnp.zeros((b,), bool), jnp.zeros((b,), subgoal_hash.dtype))
  _, changed = jax.lax.scan(step, init, (subgoal_hash.T, ok.T, said_keep.astype(bool).T))
  return changed.T


def shaped_rewards(rewards: Array, turn_mask: Array, said_keep: Array, malformed: Array,
                   changed: Array, *, keep_penalty: float, keep_penalty_mode: str,
                   keep_consistency: float, invalid_penalty: float) -> Array:
  """HiPER's per-turn reward shaping (official trainer):

    r_k = R_k + keep_k − c_inv·1[malformed_k] + c_cons·1[KEEP_k and subgoal changed_k],
    keep_k = c_keep·1[KEEP_k] ("fixed") or c_keep·1[KEEP_k] / #valid turns ("normalized").

  Args:
    rewards: [B, K] environment rewards.
    turn_mask: bool[B, K] valid turns.
    said_keep, malformed, changed: bool[B, K] per-turn flags (`parse_replies`,
      `subgoal_changed`).
    keep_penalty: c_keep (added; negative penalises KEEP).
    keep_penalty_mode: "normalized" or "fixed".
    keep_consistency: c_cons (added).
    invalid_penalty: c_inv (subtracted).

  Returns:
    float32[B, K], 0 on masked turns.
  """
  chex.assert_rank([rewards, turn_mask, said_keep, malformed, changed], 2)
  chex.assert_equal_shape([rewards, turn_mask, said_keep, malformed, changed])
  if keep_penalty_mode not in KEEP_PENALTY_MODES:
    raise ValueError(f"hiper: keep_penalty_mode={keep_penalty_mode!r}; valid: "
                     f"{', '.join(KEEP_PENALTY_MODES)}.")
  mask = turn_mask.astype(bool)
  keep = (said_keep.astype(bool) & mask).astype(jnp.float32)
  per_keep = jnp.full(mask.shape, keep_penalty, jnp.float32)
  if keep_penalty_mode == "normalized":
    per_keep = per_keep / jnp.maximum(mask.sum(axis=1, keepdims=True), 1).astype(jnp.float32)
  r = (rewards.astype(jnp.float32) + keep * per_keep
       - invalid_penalty * malformed.astype(jnp.float32)
       + keep_consistency * (changed.astype(bool) & said_keep.astype(bool)).astype(jnp.float32))
  return jnp.where(mask, r, 0.0)


def token_masks(region: Array, well_formed: Array, boundary: Array, turn_index: Array,
                action_mask: Array) -> dict[str, Array]:
  """The three disjoint token masks [B, T]: `low` (action part, and every token of a
  malformed turn), `high` (subgoal part of boundary turns), `term` (switch part)."""
  act = action_mask.astype(bool) & (turn_index >= 0)
  to_tokens = lambda x: turns.turns_to_tokens(x.astype(jnp.int32), turn_index, act) > 0  # noqa: E731
  good, bound = to_tokens(well_formed), to_tokens(boundary)
  return {"low": act & (~good | (region == hierarchical.ACTION_PART)),
          "high": act & good & bound & (region == hierarchical.SUBGOAL_PART),
          "term": act & good & (region == hierarchical.SWITCH_PART)}


def head_positions(region: Array, action_mask: Array, turn_index: Array,
                   num_turns: int) -> tuple[Array, Array]:
  """(start, low) int32[B, K]: where V_high / V_term and V_low are read (T: no such token).

  start: the turn's first action token; low: its first action-part token, else its first
  token past "</switch>", else `start`."""
  act = action_mask.astype(bool) & (turn_index >= 0)
  t = act.shape[1]
  start = first_position(act, turn_index, num_turns)
  action = first_position(act & (region == hierarchical.ACTION_PART), turn_index, num_turns)
  subgoal = first_position(act & (region == hierarchical.SUBGOAL_PART), turn_index, num_turns)
  low = jnp.where(action < t, action, jnp.where(subgoal < t, subgoal, start))
  return start, low


# ----------------------------------------------------------------------------- the algorithm


@dataclasses.dataclass(frozen=True)
class Defaults(ppo.ActorCritic):
  """HiPER's knobs: PPO's loop (`ppo.ActorCritic`, `value_*` the critic's optimizer) with the
  official code's defaults, and HAE's."""

  lambda_turn: float = knob(1.0, "Executor λ (within a subgoal segment).")
  lambda_seg: float = knob(0.95, "Planner λ (across segments).")
  bootstrap_truncated: bool = knob(True, "Executor bootstrap on a truncated last segment.")
  keep_penalty: float = knob(-0.3, "c_keep, the KEEP switch's penalty.")
  keep_penalty_mode: str = knob("normalized", "How c_keep applies: normalized or fixed.")
  keep_consistency: float = knob(-0.3, "c_cons: added on KEEP turns whose subgoal changed.")
  invalid_penalty: float = knob(0.1, "c_inv: subtracted on malformed turns.")
  kl_coef: float = knob(0.01, "Weight of the KL loss to the initial policy.")
  kl_estimator: str = knob("k3", "KL estimator (losses.KL_ESTIMATORS).")
  kl_clamp: float | None = knob(10.0, "Clamp of the per-token KL (None: none).")
  epochs: int = knob(1, "Optimisation passes over each rollout batch.")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings(Defaults):
  """The knobs of one HiPER instance with its modules and reply tables."""

  policy_config: DecoderConfig
  critic: heads.MLPHead
  tables: ReplyTables
  temperature: float = 1.0


def settings(config, models: Models) -> Settings:
  """`config`'s knobs (`Defaults`) with the policy's modules and reply tables."""
  if models.tokenizer is None:
    raise ValueError("hiper: Models.tokenizer is None; the update reads the switch, subgoal "
                     "and action parts of every reply from the token ids and needs the "
                     "policy's tokenizer.")
  h = defaults.read(Defaults, config, "hiper")
  s = Settings(**defaults.values(h), policy_config=models.policy_config,
               critic=heads.MLPHead(hidden_dims=tuple(h.value_hidden_dims), out_dim=3,
                                    squeeze=False),
               tables=reply_tables(models.tokenizer),
               temperature=float(models.sampling.temperature or 1.0))
  if s.keep_penalty_mode not in KEEP_PENALTY_MODES:
    raise ValueError(f"hiper: keep_penalty_mode={s.keep_penalty_mode!r}; valid: "
                     f"{', '.join(KEEP_PENALTY_MODES)}.")
  if s.kl_estimator not in losses.KL_ESTIMATORS:
    raise ValueError(f"hiper: kl_estimator={s.kl_estimator!r}; valid: "
                     f"{', '.join(losses.KL_ESTIMATORS)}.")
  if s.epochs < 1 or s.minibatches < 1:
    raise ValueError(f"hiper: epochs={s.epochs} and minibatches={s.minibatches} must be >= 1.")
  return s


def _evaluate(params, s: Settings, data) -> policy.PolicyOutput:
  return policy.evaluate(params, s.policy_config, data["tokens"], data["positions"],
                         data["attention_mask"], temperature=s.temperature)


def critic_values(critic_params, s: Settings, hidden: Array, start: Array, low: Array
                  ) -> dict[str, Array]:
  """V_high, V_low, V_term [B, K] read from `hidden` [B, T, E] at the head positions."""
  at_start = s.critic.apply({"params": critic_params}, turns.gather_positions(hidden, start))
  at_low = s.critic.apply({"params": critic_params}, turns.gather_positions(hidden, low))
  return {"high": at_start[..., HIGH], "low": at_low[..., LOW], "term": at_start[..., TERM]}


def prepare(policy_params, critic_params, ref_params, batch: TrajectoryBatch, s: Settings
            ) -> tuple[dict[str, Array], dict[str, Array]]:
  """The fixed targets of one update: per-row arrays for the minibatches, and metrics."""
  num_turns = batch.rewards.shape[1]
  turn_mask = batch.turn_mask.astype(bool)
  act = (batch.action_mask.astype(bool) & batch.attention_mask.astype(bool)
         & (batch.turn_index >= 0))
  parsed = parse_replies(batch.tokens, act, batch.turn_index, batch.turn_end,
                         tables=s.tables, num_turns=num_turns)
  well_formed = parsed["well_formed"] & turn_mask
  malformed = turn_mask & ~parsed["well_formed"]
  changed = subgoal_changed(parsed["subgoal_hash"], well_formed, parsed["said_keep"], turn_mask)
  rewards = shaped_rewards(batch.rewards, turn_mask, parsed["said_keep"], malformed, changed,
                           keep_penalty=s.keep_penalty, keep_penalty_mode=s.keep_penalty_mode,
                           keep_consistency=s.keep_consistency,
                           invalid_penalty=s.invalid_penalty)
  start, low = head_positions(parsed["region"], act, batch.turn_index, num_turns)
  data = {"tokens": batch.tokens, "positions": batch.positions,
          "attention_mask": batch.attention_mask, "behaviour_logprobs": batch.behaviour_logprobs,
          "action_mask": act, "start": start, "low": low}
  out = _evaluate(policy_params, s, data)
  values = critic_values(critic_params, s, out.hidden, start, low)
  hae = hiper.hiper_advantages(rewards, batch.dones, turn_mask,
                               parsed["said_switch"] & turn_mask, values["low"],
                               values["high"], values["term"], gamma=s.gamma,
                               lambda_turn=s.lambda_turn, lambda_seg=s.lambda_seg,
                               bootstrap_truncated=s.bootstrap_truncated)
  masks = token_masks(parsed["region"], well_formed, hae["boundary"], batch.turn_index, act)
  has = {k: (turns.turn_sums(m.astype(jnp.float32), batch.turn_index, m, num_turns) > 0)
         & turn_mask for k, m in masks.items()}
  adv = {k: hae[f"{k}_adv"] for k in ("low", "high", "term")}
  if s.whiten:
    adv = {k: advantages.whiten(a, has[k]) for k, a in adv.items()}
  token_adv = sum(turns.turns_to_tokens(jnp.where(has[k], adv[k], 0.0), batch.turn_index,
                                        masks[k]) for k in adv)
  value_masks = {"low": turn_mask, "high": hae["boundary"], "term": turn_mask}
  data.update(advantages=token_adv, policy_mask=masks["low"] | masks["high"] | masks["term"],
              **{f"old_{k}": jnp.where(value_masks[k], v, 0.0) for k, v in values.items()},
              **{f"return_{k}": hae[f"{k}_ret"] for k in values},
              **{f"value_mask_{k}": m for k, m in value_masks.items()})
  if s.kl_coef:
    data["reference_logprobs"] = _evaluate(ref_params, s, data).logprobs
  valid_turns = jnp.maximum(turn_mask.sum(), 1).astype(jnp.float32)
  metrics = {
      "episode_return": jnp.mean(jnp.sum(jnp.where(turn_mask, batch.rewards, 0.0), -1)),
      "shaped_return": jnp.mean(jnp.sum(rewards, -1)),
      "well_formed_rate": jnp.sum(well_formed) / valid_turns,
      "switch_rate": _masked_mean(parsed["said_switch"].astype(jnp.float32), well_formed),
      "segment_length": valid_turns / jnp.maximum(hae["boundary"].sum(), 1).astype(jnp.float32),
      "subgoal_changed_on_keep": _masked_mean(changed.astype(jnp.float32),
                                              well_formed & parsed["said_keep"]),
      **{f"{k}_advantage_mean": _masked_mean(hae[f"{k}_adv"], has[k]) for k in adv},
      **{f"{k}_advantage_std": jnp.sqrt(_masked_mean(jnp.square(hae[f"{k}_adv"]), has[k]))
         for k in adv},
      **{f"{k}_tokens": jnp.sum(m).astype(jnp.float32) for k, m in masks.items()},
      **{f"old_value_{k}": _masked_mean(v, value_masks[k]) for k, v in values.items()},
  }
  return data, metrics


def minibatch_loss(policy_params, critic_params, data: dict[str, Array], s: Settings
                   ) -> tuple[dict[str, Term], dict[str, Any]]:
  """Policy surrogate + kl_coef·KL − entropy_coef·entropy + value_coef·(three value losses).

  Returns `(terms, metrics)`: the `Term`s "pg", "kl", "entropy" and "value_<head>" (see
  `base.objective_and_grad`) and the minibatch's metrics.
  """
  out = _evaluate(policy_params, s, data)
  hidden = out.hidden if s.shared_trunk else jax.lax.stop_gradient(out.hidden)
  values = critic_values(critic_params, s, hidden, data["start"], data["low"])
  mask = data["policy_mask"]
  pg, pgm = losses.ppo_clip_loss(out.logprobs, data["behaviour_logprobs"], data["advantages"],
                                 mask, clip_low=s.clip_eps)
  terms = {"pg": term(1.0, (pg, pgm))}
  metrics = {"pg_loss": pg, "approx_kl": pgm["approx_kl"], "clip_fraction": pgm["clip_fraction"],
             "ratio_mean": pgm["ratio_mean"]}
  if s.kl_coef:
    kl, klm = losses.kl_loss(out.logprobs, data["reference_logprobs"], data["action_mask"],
                             estimator=s.kl_estimator, clamp=s.kl_clamp)
    terms["kl"] = term(s.kl_coef, (kl, klm))
    metrics["kl_ref"] = klm["kl"]
  neg_entropy = losses.aggregate(-out.entropy, data["action_mask"], mode="token-mean")
  terms["entropy"] = Term(s.entropy_coef, neg_entropy[0], neg_entropy[2])
  value_loss = 0.0
  for k, v in values.items():
    vf, vfm = losses.clipped_value_loss(v, data[f"old_{k}"], data[f"return_{k}"],
                                        data[f"value_mask_{k}"], clip=s.value_clip_eps)
    terms[f"value_{k}"] = term(s.value_coef, (vf, vfm))
    value_loss = value_loss + vf
    metrics.update({f"value_loss_{k}": vf, f"value_mean_{k}": vfm["value_mean"],
                    f"return_mean_{k}": vfm["return_mean"]})
  metrics.update(entropy=-neg_entropy[0])
  return terms, jax.lax.stop_gradient(metrics)


def make(config, models: Models, *, name: str = "hiper") -> Algorithm:
  """Builds HiPER (see the module docstring for the config keys)."""
  s = settings(config, models)
  policy_tx, value_tx = optimizer(s), optimizer(s, "value_")

  def init(rng):
    params = jax.tree.map(jnp.copy, models.policy_params)  # The update donates it.
    critic = s.critic.init(rng, jnp.zeros((1, 1, s.policy_config.hidden_size)))["params"]
    frozen = {"reference": jax.tree.map(jnp.copy, models.policy_params)} if s.kl_coef else {}
    return TrainState(step=jnp.zeros((), jnp.int32), params={"policy": params, "value": critic},
                      opt_states={"policy": policy_tx.init(params),
                                  "value": value_tx.init(critic)},
                      frozen=frozen)

  update = ppo.epochs_update(s, policy_tx, value_tx, name=name, prepare_fn=prepare,
                             loss_fn=minibatch_loss)
  return Algorithm(name=name, source=sources.Rollout(), init=init,
                   update=jit_update(update))
