"""The ``hatrpo`` command line: train HATRPO, resume a run, sweep with Tune, evaluate.

    hatrpo train --env mpe --allocator kkt --seeds 0 1 2 --stop-iters 50 --output runs/spread
    hatrpo train --resume runs/spread --stop-iters 100
    hatrpo tune --env mpe --allocators uniform kkt greedy --seeds 0 1 2 --output runs/sweep
    hatrpo evaluate runs/spread/seed_0/checkpoint --episodes 10

One module per command (:mod:`rllib_hatrpo.cli.train`, :mod:`rllib_hatrpo.cli.tune`,
:mod:`rllib_hatrpo.cli.evaluate`), each thin over :mod:`rllib_hatrpo.experiments`; this one
builds the parser and dispatches. The commands are the user-facing front end, so they print;
the library they call does not. Usage errors (a bad flag value, an unknown env or allocator, a
missing or damaged checkpoint) end with exit code 2, as argparse's own errors do. Ray is
imported only once a command needs it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rllib_hatrpo.cli import evaluate, train, tune
from rllib_hatrpo.cli.common import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
)
from rllib_hatrpo.cli.train import (
    build_config,
    progress_line,
    resolve_allocator,
    resolve_env,
)
from rllib_hatrpo.experiments.loop import StopCriteria
from rllib_hatrpo.experiments.summaries import seed_summary

__all__ = [
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "StopCriteria",
    "UsageError",
    "build_config",
    "build_parser",
    "main",
    "progress_line",
    "resolve_allocator",
    "resolve_env",
    "seed_summary",
]


def build_parser() -> argparse.ArgumentParser:
    """The ``hatrpo`` argument parser with its ``train``, ``tune`` and ``evaluate`` commands."""
    parser = argparse.ArgumentParser(
        prog="hatrpo",
        description="HATRPO with an allocated joint KL budget (uniform, kkt = HATRPO-W, "
        "greedy = HATRPO-G) on Ray RLlib.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in (train, tune, evaluate):
        command.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``hatrpo`` with ``argv`` (default: ``sys.argv[1:]``) and returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse: --help (0) or a usage error (2, already printed)
        return int(exit_.code or 0)
    args.argv = ["hatrpo", *(sys.argv[1:] if argv is None else argv)]
    try:
        return args.run(args)
    except UsageError as err:
        args.parser.print_usage(sys.stderr)
        print(f"{args.parser.prog}: error: {err}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
