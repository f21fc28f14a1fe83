"""Critic-free group methods: advantage composition by hand, options, and improvement."""

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from agentrl import advantages, algorithms, credit
from agentrl.algorithms import group
from agentrl.types import TrajectoryBatch
from tests import algo_harness as h

NAMES = ["grpo", "dr_grpo", "rloo", "reinforce_pp", "gigpo"]
# Each multi-turn credit option on a different baseline estimator.
CREDIT_PAIRS = [("dr_grpo", "igpo"), ("rloo", "a2tgpo"), ("grpo", "mars")]


@pytest.mark.parametrize("name", NAMES)
def test_each_estimator_improves_the_toy_task(name):
  m, batch = h.warm()
  algo = algorithms.make(name, ml_collections.ConfigDict({"lr": 3e-3, "epochs": 2}), m)
  state = algo.init(jax.random.PRNGKey(0))
  before = h.is_return(m.policy_params, batch)
  state, metrics = algo.update(state, batch, jax.random.PRNGKey(0))
  state, metrics = algo.update(state, batch, jax.random.PRNGKey(1))
  after = h.is_return(state.params["policy"], batch)
  assert algorithms.nonfinite_losses(metrics) == [] and int(state.step) == 2
  assert float(metrics[f"{name}/approx_kl"]) > 0  # The second epoch/update is off-policy.
  assert after > before + 0.1, (before, after)


def halve_returns(values, group_id, mask, **options):
  """A group normaliser that is no baseline at all: half of each value, 0 where masked."""
  del group_id, options
  return jnp.where(mask, 0.5 * values, 0.0)


def test_a_registered_estimator_is_run_by_name(monkeypatch):
  monkeypatch.setattr(advantages, "GROUP_ESTIMATORS", dict(advantages.GROUP_ESTIMATORS))
  advantages.register_group_estimator("halve_returns", halve_returns)
  with pytest.raises(ValueError, match="already registered"):
    advantages.register_group_estimator("halve_returns", halve_returns)
  m, batch = h.warm()
  mask = np.asarray(batch.turn_mask)
  ret = np.where(mask, batch.rewards, 0.0).sum(1)
  expected = np.asarray(halve_returns(ret, batch.group_id, mask.any(1)))[:, None] * mask
  adv, _ = group.group_turn_advantages(batch, estimator="halve_returns", credit_mode="none")
  np.testing.assert_allclose(adv, expected, atol=1e-6)
  # Selected by the config; "turn" credit: half of each turn's return-to-go.
  turn, _ = group.group_turn_advantages(batch, estimator="halve_returns", credit_mode="turn")
  rtg = np.cumsum((batch.rewards * mask)[:, ::-1], axis=1)[:, ::-1] * mask
  np.testing.assert_allclose(turn, 0.5 * rtg, atol=1e-5)
  algo = algorithms.make("grpo", ml_collections.ConfigDict(
      {"lr": 1e-3, "estimator": "halve_returns"}), m)
  _, metrics = algo.update(algo.init(jax.random.PRNGKey(0)), batch, jax.random.PRNGKey(0))
  assert float(metrics["grpo/adv_mean"]) == pytest.approx(expected[mask].mean(), abs=1e-5)
  # The first step's loss is −A·1 token-mean (a registered estimator's default aggregation).
  act = np.asarray(batch.action_mask)
  tok = np.where(act, np.take_along_axis(expected, np.clip(batch.turn_index, 0, None), 1), 0.0)
  assert float(metrics["grpo/pg_loss"]) == pytest.approx(-tok.sum() / act.sum(), abs=1e-5)
  with pytest.raises(ValueError, match="halve_returns, reinforce_pp, rloo"):
    algorithms.make("grpo", ml_collections.ConfigDict({"lr": 1e-3, "estimator": "nope"}), m)


