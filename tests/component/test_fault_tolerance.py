"""An EnvRunner process killed mid-training: the run goes on and the runner comes back.

``hatrpo train`` turns RLlib's EnvRunner restarts on (``--restart-failed-env-runners``, the
default): Ray recreates a dead EnvRunner actor (``max_restarts``), sampling meanwhile uses the
healthy ones, and ``Algorithm.restore_env_runners`` re-syncs the new one (weights, connector
states) before the next iteration. Only the EnvRunner actor this test created is killed, by the
pid the actor itself reports.
"""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from rllib_hatrpo.cli.main import build_config, build_parser, resolve_allocator, resolve_env

pytestmark = pytest.mark.component

#: How long the killed EnvRunner may take to come back (a new Python process imports Ray, torch).
RESTORE_TIMEOUT_S = 240


def _config(*flags):
    args = build_parser().parse_args(
        [
            "train",
            "--env",
            "differential_game",
            "--num-env-runners",
            "2",
            "--num-envs-per-env-runner",
            "1",
            "--train-batch-size",
            "100",
            *flags,
        ]
    )
    env, env_config, _ = resolve_env(args)
    allocator, _ = resolve_allocator(args)
    return build_config(args, env, env_config, allocator).debugging(seed=0)


def _pids(group):
    return group.foreach_env_runner(lambda runner: os.getpid(), local_env_runner=False)


def test_cli_turns_env_runner_restarts_on_by_default():
    config = _config()
    assert config.restart_failed_env_runners and config.max_num_env_runner_restarts == 1000
    off = _config("--no-restart-failed-env-runners", "--max-env-runner-restarts", "3")
    assert not off.restart_failed_env_runners and off.max_num_env_runner_restarts == 3


def test_killed_env_runner_is_restarted_and_training_continues(ray_session):
    algo = _config().build_algo()
    try:
        group = algo.env_runner_group
        algo.train()
        pids = _pids(group)
        assert len(set(pids)) == 2 and os.getpid() not in pids
        victim = pids[0]
        os.kill(victim, signal.SIGKILL)  # the EnvRunner actor this test created, nothing else

        iterations_after_kill, deadline = 0, time.monotonic() + RESTORE_TIMEOUT_S
        while time.monotonic() < deadline:
            result = algo.train()  # must not raise
            iterations_after_kill += 1
            assert result["env_runners"]["num_env_steps_sampled_lifetime"] > 0
            if iterations_after_kill >= 2 and group.num_healthy_remote_workers() == 2:
                break
        assert group.num_healthy_remote_workers() == 2, "the killed EnvRunner did not come back"
        assert iterations_after_kill >= 2 and algo.iteration == 1 + iterations_after_kill
        new_pids = _pids(group)
        assert victim not in new_pids and len(set(new_pids)) == 2

        algo.train()  # both runners sample and then receive the new weights
        learner = algo.learner_group.get_weights(module_ids=["agent_0"])["agent_0"]
        for runner in group.foreach_env_runner(
            lambda r: r.module["agent_0"].get_state(), local_env_runner=False
        ):
            for key, value in learner.items():
                np.testing.assert_array_equal(np.asarray(runner[key]), np.asarray(value))
    finally:
        algo.stop()
