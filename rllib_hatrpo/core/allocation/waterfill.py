"""Water-filling of a joint KL budget: a *reading* of the paper's HATRPO-W [2], not its method.

[2] names its weighted allocator after the KKT conditions; the formulation could not be read
(`kkt` is the package's reconstruction). Another reading, found in third-party code inspired
by the paper (ChirayuSalgarkar/wmatrpo, ``allocation.py``, "weighted": water-filling on each
agent's positive mean advantage), is the KKT solution of a sum-of-concave-logs objective,

    max_δ Σ_i u_i · log(c + δ_i)   s.t.  Σ_i δ_i = δ_total,  δ_i ≥ 0,

whose stationarity u_i / (c + δ_i) = λ − μ_i (μ_i ≥ 0, μ_i δ_i = 0) gives

    δ_i = max(0, u_i / λ − c),   λ > 0 such that Σ_i δ_i = δ_total.

Unlike `kkt` (δ_i ∝ q_i with a floor), this can give an agent no budget at all: an agent
whose utility is small next to the others' does not move this iteration. The utility here
is each agent's predicted gain at the fair share, u_i = sqrt(2 q_i δ_total / n) (the
first-order improvement of its step at radius δ_total/n, always ≥ 0): the shared, standardised
advantage of HATRPO has mean 0 for every agent, so the per-agent signal the learner offers
is q_i = g_iᵀF_i⁻¹g_i. Only the ratios of the u_i matter (λ absorbs their scale).

References:
    [2] Shek, Shi & Tokekar, *Multi-Agent Trust Region Policy Optimisation: A Joint
        Constraint Approach*, arXiv:2508.10340 — HATRPO-W, of which this is a reading.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Sequence

from rllib_hatrpo.core.allocation.base import (
    KLAllocation,
    KLAllocator,
    agents_of,
    check_option,
    check_total_kl_budget,
    predicted_gain,
)
from rllib_hatrpo.core.allocation.protocol import AgentUpdate, SequentialUpdate, sweep

__all__ = ["WaterFillAllocator", "waterfill_allocation"]

# Σ_i u_i at or below this carries no signal (as kkt.NATGRAD_SQ_NORM_SUM_TINY for q).
UTILITY_SUM_TINY = 1e-12


def waterfill_allocation(
    utility: Sequence[float], total_kl_budget: float, offset: float
) -> tuple[float, ...]:
    """δ_i = max(0, u_i/λ − c) with Σ_i δ_i = δ_total: the KKT point of Σ_i u_i log(c + δ_i).

    The water level 1/λ is found exactly: with the agents sorted by descending u, the active
    set is a prefix of k agents, 1/λ = (δ_total + k·c) / Σ_{j ≤ k} u_j, and k is the largest
    prefix whose last agent still gets δ > 0. Agents with u_i = 0 get 0 (their term of the
    objective is constant). With c = 0 the split is δ_i = δ_total · u_i / Σ_j u_j.

    Edge cases: Σ_i u_i ≤ `UTILITY_SUM_TINY` or a u_i NaN/inf gives the uniform split.

    Args:
        utility: u_i per agent, shape [n_agents], n ≥ 1, each ≥ 0.
        total_kl_budget: δ_total, finite and > 0.
        offset: c ≥ 0, finite. Larger c gives more agents a zero budget.

    Returns:
        δ_i per agent, indexed like `utility`, each ≥ 0, summing to δ_total.

    Raises:
        ValueError: `utility` is empty or has a negative entry, δ_total is not finite and
            positive, or c is negative or not finite.
    """
    u = [float(value) for value in utility]
    n = len(u)
    if n < 1:
        raise ValueError("waterfill_allocation: utility must have at least one entry, got []")
    check_total_kl_budget(total_kl_budget)
    if not (math.isfinite(offset) and offset >= 0.0):
        raise ValueError(f"waterfill_allocation: offset must be finite and >= 0, got {offset!r}")
    if any(value < 0.0 for value in u):
        raise ValueError(f"waterfill_allocation: utility must be >= 0, got {u}")
    if not all(math.isfinite(value) for value in u) or math.fsum(u) <= UTILITY_SUM_TINY:
        return (total_kl_budget / n,) * n
    order = sorted(range(n), key=lambda i: -u[i])
    level = math.nan
    for k in range(1, n + 1):
        top = [u[i] for i in order[:k]]
        if top[-1] <= 0.0:
            break
        candidate = (total_kl_budget + k * offset) / math.fsum(top)
        if top[-1] * candidate - offset <= 0.0:
            break  # The k-th agent would get nothing: the active set is the first k - 1.
        level = candidate
    budgets = [max(0.0, value * level - offset) for value in u]
    # Round-off: rescale so that the budgets sum to δ_total exactly up to the last bits.
    total = math.fsum(budgets)
    return tuple(b * total_kl_budget / total for b in budgets)


class WaterFillAllocator(KLAllocator):
    """Water-filling on the agents' predicted gains (a reading of [2]'s HATRPO-W).

    Each iteration: the pre-pass q_i (compound ratio 1, as `kkt`), utilities
    u_i = sqrt(2 q_i δ_total / n), budgets by `waterfill_allocation` with offset
    c = offset_share · δ_total / n, and one sweep in order of descending u_i over the agents
    with δ_i > 0. An agent with δ_i = 0 is not updated this iteration (update_rank -1,
    kl_budget 0); Σ achieved KL ≤ δ_total holds as for every sweep.

    With two agents both move iff the smaller utility is above c/(δ_total + 2c) of their sum,
    i.e. for offset_share 1 iff q_small > q_large / 9.

    Args:
        offset_share: c as a multiple of the uniform share δ_total/n, ≥ 0 (default 1.0).
            0 gives δ_i ∝ sqrt(q_i); larger values leave more agents out.
    """

    name = "waterfill"

    def __init__(self, offset_share: float = 1.0) -> None:
        self.offset_share = check_option("offset_share", offset_share, 0.0, math.inf)

    def allocate(self, natgrad_sq_norm: Sequence[float], total_kl_budget: float) -> KLAllocation:
        """Budgets and order from the pre-pass q_i (see the class docstring)."""
        q = [max(0.0, float(value)) if math.isfinite(value) else 0.0 for value in natgrad_sq_norm]
        n = len(q)
        uniform_share = total_kl_budget / n
        utility = [math.sqrt(2.0 * value * uniform_share) for value in q]
        budgets = waterfill_allocation(utility, total_kl_budget, self.offset_share * uniform_share)
        order = tuple(sorted(range(n), key=lambda i: (-utility[i], i)))
        fallback = math.fsum(utility) <= UTILITY_SUM_TINY
        return KLAllocation(budgets, order, predicted_gain(q, budgets), fallback)

    def run(
        self, update: SequentialUpdate, total_kl_budget: float, rng: random.Random
    ) -> list[AgentUpdate]:
        agents = agents_of(update)
        check_total_kl_budget(total_kl_budget)
        q = [float(update.natgrad_sq_norm(agent)) for agent in agents]
        allocation = self.allocate(q, total_kl_budget)
        budgets = dict(zip(agents, allocation.kl_budget, strict=True))
        moving = [agents[i] for i in allocation.update_order if budgets[agents[i]] > 0.0]
        records = sweep(update, moving, budgets)
        left_out = [AgentUpdate(a, 0.0, -1, None) for a in agents if budgets[a] <= 0.0]
        prepass = dict(zip(agents, q, strict=True))
        return [
            dataclasses.replace(r, prepass_natgrad_sq_norm=prepass[r.agent])
            for r in records + left_out
        ]
