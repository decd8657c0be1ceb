"""MuJoCo's warnings go to the run folder, not to ``MUJOCO_LOG.TXT`` in the current directory.

No Ray: the worker hook is called directly; ``hatrpo train`` stops at its ``init_ray``.
"""

from __future__ import annotations

import pytest

from rllib_hatrpo.experiments import mujoco_log

mujoco = pytest.importorskip("mujoco")
if not hasattr(mujoco, "MjLogConfig"):
    pytest.skip("this MuJoCo has no MjLogConfig", allow_module_level=True)

# A model whose compilation warns (a deprecated compiler attribute).
WARNING_MODEL = (
    '<mujoco><compiler settotalmass="5"/><worldbody><body><freejoint/><geom size=".1"/>'
    "</body></worldbody></mujoco>"
)


@pytest.fixture(autouse=True)
def keep_log_file():
    """Restores this process's MuJoCo log file after each test."""
    before = mujoco_log.log_file()
    yield
    mujoco_log.set_log_file(before)


def test_warnings_go_to_the_folder_during_the_block(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    before = mujoco_log.log_file()
    with mujoco_log.mujoco_log_in(run) as path:
        assert path == run / "MUJOCO_LOG.TXT"
        mujoco.MjModel.from_xml_string(WARNING_MODEL)
    assert "settotalmass" in path.read_text()
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()
    assert mujoco_log.log_file() == before


def test_worker_hook_reads_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(mujoco_log.LOG_FILE_ENV, str(tmp_path / "x.txt"))
    mujoco_log.configure_from_environment()
    assert mujoco_log.log_file() == str(tmp_path / "x.txt")


def test_train_logs_to_its_output_in_the_driver_and_the_workers(tmp_path, monkeypatch):
    """Before: MUJOCO_LOG.TXT in the directory ``hatrpo train`` was started from."""
    from rllib_hatrpo.cli.main import main

    seen = {}

    class Stop(Exception):
        pass

    def fake_init_ray(num_cpus, runtime_env=None):
        seen["runtime_env"], seen["driver"] = runtime_env, mujoco_log.log_file()
        raise Stop

    monkeypatch.setattr("rllib_hatrpo.cli.train.init_ray", fake_init_ray)
    before = mujoco_log.log_file()
    output = tmp_path / "run"
    argv = ["train", "--env", "differential_game", "--num-env-runners", "0"]
    with pytest.raises(Stop):
        main([*argv, "--output", str(output)])
    expected = str(output.absolute() / "MUJOCO_LOG.TXT")
    assert seen["driver"] == expected
    runtime_env = seen["runtime_env"]
    assert runtime_env["env_vars"][mujoco_log.LOG_FILE_ENV] == expected
    # The workers' setup hook is this module's, or a hook that chains to it after its own work.
    hooks = [runtime_env["worker_process_setup_hook"], *runtime_env["env_vars"].values()]
    assert mujoco_log.__name__ + ".configure_from_environment" in hooks
    assert mujoco_log.log_file() == before  # restored when the command ends
