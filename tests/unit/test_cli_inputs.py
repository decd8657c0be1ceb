"""Bad command-line input: usage errors (exit code 2) before Ray starts, never tracebacks.

Everything here parses and resolves flags only: no Ray instance, no training.
"""

from __future__ import annotations

import os
import sys
import textwrap

import pytest

from rllib_hatrpo.experiments.spec import import_object


def _refuse_ray(*args, **kwargs):
    raise AssertionError("Ray was started")


@pytest.fixture
def no_ray(monkeypatch):
    """Fails the test if ``hatrpo train`` tries to start Ray."""
    monkeypatch.setattr("rllib_hatrpo.cli.train.init_ray", _refuse_ray)


def _module_in_cwd(monkeypatch, tmp_path, name: str, source: str) -> None:
    """Writes ``name.py`` into ``tmp_path``, the new working directory, not on ``sys.path``."""
    (tmp_path / name).with_suffix(".py").write_text(textwrap.dedent(source))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".")])
    monkeypatch.delitem(sys.modules, name, raising=False)


def test_import_object_finds_a_module_in_the_working_directory(monkeypatch, tmp_path):
    """As ``python -m`` would; before: ModuleNotFoundError without PYTHONPATH=."""
    _module_in_cwd(monkeypatch, tmp_path, "my_cwd_envs", "def factory(cfg):\n    return cfg\n")
    assert import_object("my_cwd_envs:factory", "env")({"a": 1}) == {"a": 1}


def _train(tmp_path, *args: str) -> list[str]:
    return ["train", "--env", "differential_game", "--num-env-runners", "0", *args]


def test_output_holding_another_run_is_refused_for_new_seeds(no_ray, tmp_path, capsys):
    """Before: seed 1 trained into seed 0's folder and replaced its args.json."""
    from rllib_hatrpo.cli.main import main

    (tmp_path / "seed_0").mkdir()
    (tmp_path / "seed_0" / "metrics.csv").write_text("training_iteration\n1\n")
    (tmp_path / "args.json").write_text('{"flags": {"seeds": [0]}}')
    assert main(_train(tmp_path, "--seeds", "1", "--output", str(tmp_path))) == 2
    err = capsys.readouterr().err
    assert f"argument --output: {tmp_path} already holds a run of seed(s) [0]" in err
    assert f"--resume {tmp_path}" in err and "another --output" in err
    assert (tmp_path / "args.json").read_text() == '{"flags": {"seeds": [0]}}'
    assert not (tmp_path / "seed_1").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--scenario", "HalfChetah"],
            "argument --scenario: unknown MaMuJoCo robot 'HalfChetah'; choose one of "
            "HalfCheetah, Ant, Hopper",
        ),
        (
            ["--agent-conf", "3x5"],
            "argument --agent-conf: MaMuJoCo HalfCheetah has no partition '3x5'; choose one of "
            "2x3, 6x1\n",
        ),
        (
            ["--scenario", "Ant", "--agent-conf", "2x3"],
            "argument --agent-conf: MaMuJoCo Ant has no partition '2x3'; choose one of 2x4, 2x4d, "
            "4x2\n",
        ),
        (
            ["--env-config", '{"scenario": "Walker"}'],
            "argument --env-config: unknown MaMuJoCo robot 'Walker'",
        ),
    ],
)
def test_unknown_mamujoco_robot_or_partition_is_a_usage_error(
    no_ray, tmp_path, capsys, args, message
):
    """Before: NotImplementedError / "UNKNOWN partitioning config" tracebacks from the env."""
    from rllib_hatrpo.cli.main import main

    output = tmp_path / "run"
    assert main(["train", "--env", "mamujoco", "--output", str(output), *args]) == 2
    assert message in capsys.readouterr().err
    assert not output.exists()


def test_output_that_cannot_be_created_is_a_usage_error(no_ray, tmp_path, capsys):
    """Before: NotADirectoryError traceback after the config was built."""
    from rllib_hatrpo.cli.main import main

    (tmp_path / "a_file").write_text("")
    output = tmp_path / "a_file" / "run"
    assert main(_train(tmp_path, "--output", str(output))) == 2
    err = capsys.readouterr().err
    assert f"argument --output: cannot create {output}: {tmp_path / 'a_file'} is a file" in err


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="root writes anywhere")
def test_read_only_output_is_a_usage_error(no_ray, tmp_path, capsys):
    """Before: an OSError traceback after the config was built."""
    from rllib_hatrpo.cli.main import main

    tmp_path.chmod(0o500)
    try:
        assert main(_train(tmp_path, "--output", str(tmp_path / "run"))) == 2
    finally:
        tmp_path.chmod(0o700)
    assert f"argument --output: cannot write in {tmp_path}" in capsys.readouterr().err


def test_tune_output_that_cannot_be_created_is_a_usage_error(monkeypatch, tmp_path, capsys):
    from rllib_hatrpo.cli.main import main

    monkeypatch.setattr("rllib_hatrpo.cli.tune.init_ray", _refuse_ray)
    (tmp_path / "a_file").write_text("")
    output = tmp_path / "a_file" / "sweep"
    argv = ["tune", "--env", "differential_game", "--kl-values", "0.01", "--output", str(output)]
    assert main(argv) == 2
    assert f"argument --output: cannot create {output}" in capsys.readouterr().err
