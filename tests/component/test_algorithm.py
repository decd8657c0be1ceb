"""Whole HATRPO algorithms on a local Ray instance: build, train, sync, checkpoint."""

from __future__ import annotations

import numpy as np
import pytest

from rllib_hatrpo import HATRPO, HATRPOConfig
from rllib_hatrpo.default_hatrpo_rl_module import SHARED_CRITIC_ID
from rllib_hatrpo.envs import MaMuJoCoEnv, MPEEnv
from rllib_hatrpo.metrics import PER_AGENT_KEYS, TEAM_EPISODE_RETURN_MEAN

pytestmark = pytest.mark.component


def _config(env_cls, env_config, batch):
    return (
        HATRPOConfig()
        .environment(env_cls, env_config=env_config)
        .env_runners(num_env_runners=1, num_envs_per_env_runner=2)
        .training(train_batch_size_per_learner=batch)
        .debugging(seed=1)
    )


def _runner_weights(algo):
    return algo.env_runner_group.foreach_env_runner(
        lambda runner: {mid: runner.module[mid].get_state() for mid in runner.module.keys()},
        local_env_runner=False,
    )[0]


@pytest.mark.parametrize(
    "env_cls, env_config, batch",
    [
        (MaMuJoCoEnv, {"scenario": "HalfCheetah", "agent_conf": "2x3"}, 500),
        (MPEEnv, {"scenario": "simple_spread_v3"}, 200),
    ],
    ids=["halfcheetah_2x3", "simple_spread"],
)
def test_build_and_train_two_iterations(ray_session, env_cls, env_config, batch):
    algo = _config(env_cls, env_config, batch).build_algo()
    try:
        for _ in range(2):
            result = algo.train()
        agents = sorted(algo.config.policies)
        for mid in agents:
            assert set(PER_AGENT_KEYS) <= set(result["learners"][mid])
        assert "kl_total" in result["learners"]["__all_modules__"]
        # EnvRunners sample with exactly the learner's actor weights and hold no critic.
        runner = _runner_weights(algo)
        assert SHARED_CRITIC_ID not in runner and sorted(runner) == agents
        learner = algo.learner_group.get_weights(module_ids=agents)
        for mid in agents:
            for key, value in learner[mid].items():
                np.testing.assert_array_equal(np.asarray(runner[mid][key]), np.asarray(value))
        if env_cls is MPEEnv:  # 25-step episodes: some finished in every iteration
            team = result["env_runners"][TEAM_EPISODE_RETURN_MEAN]
            summed = result["env_runners"]["episode_return_mean"]
            assert team == pytest.approx(summed / len(agents))
    finally:
        algo.stop()


def test_algorithm_checkpoint_resumes_training(ray_session, tmp_path):
    config = _config(MPEEnv, {"scenario": "simple_spread_v3"}, 100).training(kl_allocator="kkt")
    algo = config.build_algo()
    try:
        algo.train()
        algo.save_to_path(tmp_path / "ckpt")
        learner_state = algo.learner_group.get_state()
        states = np.random.default_rng(0).normal(size=(5, 54)).astype(np.float32)
        values = algo.compute_state_values(states)
        with pytest.raises(ValueError, match=r"shape \[N, \*\(54,\)\]"):
            algo.compute_state_values(states[:, :10])
    finally:
        algo.stop()
    assert values.shape == (5,) and np.isfinite(values).all() and np.ptp(values) > 0
    restored = HATRPO.from_checkpoint(tmp_path / "ckpt")
    try:
        # The central critic (learner-only) comes back with the checkpoint.
        np.testing.assert_array_equal(restored.compute_state_values(states), values)
        state = restored.learner_group.get_state()
        own_a = learner_state["learner"]["hatrpo"]
        own_b = state["learner"]["hatrpo"]
        assert own_a == own_b
        assert restored.iteration == 1
        result = restored.train()
        assert result["training_iteration"] == 2
        assert result["learners"]["agent_0"]["weights_seq_no"] == 2
        runner = _runner_weights(restored)
        learner = restored.learner_group.get_weights(module_ids=["agent_0"])
        for key, value in learner["agent_0"].items():
            np.testing.assert_array_equal(np.asarray(runner["agent_0"][key]), np.asarray(value))
    finally:
        restored.stop()


def test_an_iteration_that_sampled_nothing_is_retried_then_an_error(ray_session, monkeypatch):
    """Before: an empty sample (every EnvRunner past sample_timeout_s) returned early and the
    iteration was counted, with 0 env steps and NaN KL."""
    from rllib_hatrpo import hatrpo
    from rllib_hatrpo.envs import DifferentialGameEnv
    from tests.helpers import make_config

    algo = make_config(DifferentialGameEnv, {}, batch=20).build_algo()
    real, empty_calls = hatrpo.synchronous_parallel_sample, []

    def sample_nothing_twice(**kwargs):
        if len(empty_calls) < 2:
            empty_calls.append(kwargs)
            return [], []
        return real(**kwargs)

    try:
        monkeypatch.setattr(hatrpo, "synchronous_parallel_sample", sample_nothing_twice)
        result = algo.train()
        assert len(empty_calls) == 2
        assert result["training_iteration"] == 1
        assert result["env_runners"]["num_env_steps_sampled"] >= 20
        assert result["learners"]["__all_modules__"]["kl_total"] > 0
        monkeypatch.setattr(hatrpo, "synchronous_parallel_sample", lambda **kwargs: ([], []))
        with pytest.raises(RuntimeError, match=r"No env step was sampled.*sample_timeout_s"):
            algo.train()
    finally:
        algo.stop()


def test_env_runner_actors_normalise_with_the_learners_statistics(ray_session):
    """After one iteration the remote EnvRunner's actors hold the learner's running input
    mean/std exactly (float64), updated from that iteration's valid rows."""
    algo = _config(MPEEnv, {"scenario": "simple_spread_v3"}, 100).build_algo()
    try:
        result = algo.train()
        agents = sorted(algo.config.policies)
        runner = _runner_weights(algo)
        learner = algo.learner_group.get_weights(module_ids=[*agents, SHARED_CRITIC_ID])
        sampled = result["env_runners"]["num_env_steps_sampled"]
        for mid in agents:
            for key in ("pi.0.mean", "pi.0.var", "pi.0.count"):
                ours, theirs = np.asarray(learner[mid][key]), np.asarray(runner[mid][key])
                assert ours.dtype == theirs.dtype == np.float64, key
                np.testing.assert_array_equal(theirs, ours)
            assert learner[mid]["pi.0.count"] == sampled  # every agent acts at every step
            assert np.any(learner[mid]["pi.0.var"] != 1.0)
        assert learner[SHARED_CRITIC_ID]["vf.0.count"] == sampled
    finally:
        algo.stop()