def test_first_step_is_the_policy_gradient_with_ratio_one():
  m, batch = h.warm()
  algo = algorithms.make("grpo", ml_collections.ConfigDict({"lr": 1e-3}), m)
  state, metrics = algo.update(algo.init(jax.random.PRNGKey(0)), batch, jax.random.PRNGKey(0))
  assert float(metrics["grpo/ratio_mean"]) == pytest.approx(1.0, abs=1e-4)
  # seq-mean-token-mean of −A·1 over the rows with action tokens.
  adv = np.asarray(group.group_turn_advantages(batch, estimator="grpo", credit_mode="none")[0])
  mask = batch.action_mask
  tok = np.where(mask, np.take_along_axis(adv, np.clip(batch.turn_index, 0, None), 1), 0.0)
  rows = mask.sum(1) > 0
  expected = np.mean(-(tok.sum(1)[rows] / mask.sum(1)[rows]))
  assert float(metrics["grpo/pg_loss"]) == pytest.approx(expected, abs=1e-5)


def hand_batch():
  """Two groups of two episodes, K = 3 turns, T = 12 tokens; tokens chosen so that rows 0 and 1
  share their first observation and first action (same anchor state at turn 1)."""
  b, t, k = 4, 12, 3
  batch = {key: np.array(v) for key, v in
           dataclasses.asdict(TrajectoryBatch.zeros(b, t, k)).items()}
  # Layout per row: obs(2) act(1) obs(2) act(1) obs(2) act(1) pad.
  turn = np.array([-1, -1, 0, -1, -1, 1, -1, -1, 2, -1, -1, -1])
  act = turn >= 0
  tokens = np.array([[5, 6, 7, 8, 9, 10, 11, 12, 13, 0, 0, 0],
                     [5, 6, 7, 8, 9, 20, 11, 12, 14, 0, 0, 0],
                     [5, 6, 7, 8, 9, 10, 11, 12, 13, 0, 0, 0],
                     [5, 6, 30, 8, 9, 10, 11, 12, 13, 0, 0, 0]], np.int32)
  batch.update(tokens=tokens, positions=np.tile(np.arange(t, dtype=np.int32), (b, 1)),
               attention_mask=np.tile(np.arange(t) < 9, (b, 1)),
               action_mask=np.tile(act, (b, 1)), turn_index=np.tile(turn, (b, 1)).astype(np.int32),
               turn_end=np.tile(act, (b, 1)),
               rewards=np.array([[-1, -1, 0], [-1, 0, 0], [-1, -1, -1], [0, 0, 0]], np.float32),
               turn_mask=np.array([[1, 1, 1], [1, 1, 0], [1, 1, 1], [1, 0, 0]], bool),
               dones=np.array([[0, 0, 1], [0, 1, 0], [0, 0, 0], [1, 0, 0]], bool),
               group_id=np.array([0, 0, 1, 1], np.int32))
  batch["action_mask"][1, 8] = False  # Row 1 has two turns.
  batch["turn_index"][1, 8] = -1
  batch["turn_end"][1, 8] = False
  batch["action_mask"][3, 5:] = batch["turn_end"][3, 5:] = False  # Row 3 has one turn.
  batch["turn_index"][3, 5:] = -1
  return TrajectoryBatch(**batch)


