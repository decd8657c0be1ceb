"""What the ``hatrpo`` command line's modules share: exit codes, ``UsageError``, Ray start-up.

The library (:mod:`rllib_hatrpo.experiments`) raises a
:class:`~rllib_hatrpo.experiments.spec.SettingError` that names the setting at fault; the
commands turn it into a :class:`UsageError` naming the flag (:func:`as_usage_errors`), which
:func:`rllib_hatrpo.cli.main.main` prints as argparse prints its own errors, with exit code
:data:`EXIT_USAGE`. No Ray import at module level.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

from rllib_hatrpo.experiments.spec import SettingError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A bad command line: reported as ``argument <flag>: <message>``, exit code 2."""

    def __init__(self, flag: str, message: str) -> None:
        """Names the flag (or positional argument) at fault and says what to change."""
        super().__init__(f"argument {flag}: {message}")
        self.flag = flag


def usage_error(err: SettingError, flag_name: Callable[[str], str]) -> UsageError:
    """``err`` as a command-line error: its setting and the settings it names as flags."""
    return UsageError(flag_name(err.setting), err.render(flag_name))


@contextlib.contextmanager
def as_usage_errors(flag_name: Callable[[str], str]) -> Iterator[None]:
    """Raises every :class:`SettingError` of the block as a :class:`UsageError`.

    Args:
        flag_name: A setting's name -> the flag that sets it (``"kl_range"`` ->
            ``"--kl-range"``).
    """
    try:
        yield
    except SettingError as err:
        raise usage_error(err, flag_name) from err


def init_ray(num_cpus: int | None, runtime_env: dict[str, Any] | None = None) -> bool:
    """Starts Ray unless it already runs; returns whether this call started (or joined) it.

    Under ``ray job submit`` (RAY_ADDRESS set) ``ray.init()`` joins that cluster with the
    job's own runtime environment; a local instance gets ``num_cpus`` (None: all of the
    machine's), no dashboard and ``runtime_env`` (None: none).
    """
    import ray

    if ray.is_initialized():
        return False
    if os.environ.get("RAY_ADDRESS"):
        ray.init()
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, runtime_env=runtime_env)
    return True


def shutdown_ray(started: bool) -> None:
    """Shuts Ray down if :func:`init_ray` started it (a Ray instance of the caller stays)."""
    if started:
        import ray

        ray.shutdown()


def say(line: str) -> None:
    """Prints one line of progress at once (a log or a pipe shows it while training runs)."""
    print(line, flush=True)
