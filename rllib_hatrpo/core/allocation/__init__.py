"""Allocation of a joint KL budget among the agents of a HATRPO sweep.

HATRPO [1] gives every agent its own trust region KL_i ≤ δ. Because the joint policy
factorises, the joint KL is Σ_i KL_i, and [2] replaces the per-agent constraints by one
joint constraint Σ_i KL_i ≤ δ_total, which an *allocation stage* splits among the agents
each iteration (order and per-agent budget δ_i). Three allocators:

- ``uniform`` (HATRPO [1]): δ_i = δ_total / n, a fresh random order every iteration.
- ``kkt`` (HATRPO-W [2]): a TRPO step of radius δ_i gains about sqrt(2 q_i δ_i), with
  q_i = g_iᵀF_i⁻¹g_i (`natgrad_sq_norm`). Maximising Σ_i sqrt(2 q_i δ_i) subject to
  Σ_i δ_i = δ_total gives δ_i = δ_total · q_i / Σ_j q_j (with a floor and a cap:
  water-filling). *Derived*: [2] states that HATRPO-W allocates by the KKT conditions, but
  its exact formulation could not be read; this objective is our reconstruction, consistent
  with its abstract.
- ``greedy`` (HATRPO-G [2]): one agent at a time, the trial step with the best improvement
  per unit of KL at a fair-share radius is committed (see `GreedyAllocator`).

The functions and classes here are pure (standard library only). The learner implements
`rllib_hatrpo.core.allocation.protocol.SequentialUpdate` with torch and passes itself to
`KLAllocator.run`.

References:
    [1] Kuba et al., *Trust Region Policy Optimisation in Multi-Agent Reinforcement
        Learning*, ICLR 2022, arXiv:2109.11251 — HATRPO.
    [2] Shek, Shi & Tokekar, *Multi-Agent Trust Region Policy Optimisation: A Joint
        Constraint Approach*, arXiv:2508.10340 — HATRPO-W (KKT) and HATRPO-G (greedy).
"""

from __future__ import annotations

import abc
import dataclasses
import inspect
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from rllib_hatrpo.core.allocation.protocol import AgentUpdate, Proposal, SequentialUpdate, sweep

