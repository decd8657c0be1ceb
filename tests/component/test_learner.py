"""The HATRPO learner on real episodes from MaMuJoCo and MPE."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.evaluation.postprocessing import Postprocessing

from rllib_hatrpo.default_hatrpo_rl_module import SHARED_CRITIC_ID
from rllib_hatrpo.envs import MaMuJoCoEnv, MPEEnv
from rllib_hatrpo.torch.sequential_trpo import TorchSequentialUpdate
from tests.helpers import connector_batch, make_config, runner_and_learner

pytestmark = pytest.mark.component

HALFCHEETAH_6X1 = (MaMuJoCoEnv, {"scenario": "HalfCheetah", "agent_conf": "6x1"})
SIMPLE_SPREAD = (MPEEnv, {"scenario": "simple_spread_v3"})


def _weights(learner, mid):
    return {k: v.detach().clone() for k, v in learner.module[mid].state_dict().items()}


@pytest.fixture(scope="module")
def cheetah():
    config = make_config(*HALFCHEETAH_6X1, allocator="uniform")
    runner, learner = runner_and_learner(config)
    return config, runner, learner, runner.sample(num_timesteps=400)


@pytest.fixture(scope="module")
def spread():
    config = make_config(*SIMPLE_SPREAD, allocator="uniform", batch=300)
    runner, learner = runner_and_learner(config)
    # Two samples: the second one continues chunks of unfinished episodes.
    return (
        config,
        runner,
        learner,
        runner.sample(num_timesteps=130) + runner.sample(num_timesteps=170),
    )


@pytest.mark.parametrize("setup", ["cheetah", "spread"])
def test_update_keeps_every_agent_within_its_kl_budget(setup, request):
    config, _, learner, episodes = request.getfixturevalue(setup)
    results = learner.update(episodes=episodes, timesteps={})
    agents = [mid for mid in learner.module.keys() if mid != SHARED_CRITIC_ID]
    total = results["__all_modules__"]["total_kl_budget"].peek()
    assert total == pytest.approx(len(agents) * config.kl_threshold)
    ranks = []
    for mid in agents:
        m = {k: v.peek() for k, v in results[mid].items()}
        # Acceptance requires KL ≤ δ_i on the batch, so no tolerance is needed.
        assert 0.0 <= m["kl"] <= m["kl_budget"], mid
        assert m["kl_budget"] == pytest.approx(total / len(agents))
        assert m["line_search_accepted"] in (0.0, 1.0)
        ranks.append(m["update_rank"])
    assert sorted(ranks) == list(range(len(agents)))
    assert results["__all_modules__"]["kl_total"].peek() <= total
    assert results[SHARED_CRITIC_ID]["total_loss"].peek() > 0


def _tensor_batch(learner, episodes):
    batch = connector_batch(learner, episodes)
    return {mid: {k: torch.as_tensor(v) for k, v in cols.items()} for mid, cols in batch.items()}


def test_rows_of_all_agents_line_up_per_env_step(spread):
    """simple_spread's global state is the concatenation of the agents' observations, so
    every critic row must equal the agents' observation rows of the same env step."""
    _, _, learner, episodes = spread
    batch = connector_batch(learner, episodes)
    agents = sorted(mid for mid in batch if mid != SHARED_CRITIC_ID)
    state = batch[SHARED_CRITIC_ID][Columns.OBS]
    obs = torch.cat([torch.as_tensor(batch[a][Columns.OBS]) for a in agents], dim=-1)
    assert state.shape == obs.shape
    torch.testing.assert_close(state, obs)
    adv = [batch[a][Postprocessing.ADVANTAGES] for a in agents]
    assert all(torch.equal(adv[0], a) for a in adv[1:])
    mask = batch[SHARED_CRITIC_ID][Columns.LOSS_MASK]
    assert abs(float(adv[0][mask].mean())) < 1e-5
    # One bootstrap row per episode chunk.
    assert int((~mask).sum()) == len(episodes)


def test_compound_ratio_is_the_product_of_committed_ratios(cheetah):
    config, _, learner, episodes = cheetah
    batch = _tensor_batch(learner, episodes)
    agents = [mid for mid in learner.module.keys() if mid != SHARED_CRITIC_ID]
    modules = {mid: learner.module[mid] for mid in agents}
    before = {mid: _weights(learner, mid) for mid in agents}
    old_logp = {}
    for mid in agents:
        with torch.no_grad():
            out = modules[mid].forward_train(batch[mid])
            dist = (
                modules[mid]
                .get_train_action_dist_cls()
                .from_logits(out[Columns.ACTION_DIST_INPUTS])
            )
            old_logp[mid] = dist.logp(batch[mid][Columns.ACTIONS])
    sweep = TorchSequentialUpdate(modules, batch, config)
    committed = []
    for mid in agents[:3]:
        proposal = sweep.propose(mid, 0.01)
        assert proposal.accepted
        sweep.commit(proposal)
        committed.append(mid)
    expected = torch.ones_like(sweep.compound_ratio)
    for mid in committed:
        with torch.no_grad():
            out = modules[mid].forward_train(batch[mid])
            dist = (
                modules[mid]
                .get_train_action_dist_cls()
                .from_logits(out[Columns.ACTION_DIST_INPUTS])
            )
            expected *= torch.exp(dist.logp(batch[mid][Columns.ACTIONS]) - old_logp[mid])
    torch.testing.assert_close(sweep.compound_ratio, expected, rtol=1e-5, atol=1e-6)
    # Proposals of uncommitted agents left their weights untouched.
    for mid in agents[3:]:
        for k, v in _weights(learner, mid).items():
            assert torch.equal(v, before[mid][k])
    for mid in committed:  # restore for the other tests of this module
        learner.module[mid].load_state_dict(before[mid])


