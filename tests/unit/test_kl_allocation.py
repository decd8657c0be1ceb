"""Unit tests of the KL-budget allocation stage: closed forms, invariants and edge cases.

Pure Python: a fake learner (`FakeUpdate`) stands in for the torch `SequentialUpdate`.
"""

from __future__ import annotations

import itertools
import math
import random

import pytest

from rllib_hatrpo.core.allocation import (
    ALLOCATORS,
    GreedyAllocator,
    KKTAllocator,
    KLAllocation,
    KLAllocator,
    UniformAllocator,
    kkt_allocation,
    make_allocator,
    predicted_gain,
    uniform_allocation,
)
from rllib_hatrpo.core.allocation.protocol import AgentUpdate, Proposal, sweep
from rllib_hatrpo.metrics import NATGRAD_SQ_NORM, PREPASS_NATGRAD_SQ_NORM, allocation_metrics

REL = 1e-12


class FakeUpdate:
    """A `SequentialUpdate` with closed-form steps.

    Agent i has a fixed q_i. An accepted step at radius δ reaches KL c_i·δ (c_i ≤ 1) and
    improves the surrogate by sqrt(2 q_i δ)·ρ_i. Agents in `reject` never accept. Every call
    is recorded in `calls`; `commit` asserts at most one commit per agent and, if
    `q_scale_after_commit` is set, multiplies every q by it (so re-queries would differ).
    """

    def __init__(self, q, kl_fraction=None, improvement_factor=None, reject=(), q_scale=None):
        self._agents = tuple(q)
        self.q = dict(q)
        self.kl_fraction = {a: 1.0 for a in q} | dict(kl_fraction or {})
        self.improvement_factor = {a: 1.0 for a in q} | dict(improvement_factor or {})
        self.reject = set(reject)
        self.q_scale = q_scale
        self.calls: list[tuple] = []
        self.committed: list[Proposal] = []

    @property
    def agents(self):
        return self._agents

    def natgrad_sq_norm(self, agent):
        self.calls.append(("natgrad", agent))
        return self.q[agent]

    def propose(self, agent, kl_budget):
        self.calls.append(("propose", agent, kl_budget))
        q = self.q[agent]
        if agent in self.reject:
            expected = math.sqrt(2 * q * kl_budget)
            return Proposal(agent, kl_budget, 0.0, 0.0, expected, q, False, 10, 1e-9)
        kl = self.kl_fraction[agent] * kl_budget
        gain = math.sqrt(2 * q * kl_budget) * self.improvement_factor[agent]
        return Proposal(agent, kl_budget, kl, gain, math.sqrt(2 * q * kl_budget), q, True, 1, 1e-9)

    def commit(self, proposal):
        assert proposal.agent not in {p.agent for p in self.committed}, "committed twice"
        self.calls.append(("commit", proposal.agent))
        self.committed.append(proposal)
        if self.q_scale is not None:
            self.q = {a: v * self.q_scale for a, v in self.q.items()}

    def proposals_offered(self):
        return [(c[1], c[2]) for c in self.calls if c[0] == "propose"]

    def rounds(self):
        """Propose calls grouped by the commit that ends them (greedy rounds)."""
        rounds, current = [], []
        for call in self.calls:
            if call[0] == "propose":
                current.append(call)
            elif call[0] == "commit":
                rounds.append((current, call[1]))
                current = []
        if current:
            rounds.append((current, None))
        return rounds


def agents_q(*values):
    return {f"a{i}": v for i, v in enumerate(values)}


def random_q(rng, n):
    return [rng.uniform(0.0, 1.0) ** 3 * 10 ** rng.uniform(-3, 2) for _ in range(n)]


# -- kkt_allocation -------------------------------------------------------------------------


def test_kkt_budgets_are_nonnegative_and_sum_to_total():
    rng = random.Random(0)
    for _ in range(100):
        n = rng.randint(1, 8)
        total = rng.uniform(1e-4, 0.1)
        allocation = kkt_allocation(random_q(rng, n), total)
        assert isinstance(allocation, KLAllocation)
        assert all(b >= 0.0 for b in allocation.kl_budget)
        assert math.fsum(allocation.kl_budget) == pytest.approx(total, rel=REL)
        assert sorted(allocation.update_order) == list(range(n))
        assert not allocation.fallback


