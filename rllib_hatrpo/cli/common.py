"""What the ``hatrpo`` command line's modules share: exit codes, ``UsageError``, imports by path.

:mod:`rllib_hatrpo.cli.main` (parsing, dispatch, the train loop),
:mod:`rllib_hatrpo.experiments.evaluation`, :mod:`rllib_hatrpo.experiments.resume` and
:mod:`rllib_hatrpo.experiments.sweeps` raise :class:`UsageError`; ``cli.main``
prints it as argparse prints its own errors and returns :data:`EXIT_USAGE`. No Ray import.
"""

from __future__ import annotations

import importlib
from typing import Any

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


def import_object(spec: str, flag: str) -> Any:
    """Imports ``package.module:Name`` (``Name`` may be dotted).

    Raises:
        UsageError: ``spec`` is not of that form or cannot be imported (names ``flag``).
    """
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise UsageError(flag, f"expected package.module:Name, got {spec!r}")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as err:
        raise UsageError(flag, f"cannot import {spec!r}: {err}") from err
    return obj
