"""HATRPO-W [2]: the joint KL budget split by the KKT conditions of the predicted gain.

A TRPO step of radius δ_i gains about sqrt(2 q_i δ_i), with q_i = g_iᵀF_i⁻¹g_i the squared
natural-gradient norm of a pre-pass at compound ratio 1. `kkt_allocation` maximises
Σ_i sqrt(2 q_i δ_i) subject to Σ_i δ_i = δ_total and a per-agent floor and cap (exact
water-filling); `KKTAllocator` runs the pre-pass, the split, optional share smoothing and the
sweep, optionally carrying unused budget over to the agents still to move.

References:
    [1] Kuba et al., *Trust Region Policy Optimisation in Multi-Agent Reinforcement
        Learning*, ICLR 2022, arXiv:2109.11251 — HATRPO.
    [2] Shek, Shi & Tokekar, *Multi-Agent Trust Region Policy Optimisation: A Joint
        Constraint Approach*, arXiv:2508.10340 — HATRPO-W (KKT) and HATRPO-G (greedy).
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

from rllib_hatrpo.core.allocation.base import (
    KLAllocation,
    KLAllocator,
    agents_of,
    check_option,
    check_total_kl_budget,
    predicted_gain,
)
from rllib_hatrpo.core.allocation.protocol import AgentUpdate, SequentialUpdate, sweep

__all__ = [
    "BOX_FEASIBILITY_RTOL",
    "NATGRAD_SQ_NORM_SUM_TINY",
    "KKTAllocator",
    "kkt_allocation",
]

# Σ_j q_j at or below this is treated as "no signal": q is a squared norm of float32
# gradients (about 7 significant digits), so such a total is numerical noise, and dividing
# by it would turn that noise into the budgets. The KKT allocation then falls back to the
# uniform split.
NATGRAD_SQ_NORM_SUM_TINY = 1e-12

# Relative slack when comparing n·δ_min or n·δ_max with δ_total: with min_share = 1 (or
# max_share = 1) the box is exactly {δ_total/n}, but n·(δ_total/n) may differ from δ_total
# in the last bit; without the slack that feasible box would be rejected.
BOX_FEASIBILITY_RTOL = 1e-12


def kkt_allocation(
    natgrad_sq_norm: Sequence[float],
    total_kl_budget: float,
    min_kl_budget: float = 0.0,
    max_kl_budget: float = math.inf,
) -> KLAllocation:
    """Split a joint KL budget to maximise the predicted improvement (HATRPO-W [2]).

    Solves  max_δ Σ_i sqrt(2 q_i δ_i)  s.t.  Σ_i δ_i = δ_total,  δ_min ≤ δ_i ≤ δ_max.
    The objective is concave and the constraints linear, so the KKT conditions are
    sufficient. Stationarity, sqrt(q_i / (2 δ_i)) = λ, gives δ_i = t·q_i with t = 1/(2λ²);
    without the box the budget constraint gives

        δ_i = δ_total · q_i / Σ_j q_j,    gain sqrt(2 δ_total Σ_j q_j),

    never below the uniform split's gain (Cauchy–Schwarz; equal iff all q_i are equal).
    With the box the solution is water-filling, δ_i = clip(t·q_i, δ_min, δ_max), where the
    scalar t solves Σ_i clip(t·q_i, δ_min, δ_max) = δ_total; the left side is piecewise
    linear in t, so t is found exactly from its breakpoints δ_min/q_i and δ_max/q_i.
    *Derived*: [2] describes a KKT allocation; this objective is our reconstruction.

    Edge cases:
        - Uniform fallback (δ_i = δ_total/n, fallback=True) when Σ_j q_j ≤
          `NATGRAD_SQ_NORM_SUM_TINY` or some q_i is NaN or +inf.
        - If the box admits only the uniform split (n·δ_min = δ_total or n·δ_max = δ_total,
          to `BOX_FEASIBILITY_RTOL`), that split is returned (fallback=False).
        - If the agents with q_i > 0 all reach the cap and budget is left, the rest goes
          evenly to the agents with q_i = 0 (their δ_i does not change the objective).

    Args:
        natgrad_sq_norm: q_i = g_iᵀF_i⁻¹g_i per agent, shape [n_agents], n ≥ 1, each ≥ 0.
            The learner should clamp a CG round-off value like -1e-12 to 0 before calling.
        total_kl_budget: δ_total, finite and > 0.
        min_kl_budget: δ_min, the floor per agent, finite and ≥ 0.
        max_kl_budget: δ_max, the cap per agent, ≥ δ_min (may be inf).

    Returns:
        KLAllocation: kl_budget of shape [n_agents], each in [δ_min, δ_max], summing to
        δ_total (to ~1e-15 relative); update_order by descending q_i, ties by index, NaN
        last; predicted_gain Σ_i sqrt(2 q_i δ_i).

    Raises:
        ValueError: natgrad_sq_norm is empty or has a negative entry; total_kl_budget is
            not finite and positive; the box is malformed or infeasible
            (n·δ_min > δ_total or n·δ_max < δ_total).
    """
    q = [float(value) for value in natgrad_sq_norm]
    n = len(q)
    if n < 1:
        raise ValueError("kkt_allocation: natgrad_sq_norm must have at least one entry, got []")
    check_total_kl_budget(total_kl_budget)
    _check_box(n, total_kl_budget, min_kl_budget, max_kl_budget)
    if any(value < 0.0 for value in q):
        raise ValueError(f"kkt_allocation: natgrad_sq_norm must be >= 0, got {q}")
    order = _descending_order(q)
    uniform = [total_kl_budget / n] * n
    q_sum = math.fsum(q)
    if not all(math.isfinite(value) for value in q) or q_sum <= NATGRAD_SQ_NORM_SUM_TINY:
        return KLAllocation(tuple(uniform), order, predicted_gain(q, uniform), True)
    floor_binds_all = n * min_kl_budget >= total_kl_budget * (1.0 - BOX_FEASIBILITY_RTOL)
    cap_binds_all = n * max_kl_budget <= total_kl_budget * (1.0 + BOX_FEASIBILITY_RTOL)
    if floor_binds_all or cap_binds_all:
        budgets = uniform  # The box is the single point δ_total/n.
    else:
        # t·q_i is scale-free in q; normalising by max q keeps huge q from overflowing.
        q_max = max(q)
        budgets = _water_fill(
            [value / q_max for value in q], total_kl_budget, min_kl_budget, max_kl_budget
        )
    return KLAllocation(tuple(budgets), order, predicted_gain(q, budgets), False)


def _check_box(n: int, total: float, low: float, high: float) -> None:
    """Raises ValueError unless 0 ≤ low ≤ high and n·low ≤ total ≤ n·high (with slack)."""
    if not (math.isfinite(low) and low >= 0.0) or math.isnan(high) or high < low:
        raise ValueError(
            "kkt_allocation: need 0 <= min_kl_budget <= max_kl_budget with min_kl_budget "
            f"finite, got min_kl_budget={low!r}, max_kl_budget={high!r}"
        )
    if n * low > total * (1.0 + BOX_FEASIBILITY_RTOL) or n * high < total * (
        1.0 - BOX_FEASIBILITY_RTOL
    ):
        raise ValueError(
            f"kkt_allocation: infeasible box for {n} agents and total_kl_budget={total!r}: "
            f"need n*min_kl_budget <= total_kl_budget <= n*max_kl_budget, got "
            f"min_kl_budget={low!r}, max_kl_budget={high!r}"
        )


def _descending_order(q: Sequence[float]) -> tuple[int, ...]:
    """Indices by descending q, ties by index, NaN last."""

    def key(i: int) -> tuple[bool, float, int]:
        return (math.isnan(q[i]), 0.0 if math.isnan(q[i]) else -q[i], i)

    return tuple(sorted(range(len(q)), key=key))


def _water_fill(q: Sequence[float], total: float, low: float, high: float) -> list[float]:
    """δ_i = clip(t·q_i, low, high) with Σ_i δ_i = total; q ≥ 0, max q = 1, box feasible.

    S(t) = Σ_i clip(t·q_i, low, high) is continuous, non-decreasing and linear between the
    breakpoints low/q_i and high/q_i; the segment where S crosses `total` is found by
    scanning them, and t is solved for in closed form on it.
    """

    def filled(t: float) -> list[float]:
        return [min(high, max(low, t * value)) for value in q]

    bounds = [bound for bound in (low, high) if math.isfinite(bound)]
    breakpoints = sorted({b / value for value in q if value > 0.0 for b in bounds})
    lower = 0.0
    for upper in (b for b in breakpoints if math.isfinite(b)):
        if math.fsum(filled(upper)) >= total:
            return filled(_solve_segment(q, total, low, high, lower, upper))
        lower = upper
    if math.isinf(high):  # Past the last breakpoint every q_i > 0 is free.
        return filled(_solve_segment(q, total, low, high, lower, math.inf))
    # Every q_i > 0 sits at the cap and budget is left: the q_i = 0 agents take it evenly
    # (their δ_i does not change the objective, so any such split is optimal).
    n_zero = sum(value == 0.0 for value in q)
    rest = total - high * (len(q) - n_zero) - low * n_zero
    share = min(high, low + rest / n_zero) if n_zero else high
    return [high if value > 0.0 else share for value in q]


def _solve_segment(
    q: Sequence[float], total: float, low: float, high: float, lower: float, upper: float
) -> float:
    """The t in [lower, upper] with S(t) = total, S linear there (see `_water_fill`)."""
    probe = 0.5 * (lower + upper) if math.isfinite(upper) else 2.0 * lower + 1.0
    free_q, fixed = [], []
    for value in q:
        if value > 0.0 and low < probe * value < high:
            free_q.append(value)
        else:
            fixed.append(min(high, max(low, probe * value)))
    q_free = math.fsum(free_q)
    if q_free == 0.0:
        return upper
    t = (total - math.fsum(fixed)) / q_free
    return min(max(t, lower), upper)


class KKTAllocator(KLAllocator):
    """HATRPO-W [2]: budgets from the KKT solution (`kkt_allocation`), then one sweep.

    Each iteration: (1) pre-pass: q_i = `update.natgrad_sq_norm(agent)` for every agent
    before any commit (compound ratio M = 1); (2) budgets by `kkt_allocation` with floor
    δ_min = min_share·δ_total/n and cap δ_max = min(δ_total, max_share·δ_total/n);
    (3) optional smoothing of the shares; (4) a sweep in order of descending q_i, each
    agent recomputing its step under the current M.

    The floor and cap are multiples of the uniform share δ_total/n rather than of δ_total,
    so that their meaning does not depend on n: a cap of 0.5·δ_total, for example, would
    force the uniform split whenever n = 2 (n·δ_max = δ_total is the only feasible point).

    Args:
        min_share: Floor as a multiple of δ_total/n, in [0, 1]; keeps every agent moving.
            1 gives the uniform split.
        max_share: Cap as a multiple of δ_total/n, in [1, inf]; bounds how much one
            (possibly noisy) q_i can take. 1 gives the uniform split.
        carry_over: If True, budget an agent did not use (its offer minus its achieved KL;
            all of the offer if the step was rejected or skipped) is re-split among the
            agents not yet updated, in proportion to their pre-pass q_i (evenly if those sum
            to ~0 or are not finite). The offers themselves can add up to more than δ_total
            (carried budget is offered again to the next agents; the logged `kl_budget` is
            the offer). Σ achieved KL ≤ δ_total still holds: before each agent moves, the KL
            already spent plus the offers still outstanding never exceed δ_total, and each
            achieved KL is at most its offer. Carried budget may take an agent past the cap.
        share_smoothing: β in [0, 1). The shares s_i = δ_i/δ_total follow the EMA
            s ← β·s_prev + (1−β)·s_new across iterations (the first iteration, or a change of
            agents, uses s_new). A convex combination of feasible shares is feasible: it
            sums to 1 and stays within [min_share/n, min(1, max_share/n)], bounds that do
            not depend on δ_total. The previous shares are checkpointed.
    """

    name = "kkt"

    def __init__(
        self,
        min_share: float = 0.1,
        max_share: float = 3.0,
        carry_over: bool = False,
        share_smoothing: float = 0.0,
    ) -> None:
        self.min_share = check_option("min_share", min_share, 0.0, 1.0)
        self.max_share = check_option("max_share", max_share, 1.0, math.inf)
        if not isinstance(carry_over, bool):
            raise ValueError(
                f"kl_allocator_config['carry_over'] must be True or False, got {carry_over!r}"
            )
        self.carry_over = carry_over
        self.share_smoothing = check_option(
            "share_smoothing", share_smoothing, 0.0, 1.0, high_open=True
        )
        self._shares: dict[str, float] = {}

    def run(
        self, update: SequentialUpdate, total_kl_budget: float, rng: random.Random
    ) -> list[AgentUpdate]:
        agents = agents_of(update)
        check_total_kl_budget(total_kl_budget)
        # The pre-pass must precede every commit: all q_i are then taken at M = 1.
        q = [float(update.natgrad_sq_norm(agent)) for agent in agents]
        uniform_share = total_kl_budget / len(agents)
        allocation = kkt_allocation(
            q,
            total_kl_budget,
            min_kl_budget=self.min_share * uniform_share,
            max_kl_budget=min(total_kl_budget, self.max_share * uniform_share),
        )
        new_shares = {
            a: b / total_kl_budget for a, b in zip(agents, allocation.kl_budget, strict=True)
        }
        self._shares = self._smoothed(new_shares)
        budgets = {agent: self._shares[agent] * total_kl_budget for agent in agents}
        order = [agents[i] for i in allocation.update_order]
        prepass = dict(zip(agents, q, strict=True))
        if self.carry_over:
            records = _sweep_with_carry_over(update, order, budgets, prepass)
        else:
            records = sweep(update, order, budgets)
        # Log the q the budgets came from (metric `prepass_natgrad_sq_norm`), not only the
        # proposals' q under the compound ratio of each agent's own step.
        return [dataclasses.replace(r, prepass_natgrad_sq_norm=prepass[r.agent]) for r in records]

    def _smoothed(self, new_shares: dict[str, float]) -> dict[str, float]:
        beta = self.share_smoothing
        if beta == 0.0 or set(self._shares) != set(new_shares):
            return new_shares
        return {a: beta * self._shares[a] + (1.0 - beta) * s for a, s in new_shares.items()}

    def get_state(self) -> dict[str, Any]:
        """The previous iteration's (smoothed) shares, keyed by agent."""
        return {"shares": dict(self._shares)}

    def set_state(self, state: dict[str, Any]) -> None:
        self._shares = {str(a): float(s) for a, s in state.get("shares", {}).items()}