def test_hand_checked_advantages():
  batch = hand_batch()
  mask = np.asarray(batch.turn_mask)
  adv = lambda **kw: np.asarray(group.group_turn_advantages(batch, **kw)[0])  # noqa: E731
  # Returns: [-2, -1 | -3, 0]. GRPO: (R − mean)/(std + ε), population std 0.5 and 1.5.
  np.testing.assert_allclose(adv(estimator="grpo", credit_mode="none"),
                             np.array([-1, 1, -1, 1])[:, None] * mask, atol=1e-5)
  np.testing.assert_allclose(adv(estimator="dr_grpo", credit_mode="none"),
                             np.array([-0.5, 0.5, -1.5, 1.5])[:, None] * mask, atol=1e-6)
  np.testing.assert_allclose(adv(estimator="rloo", credit_mode="none"),
                             np.array([-1, 1, -3, 3])[:, None] * mask, atol=1e-6)
  # REINFORCE++: global z-score of the returns; with the group baseline, of R − mean_g.
  r = np.array([-2.0, -1, -3, 0])
  np.testing.assert_allclose(adv(estimator="reinforce_pp", credit_mode="none")[:, 0],
                             (r - r.mean()) / r.std(), atol=1e-5)
  c = np.array([-0.5, 0.5, -1.5, 1.5])
  np.testing.assert_allclose(adv(estimator="reinforce_pp", credit_mode="none",
                                 group_baseline=True)[:, 0], c / c.std(), atol=1e-5)
  # "turn": return-to-go per turn, (γ = 1) [-2,-1,0 | -1,0,· | -3,-2,-1 | 0,·,·], grouped by
  # (group, turn). Dr.GRPO centres within each (group, turn); a lone turn gets 0.
  expected = np.array([[-0.5, -0.5, 0], [0.5, 0.5, 0], [-1.5, 0, 0], [1.5, 0, 0]])
  np.testing.assert_allclose(adv(estimator="dr_grpo", credit_mode="turn"), expected, atol=1e-6)
  # γ = 0.5: row 0 return-to-go [-1.5, -1, 0], row 1 [-1, 0].
  got = adv(estimator="rloo", credit_mode="turn", gamma=0.5)
  np.testing.assert_allclose(got[:2, :2], [[-0.5, -1], [0.5, 1]], atol=1e-6)


def test_anchor_ids_and_gigpo():
  batch = hand_batch()
  hist = np.asarray(group.anchor_ids(batch, mode="history"))
  obs = np.asarray(group.anchor_ids(batch, mode="observation"))
  # Turn 0: rows 0-2 saw the same prompt, row 3 too (its action differs, not its prompt).
  assert len(set(hist[:, 0])) == 1
  # Turn 1: rows 0, 1, 2 share the history; row 3 acted differently at turn 0 (no turn 1).
  assert hist[0, 1] == hist[1, 1] == hist[2, 1]
  assert hist[0, 2] == hist[2, 2] and len({hist[0, 0], hist[0, 1], hist[0, 2]}) == 3
  assert hist[1, 2] == 0 and hist[3, 1] == 0  # Turns that did not happen.
  # The observation hash restarts after every action: turn 1 hashes [8, 9], turn 2 [11, 12].
  assert obs[0, 0] == hist[0, 0] and obs[0, 1] == obs[1, 1] == obs[2, 1] != hist[0, 1]
  assert obs[0, 1] != obs[0, 2]
  ids = np.asarray(group.anchor_ids(batch))
  got = np.asarray(group.group_turn_advantages(batch, estimator="gigpo",
                                               credit_mode="gigpo_mean_norm", gamma=1.0)[0])
  ref = np.asarray(credit.gigpo_advantages(
      np.array([-2.0, -1, -3, 0]), batch.group_id, batch.rewards, batch.turn_mask, ids,
      gamma=1.0, normalize_std=False))
  np.testing.assert_allclose(got, ref, atol=1e-6)
  # By hand (mean_norm): episode means weighted by turns: group 0 (−2·3 − 1·2)/5 = −1.6.
  # Step buckets: turn 0 of rows 0, 1 (same prompt): rtg −2, −1 → ∓0.5; turn 1: −1, 0 → ∓0.5.
  np.testing.assert_allclose(got[0, :2], [-0.4 - 0.5, -0.4 - 0.5], atol=1e-6)
  np.testing.assert_allclose(got[1, :2], [0.6 + 0.5, 0.6 + 0.5], atol=1e-6)


