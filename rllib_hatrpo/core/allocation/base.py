"""What every KL-budget allocator shares: the allocator base class, the allocation record,
the predicted gain of a split and the checks of budgets and options.

An allocator subclasses `KLAllocator` and implements `KLAllocator.run`, which gets the
learner's `rllib_hatrpo.core.allocation.protocol.SequentialUpdate` for one iteration. Pure
Python (standard library only).

References:
    [1] Kuba et al., *Trust Region Policy Optimisation in Multi-Agent Reinforcement
        Learning*, ICLR 2022, arXiv:2109.11251 — HATRPO.
    [2] Shek, Shi & Tokekar, *Multi-Agent Trust Region Policy Optimisation: A Joint
        Constraint Approach*, arXiv:2508.10340 — HATRPO-W (KKT) and HATRPO-G (greedy).
"""

from __future__ import annotations

import abc
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from rllib_hatrpo.core.allocation.protocol import AgentUpdate, SequentialUpdate

__all__ = [
    "KLAllocation",
    "KLAllocator",
    "agents_of",
    "check_option",
    "check_total_kl_budget",
    "predicted_gain",
]


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
            signal (Σ_j q_j ≤ `kkt.NATGRAD_SQ_NORM_SUM_TINY` or a q_i not finite).
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


class KLAllocator(abc.ABC):
    """Decides each iteration's agent order and KL budgets, and drives the sweep.

    Subclass it to plug in an allocator of your own (pass the class as the config's
    `kl_allocator`). Options are keyword arguments of the constructor (the config's
    `kl_allocator_config`); a bad value raises ValueError naming
    `kl_allocator_config['<name>']`, its allowed range and the value received. State that
    must survive a checkpoint goes through `get_state` / `set_state`. `check_option`,
    `check_total_kl_budget` and `agents_of` are the checks the built-in allocators use.

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


def check_total_kl_budget(total_kl_budget: float) -> None:
    """Raises ValueError unless δ_total is finite and > 0."""
    if not (math.isfinite(total_kl_budget) and total_kl_budget > 0.0):
        raise ValueError(f"total_kl_budget must be finite and > 0, got {total_kl_budget!r}")


def agents_of(update: SequentialUpdate) -> list[str]:
    """`update.agents` as a list; raises ValueError if it is empty or repeats an agent."""
    agents = list(update.agents)
    if not agents or len(set(agents)) != len(agents):
        raise ValueError(f"update.agents must be non-empty and without repeats, got {agents}")
    return agents


def check_option(
    name: str,
    value: Any,
    low: float,
    high: float,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Checks one constructor option of an allocator (a `kl_allocator_config` entry).

    Args:
        name: The option's name, used in the error message.
        value: The value received.
        low: Lower bound of the allowed range.
        high: Upper bound of the allowed range (may be inf).
        low_open: Exclude `low` itself.
        high_open: Exclude `high` itself.

    Returns:
        `value` as a float.

    Raises:
        ValueError: `value` is not a number (bools are not) or lies outside the range; the
            message names ``kl_allocator_config[name]``, the range and the value.
    """
    allowed = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = is_number and (low < value if low_open else low <= value)
    ok = ok and (value < high if high_open else value <= high)
    if not ok:
        raise ValueError(
            f"kl_allocator_config[{name!r}] must be a number in {allowed}, got {value!r}"
        )
    return float(value)