def test_rejected_and_guarded_steps_leave_parameters_unchanged(cheetah):
    config, _, learner, episodes = cheetah
    batch = _tensor_batch(learner, episodes)
    agents = [mid for mid in learner.module.keys() if mid != SHARED_CRITIC_ID]
    modules = {mid: learner.module[mid] for mid in agents}
    before = {mid: _weights(learner, mid) for mid in agents}

    strict = config.copy(copy_frozen=False).training(accept_ratio=1e9)  # nothing acceptable
    sweep = TorchSequentialUpdate(modules, batch, strict)
    proposal = sweep.propose(agents[0], 0.01)
    assert not proposal.accepted and proposal.line_search_steps == strict.line_search_steps
    sweep.commit(proposal)
    assert torch.equal(sweep.compound_ratio, torch.ones_like(sweep.compound_ratio))

    poisoned = {mid: dict(cols) for mid, cols in batch.items()}
    for mid in agents:
        poisoned[mid][Postprocessing.ADVANTAGES] = torch.full_like(
            batch[mid][Postprocessing.ADVANTAGES], float("nan")
        )
    sweep = TorchSequentialUpdate(modules, poisoned, config)
    proposal = sweep.propose(agents[1], 0.01)
    assert proposal.skipped and not proposal.accepted and sweep.num_skipped == 1
    assert sweep.natgrad_sq_norm(agents[1]) == 0.0
    for mid in agents:
        for k, v in _weights(learner, mid).items():
            assert torch.equal(v, before[mid][k]), (mid, k)
            assert torch.isfinite(v).all()


@pytest.mark.parametrize("allocator", ["uniform", "kkt", "greedy"])
def test_checkpoint_restore_continues_with_identical_learner_state(allocator, tmp_path):
    config = make_config(
        *SIMPLE_SPREAD,
        allocator=allocator,
        batch=200,
        kl_allocator_config={"share_smoothing": 0.5} if allocator == "kkt" else {},
    )
    runner, learner = runner_and_learner(config)
    learner.update(episodes=runner.sample(num_timesteps=200), timesteps={})
    learner.save_to_path(tmp_path / "learner")
    restored = config.build_learner(spaces=runner.get_spaces())
    restored.restore_from_path(tmp_path / "learner")

    state_a, state_b = learner.get_state(), restored.get_state()
    assert state_a["hatrpo"]["order_rng"] == state_b["hatrpo"]["order_rng"]
    assert state_a["hatrpo"]["allocator"] == state_b["hatrpo"]["allocator"]
    for mid in learner.module.keys():
        for k, v in _weights(learner, mid).items():
            assert torch.equal(v, _weights(restored, mid)[k]), (mid, k)

    episodes = runner.sample(num_timesteps=200)
    import copy

    learner.update(episodes=copy.deepcopy(episodes), timesteps={})
    restored.update(episodes=copy.deepcopy(episodes), timesteps={})
    for mid in learner.module.keys():
        for k, v in _weights(learner, mid).items():
            torch.testing.assert_close(v, _weights(restored, mid)[k], rtol=0, atol=1e-6)
    assert learner.get_state()["hatrpo"] == restored.get_state()["hatrpo"]
    critic = restored.module[SHARED_CRITIC_ID]
    assert float(critic.value_norm_count) == pytest.approx(2 * 200, abs=40)


def test_global_states_are_float32_and_discrete_actions_are_ints(spread):
    _, _, learner, episodes = spread
    batch = connector_batch(learner, episodes)
    assert batch[SHARED_CRITIC_ID][Columns.OBS].dtype == torch.float32
    actions = np.asarray(batch["agent_0"][Columns.ACTIONS])
    assert np.issubdtype(actions.dtype, np.integer)


def test_first_critic_update_trains_on_nearly_every_row(monkeypatch):
    """The value clip window is centred on the critic's own output before the update.

    Before, the stored predictions were re-normalised with the value-norm statistics of this
    batch while the critic still predicted on the old scale: in iteration 1 every row started
    outside the ±0.2 window and 68–73 % of the rows got no gradient in any epoch.
    """
    from rllib_hatrpo.core import value_loss

    config = make_config(MaMuJoCoEnv, {"scenario": "HalfCheetah", "agent_conf": "2x3"})
    runner, learner = runner_and_learner(config)
    episodes = runner.sample(num_timesteps=400)
    shares = []
    original = value_loss.clipped_value_loss

    def spy(values, old_values, targets, mask, **kwargs):
        loss = original(values, old_values, targets, mask, **kwargs)
        (grad,) = torch.autograd.grad(loss, values, retain_graph=True)
        shares.append(float((grad[mask] != 0).float().mean()))
        return loss

    monkeypatch.setattr(value_loss, "clipped_value_loss", spy)
    learner.update(episodes=episodes, timesteps={})
    assert len(shares) == config.critic_epochs
    # Later epochs clip rows whose prediction has moved 0.2 away, as value clipping should.
    assert shares[0] > 0.99, shares