@pytest.mark.parametrize("n", [1, 2, 5])
def test_kkt_equal_q_split_evenly(n):
    allocation = kkt_allocation([0.7] * n, 0.05)
    assert allocation.kl_budget == pytest.approx([0.05 / n] * n, rel=REL)
    assert allocation.update_order == tuple(range(n))  # ties by index


def test_kkt_hand_solved_two_agents():
    """q = (1, 3), δ_total = 0.04: δ_i = 0.04·q_i/4 = (0.01, 0.03); gain sqrt(2·0.04·4)."""
    allocation = kkt_allocation([1.0, 3.0], 0.04)
    assert allocation.kl_budget == pytest.approx([0.01, 0.03], rel=REL)
    assert allocation.update_order == (1, 0)
    assert allocation.predicted_gain == pytest.approx(math.sqrt(0.32), rel=REL)


def test_kkt_hand_solved_three_agents_floor_and_cap_bind():
    """q = (1, 10, 100), δ_total = 0.03, δ_min = 0.002, δ_max = 0.02.

    Unboxed: δ = 0.03·q/111 ≈ (0.00027, 0.0027, 0.027): agent 0 is below the floor and
    agent 2 above the cap. Fix them there: δ_0 = 0.002, δ_2 = 0.02, so δ_1 = 0.03 − 0.022 =
    0.008 = t·10 with t = 0.0008. Check KKT: t·q_0 = 0.0008 < 0.002 (floor binds) and
    t·q_2 = 0.08 > 0.02 (cap binds). Answer (0.002, 0.008, 0.02).
    """
    allocation = kkt_allocation([1.0, 10.0, 100.0], 0.03, 0.002, 0.02)
    assert allocation.kl_budget == pytest.approx([0.002, 0.008, 0.02], rel=REL)
    assert allocation.update_order == (2, 1, 0)
    # The same box from the allocator's shares: δ_total/n = 0.01, min 0.2×, max 2×.
    fake = FakeUpdate(agents_q(1.0, 10.0, 100.0))
    KKTAllocator(min_share=0.2, max_share=2.0).run(fake, 0.03, random.Random(0))
    assert fake.proposals_offered() == [
        ("a2", pytest.approx(0.02, rel=REL)),
        ("a1", pytest.approx(0.008, rel=REL)),
        ("a0", pytest.approx(0.002, rel=REL)),
    ]


def test_kkt_cap_with_zero_q_gives_the_rest_to_the_zero_agents_evenly():
    """q = (0, 0, 5), δ_total = 0.03, cap 0.015: agent 2 takes the cap, the rest splits."""
    allocation = kkt_allocation([0.0, 0.0, 5.0], 0.03, 0.0, 0.015)
    assert allocation.kl_budget == pytest.approx([0.0075, 0.0075, 0.015], rel=REL)


def test_kkt_respects_floor_and_cap_on_random_q():
    rng = random.Random(1)
    for _ in range(200):
        n = rng.randint(2, 8)
        total = rng.uniform(1e-3, 0.1)
        low = rng.uniform(0.0, 1.0) * total / n
        high = total / n * rng.uniform(1.0, n + 1.0)
        budgets = kkt_allocation(random_q(rng, n), total, low, high).kl_budget
        assert math.fsum(budgets) == pytest.approx(total, rel=REL)
        assert all(low * (1 - REL) <= b <= high * (1 + REL) for b in budgets)


@pytest.mark.parametrize(
    "q", [[0.0, 0.0, 0.0], [1e-14, 0.0, 2e-14], [1.0, math.nan, 2.0], [1.0, math.inf, 2.0]]
)
def test_kkt_uniform_fallback(q):
    allocation = kkt_allocation(q, 0.03)
    assert allocation.fallback
    assert allocation.kl_budget == pytest.approx([0.01] * 3, rel=REL)
    assert sorted(allocation.update_order) == [0, 1, 2]


def test_kkt_fallback_order_puts_nan_last():
    assert kkt_allocation([1.0, math.nan, 2.0], 0.03).update_order == (2, 0, 1)


def test_kkt_huge_q_does_not_overflow():
    allocation = kkt_allocation([1e300, 3e300], 0.04)
    assert allocation.kl_budget == pytest.approx([0.01, 0.03], rel=REL)


def test_kkt_single_point_box_gives_uniform_split():
    allocation = kkt_allocation([1.0, 2.0, 3.0], 0.03, min_kl_budget=0.03 / 3)
    assert allocation.kl_budget == pytest.approx([0.01] * 3, rel=REL)
    assert not allocation.fallback


