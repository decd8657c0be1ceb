"""The learner on episodes in which an agent leaves (`PettingZooEnv(dead_agents="black_death")`).

"a_1" of `tests.leaving_env.LeavingTeamEnv` leaves at step 2 of 5: its rows from then on are
inactive and must not enter its own update (surrogate, KL, Fisher, input statistics), and its
factor of the compound ratio is 1 there.
"""

from __future__ import annotations

import pytest
import torch
from ray.rllib.core.columns import Columns

from rllib_hatrpo.connectors.central_critic_gae import AGENT_ACTIVE
from rllib_hatrpo.default_hatrpo_rl_module import SHARED_CRITIC_ID
from rllib_hatrpo.torch.mlp import input_normalizer
from rllib_hatrpo.torch.sequential_trpo import TorchSequentialUpdate
from tests.helpers import connector_batch, make_config, runner_and_learner
from tests.leaving_env import AGENTS, LeavingTeamEnv

pytestmark = pytest.mark.component


@pytest.fixture(scope="module")
def leaving():
    config = make_config(LeavingTeamEnv, {}, batch=300)
    runner, learner = runner_and_learner(config)
    return config, learner, runner.sample(num_timesteps=300)


def _tensor_batch(learner, episodes):
    batch = connector_batch(learner, episodes)
    return {mid: {k: torch.as_tensor(v) for k, v in cols.items()} for mid, cols in batch.items()}


def _weights(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _sweep(config, learner, batch):
    """Commits "a_1" first, then "a_2"; returns what each step did, and restores the weights."""
    modules = {mid: learner.module[mid].unwrapped() for mid in AGENTS}
    before = {mid: _weights(modules[mid]) for mid in AGENTS}
    sweep = TorchSequentialUpdate(modules, batch, config)
    out = {}
    for mid in ["a_1", "a_2"]:
        q = sweep.natgrad_sq_norm(mid)
        proposal = sweep.propose(mid, 0.01)
        assert proposal.accepted, mid
        sweep.commit(proposal)
        out[mid] = (q, proposal.kl, proposal.surrogate_improvement, _weights(modules[mid]))
        if mid == "a_1":
            out["ratio_after_a_1"] = sweep.compound_ratio.clone()
    for mid in AGENTS:
        modules[mid].load_state_dict(before[mid])
    return out


def test_connector_marks_the_rows_after_an_agent_left(leaving):
    _, learner, episodes = leaving
    batch = _tensor_batch(learner, episodes)
    mask = batch[SHARED_CRITIC_ID][Columns.LOSS_MASK]
    for mid in AGENTS:
        assert torch.equal(batch[mid][Columns.LOSS_MASK], mask)  # the rows stay aligned
        active = batch[mid][AGENT_ACTIVE]
        assert active.dtype == torch.bool
        assert not active[~mask].any()  # bootstrap rows
        if mid != "a_1":
            assert torch.equal(active, mask)
    active = batch["a_1"][AGENT_ACTIVE]
    inactive = mask & ~active
    assert inactive.any() and active.any()
    # The observations of the inactive rows are zeros, except at the step it left (its own).
    assert int((batch["a_1"][Columns.OBS][inactive].abs().sum(-1) > 0).sum()) <= len(episodes)


def test_leaving_agent_update_ignores_its_inactive_rows(leaving):
    config, learner, episodes = leaving
    batch = _tensor_batch(learner, episodes)
    reference = _sweep(config, learner, batch)

    inactive = ~batch["a_1"][AGENT_ACTIVE]
    garbage = {mid: dict(cols) for mid, cols in batch.items()}
    obs = garbage["a_1"][Columns.OBS].clone()
    obs[inactive] = torch.randn_like(obs[inactive]) * 5.0
    actions = garbage["a_1"][Columns.ACTIONS].clone()
    actions[inactive] = 1 - actions[inactive]
    garbage["a_1"][Columns.OBS], garbage["a_1"][Columns.ACTIONS] = obs, actions
    result = _sweep(config, learner, garbage)

    for mid in ["a_1", "a_2"]:
        q, kl, improvement, weights = result[mid]
        assert (q, kl, improvement) == reference[mid][:3], mid
        for k, v in weights.items():
            assert torch.equal(v, reference[mid][3][k]), (mid, k)
    ratio = reference["ratio_after_a_1"]
    assert torch.equal(ratio[inactive], torch.ones_like(ratio[inactive]))
    assert (ratio[~inactive] != 1).any()
    assert torch.equal(result["ratio_after_a_1"], ratio)


def test_update_runs_and_keeps_every_agent_within_its_kl_budget(leaving):
    config, learner, episodes = leaving
    batch = _tensor_batch(learner, episodes)
    counts = {mid: int(batch[mid][AGENT_ACTIVE].sum()) for mid in AGENTS}
    assert counts["a_1"] < counts["a_0"] == counts["a_2"]
    results = learner.update(episodes=episodes, timesteps={})
    total = results["__all_modules__"]["total_kl_budget"].peek()
    assert total == pytest.approx(len(AGENTS) * config.kl_threshold)
    for mid in AGENTS:
        m = {k: v.peek() for k, v in results[mid].items()}
        assert 0.0 <= m["kl"] <= m["kl_budget"], mid
        assert m["line_search_accepted"] == 1.0, mid
        # The input statistics saw only the rows where the agent acts.
        norm = input_normalizer(learner.module[mid].unwrapped().pi)
        assert int(norm.count) == counts[mid], mid
    assert results[SHARED_CRITIC_ID]["total_loss"].peek() > 0