def _sweep_with_carry_over(
    update: SequentialUpdate,
    order: Sequence[str],
    kl_budgets: Mapping[str, float],
    natgrad_sq_norm: Mapping[str, float],
) -> list[AgentUpdate]:
    """`sweep`, re-splitting each agent's unused budget among the later agents by q.

    Invariant: before agent k moves, Σ_{j<k} KL_j + Σ_{j≥k} offered_j ≤ δ_total (equality
    unless an unused budget was dropped), so Σ achieved KL ≤ δ_total, although the offers
    summed over all agents can exceed δ_total.
    """
    offered = dict(kl_budgets)
    results = []
    for rank, agent in enumerate(order):
        proposal = update.propose(agent, offered[agent])
        update.commit(proposal)
        results.append(AgentUpdate(agent, offered[agent], rank, proposal))
        used = proposal.kl if proposal.accepted and not proposal.skipped else 0.0
        unused = offered[agent] - used  # NaN (a broken kl) carries nothing.
        later = order[rank + 1 :]
        if later and unused > 0.0:
            weights = [natgrad_sq_norm[b] for b in later]
            weight_sum = math.fsum(weights)
            if not math.isfinite(weight_sum) or weight_sum <= NATGRAD_SQ_NORM_SUM_TINY:
                weights, weight_sum = [1.0] * len(later), float(len(later))
            for b, weight in zip(later, weights, strict=True):
                offered[b] += unused * weight / weight_sum
    return results