def test_kkt_matches_a_bisection_reference():
    """Water-filling t from the breakpoints equals t from 200 bisection steps on S(t)."""
    rng = random.Random(6)
    for _ in range(100):
        n = rng.randint(2, 8)
        q = [rng.choice([0.0, rng.random() ** 4]) for _ in range(n - 1)] + [rng.random()]
        total = rng.uniform(1e-3, 0.1)
        low = rng.uniform(0.0, 1.0) * total / n
        high = rng.choice([math.inf, total / n * rng.uniform(1.0, n)])

        def filled(t, q=q, low=low, high=high):
            return [min(high, max(low, t * v)) for v in q]

        lower, upper = 0.0, 1.0
        while math.fsum(filled(upper)) < total and upper < 1e30:
            upper *= 2.0
        if math.fsum(filled(upper)) < total:
            continue  # only the zero-q agents can take the rest (tested separately)
        for _ in range(200):
            middle = 0.5 * (lower + upper)
            lower, upper = (middle, upper) if math.fsum(filled(middle)) < total else (lower, middle)
        budgets = kkt_allocation(q, total, low, high).kl_budget
        assert budgets == pytest.approx(filled(upper), rel=1e-9, abs=1e-15)


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("min_share, max_share", [(1.0, 3.0), (0.1, 1.0)])
def test_kkt_allocator_degenerate_box_is_uniform(n, min_share, max_share):
    fake = FakeUpdate(agents_q(*[1.0 + i for i in range(n)]))
    KKTAllocator(min_share=min_share, max_share=max_share).run(fake, 0.03, random.Random(0))
    assert [b for _, b in fake.proposals_offered()] == pytest.approx([0.03 / n] * n, rel=REL)


def test_kkt_gain_at_least_uniform_gain():
    rng = random.Random(2)
    for _ in range(200):
        n = rng.randint(2, 8)
        q = random_q(rng, n)
        total = rng.uniform(1e-3, 0.1)
        allocation = kkt_allocation(q, total)
        uniform_gain = predicted_gain(q, [total / n] * n)
        assert allocation.predicted_gain >= uniform_gain * (1 - REL)
        assert allocation.predicted_gain == pytest.approx(math.sqrt(2 * total * sum(q)), rel=1e-9)
    equal = kkt_allocation([0.3] * 4, 0.02)
    assert equal.predicted_gain == pytest.approx(predicted_gain([0.3] * 4, [0.005] * 4), rel=REL)


def _grid_best_gain(q, total, low, high, steps):
    """Best gain over a grid of feasible splits (last agent takes what is left)."""
    n, best = len(q), -math.inf
    grid = [low + (high - low) * k / steps for k in range(steps + 1)]
    for head in itertools.product(grid, repeat=n - 1):
        last = total - math.fsum(head)
        if low <= last <= high:
            best = max(best, predicted_gain(q, [*head, last]))
    return best


@pytest.mark.parametrize("n, steps", [(2, 2000), (3, 120)])
def test_kkt_beats_brute_force_grid(n, steps):
    rng = random.Random(3)
    for _ in range(3):
        q = random_q(rng, n)
        total = 0.01 * n
        low, high = 0.2 * total / n, 1.8 * total / n
        kkt_gain = kkt_allocation(q, total, low, high).predicted_gain
        grid_gain = _grid_best_gain(q, total, low, high, steps)
        assert kkt_gain >= grid_gain * (1 - REL)
        assert kkt_gain - grid_gain <= 2e-3 * kkt_gain  # the grid is fine enough to matter


def test_kkt_infeasible_box_names_both_bounds():
    with pytest.raises(ValueError, match=r"min_kl_budget=0\.02.*max_kl_budget=0\.05"):
        kkt_allocation([1.0, 2.0], 0.03, 0.02, 0.05)  # 2·0.02 > 0.03
    with pytest.raises(ValueError, match=r"min_kl_budget=0\.0.*max_kl_budget=0\.01"):
        kkt_allocation([1.0, 2.0], 0.03, 0.0, 0.01)  # 2·0.01 < 0.03


def test_kkt_rejects_bad_inputs():
    with pytest.raises(ValueError, match="natgrad_sq_norm must be >= 0"):
        kkt_allocation([1.0, -0.5], 0.03)
    with pytest.raises(ValueError, match="total_kl_budget"):
        kkt_allocation([1.0], 0.0)
    with pytest.raises(ValueError, match="at least one"):
        kkt_allocation([], 0.03)


