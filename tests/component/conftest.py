"""Shared helpers of the component tests: in-process sampling and learners (no Ray cluster),
and one Ray instance per test module for the tests that build whole algorithms."""

from __future__ import annotations

import pytest

from rllib_hatrpo import HATRPOConfig


def make_config(env_cls, env_config, *, allocator="uniform", batch=400, **training):
    """A small HATRPO config sampling in-process (no remote EnvRunners)."""
    return (
        HATRPOConfig()
        .environment(env_cls, env_config=env_config)
        .env_runners(num_env_runners=0, num_envs_per_env_runner=2)
        .training(train_batch_size_per_learner=batch, kl_allocator=allocator, **training)
        .debugging(seed=0)
    )


def runner_and_learner(config):
    """An in-process MultiAgentEnvRunner and a built learner for ``config``."""
    from ray.rllib.env.multi_agent_env_runner import MultiAgentEnvRunner

    config.validate()
    runner = MultiAgentEnvRunner(config=config)
    learner = config.build_learner(spaces=runner.get_spaces())
    return runner, learner


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray instance shared by a test module (ray.init costs seconds)."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True)
    yield ray
    ray.shutdown()