def test_unknown_credit_option_is_a_clear_error():
  m = h.models()
  with pytest.raises(ValueError, match="supported: none, turn, mars, igpo, a2tgpo"):
    algorithms.make("grpo", ml_collections.ConfigDict({"lr": 1e-3, "credit": "hiper"}), m)
  with pytest.raises(ValueError, match="supported: gigpo, gigpo_mean_norm"):
    algorithms.make("gigpo", ml_collections.ConfigDict({"lr": 1e-3, "credit": "turn"}), m)
  with pytest.raises(ValueError, match="anchor"):
    algorithms.make("gigpo", ml_collections.ConfigDict({"lr": 1e-3, "anchor": "text"}), m)


@pytest.mark.parametrize("name,credit_mode", CREDIT_PAIRS)
def test_each_credit_option_improves_the_toy_task(name, credit_mode):
  m, batch = h.warm()  # Its rollout recorded the tasks' answers ("I guess N").
  config = ml_collections.ConfigDict({"lr": 3e-3, "epochs": 2, "credit": credit_mode})
  algo = algorithms.make(name, config, m)
  assert algo.answer_length == (32 if credit_mode in credit.ANSWER_CREDITS else 0)
  state = algo.init(jax.random.PRNGKey(0))
  before = h.is_return(m.policy_params, batch)
  for i in range(2):
    state, metrics = algo.update(state, batch, jax.random.PRNGKey(i))
  after = h.is_return(state.params["policy"], batch)
  assert algorithms.nonfinite_losses(metrics) == []
  if credit_mode in credit.ANSWER_CREDITS:
    assert 0 < float(metrics[f"{name}/answer_prob"]) < 1
  if credit_mode == "a2tgpo":  # ε (1 ± β) around the base clip 0.2.
    assert 0.14 < float(metrics[f"{name}/clip_range"]) < 0.26
  # MARS pools a group's turns of all positions, so its advantage also rewards being a late
  # turn: on this task it moves the policy less (measured: +0.07 after two updates).
  assert after > before + (0.05 if credit_mode == "mars" else 0.1), (before, after)


