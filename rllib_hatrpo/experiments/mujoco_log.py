"""Where MuJoCo writes its warnings: the run folder instead of the current directory.

MuJoCo appends its warnings (a deprecated model attribute, an unstable simulation) to
``MUJOCO_LOG.TXT`` in the current directory. It reads no environment variable for that file
(only ``MUJOCO_LOG_TOPICS``); the path is set per process with ``mujoco.MjLogConfig`` (MuJoCo
≥ 3.4). :func:`mujoco_log_in` sets it in this process for a block; the Ray workers it starts
(EnvRunners, learners) set it when they start, through the ``runtime_env`` of
:func:`worker_runtime_env`::

    with mujoco_log_in(run_dir) as log_file:
        ray.init(runtime_env=worker_runtime_env(log_file))

Without mujoco installed, or with a MuJoCo that has no ``MjLogConfig``, nothing changes. No
Ray import.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: MuJoCo's log file name (also the name in the run folder).
LOG_FILE = "MUJOCO_LOG.TXT"
#: The environment variable that hands the log file to Ray's worker processes.
LOG_FILE_ENV = "RLLIB_HATRPO_MUJOCO_LOG_FILE"
#: The worker set-up hook that reads :data:`LOG_FILE_ENV` (``runtime_env``).
WORKER_HOOK = f"{__name__}.configure_from_environment"


def _log_config() -> Any:
    """``mujoco.MjLogConfig``, or None without mujoco or without that control."""
    try:
        import mujoco
    except ImportError:
        return None
    return getattr(mujoco, "MjLogConfig", None)


def set_log_file(path: str | os.PathLike) -> str | None:
    """Makes this process's MuJoCo write its log to ``path``.

    Returns:
        The previous log file, or None if MuJoCo's log cannot be redirected here.
    """
    config_class = _log_config()
    if config_class is None:
        return None
    config = config_class.get()
    previous = str(config.logfile)
    config.logfile = os.fspath(path)
    config_class.set(config)
    return previous


def log_file() -> str | None:
    """This process's MuJoCo log file, or None if it cannot be redirected."""
    config_class = _log_config()
    return None if config_class is None else str(config_class.get().logfile)


def configure_from_environment() -> None:
    """The Ray worker hook: sends MuJoCo's log to the file named by :data:`LOG_FILE_ENV`."""
    path = os.environ.get(LOG_FILE_ENV)
    if path:
        set_log_file(path)


@contextlib.contextmanager
def mujoco_log_in(folder: Path) -> Iterator[Path | None]:
    """MuJoCo writes to ``folder/MUJOCO_LOG.TXT`` in this process during the block.

    Yields:
        That file (absolute), or None if MuJoCo's log cannot be redirected.
    """
    path = (Path(folder) / LOG_FILE).absolute()
    previous = set_log_file(path)
    try:
        yield None if previous is None else path
    finally:
        if previous is not None:
            set_log_file(previous)


def worker_runtime_env(path: Path | None) -> dict[str, Any] | None:
    """The ``runtime_env`` that makes Ray's workers log MuJoCo's warnings to ``path``.

    None for None (nothing to redirect).
    """
    if path is None:
        return None
    return {"env_vars": {LOG_FILE_ENV: str(path)}, "worker_process_setup_hook": WORKER_HOOK}
