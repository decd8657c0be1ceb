"""The KKT and greedy allocators end to end on HalfCheetah 6x1 (heterogeneous observations)."""

from __future__ import annotations

import math
import random

import pytest
import torch

from rllib_hatrpo.core.allocation import GreedyAllocator, KKTAllocator, kkt_allocation
from rllib_hatrpo.default_hatrpo_rl_module import SHARED_CRITIC_ID
from rllib_hatrpo.envs import MaMuJoCoEnv
from rllib_hatrpo.metrics import (
    KL_BUDGET,
    NATGRAD_SQ_NORM,
    PREPASS_NATGRAD_SQ_NORM,
    TOTAL_KL_BUDGET,
)
from rllib_hatrpo.torch.sequential_trpo import TorchSequentialUpdate
from tests.helpers import make_config, runner_and_learner

pytestmark = pytest.mark.component


class Spy:
    """Wraps the learner's TorchSequentialUpdate and records every call in order."""

    def __init__(self, update):
        self.update = update
        self.calls: list[tuple] = []

    @property
    def agents(self):
        return self.update.agents

    def natgrad_sq_norm(self, agent):
        q = self.update.natgrad_sq_norm(agent)
        self.calls.append(("q", agent, q))
        return q

    def propose(self, agent, kl_budget):
        proposal = self.update.propose(agent, kl_budget)
        self.calls.append(("propose", agent, proposal))
        return proposal

    def commit(self, proposal):
        self.calls.append(("commit", proposal.agent, proposal))
        self.update.commit(proposal)


@pytest.fixture(scope="module")
def cheetah_sweep():
    config = make_config(MaMuJoCoEnv, {"scenario": "HalfCheetah", "agent_conf": "6x1"})
    runner, learner = runner_and_learner(config)
    episodes = runner.sample(num_timesteps=300)
    batch = learner._learner_connector(
        rl_module=learner.module, batch={}, episodes=episodes, metrics=None
    )
    agents = [mid for mid in learner.module.keys() if mid != SHARED_CRITIC_ID]
    initial = {mid: learner.module[mid].state_dict() for mid in agents}
    initial = {mid: {k: v.clone() for k, v in sd.items()} for mid, sd in initial.items()}

    def fresh_sweep():
        for mid in agents:
            learner.module[mid].load_state_dict(initial[mid])
        modules = {mid: learner.module[mid] for mid in agents}
        return Spy(TorchSequentialUpdate(modules, batch, config))

    return fresh_sweep, len(agents) * config.kl_threshold


def test_kkt_budgets_differ_sum_to_total_and_follow_q(cheetah_sweep):
    fresh_sweep, total = cheetah_sweep
    spy = fresh_sweep()
    records = KKTAllocator().run(spy, total, random.Random(0))
    budgets = {r.agent: r.kl_budget for r in records}
    assert sum(budgets.values()) == pytest.approx(total, rel=1e-9)
    assert max(budgets.values()) > 1.05 * min(budgets.values())  # not the uniform split
    for r in records:
        assert r.proposal is not None and r.proposal.kl <= r.kl_budget
    # The pre-pass (all q at M = 1) precedes every proposal; the order is descending q.
    first_propose = next(i for i, c in enumerate(spy.calls) if c[0] == "propose")
    prepass = {agent: q for kind, agent, q in spy.calls[:first_propose] if kind == "q"}
    assert set(prepass) == set(budgets)
    order = [r.agent for r in sorted(records, key=lambda r: r.update_rank)]
    assert order == sorted(prepass, key=lambda a: -prepass[a])
    # Budgets are the KKT closed form within the box (every q here is well inside it).
    q_sum = sum(prepass.values())
    for agent, budget in budgets.items():
        share = prepass[agent] / q_sum * len(budgets)
        if 0.1 < share < 3.0:
            assert budget == pytest.approx(total * prepass[agent] / q_sum, rel=1e-6)


def test_greedy_commits_the_best_candidate_of_each_round_within_budget(cheetah_sweep):
    fresh_sweep, total = cheetah_sweep
    spy = fresh_sweep()
    allocator = GreedyAllocator()
    records = allocator.run(spy, total, random.Random(0))
    committed = [r for r in records if r.update_rank >= 0]
    assert committed, "no agent improved"
    assert sum(r.proposal.kl for r in committed) <= total
    round_proposals: list = []
    budget_left, n_remaining = total, len(records)
    for kind, _agent, payload in spy.calls:
        if kind == "propose":
            assert payload.kl_budget == pytest.approx(budget_left / n_remaining)
            round_proposals.append(payload)
        elif kind == "commit":
            best = max(allocator.score(p) for p in round_proposals)
            assert allocator.score(payload) == best and best > 0
            assert len(round_proposals) == n_remaining
            budget_left -= payload.kl
            n_remaining -= 1
            round_proposals = []
    n = len(records)
    assert sum(kind == "propose" for kind, *_ in spy.calls) <= n * (n + 1) // 2


def test_kkt_prepass_direction_is_reused_by_the_first_agent(cheetah_sweep, monkeypatch):
    fresh_sweep, total = cheetah_sweep
    spy = fresh_sweep()
    calls = []
    original = torch.autograd.grad

    def counting_grad(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", counting_grad)
    for agent in spy.agents:
        spy.natgrad_sq_norm(agent)
    before = len(calls)
    first = max(spy.agents, key=lambda a: spy.update.natgrad_sq_norm(a))
    spy.propose(first, total / len(spy.agents))
    assert len(calls) == before  # no new gradient/CG work for the first agent's step


@pytest.mark.parametrize(
    "box", [{}, {"min_share": 0.0, "max_share": math.inf}], ids=["default_box", "no_box"]
)
def test_kkt_budgets_are_rederived_from_the_logged_prepass_q(box):
    """δ_i follows from the logged `prepass_natgrad_sq_norm`, not from `natgrad_sq_norm`."""
    config = make_config(
        MaMuJoCoEnv, {"scenario": "HalfCheetah", "agent_conf": "6x1"}, allocator="kkt"
    ).training(kl_allocator_config=box)
    runner, learner = runner_and_learner(config)
    results = learner.update(episodes=runner.sample(num_timesteps=300), timesteps={})
    agents = [mid for mid in learner.module.keys() if mid != SHARED_CRITIC_ID]
    logged = {mid: {key: stat.peek() for key, stat in results[mid].items()} for mid in agents}
    total = results["__all_modules__"][TOTAL_KL_BUDGET].peek()
    budgets = [logged[mid][KL_BUDGET] for mid in agents]
    min_share, max_share = box.get("min_share", 0.1), box.get("max_share", 3.0)
    uniform_share = total / len(agents)

    def rederived(key):
        q = [logged[mid][key] for mid in agents]
        low, high = min_share * uniform_share, min(total, max_share * uniform_share)
        return list(kkt_allocation(q, total, low, high).kl_budget)

    assert rederived(PREPASS_NATGRAD_SQ_NORM) == pytest.approx(budgets, rel=1e-12, abs=0)
    if not box:
        q = [logged[mid][PREPASS_NATGRAD_SQ_NORM] for mid in agents]
        closed_form = [total * qi / math.fsum(q) for qi in q]
        assert closed_form == pytest.approx(budgets, rel=1e-12, abs=0)
    # Negative control: q under each step's own compound ratio does not give the budgets.
    off = [abs(a - b) / b for a, b in zip(rederived(NATGRAD_SQ_NORM), budgets, strict=True)]
    assert max(off) > 1e-3