def random_turn_batch(seed: int, b: int = 12, k: int = 5):
  """Ragged per-turn data on a zero batch: 3 groups of 4, random rewards, 1..k turns."""
  rng = np.random.default_rng(seed)
  batch = TrajectoryBatch.zeros(b, 4, k)
  turns = rng.integers(1, k + 1, size=b)
  turn_mask = np.arange(k)[None, :] < turns[:, None]
  return batch.replace(rewards=rng.normal(size=(b, k)).astype(np.float32) * turn_mask,
                       turn_mask=turn_mask, group_id=np.repeat(np.arange(b // 4), 4),
                       role=np.repeat(rng.integers(0, 2, size=(b, 1)), 4, axis=1)
                       ), rng.normal(size=(b, k)).astype(np.float32) - 2.0


def test_information_gain_log_probs_by_hand():
  lp = np.array([[-3.0, -2.0, -1.0, 9.0], [-1.0, -5.0, 9.0, 9.0]], np.float32)
  mask = np.array([[1, 1, 1, 0], [1, 0, 0, 0]], bool)
  before, after = credit.information_gain_logprobs(lp, mask)
  np.testing.assert_allclose(before, [[-3, -2, -1, 0], [-1, 0, 0, 0]])
  np.testing.assert_allclose(after, [[-2, -1, -1, 0], [-1, 0, 0, 0]])  # Last turn: no gain.


@pytest.mark.parametrize("seed", [0, 1])
def test_credit_options_with_grpo_equal_the_papers_functions(seed):
  """The composition in group.py (any estimator's normalisation) reduces, with GRPO's z-score,
  to the reference implementations in credit.py of IGPO, A²TGPO and MARS."""
  batch, lp = random_turn_batch(seed)
  mask, gid = batch.turn_mask, batch.group_id
  ret = np.where(mask, batch.rewards, 0.0).sum(1)
  before, after = credit.information_gain_logprobs(lp, mask)
  adv = lambda c, **kw: group.group_turn_advantages(  # noqa: E731
      batch, estimator="grpo", credit_mode=c, answer_logprob=lp, gamma=0.9, **kw)
  igpo, clip = adv("igpo")
  ref = credit.igpo_advantages(credit.igpo_turn_rewards(before, after, ret, mask), gid, mask,
                               gamma=0.9)
  np.testing.assert_allclose(igpo, ref, atol=1e-5)
  np.testing.assert_allclose(clip, 0.2 * mask)
  for on_all in (True, False):
    a2, clip = adv("a2tgpo", outcome_on_all_turns=on_all, lambda_ig=0.5, beta=0.3)
    ref_adv, ref_clip = credit.a2tgpo_advantages(
        np.where(mask, np.exp(after) - np.exp(before), 0.0), ret, gid, mask, gamma=0.9,
        lambda_ig=0.5, outcome_on_all_turns=on_all, beta=0.3)
    np.testing.assert_allclose(a2, ref_adv, atol=1e-5)
    np.testing.assert_allclose(clip, ref_clip, atol=1e-6)
  mars, _ = adv("mars")
  turn_role = np.broadcast_to(batch.role[:, :1], mask.shape)
  np.testing.assert_allclose(mars, credit.mars_advantages(batch.rewards, turn_role, gid, mask,
                                                          num_roles=2, gamma=0.9), atol=1e-5)
  # Another estimator changes the normalisation, not the signal: Dr.GRPO's IGPO is centred.
  centred, _ = group.group_turn_advantages(batch, estimator="dr_grpo", credit_mode="igpo",
                                           answer_logprob=lp, gamma=1.0)
  assert not np.allclose(centred, igpo) and np.isfinite(np.asarray(centred)).all()


def test_information_gain_credit_without_answers_is_a_clear_error():
  m, batch = h.warm()
  algo = algorithms.make("grpo", ml_collections.ConfigDict({"lr": 1e-3, "credit": "igpo"}), m)
  no_answers = batch.replace(answer_tokens=np.zeros((batch.batch_size, 0), np.int32))
  with pytest.raises(ValueError, match="answer_length=32"):
    algo.update(algo.init(jax.random.PRNGKey(0)), no_answers, jax.random.PRNGKey(0))


def test_mask_truncated_drops_over_budget_rows_from_the_loss_only():
  """Mini-o3's over-turn masking equals zeroing those rows' action tokens by hand, while the
  group statistics still count them (the advantages of the other rows are unchanged)."""
  m, batch = h.warm()
  truncated = np.arange(batch.batch_size) % 3 == 0
  mask = np.asarray(batch.turn_mask)
  last = mask & (np.cumsum(mask[:, ::-1], axis=1)[:, ::-1] == 1)  # The last valid turn.
  batch = batch.replace(dones=last & ~truncated[:, None])
  by_hand = batch.replace(action_mask=np.asarray(batch.action_mask) & ~truncated[:, None])
  run = lambda b, **kw: algorithms.make("grpo", ml_collections.ConfigDict(  # noqa: E731
      {"lr": 1e-3, **kw}), m).update(algorithms.make("grpo", ml_collections.ConfigDict(
          {"lr": 1e-3}), m).init(jax.random.PRNGKey(0)), b, jax.random.PRNGKey(0))
  _, metrics = run(batch, mask_truncated=True)
  _, hand = run(by_hand)
  # (Parameters after one Adam step are ±lr wherever a gradient is ~0, so compare the loss
  # and the gradient instead.)
  for key in ("grpo/pg_loss", "grad_norm/grpo_loss"):
    assert float(metrics[key]) == pytest.approx(float(hand[key]), rel=1e-5), key
  assert float(metrics["grpo/masked_truncated_fraction"]) == pytest.approx(truncated.mean())
  adv, _ = group.group_turn_advantages(batch, estimator="grpo", credit_mode="none")
  assert np.abs(np.asarray(adv)[truncated]).sum() > 0  # They still get (unused) advantages.
