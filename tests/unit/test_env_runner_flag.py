"""``--env-runner`` picks the sampler: HATRPO's ``TeamEnvRunner`` (default) or RLlib's own;
``--fvp-subsample`` and ``--max-batch-memory-gib`` reach their ``training(...)`` settings.

Config level only: nothing is built, no Ray instance.
"""

from __future__ import annotations

import pytest
from ray.rllib.env.multi_agent_env_runner import MultiAgentEnvRunner

from rllib_hatrpo import HATRPOConfig
from rllib_hatrpo.cli.main import build_parser
from rllib_hatrpo.experiments.spec import RunSpec, SettingError
from rllib_hatrpo.team_env_runner import TeamEnvRunner


def test_the_config_samples_with_the_team_runner_by_default():
    assert HATRPOConfig().env_runner_cls is TeamEnvRunner


@pytest.mark.parametrize(
    ("flag", "expected"), [([], TeamEnvRunner), (["rllib"], MultiAgentEnvRunner)]
)
def test_train_flag_reaches_the_config(flag, expected):
    from rllib_hatrpo.cli.train import build_config, resolve_allocator, resolve_env

    argv = ["train", "--env", "differential_game", *(["--env-runner", *flag] if flag else [])]
    args = build_parser().parse_args(argv)
    env, env_config, _ = resolve_env(args)
    assert (
        build_config(args, env, env_config, resolve_allocator(args)[0]).env_runner_cls is expected
    )


def test_tune_plan_leaves_the_default_out():
    from rllib_hatrpo.cli.tune import plan

    argv = ["tune", "--env", "differential_game", "--kl-values", "0.01"]
    assert "env_runner" not in plan(build_parser().parse_args(argv))
    assert (
        plan(build_parser().parse_args([*argv, "--env-runner", "rllib"]))["env_runner"] == "rllib"
    )


def test_unknown_runner_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["train", "--env-runner", "fast"])
    assert exit_info.value.code == 2
    assert "argument --env-runner" in capsys.readouterr().err
    with pytest.raises(SettingError, match="env_runner must be one of"):
        RunSpec(env="differential_game", env_runner="fast").to_config()


def test_fvp_subsample_and_memory_flags_reach_the_config():
    from rllib_hatrpo.cli.train import build_config, resolve_allocator, resolve_env
    from rllib_hatrpo.cli.tune import plan

    cases = (([], (5, 8.0)), (["--fvp-subsample", "1", "--max-batch-memory-gib", "2"], (1, 2.0)))
    for argv, expected in cases:
        args = build_parser().parse_args(["train", "--env", "differential_game", *argv])
        env, env_config, _ = resolve_env(args)
        config = build_config(args, env, env_config, resolve_allocator(args)[0])
        assert (config.fvp_subsample, config.max_batch_memory_gib) == expected
    tune = ["tune", "--env", "differential_game", "--kl-values", "0.01"]
    assert "fvp_subsample" not in plan(build_parser().parse_args(tune))