__all__ = [
    "ALLOCATORS",
    "ALLOCATOR_NAMES",
    "GreedyAllocator",
    "KKTAllocator",
    "KLAllocation",
    "KLAllocator",
    "UniformAllocator",
    "kkt_allocation",
    "make_allocator",
    "predicted_gain",
    "uniform_allocation",
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

# The greedy loop stops when the budget left is below this fraction of δ_total: what is
# left is rounding residue, and a radius of ~0 would only cost n line searches.
EXHAUSTED_BUDGET_RTOL = 1e-12


@dataclass(frozen=True)
class KLAllocation:
    """Per-agent KL budgets and update order for one iteration.

    Attributes:
        kl_budget: δ_i per agent, indexed like the input (the env's agent order); each ≥ 0,
            summing to δ_total.
        update_order: Agent indices in update order (a permutation of range(n)).
        predicted_gain: Σ_i sqrt(2 q_i δ_i); NaN when no q was given (uniform allocation)
            and not finite when a q_i is not finite.
        fallback: True when the uniform split was used because the q_i carried no usable
            signal (Σ_j q_j ≤ `NATGRAD_SQ_NORM_SUM_TINY` or a q_i not finite).
    """

    kl_budget: tuple[float, ...]
    update_order: tuple[int, ...]
    predicted_gain: float
    fallback: bool


def predicted_gain(natgrad_sq_norm: Sequence[float], kl_budget: Sequence[float]) -> float:
    """Predicted surrogate improvement Σ_i sqrt(2 q_i δ_i) of a split.

    A full TRPO step of radius δ_i along x_i = F_i⁻¹g_i is Δ_i = sqrt(2 δ_i / q_i) x_i, and its
    linear improvement is g_iᵀΔ_i = sqrt(2 q_i δ_i) ([1], §4; TRPO's step size).

    Args:
        natgrad_sq_norm: q_i per agent, shape [n_agents], each ≥ 0.
        kl_budget: δ_i per agent, shape [n_agents], each ≥ 0.

    Returns:
        The sum; NaN or inf propagate from non-finite inputs.

    Raises:
        ValueError: The lengths differ, or a q_i or δ_i is negative.
    """
    if len(natgrad_sq_norm) != len(kl_budget):
        raise ValueError(
            "predicted_gain: natgrad_sq_norm and kl_budget must have the same length, got "
            f"{len(natgrad_sq_norm)} and {len(kl_budget)}"
        )
    if any(value < 0.0 for value in (*natgrad_sq_norm, *kl_budget)):
        raise ValueError(
            "predicted_gain: natgrad_sq_norm and kl_budget must be >= 0, got "
            f"{list(natgrad_sq_norm)} and {list(kl_budget)}"
        )
    return math.fsum(
        math.sqrt(2.0 * q * d) for q, d in zip(natgrad_sq_norm, kl_budget, strict=True)
    )


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
    _check_total_kl_budget(total_kl_budget)
    order = tuple(rng.sample(range(n_agents), n_agents))
    return KLAllocation((total_kl_budget / n_agents,) * n_agents, order, math.nan, False)


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
    _check_total_kl_budget(total_kl_budget)
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


def _check_total_kl_budget(total_kl_budget: float) -> None:
    if not (math.isfinite(total_kl_budget) and total_kl_budget > 0.0):
        raise ValueError(f"total_kl_budget must be finite and > 0, got {total_kl_budget!r}")


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


class KLAllocator(abc.ABC):
    """Decides each iteration's agent order and KL budgets, and drives the sweep.

    Subclass it to plug in an allocator of your own (pass the class as the config's
    `kl_allocator`). Options are keyword arguments of the constructor (the config's
    `kl_allocator_config`); a bad value raises ValueError naming
    `kl_allocator_config['<name>']`, its allowed range and the value received. State that
    must survive a checkpoint goes through `get_state` / `set_state`.

    Attributes:
        name: Short name, logged with the metrics; defaults to the class name.
    """

    name: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not isinstance(getattr(cls, "name", None), str):
            cls.name = cls.__name__

    @abc.abstractmethod
    def run(
        self, update: SequentialUpdate, total_kl_budget: float, rng: random.Random
    ) -> list[AgentUpdate]:
        """Runs one iteration's allocation and sweep.

        Args:
            update: The learner's sequential update; commit at most once per agent, and
                keep Σ of the committed proposals' `kl` ≤ total_kl_budget.
            total_kl_budget: δ_total, finite and > 0.
            rng: The learner's seeded random generator (for random orders).

        Returns:
            One AgentUpdate per agent of `update.agents`: committed agents in commit order,
            then the others (update_rank -1).
        """

    def get_state(self) -> dict[str, Any]:
        """State to checkpoint (plain Python values); empty for stateless allocators."""
        return {}

    def set_state(self, state: dict[str, Any]) -> None:
        """Restores what `get_state` returned."""
        del state  # Stateless by default.


class UniformAllocator(KLAllocator):
    """HATRPO [1]: δ_i = δ_total / n for every agent, a fresh random order each iteration."""

    name = "uniform"

    def run(
        self, update: SequentialUpdate, total_kl_budget: float, rng: random.Random
    ) -> list[AgentUpdate]:
        agents = _agents_of(update)
        allocation = uniform_allocation(len(agents), total_kl_budget, rng)
        order = [agents[i] for i in allocation.update_order]
        return sweep(update, order, dict(zip(agents, allocation.kl_budget, strict=True)))


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
        self.min_share = _check_option("min_share", min_share, 0.0, 1.0)
        self.max_share = _check_option("max_share", max_share, 1.0, math.inf)
        if not isinstance(carry_over, bool):
            raise ValueError(
                f"kl_allocator_config['carry_over'] must be True or False, got {carry_over!r}"
            )
        self.carry_over = carry_over
        self.share_smoothing = _check_option(
            "share_smoothing", share_smoothing, 0.0, 1.0, high_open=True
        )
        self._shares: dict[str, float] = {}

    def run(
        self, update: SequentialUpdate, total_kl_budget: float, rng: random.Random
    ) -> list[AgentUpdate]:
        agents = _agents_of(update)
        _check_total_kl_budget(total_kl_budget)
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


class GreedyAllocator(KLAllocator):
    """HATRPO-G [2]: commit, one agent at a time, the best improvement per unit of KL.

    The loop (hatrpo.md §3.3)::

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
        self.score_eps = _check_option("score_eps", score_eps, 0.0, math.inf, low_open=True)

    def score(self, proposal: Proposal) -> float:
        """ΔL_i / (KL_i + ε) for an accepted step; 0 if rejected, skipped or not finite."""
        if not proposal.accepted or proposal.skipped:
            return 0.0
        value = proposal.surrogate_improvement / (proposal.kl + self.score_eps)
        return value if math.isfinite(value) else 0.0

    def run(
        self, update: SequentialUpdate, total_kl_budget: float, rng: random.Random
    ) -> list[AgentUpdate]:
        agents = _agents_of(update)
        _check_total_kl_budget(total_kl_budget)
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


def _agents_of(update: SequentialUpdate) -> list[str]:
    agents = list(update.agents)
    if not agents or len(set(agents)) != len(agents):
        raise ValueError(f"update.agents must be non-empty and without repeats, got {agents}")
    return agents


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


def _check_option(
    name: str,
    value: Any,
    low: float,
    high: float,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Returns `value` as a float, or raises ValueError naming kl_allocator_config[name]."""
    allowed = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = is_number and (low < value if low_open else low <= value)
    ok = ok and (value < high if high_open else value <= high)
    if not ok:
        raise ValueError(
            f"kl_allocator_config[{name!r}] must be a number in {allowed}, got {value!r}"
        )
    return float(value)


ALLOCATORS: dict[str, type[KLAllocator]] = {
    cls.name: cls for cls in (UniformAllocator, KKTAllocator, GreedyAllocator)
}
#: The built-in allocators' names, in the order they are listed and compared everywhere.
ALLOCATOR_NAMES: tuple[str, ...] = tuple(ALLOCATORS)


def make_allocator(
    kl_allocator: str | type[KLAllocator], options: Mapping[str, Any] | None = None
) -> KLAllocator:
    """Builds the allocator named by the config's `kl_allocator` with `kl_allocator_config`.

    Args:
        kl_allocator: A name in `ALLOCATORS` ("uniform", "kkt", "greedy") or a subclass of
            `KLAllocator`.
        options: Constructor keyword arguments; None for the defaults.

    Returns:
        The allocator instance.

    Raises:
        ValueError: Unknown name, unknown option, or an option value out of range.
        TypeError: `kl_allocator` is neither a string nor a `KLAllocator` subclass, or
            `options` is not a mapping.
    """
    if isinstance(kl_allocator, str):
        if kl_allocator not in ALLOCATORS:
            raise ValueError(
                f"kl_allocator must be one of {sorted(ALLOCATORS)} or a subclass of "
                f"rllib_hatrpo.core.allocation.KLAllocator, got {kl_allocator!r}"
            )
        cls = ALLOCATORS[kl_allocator]
    elif isinstance(kl_allocator, type) and issubclass(kl_allocator, KLAllocator):
        cls = kl_allocator
    else:
        raise TypeError(
            f"kl_allocator must be one of {sorted(ALLOCATORS)} or a class that subclasses "
            f"rllib_hatrpo.core.allocation.KLAllocator, got {kl_allocator!r}"
        )
    if options is not None and not isinstance(options, Mapping):
        raise TypeError(f"kl_allocator_config must be a mapping or None, got {options!r}")
    options = dict(options or {})
    accepted = _option_names(cls)
    if accepted is not None:
        unknown = sorted(str(key) for key in options if key not in accepted)
        if unknown:
            raise ValueError(
                f"kl_allocator_config has unknown option(s) {unknown} for kl_allocator "
                f"{cls.name!r}; accepted options: {sorted(accepted)}"
            )
    return cls(**options)


def _option_names(cls: type[KLAllocator]) -> set[str] | None:
    """Keyword arguments of cls's constructor; None if it takes **kwargs."""
    parameters = inspect.signature(cls).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    keyword_kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {p.name for p in parameters if p.kind in keyword_kinds}
