"""What the ``hatrpo`` command line's modules share: exit codes, ``UsageError``, Ray start-up.

The library (:mod:`rllib_hatrpo.experiments`) raises a
:class:`~rllib_hatrpo.experiments.spec.SettingError` that names the setting at fault; the
commands turn it into a :class:`UsageError` naming the flag (:func:`as_usage_errors`), which
:func:`rllib_hatrpo.cli.main.main` prints as argparse prints its own errors, with exit code
:data:`EXIT_USAGE`. No Ray import at module level.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import warnings
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


#: Known-harmless start-up messages that ``hatrpo train`` hides (``--verbose`` shows them):
#: (the logger that writes it, the start of the message). Nothing else is hidden.
KNOWN_HARMLESS_LOGS: tuple[tuple[str, str], ...] = (
    ("ray.rllib.algorithms.algorithm_config", "You are running HATRPO on the new API stack"),
    ("ray._private.authentication.authentication_token_setup", "Token authentication is enabled"),
    ("ray._private.worker", "Started a local Ray instance."),
    ("ray._common.deprecation", "DeprecationWarning: `RLModule(config=[RLModuleConfig object])`"),
    ("ray.tune.utils.util", "Install gputil for GPU system monitoring."),
)
#: Known-harmless Python warnings (regular expressions of the message) hidden the same way.
KNOWN_HARMLESS_WARNINGS: tuple[str, ...] = (r".*Overriding environment .* already in registry",)
#: The Ray worker set-up hook that hides them in the workers ``hatrpo train`` starts.
QUIET_WORKER_HOOK = f"{__name__}.quiet_worker_setup"
_EARLIER_HOOK_ENV = "RLLIB_HATRPO_EARLIER_WORKER_HOOK"


class _KnownMessages(logging.Filter):
    """Drops the records whose message starts with one of ``prefixes``."""

    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefixes)


def quiet_known_messages() -> Callable[[], None]:
    """Hides :data:`KNOWN_HARMLESS_LOGS` and :data:`KNOWN_HARMLESS_WARNINGS` in this process.

    Returns:
        A function that shows them again.
    """
    prefixes: dict[str, tuple[str, ...]] = {}
    for name, prefix in KNOWN_HARMLESS_LOGS:
        prefixes[name] = (*prefixes.get(name, ()), prefix)
    filters = [(logging.getLogger(n), _KnownMessages(p)) for n, p in prefixes.items()]
    for logger, known in filters:
        logger.addFilter(known)
    saved = list(warnings.filters)
    for message in KNOWN_HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=message)

    def undo() -> None:
        for logger, known in filters:
            logger.removeFilter(known)
        warnings.filters[:] = saved

    return undo


@contextlib.contextmanager
def known_messages_hidden(hidden: bool = True) -> Iterator[None]:
    """Within the block, :func:`quiet_known_messages` (if ``hidden``)."""
    show_again = quiet_known_messages() if hidden else None
    try:
        yield
    finally:
        if show_again is not None:
            show_again()


def quiet_worker_setup() -> None:
    """The Ray worker hook of :func:`quiet_runtime_env`: quiet, then any earlier hook."""
    quiet_known_messages()
    earlier = os.environ.get(_EARLIER_HOOK_ENV)
    if earlier:
        module, _, function = earlier.rpartition(".")
        getattr(__import__(module, fromlist=[function]), function)()


def quiet_runtime_env(runtime_env: dict[str, Any] | None) -> dict[str, Any]:
    """``runtime_env`` whose workers also hide the known-harmless messages.

    A ``worker_process_setup_hook`` already there (a dotted name) still runs, after
    :func:`quiet_worker_setup`.
    """
    env = dict(runtime_env or {})
    env_vars = dict(env.get("env_vars") or {})
    earlier = env.get("worker_process_setup_hook")
    if earlier is not None:
        if not isinstance(earlier, str) or not re.fullmatch(r"[\w.]+", earlier):
            return env  # a callable hook: left as is
        env_vars[_EARLIER_HOOK_ENV] = earlier
    env["env_vars"] = env_vars
    env["worker_process_setup_hook"] = QUIET_WORKER_HOOK
    return env


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
