"""The water-filling allocator (a reading of the paper's HATRPO-W, not its method) against a
brute-force optimum, its KKT conditions and hand-solved cases, and through the protocol."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from rllib_hatrpo.core.allocation import (
    ALL_ALLOCATOR_NAMES,
    ALLOCATOR_NAMES,
    READING_ALLOCATORS,
    WaterFillAllocator,
    make_allocator,
    waterfill_allocation,
)
from rllib_hatrpo.core.allocation.protocol import Proposal


def _objective(u, budgets, c):
    return sum(ui * math.log(c + d) for ui, d in zip(u, budgets, strict=True) if ui > 0)


def test_waterfill_hand_solved_cases():
    """u = (3, 1), δ_total 0.04, c 0.01: both active, 1/λ = (0.04 + 2·0.01)/4 = 0.015, so
    δ = (3·0.015 − 0.01, 0.015 − 0.01) = (0.035, 0.005). u = (9, 1), c 0.02: agent 1 would get
    (0.08/10) − 0.02 < 0, so it gets 0 and agent 0 all. c = 0: proportional to u."""
    assert waterfill_allocation([3.0, 1.0], 0.04, 0.01) == pytest.approx((0.035, 0.005))
    assert waterfill_allocation([9.0, 1.0], 0.04, 0.02) == pytest.approx((0.04, 0.0))
    assert waterfill_allocation([1.0, 3.0, 0.0], 0.04, 0.0) == pytest.approx((0.01, 0.03, 0.0))
    assert waterfill_allocation([2.0, 2.0], 0.02, 5.0) == pytest.approx((0.01, 0.01))


def test_waterfill_fallback_and_errors():
    assert waterfill_allocation([0.0, 0.0], 0.02, 0.01) == (0.01, 0.01)
    assert waterfill_allocation([math.nan, 1.0], 0.02, 0.01) == (0.01, 0.01)
    with pytest.raises(ValueError, match="utility must be >= 0"):
        waterfill_allocation([-1.0, 1.0], 0.02, 0.01)
    with pytest.raises(ValueError, match="offset"):
        waterfill_allocation([1.0, 1.0], 0.02, -0.1)
    with pytest.raises(ValueError, match="at least one"):
        waterfill_allocation([], 0.02, 0.0)


@pytest.mark.parametrize("n", [2, 3])
def test_waterfill_is_the_brute_force_optimum_and_satisfies_kkt(n):
    """Random u and c: budgets ≥ 0 summing to δ_total; no point of a simplex grid does better
    on Σ u_i log(c + δ_i); KKT: u_i/(c + δ_i) = λ on the active agents, u_i/c ≤ λ on the
    others."""
    rng = random.Random(n)
    total, steps = 0.04, 200 if n == 2 else 60
    zero_seen = False
    for _ in range(20):
        u = [rng.uniform(0.0, 3.0) for _ in range(n)]
        c = rng.choice([0.001, 0.01, 0.03])
        budgets = waterfill_allocation(u, total, c)
        assert all(b >= 0.0 for b in budgets) and math.fsum(budgets) == pytest.approx(total)
        best = max(
            _objective(u, (*(k * total / steps for k in ks), total - sum(ks) * total / steps), c)
            for ks in itertools.product(range(steps + 1), repeat=n - 1)
            if sum(ks) <= steps
        )
        assert _objective(u, budgets, c) >= best - 1e-9
        active = [i for i in range(n) if budgets[i] > 1e-12]
        level = u[active[0]] / (c + budgets[active[0]])
        for i in range(n):
            if i in active:
                assert u[i] / (c + budgets[i]) == pytest.approx(level, rel=1e-9)
            else:
                zero_seen = True
                assert u[i] / c <= level * (1 + 1e-9)
    assert zero_seen, "the random cases should include an agent left at zero"


class _FakeUpdate:
    """q per agent; an accepted step reaches its full radius and gains sqrt(2 q δ)."""

    def __init__(self, q):
        self.q = dict(q)
        self.committed: list[Proposal] = []

    @property
    def agents(self):
        return tuple(self.q)

    def natgrad_sq_norm(self, agent):
        return self.q[agent]

    def propose(self, agent, kl_budget):
        assert kl_budget > 0.0, "a zero budget must not reach the learner's line search"
        gain = math.sqrt(2 * self.q[agent] * kl_budget)
        return Proposal(agent, kl_budget, kl_budget, gain, gain, self.q[agent], True, 1, 0.0)

    def commit(self, proposal):
        self.committed.append(proposal)


def test_waterfill_allocator_through_the_protocol():
    """q = (1, 0.01): u ∝ (1, 0.1), with offset_share 1 (c = δ_total/2) agent a1 is left out
    (0.1/1.1 < 1/4); it is never proposed, gets kl_budget 0 and update_rank -1. Equal q: the
    uniform split, both committed by descending u (ties by env order)."""
    allocator = make_allocator("waterfill", None)
    assert isinstance(allocator, WaterFillAllocator) and allocator.offset_share == 1.0
    fake = _FakeUpdate({"a0": 1.0, "a1": 0.01})
    records = allocator.run(fake, 0.02, random.Random(0))
    assert [(r.agent, r.kl_budget, r.update_rank) for r in records] == [
        ("a0", pytest.approx(0.02), 0),
        ("a1", 0.0, -1),
    ]
    assert records[1].proposal is None and records[1].prepass_natgrad_sq_norm == 0.01
    assert sum(p.kl for p in fake.committed) <= 0.02 + 1e-15
    fake = _FakeUpdate({"a0": 0.5, "a1": 0.5})
    records = make_allocator("waterfill", {"offset_share": 0.0}).run(fake, 0.02, random.Random(0))
    assert [(r.agent, r.kl_budget, r.update_rank) for r in records] == [
        ("a0", pytest.approx(0.01), 0),
        ("a1", pytest.approx(0.01), 1),
    ]
    with pytest.raises(ValueError, match="offset_share"):
        make_allocator("waterfill", {"offset_share": -1.0})


def test_waterfill_is_registered_as_a_reading_not_a_default_method():
    assert "waterfill" in READING_ALLOCATORS and "waterfill" in ALL_ALLOCATOR_NAMES
    assert "waterfill" not in ALLOCATOR_NAMES
    assert ALL_ALLOCATOR_NAMES[: len(ALLOCATOR_NAMES)] == ALLOCATOR_NAMES


def test_the_command_line_accepts_the_reading():
    from rllib_hatrpo.experiments.spec import SettingError, resolve_allocator

    assert resolve_allocator("waterfill") == ("waterfill", "waterfill")
    with pytest.raises(SettingError, match="reading of the paper: waterfill"):
        resolve_allocator("water")
