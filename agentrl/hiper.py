"""HiPER's hierarchical advantage estimation for a planner / executor / switch policy.

Per-turn arrays are [B, K], batch-major; masked turns never influence a valid output and
come out as 0. Kept apart from `agentrl.credit` (which re-exports it and registers it as
"hiper") because it alone works on subgoal segments rather than groups.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from agentrl._math import as_float

Array = jax.Array


def hiper_advantages(rewards: Array, dones: Array, turn_mask: Array, switch: Array,
                     v_low: Array, v_high: Array, v_term: Array, *, gamma: float = 1.0,
                     lambda_turn: float = 1.0, lambda_seg: float = 0.95,
                     bootstrap_truncated: bool = False) -> dict[str, Array]:
  """Hierarchical advantage estimation (HiPER, Peng et al. 2026, arXiv 2602.16165, HAE as in
  the official `core_hae.py`).

  Segments: the first valid turn and every SWITCH turn open a segment k = [s_k, e_k], of d_k
  valid turns. Iterating backward over the valid turns of each row:

  executor (per turn, GAE reset at segment ends):
    V⁺ₜ = V_low(s_{t+1}) if t < e_k;  V_high(s_{s_{k+1}}) if t = e_k has a next segment;
          V_low(sₜ) if bootstrap_truncated and no next segment; else 0
    δₜ = rₜ + γ(1 − dₜ)V⁺ₜ − V_low(sₜ),   Âˡᵒʷₜ = δₜ + γλ_turn(1 − dₜ)Âˡᵒʷₜ₊₁ (Âˡᵒʷ_{e_k+1} = 0),
    Rˡᵒʷₜ = Âˡᵒʷₜ + V_low(sₜ);
  planner (per segment, SMDP GAE, stored at the boundary turn s_k):
    G_k = Σ_{j<d_k} γʲ r_{s_k+j},
    δ_k = G_k + γ^{d_k}(1 − d_{e_k})V_high(s_{k+1}) − V_high(s_{s_k}),
    Âʰⁱᵍʰ_k = δ_k + γ^{d_k}λ_seg(1 − d_{e_k})Âʰⁱᵍʰ_{k+1},  Rʰⁱᵍʰ_k = Âʰⁱᵍʰ_k + V_high(s_{s_k});
  switch head (per turn):
    G̃ₜ = rₜ + γ(1 − dₜ)G̃ₜ₊₁ with G̃_{e_k+1} = V_high(s_{k+1}) (0 after the last segment),
    Âᵗᵉʳᵐₜ = G̃ₜ − V_term(sₜ).

  V_high(s_{k+1}) is 0 after the last segment in the planner and switch terms (the source gives
  truncation bootstrapping for the executor only). The per-head batch z-scores (`norm_adv`) are
  `advantages.whiten` calls on the outputs (mask `turn_mask` for low/term, `boundary` for high);
  the three heads go to disjoint token masks (action / boundary subgoal / switch tokens).

  Args:
    rewards: [B, K] shaped per-turn rewards.
    dones: bool[B, K] true terminal after the turn.
    turn_mask: bool[B, K] valid turns (holes are skipped).
    switch: bool[B, K] SWITCH turns (the first valid turn is always a boundary).
    v_low, v_high, v_term: [B, K] the three critic heads at each turn (v_high is only read at
      boundary turns).
    gamma: discount γ.
    lambda_turn: executor GAE λ.
    lambda_seg: planner GAE λ.
    bootstrap_truncated: executor bootstrap on a truncated last segment.

  Returns:
    dict with [B, K] arrays `low_adv`, `low_ret`, `high_adv`, `high_ret` (nonzero only at
    boundary turns), `term_adv`, `term_ret`, and bool `boundary`; all 0 / False on masked turns.
  """
  chex.assert_rank([rewards, dones, turn_mask, switch, v_low, v_high, v_term], 2)
  chex.assert_equal_shape([rewards, dones, turn_mask, switch, v_low, v_high, v_term])
  r = as_float(rewards)
  mask = turn_mask.astype(bool)
  first = mask & (jnp.cumsum(mask.astype(jnp.int32), axis=1) == 1)
  boundary = mask & (switch.astype(bool) | first)
  d = dones.astype(r.dtype)
  vl, vh, vt = (as_float(v).astype(r.dtype) for v in (v_low, v_high, v_term))
  zeros = jnp.zeros((r.shape[0],), r.dtype)
  fzero = jnp.zeros((r.shape[0],), bool)

  def step(c, xs):
    rt, dt, m, bd, vlt, vht, vtt = xs
    at_end = ~c["has_next"] | c["next_boundary"]
    next_seg_v = jnp.where(c["has_next"], c["vh_next"], 0.0)
    # Executor.
    v_plus = jnp.where(~at_end, c["vl_next"],
                       jnp.where(c["has_next"], c["vh_next"],
                                 vlt if bootstrap_truncated else zeros))
    delta = rt + gamma * (1.0 - dt) * v_plus - vlt
    a_low = delta + gamma * lambda_turn * (1.0 - dt) * jnp.where(at_end, 0.0, c["a_low"])
    # Switch head.
    g_term = rt + gamma * (1.0 - dt) * jnp.where(at_end, next_seg_v, c["g_term"])
    # Planner: running in-segment discounted sum, length and end state.
    seg_g = rt + gamma * jnp.where(at_end, 0.0, c["seg_g"])
    seg_len = 1.0 + jnp.where(at_end, 0.0, c["seg_len"])
    seg_done = jnp.where(at_end, dt, c["seg_done"])
    seg_v = jnp.where(at_end, next_seg_v, c["seg_v"])
    disc = gamma ** seg_len
    a_high = (seg_g + disc * (1.0 - seg_done) * seg_v - vht
              + disc * lambda_seg * (1.0 - seg_done) * c["a_high"])
    new = dict(
        has_next=c["has_next"] | m,
        next_boundary=jnp.where(m, bd, c["next_boundary"]),
        vl_next=jnp.where(m, vlt, c["vl_next"]),
        vh_next=jnp.where(m, vht, c["vh_next"]),
        a_low=jnp.where(m, a_low, c["a_low"]),
        g_term=jnp.where(m, g_term, c["g_term"]),
        seg_g=jnp.where(m, seg_g, c["seg_g"]),
        seg_len=jnp.where(m, seg_len, c["seg_len"]),
        seg_done=jnp.where(m, seg_done, c["seg_done"]),
        seg_v=jnp.where(m, seg_v, c["seg_v"]),
        a_high=jnp.where(m & bd, a_high, c["a_high"]),
    )
    hb = m & bd
    out = (jnp.where(m, a_low, 0.0), jnp.where(m, a_low + vlt, 0.0),
           jnp.where(hb, a_high, 0.0), jnp.where(hb, a_high + vht, 0.0),
           jnp.where(m, g_term - vtt, 0.0), jnp.where(m, g_term, 0.0))
    return new, out

  init = dict(has_next=fzero, next_boundary=fzero, vl_next=zeros, vh_next=zeros, a_low=zeros,
              g_term=zeros, seg_g=zeros, seg_len=zeros, seg_done=zeros, seg_v=zeros,
              a_high=zeros)
  xs = tuple(x.T for x in (r, d, mask, boundary, vl, vh, vt))
  _, outs = jax.lax.scan(step, init, xs, reverse=True)
  names = ("low_adv", "low_ret", "high_adv", "high_ret", "term_adv", "term_ret")
  result = {n: o.T for n, o in zip(names, outs)}
  result["boundary"] = boundary
  return result