def test_predicted_gain():
    assert predicted_gain([1.0, 4.0], [0.5, 2.0]) == pytest.approx(1.0 + 4.0)
    with pytest.raises(ValueError, match="same length"):
        predicted_gain([1.0], [0.1, 0.2])


# -- UniformAllocator ------------------------------------------------------------------------


def test_uniform_allocator_budgets_and_seeded_order():
    q = agents_q(*[1.0] * 6)
    orders = {}
    for seed in range(6):
        fake = FakeUpdate(q)
        updates = UniformAllocator().run(fake, 0.06, random.Random(seed))
        assert [u.kl_budget for u in updates] == pytest.approx([0.01] * 6, rel=REL)
        assert sorted(u.agent for u in updates) == sorted(q)
        assert [u.update_rank for u in updates] == list(range(6))
        orders[seed] = [c[1] for c in fake.calls if c[0] == "commit"]
        assert orders[seed] == [u.agent for u in updates]
    assert len({tuple(order) for order in orders.values()}) > 1  # depends on the seed
    again = FakeUpdate(q)
    UniformAllocator().run(again, 0.06, random.Random(3))
    assert [c[1] for c in again.calls if c[0] == "commit"] == orders[3]  # reproducible
    assert uniform_allocation(4, 0.04, random.Random(0)).kl_budget == (0.01,) * 4


# -- KKTAllocator ----------------------------------------------------------------------------


def test_kkt_allocator_prepass_order_and_budgets():
    q = agents_q(0.5, 4.0, 1.5, 2.0)
    fake = FakeUpdate(q, q_scale=10.0)  # q changes after every commit
    updates = KKTAllocator().run(fake, 0.04, random.Random(0))
    first_commit = next(i for i, c in enumerate(fake.calls) if c[0] == "commit")
    prepass = [c[1] for c in fake.calls[:first_commit] if c[0] == "natgrad"]
    assert sorted(prepass) == sorted(q)
    assert all(c[0] != "natgrad" for c in fake.calls[first_commit:])
    expected = kkt_allocation(list(q.values()), 0.04, 0.1 * 0.01, min(0.04, 3.0 * 0.01))
    assert [u.agent for u in updates] == ["a1", "a3", "a2", "a0"]  # descending pre-pass q
    offered = dict(fake.proposals_offered())
    for i, agent in enumerate(q):
        assert offered[agent] == pytest.approx(expected.kl_budget[i], rel=REL)
    assert [u.update_rank for u in updates] == [0, 1, 2, 3]
    assert all(u.proposal is not None and u.proposal.accepted for u in updates)


def test_kkt_allocator_carry_over_hand_case():
    """q = (4, 2, 2), δ_total = 0.08, no box: budgets (0.04, 0.02, 0.02), order a0, a1, a2.

    a0 rejects: its 0.04 is split by q between a1 and a2 (0.02 each), so a1 is offered 0.04.
    a1 reaches KL 0.5·0.04 = 0.02, leaving 0.02 for a2: a2 is offered 0.02 + 0.02 + 0.02.
    """
    fake = FakeUpdate(agents_q(4.0, 2.0, 2.0), kl_fraction={"a1": 0.5}, reject={"a0"})
    allocator = KKTAllocator(min_share=0.0, max_share=math.inf, carry_over=True)
    updates = allocator.run(fake, 0.08, random.Random(0))
    assert fake.proposals_offered() == [
        ("a0", pytest.approx(0.04, rel=REL)),
        ("a1", pytest.approx(0.04, rel=REL)),
        ("a2", pytest.approx(0.06, rel=REL)),
    ]
    assert [u.kl_budget for u in updates] == pytest.approx([0.04, 0.04, 0.06], rel=REL)
    assert math.fsum(p.kl for p in fake.committed) <= 0.08 * (1 + REL)


def test_kkt_allocator_carry_over_zero_q_splits_evenly():
    fake = FakeUpdate(agents_q(1.0, 0.0, 0.0), reject={"a0"})
    KKTAllocator(min_share=0.5, carry_over=True).run(fake, 0.03, random.Random(0))
    offered = dict(fake.proposals_offered())
    # Budgets (0.02, 0.005, 0.005); a0's 0.02 goes 0.01 / 0.01 to a1 / a2.
    assert offered["a1"] == pytest.approx(0.015, rel=REL)
    assert offered["a2"] == pytest.approx(0.005 + 0.01, rel=REL)


