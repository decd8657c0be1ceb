"""Helpers shared by the tests: small configs, in-process sampling and learners (no Ray cluster)."""

from __future__ import annotations

from rllib_hatrpo import HATRPOConfig

#: ``hatrpo train`` on the differential game in the driver: the smallest whole run.
TINY_TRAIN = [
    "train",
    "--env",
    "differential_game",
    "--num-env-runners",
    "0",
    "--num-envs-per-env-runner",
    "2",
    "--train-batch-size",
    "100",
]


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


def connector_batch(learner, episodes):
    """Runs the learner's connector pipeline alone on copies of ``episodes`` (it mutates them)."""
    import copy

    return learner._learner_connector(
        rl_module=learner.module, batch={}, episodes=copy.deepcopy(episodes), metrics=None
    )


def team_runner_columns(env_cls, env_config, *, num_envs=3, num_timesteps=150):
    """One in-process, exploring `TeamEnvRunner` sample of ``env_cls(env_config)``: the class
    of its vector env and, per episode chunk and agent, (agent ID, observations, actions,
    rewards, global states) as arrays."""
    import numpy as np

    from rllib_hatrpo.envs import GLOBAL_STATE_KEY
    from rllib_hatrpo.team_env_runner import TeamEnvRunner

    config = (
        HATRPOConfig()
        .environment(env_cls, env_config=env_config)
        .env_runners(
            env_runner_cls=TeamEnvRunner, num_env_runners=0, num_envs_per_env_runner=num_envs
        )
        .debugging(seed=0)
    )
    config.validate()
    runner = TeamEnvRunner(config=config)
    episodes = runner.sample(num_timesteps=num_timesteps)
    kind = type(runner._team_env).__name__
    runner.stop()
    columns = []
    for episode in episodes:
        for aid, single in episode.agent_episodes.items():
            data = single.get_observations(), single.get_actions(), single.get_rewards()
            states = [info[GLOBAL_STATE_KEY] for info in single.get_infos()]
            columns.append((aid, *(np.asarray(x) for x in (*data, states))))
    return kind, columns


def _fingerprint(value, layout):
    """Type, dtype, shape and bytes (and memory layout): equal means bitwise-equal values."""
    import numpy as np

    array = np.asarray(value)
    order = (array.flags.c_contiguous, array.strides) if layout else None
    return type(value), array.dtype.str, array.shape, array.tobytes(), order


def assert_bitwise(actual, expected, what, layout=True):
    """Bitwise equality of values, types, dtypes and shapes; with ``layout``, also the same
    strides (torch's kernels can give ULP-different results for the same values in another
    memory layout)."""
    import numpy as np
    import pytest

    if _fingerprint(actual, layout) != _fingerprint(expected, layout):
        np.testing.assert_array_equal(actual, expected, err_msg=what)  # Shows the values.
        pytest.fail(f"{what}: equal values, but dtype/shape/type/strides/bytes differ")


def assert_bitwise_obs(actual, expected, what, layout=True):
    """Agent ID -> observations: the same agents in the same order, each bitwise equal."""
    assert list(actual) == list(expected), what
    for aid in expected:
        assert_bitwise(actual[aid], expected[aid], f"{what}: {aid}", layout)


def assert_bitwise_infos(actual, expected, what):
    """Per env, agent ID -> info dict: the same agents and keys in the same order, every
    value bitwise equal."""
    assert len(actual) == len(expected), what
    for index, (mine, theirs) in enumerate(zip(actual, expected, strict=True)):
        assert list(mine) == list(theirs), f"{what}, env {index}: agents"
        for aid, info in theirs.items():
            assert list(mine[aid]) == list(info), f"{what}, env {index}, {aid}: info keys"
            for key, value in info.items():
                assert_bitwise(mine[aid][key], value, f"{what}, env {index}, {aid}: {key}")
