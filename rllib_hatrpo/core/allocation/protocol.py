"""The contract between the HATRPO learner and the KL-budget allocators.

One HATRPO iteration updates the agents one after another (the sequential update of [1],
Algorithm 1): agent i's surrogate is weighted by the compound ratio M of the agents already
updated, and after its step M is multiplied by its new/old ratio. The allocators of
`rllib_hatrpo.core.allocation` decide the order and each agent's KL budget δ_i; the learner
does the tensor work. This module is the interface between the two and imports no torch, so
that the allocators can be tested with a fake learner.

The learner implements `SequentialUpdate` for one iteration and passes itself to
`KLAllocator.run`. An allocator may *propose* trial steps freely (they have no side effects)
and *commits* at most one proposal per agent; a commit writes the agent's parameters and
updates the compound ratio, so every later proposal sees it.

References:
    [1] Kuba et al., *Trust Region Policy Optimisation in Multi-Agent Reinforcement
        Learning*, ICLR 2022, arXiv:2109.11251 — HATRPO, the sequential update and the
        compound ratio.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["AgentUpdate", "Proposal", "SequentialUpdate", "sweep"]


@dataclass(frozen=True)
class Proposal:
    """An uncommitted trust-region step for one agent under the current compound ratio.

    Produced by `SequentialUpdate.propose`; nothing changes until it is passed to
    `SequentialUpdate.commit`. The learner's line search guarantees `kl <= kl_budget` for an
    accepted step; the allocators' guarantee Σ_i KL_i ≤ δ_total rests on it.

    Attributes:
        agent: The agent (module ID) the step is for.
        kl_budget: δ_i, the KL radius the step was sized for.
        kl: Achieved mean KL(π_old ‖ π_new) of the accepted step; 0.0 if not accepted.
        surrogate_improvement: L_i(θ_new) − L_i(θ_old); 0.0 if not accepted.
        expected_improvement: g_iᵀΔ_i of the full step (the linear prediction).
        natgrad_sq_norm: q_i = g_iᵀF_i⁻¹g_i under the compound ratio the step was computed
            with.
        accepted: Whether a line-search try was accepted.
        line_search_steps: Line-search tries made (0 if the step was skipped).
        cg_residual: Residual norm left by conjugate gradient.
        skipped: A guard fired (non-finite values or non-positive curvature); committing the
            proposal leaves the parameters unchanged.
        payload: Learner-private data (new parameters, new log-probabilities); not compared
            and not shown in the repr.
    """

    agent: str
    kl_budget: float
    kl: float
    surrogate_improvement: float
    expected_improvement: float
    natgrad_sq_norm: float
    accepted: bool
    line_search_steps: int
    cg_residual: float
    skipped: bool = False
    payload: Any = field(default=None, compare=False, repr=False)


class SequentialUpdate(Protocol):
    """What the learner offers an allocator for one iteration (one sweep)."""

    @property
    def agents(self) -> Sequence[str]:
        """The environment's fixed agent order (module IDs); ties are broken by it."""
        ...

    def natgrad_sq_norm(self, agent: str) -> float:
        """q_i = g_iᵀF_i⁻¹g_i of `agent` under the current compound ratio.

        Before any commit this is the M = 1 pre-pass of HATRPO-W. The learner caches the
        value until the next commit.
        """
        ...

    def propose(self, agent: str, kl_budget: float) -> Proposal:
        """A trial TRPO step of radius `kl_budget` under the current compound ratio.

        Has no side effects: parameters and compound ratio are left as they are.
        """
        ...

    def commit(self, proposal: Proposal) -> None:
        """Applies `proposal`.

        Writes the proposal's parameters if it was accepted and multiplies the compound
        ratio by the agent's new/old ratio (1 for a rejected or skipped step). Called at
        most once per agent per sweep.
        """
        ...


@dataclass(frozen=True)
class AgentUpdate:
    """What happened to one agent in one iteration (feeds the per-agent metrics).

    Attributes:
        agent: The agent (module ID).
        kl_budget: The budget offered for the committed step. Greedy allocation: the radius
            of the round the agent won; an agent never committed: the last radius offered
            to it, or 0.0 if none was.
        update_rank: 0-based position in the commit order; -1 if never committed.
        proposal: The committed proposal (possibly a rejected or skipped step); None if the
            agent was never committed.
        prepass_natgrad_sq_norm: q_i of the pre-pass (before any commit, compound ratio 1)
            that an allocator allocated with (HATRPO-W); NaN when the allocator made no
            pre-pass (uniform, greedy). Unlike the proposal's ``natgrad_sq_norm`` (q_i under
            the compound ratio of the agent's own step), this is the q the budgets were
            computed from.
    """

    agent: str
    kl_budget: float
    update_rank: int
    proposal: Proposal | None
    prepass_natgrad_sq_norm: float = math.nan


def sweep(
    update: SequentialUpdate, order: Sequence[str], kl_budgets: Mapping[str, float]
) -> list[AgentUpdate]:
    """The plain HATRPO sweep: propose and commit each agent in `order` with its budget.

    This is the inner loop of [1], Algorithm 1 (HATRPO): agent `order[m]` steps under the
    compound ratio of `order[:m]`. Every agent is committed exactly once, including agents
    whose step was rejected or skipped (their commit leaves the parameters unchanged), so
    `update_rank` is the position in `order`.

    Args:
        update: The learner's sequential update for this iteration.
        order: Agents to update, in update order; a subset of `update.agents` without
            repeats (the built-in allocators always pass a permutation of all agents).
        kl_budgets: δ_i per agent in `order`, each finite and ≥ 0.

    Returns:
        One `AgentUpdate` per agent of `order`, in commit order.

    Raises:
        ValueError: `order` repeats an agent or names one that is not in `update.agents`,
            or a budget is missing, negative or not finite.
    """
    _check_order(update.agents, order)
    for agent in order:
        if agent not in kl_budgets:
            raise ValueError(f"sweep: no kl_budget given for agent {agent!r}")
        budget = kl_budgets[agent]
        if not (math.isfinite(budget) and budget >= 0.0):
            raise ValueError(
                f"sweep: kl_budget of agent {agent!r} must be finite and >= 0, got {budget!r}"
            )
    results = []
    for rank, agent in enumerate(order):
        proposal = update.propose(agent, kl_budgets[agent])
        update.commit(proposal)
        results.append(AgentUpdate(agent, kl_budgets[agent], rank, proposal))
    return results


def _check_order(agents: Sequence[str], order: Sequence[str]) -> None:
    """Raises ValueError unless `order` is a repeat-free subset of `agents`."""
    known = set(agents)
    unknown = [agent for agent in order if agent not in known]
    if unknown:
        raise ValueError(f"sweep: order names unknown agents {unknown}; agents are {list(agents)}")
    if len(set(order)) != len(order):
        raise ValueError(f"sweep: order repeats an agent: {list(order)}")