def test_kkt_allocator_carry_over_keeps_total_kl_within_budget():
    rng = random.Random(4)
    for _ in range(50):
        n = rng.randint(2, 6)
        q = agents_q(*random_q(rng, n))
        fractions = {a: rng.uniform(0.0, 1.0) for a in q}
        reject = {a for a in q if rng.random() < 0.3}
        fake = FakeUpdate(q, kl_fraction=fractions, reject=reject)
        KKTAllocator(carry_over=True).run(fake, 0.05, rng)
        assert math.fsum(p.kl for p in fake.committed) <= 0.05 * (1 + REL)
        assert len(fake.committed) == n


def test_kkt_allocator_carry_over_offers_can_exceed_total_but_achieved_kl_cannot():
    """Brute force over n = 3 agents: every reject pattern × KL fractions {0, ½, 1} × q's.

    Carried budget is offered again, so Σ offers exceeds δ_total whenever an early agent
    leaves budget; Σ achieved KL never does, and no offer exceeds the budget not yet spent.
    """
    total, max_offered = 0.06, 0.0
    for q_values in [(1.0, 1.0, 1.0), (4.0, 2.0, 1.0), (1.0, 0.0, 9.0)]:
        q = agents_q(*q_values)
        for reject in itertools.product([False, True], repeat=3):
            for fractions in itertools.product([0.0, 0.5, 1.0], repeat=3):
                fake = FakeUpdate(
                    q,
                    kl_fraction=dict(zip(q, fractions, strict=True)),
                    reject={a for a, r in zip(q, reject, strict=True) if r},
                )
                updates = KKTAllocator(carry_over=True).run(fake, total, random.Random(0))
                offered = [u.kl_budget for u in updates]
                achieved = [u.proposal.kl if u.proposal.accepted else 0.0 for u in updates]
                assert offered == [budget for _, budget in fake.proposals_offered()]
                assert math.fsum(achieved) <= total * (1 + REL)
                for k in range(len(updates)):  # an offer never exceeds what is unspent
                    assert math.fsum(achieved[:k]) + offered[k] <= total * (1 + REL)
                max_offered = max(max_offered, math.fsum(offered))
    assert max_offered > 1.5 * total  # the offers alone are not bounded by δ_total


def test_prepass_q_is_recorded_for_kkt_and_nan_otherwise():
    q = agents_q(0.5, 4.0, 1.5)
    fake = FakeUpdate(q, q_scale=10.0)  # the proposals' q differ from the pre-pass q
    updates = KKTAllocator().run(fake, 0.03, random.Random(0))
    assert {u.agent: u.prepass_natgrad_sq_norm for u in updates} == q
    assert [u.proposal.natgrad_sq_norm for u in updates] == [4.0, 15.0, 50.0]
    per_agent, _ = allocation_metrics(updates, _Counters(), 0.03)
    assert {a: m[PREPASS_NATGRAD_SQ_NORM] for a, m in per_agent.items()} == q
    assert per_agent["a1"][NATGRAD_SQ_NORM] == 4.0 and per_agent["a0"][NATGRAD_SQ_NORM] == 50.0
    for allocator in (UniformAllocator(), GreedyAllocator()):
        updates = allocator.run(FakeUpdate(q), 0.03, random.Random(0))
        per_agent, _ = allocation_metrics(updates, _Counters(), 0.03)
        assert all(math.isnan(m[PREPASS_NATGRAD_SQ_NORM]) for m in per_agent.values())


class _Counters:
    num_proposals = num_search_directions = num_skipped = 0


def _kkt_budgets(allocator, q):
    fake = FakeUpdate(q)
    allocator.run(fake, 0.03, random.Random(0))
    return dict(fake.proposals_offered())


