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
- ``waterfill``, a *reading* of [2]'s HATRPO-W, not the paper's method: δ_i = max(0, u_i/λ − c),
  the KKT point of Σ_i u_i log(c + δ_i), which can leave an agent out (`WaterFillAllocator`).

The package is pure Python (standard library only). The learner implements
`rllib_hatrpo.core.allocation.protocol.SequentialUpdate` with torch and passes itself to
`KLAllocator.run`. Modules: `base` (`KLAllocator`, `KLAllocation`, `predicted_gain`, shared
checks), `uniform`, `kkt`, `greedy` (one allocator each), `registry` (`ALLOCATORS`,
`ALLOCATOR_NAMES`, `make_allocator`: a new allocator is its own module plus one line there)
and `protocol` (the learner interface). Everything public is re-exported here.

References:
    [1] Kuba et al., *Trust Region Policy Optimisation in Multi-Agent Reinforcement
        Learning*, ICLR 2022, arXiv:2109.11251 — HATRPO.
    [2] Shek, Shi & Tokekar, *Multi-Agent Trust Region Policy Optimisation: A Joint
        Constraint Approach*, arXiv:2508.10340 — HATRPO-W (KKT) and HATRPO-G (greedy).
"""

from __future__ import annotations

from rllib_hatrpo.core.allocation.base import KLAllocation, KLAllocator, predicted_gain
from rllib_hatrpo.core.allocation.greedy import GreedyAllocator
from rllib_hatrpo.core.allocation.kkt import KKTAllocator, kkt_allocation
from rllib_hatrpo.core.allocation.registry import (
    ALL_ALLOCATOR_NAMES,
    ALLOCATOR_NAMES,
    ALLOCATORS,
    READING_ALLOCATORS,
    make_allocator,
)
from rllib_hatrpo.core.allocation.uniform import UniformAllocator, uniform_allocation
from rllib_hatrpo.core.allocation.waterfill import WaterFillAllocator, waterfill_allocation

__all__ = [
    "ALLOCATORS",
    "ALLOCATOR_NAMES",
    "ALL_ALLOCATOR_NAMES",
    "READING_ALLOCATORS",
    "GreedyAllocator",
    "KKTAllocator",
    "KLAllocation",
    "KLAllocator",
    "UniformAllocator",
    "WaterFillAllocator",
    "kkt_allocation",
    "make_allocator",
    "predicted_gain",
    "uniform_allocation",
    "waterfill_allocation",
]
