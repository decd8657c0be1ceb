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