def test_kkt_allocator_smoothing_and_state_round_trip():
    qs = [agents_q(1.0, 2.0, 6.0), agents_q(6.0, 2.0, 1.0), agents_q(1.0, 1.0, 1.0)]
    beta = 0.6
    uninterrupted = KKTAllocator(share_smoothing=beta)
    budgets = [_kkt_budgets(uninterrupted, q) for q in qs]
    plain = [_kkt_budgets(KKTAllocator(), q) for q in qs]
    assert budgets[0] == pytest.approx(plain[0], rel=REL)  # first iteration: s_new
    for agent in qs[0]:  # s ← β s_prev + (1−β) s_new
        assert budgets[1][agent] == pytest.approx(
            beta * budgets[0][agent] + (1 - beta) * plain[1][agent], rel=1e-9
        )
    assert math.fsum(budgets[1].values()) == pytest.approx(0.03, rel=REL)

    first = KKTAllocator(share_smoothing=beta)
    _kkt_budgets(first, qs[0])
    state = first.get_state()
    restored = KKTAllocator(share_smoothing=beta)
    restored.set_state(state)
    assert [_kkt_budgets(restored, q) for q in qs[1:]] == budgets[1:]


def test_kkt_allocator_options_are_validated():
    with pytest.raises(ValueError, match=r"kl_allocator_config\['min_share'\].*\[0.0, 1.0\].*1.5"):
        KKTAllocator(min_share=1.5)
    with pytest.raises(ValueError, match=r"kl_allocator_config\['max_share'\].*0.5"):
        KKTAllocator(max_share=0.5)
    with pytest.raises(ValueError, match=r"kl_allocator_config\['share_smoothing'\].*1\.0\)"):
        KKTAllocator(share_smoothing=1.0)
    with pytest.raises(ValueError, match=r"kl_allocator_config\['carry_over'\]"):
        KKTAllocator(carry_over="yes")


# -- GreedyAllocator -------------------------------------------------------------------------


def _check_greedy_rounds(fake, allocator, total):
    budget_left = total
    for proposals, winner in fake.rounds():
        remaining = len(proposals)
        radius = budget_left / remaining
        assert all(c[2] == pytest.approx(radius, rel=1e-9) for c in proposals)
        if winner is None:
            break
        scores = {c[1]: allocator.score(fake.propose(c[1], c[2])) for c in proposals}
        best = max(scores.values())
        assert scores[winner] == best
        assert winner == next(a for a in fake.agents if scores.get(a) == best)  # ties: earliest
        budget_left -= next(p.kl for p in fake.committed if p.agent == winner)


def test_greedy_commits_the_best_of_each_round_within_budget():
    rng = random.Random(5)
    for _ in range(40):
        n = rng.randint(1, 6)
        q = agents_q(*random_q(rng, n))
        fake = FakeUpdate(
            q,
            kl_fraction={a: rng.uniform(0.1, 1.0) for a in q},
            improvement_factor={a: rng.uniform(0.2, 2.0) for a in q},
        )
        allocator = GreedyAllocator()
        updates = allocator.run(fake, 0.05, rng)
        assert math.fsum(p.kl for p in fake.committed) <= 0.05 * (1 + REL)
        assert [u.agent for u in updates] == [p.agent for p in fake.committed]
        calls_before = list(fake.calls)
        _check_greedy_rounds(fake, allocator, 0.05)
        fake.calls = calls_before


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_greedy_proposal_count_when_all_accept(n):
    fake = FakeUpdate(agents_q(*[1.0 + i for i in range(n)]))
    updates = GreedyAllocator().run(fake, 0.01 * n, random.Random(0))
    assert len(fake.proposals_offered()) == n * (n + 1) // 2
    assert [u.update_rank for u in updates] == list(range(n))


def test_greedy_radius_is_fair_share_of_what_is_left():
    """q = (1, 4), c = (1, 0.5), δ_total = 0.04.

    Round 1, r = 0.02: scores sqrt(2·1·0.02)/0.02 = 10 and sqrt(2·4·0.02)/0.01 = 40: a1 wins
    with KL 0.01. Round 2, r = (0.04 − 0.01)/1 = 0.03 for a0.
    """
    fake = FakeUpdate(agents_q(1.0, 4.0), kl_fraction={"a1": 0.5})
    updates = GreedyAllocator().run(fake, 0.04, random.Random(0))
    offered = fake.proposals_offered()
    assert offered == [("a0", 0.02), ("a1", 0.02), ("a0", pytest.approx(0.03, rel=REL))]
    assert [(u.agent, u.kl_budget, u.update_rank) for u in updates] == [
        ("a1", 0.02, 0),
        ("a0", pytest.approx(0.03, rel=REL), 1),
    ]


