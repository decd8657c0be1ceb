"""HATRPO's allocation [1]: every agent gets δ_total / n, in a fresh random order.

References:
    [1] Kuba et al., *Trust Region Policy Optimisation in Multi-Agent Reinforcement
        Learning*, ICLR 2022, arXiv:2109.11251 — HATRPO.
"""

from __future__ import annotations

import math
import random

from rllib_hatrpo.core.allocation.base import (
    KLAllocation,
    KLAllocator,
    agents_of,
    check_total_kl_budget,
)
from rllib_hatrpo.core.allocation.protocol import AgentUpdate, SequentialUpdate, sweep

__all__ = ["UniformAllocator", "uniform_allocation"]


def uniform_allocation(n_agents: int, total_kl_budget: float, rng: random.Random) -> KLAllocation:
    """HATRPO's allocation [1]: δ_i = δ_total / n and a fresh random order.

    Args:
        n_agents: n ≥ 1.
        total_kl_budget: δ_total, finite and > 0.
        rng: Source of the permutation (one `rng.sample` call).

    Returns:
        KLAllocation with equal budgets, a random `update_order`, predicted_gain NaN (no q
        is known) and fallback False.

    Raises:
        ValueError: n_agents < 1 or total_kl_budget not finite and positive.
    """
    if n_agents < 1:
        raise ValueError(f"uniform_allocation: n_agents must be >= 1, got {n_agents}")
    check_total_kl_budget(total_kl_budget)
    order = tuple(rng.sample(range(n_agents), n_agents))
    return KLAllocation((total_kl_budget / n_agents,) * n_agents, order, math.nan, False)


class UniformAllocator(KLAllocator):
    """HATRPO [1]: δ_i = δ_total / n for every agent, a fresh random order each iteration."""

    name = "uniform"

    def run(
        self, update: SequentialUpdate, total_kl_budget: float, rng: random.Random
    ) -> list[AgentUpdate]:
        agents = agents_of(update)
        allocation = uniform_allocation(len(agents), total_kl_budget, rng)
        order = [agents[i] for i in allocation.update_order]
        return sweep(update, order, dict(zip(agents, allocation.kl_budget, strict=True)))
