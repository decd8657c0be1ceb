"""``--num-learners`` and ``--num-gpus-per-learner`` reach ``config.learners(...)``.

Config level only: nothing is built or trained, no Ray instance, no GPU.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rllib_hatrpo.cli.main import build_parser
from rllib_hatrpo.cli.tuned_example import parse_args
from rllib_hatrpo.experiments import tuned

LEARNERS = ["--num-learners", "2", "--num-gpus-per-learner", "0.5"]
SIMPLE_SPREAD = Path(__file__).resolve().parents[2] / "tuned_examples" / "mpe" / "simple_spread.py"


def _learners(config) -> tuple[int, float]:
    return config.num_learners, config.num_gpus_per_learner


def test_train_flags_reach_the_config():
    from rllib_hatrpo.cli.train import build_config, resolve_allocator, resolve_env

    for argv, expected in (([], (0, 0)), (LEARNERS, (2, 0.5))):
        args = build_parser().parse_args(["train", "--env", "differential_game", *argv])
        env, env_config, _ = resolve_env(args)
        assert _learners(build_config(args, env, env_config, resolve_allocator(args)[0])) == (
            expected
        )


def test_tune_flags_reach_every_trial_config():
    from rllib_hatrpo.cli.tune import plan, sweep_spec

    argv = ["tune", "--env", "differential_game", "--kl-values", "0.01", "0.02", *LEARNERS]
    args = build_parser().parse_args(argv)
    sweep, _ = sweep_spec(args)
    configs = list(sweep.example_configs())
    assert configs and all(_learners(config) == (2, 0.5) for config in configs)
    assert plan(args)["num_learners"] == 2
    defaults = build_parser().parse_args(argv[: -len(LEARNERS)])
    assert "num_learners" not in plan(defaults)  # sweeps recorded before the flags still match


@pytest.mark.parametrize("flag", ["--num-learners", "--num-gpus-per-learner"])
def test_negative_learner_flags_are_refused(flag, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["train", flag, "-1"])
    assert exit_info.value.code == 2
    assert f"argument {flag}" in capsys.readouterr().err


def test_tuned_example_options_reach_the_trials(monkeypatch, tmp_path):
    """``--num-learners``/``--num-gpus-per-learner`` of a tuned example: resources and config."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("tuned_simple_spread", SIMPLE_SPREAD)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    task = module.TASK
    args = parse_args(task, LEARNERS)
    assert (args.num_learners, args.num_gpus_per_learner) == (2, 0.5)

    seen = {}

    class Stop(Exception):
        pass

    def fake_trainable(build_config, **kwargs):
        seen["resources"] = kwargs["resources_params"]
        return "trainable"

    def fake_tuner(storage, name, trainable, **kwargs):
        seen["param_space"] = kwargs["param_space"]
        raise Stop

    monkeypatch.setattr(tuned, "make_trainable", fake_trainable)
    monkeypatch.setattr(tuned, "restore_or_create_tuner", fake_tuner)
    with pytest.raises(Stop):
        tuned.train_task(task, storage_path=tmp_path, num_learners=2, num_gpus_per_learner=0.5)
    resources = {"num_env_runners": 0, "num_learners": 2, "num_gpus_per_learner": 0.5}
    assert seen["resources"] == resources
    assert seen["param_space"]["num_learners"] == 2
    params = {"method": "kkt", "seed": 0, **seen["resources"]}
    assert _learners(task.build_trial_config(params)) == (2, 0.5)
    assert _learners(task.config("ppo", num_learners=2, num_gpus_per_learner=0.5)) == (2, 0.5)