def test_greedy_stops_when_every_trial_is_rejected():
    fake = FakeUpdate(agents_q(1.0, 2.0, 3.0), reject={"a0", "a1"})
    updates = GreedyAllocator().run(fake, 0.03, random.Random(0))
    assert [p.agent for p in fake.committed] == ["a2"]
    assert len(fake.proposals_offered()) == 3 + 2
    assert updates[0].agent == "a2" and updates[0].update_rank == 0
    left_out = {u.agent: u for u in updates[1:]}
    assert set(left_out) == {"a0", "a1"}
    for u in left_out.values():
        assert u.update_rank == -1 and u.proposal is None
        assert u.kl_budget == pytest.approx((0.03 - 0.01) / 2, rel=REL)  # last radius offered


def test_greedy_no_commit_when_all_reject():
    fake = FakeUpdate(agents_q(1.0, 2.0), reject={"a0", "a1"})
    updates = GreedyAllocator().run(fake, 0.02, random.Random(0))
    assert fake.committed == []
    assert [(u.agent, u.kl_budget, u.update_rank) for u in updates] == [
        ("a0", 0.01, -1),
        ("a1", 0.01, -1),
    ]


def test_greedy_ties_go_to_the_earliest_agent():
    fake = FakeUpdate(agents_q(2.0, 2.0, 2.0))
    updates = GreedyAllocator().run(fake, 0.03, random.Random(0))
    assert [u.agent for u in updates] == ["a0", "a1", "a2"]


def test_greedy_option_validated():
    with pytest.raises(ValueError, match=r"kl_allocator_config\['score_eps'\].*\(0.0, inf\].*0"):
        GreedyAllocator(score_eps=0.0)


# -- sweep and make_allocator ----------------------------------------------------------------


def test_sweep_commits_in_order_and_validates():
    fake = FakeUpdate(agents_q(1.0, 2.0))
    updates = sweep(fake, ["a1", "a0"], {"a0": 0.01, "a1": 0.02})
    assert updates == [
        AgentUpdate("a1", 0.02, 0, fake.committed[0]),
        AgentUpdate("a0", 0.01, 1, fake.committed[1]),
    ]
    with pytest.raises(ValueError, match="repeats"):
        sweep(FakeUpdate(agents_q(1.0, 2.0)), ["a0", "a0"], {"a0": 0.01})
    with pytest.raises(ValueError, match="no kl_budget"):
        sweep(FakeUpdate(agents_q(1.0, 2.0)), ["a0", "a1"], {"a0": 0.01})


def test_make_allocator_builds_the_named_allocators():
    assert set(ALLOCATORS) == {"uniform", "kkt", "greedy"}
    allocator = make_allocator("kkt", {"min_share": 0.2, "carry_over": True})
    assert isinstance(allocator, KKTAllocator) and allocator.min_share == 0.2
    assert isinstance(make_allocator("greedy", None), GreedyAllocator)
    assert make_allocator("uniform", {}).name == "uniform"


def test_make_allocator_errors_name_the_field():
    with pytest.raises(ValueError, match=r"kl_allocator must be one of \['greedy', 'kkt'"):
        make_allocator("kkt2", None)
    with pytest.raises(ValueError, match=r"unknown option.*'min_shar'.*'max_share'"):
        make_allocator("kkt", {"min_shar": 0.1})
    with pytest.raises(ValueError, match=r"kl_allocator_config\['max_share'\]"):
        make_allocator("kkt", {"max_share": -1})

    class NotAnAllocator:
        def run(self, update, total_kl_budget, rng):
            return []

    with pytest.raises(TypeError, match=r"subclasses rllib_hatrpo\.core\.allocation\.KLAllocator"):
        make_allocator(NotAnAllocator, None)


def test_make_allocator_accepts_a_user_subclass():
    class LastAgentOnly(KLAllocator):
        def __init__(self, share=1.0):
            self.share = share

        def run(self, update, total_kl_budget, rng):
            last = update.agents[-1]
            return sweep(update, [last], {last: self.share * total_kl_budget})

    allocator = make_allocator(LastAgentOnly, {"share": 0.5})
    assert allocator.name == "LastAgentOnly"
    fake = FakeUpdate(agents_q(1.0, 2.0))
    updates = allocator.run(fake, 0.02, random.Random(0))
    assert fake.proposals_offered() == [("a1", 0.01)]
    assert updates[0].update_rank == 0
    with pytest.raises(ValueError, match=r"unknown option.*'scale'.*\['share'\]"):
        make_allocator(LastAgentOnly, {"scale": 0.5})
