"""HATRPO-G [2]: one agent at a time, the trial step with the best improvement per unit of
KL at a fair-share radius is committed.

References:
    [1] Kuba et al., *Trust Region Policy Optimisation in Multi-Agent Reinforcement
        Learning*, ICLR 2022, arXiv:2109.11251 — HATRPO.
    [2] Shek, Shi & Tokekar, *Multi-Agent Trust Region Policy Optimisation: A Joint
        Constraint Approach*, arXiv:2508.10340 — HATRPO-W (KKT) and HATRPO-G (greedy).
"""

from __future__ import annotations

import math
import random

from rllib_hatrpo.core.allocation.base import (
    KLAllocator,
    agents_of,
    check_option,
    check_total_kl_budget,
)
from rllib_hatrpo.core.allocation.protocol import AgentUpdate, Proposal, SequentialUpdate

__all__ = ["EXHAUSTED_BUDGET_RTOL", "GreedyAllocator"]

# The greedy loop stops when the budget left is below this fraction of δ_total: what is
# left is rounding residue, and a radius of ~0 would only cost n line searches.
EXHAUSTED_BUDGET_RTOL = 1e-12


class GreedyAllocator(KLAllocator):
    """HATRPO-G [2]: commit, one agent at a time, the best improvement per unit of KL.

    The loop::

        B ← δ_total; R ← all agents
        while R is not empty and B > EXHAUSTED_BUDGET_RTOL·δ_total:
            r ← B / |R|                         # fair share of what is left
            propose every i in R at radius r    # all trials before any commit: they share M
            score_i ← ΔL_i / (KL_i + score_eps) if accepted, else 0
            if max score ≤ 0: stop              # the rest keep their parameters
            commit the best i* (ties: earliest in update.agents); B ← B − KL_i*; R ← R∖{i*}

    Guarantees: Σ committed KL ≤ δ_total (each committed KL ≤ r ≤ B, given the learner's
    contract that an accepted step's KL is within its radius); each commit is the
    best-scoring candidate of its round; at most n(n+1)/2 proposals per iteration (exactly
    that when every round commits). It does not guarantee global optimality: the choice is
    myopic (the best ratio now, at the current radius), and an agent left out after all
    trials of a round are rejected is not updated this iteration.

    Args:
        score_eps: ε > 0 in the score's denominator; keeps the score finite for a step
            whose achieved KL is ~0.
    """

    name = "greedy"

    def __init__(self, score_eps: float = 1e-8) -> None:
        self.score_eps = check_option("score_eps", score_eps, 0.0, math.inf, low_open=True)

    def score(self, proposal: Proposal) -> float:
        """ΔL_i / (KL_i + ε) for an accepted step; 0 if rejected, skipped or not finite."""
        if not proposal.accepted or proposal.skipped:
            return 0.0
        value = proposal.surrogate_improvement / (proposal.kl + self.score_eps)
        return value if math.isfinite(value) else 0.0

    def run(
        self, update: SequentialUpdate, total_kl_budget: float, rng: random.Random
    ) -> list[AgentUpdate]:
        agents = agents_of(update)
        check_total_kl_budget(total_kl_budget)
        remaining = list(agents)  # Kept in env order, so ties go to the earliest agent.
        last_radius = dict.fromkeys(agents, 0.0)
        committed: list[AgentUpdate] = []
        budget_left = total_kl_budget
        while remaining and budget_left > EXHAUSTED_BUDGET_RTOL * total_kl_budget:
            radius = budget_left / len(remaining)
            proposals = [update.propose(agent, radius) for agent in remaining]
            last_radius.update(dict.fromkeys(remaining, radius))
            scores = [self.score(proposal) for proposal in proposals]
            best = max(range(len(remaining)), key=lambda k: (scores[k], -k))
            if scores[best] <= 0.0:
                break
            winner = proposals[best]
            update.commit(winner)
            committed.append(AgentUpdate(winner.agent, radius, len(committed), winner))
            budget_left = max(0.0, budget_left - winner.kl)
            del remaining[best]
        left_out = [AgentUpdate(agent, last_radius[agent], -1, None) for agent in remaining]
        return committed + left_out
