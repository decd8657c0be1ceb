"""The ``hatrpo`` command line: ``train``, ``tune`` and ``evaluate``, thin over
:mod:`rllib_hatrpo.experiments`."""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``hatrpo`` with ``argv`` (default: ``sys.argv[1:]``) and returns the exit code."""
    from rllib_hatrpo.cli.main import main as run

    return run(argv)
