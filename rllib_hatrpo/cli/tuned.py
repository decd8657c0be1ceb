"""The command line of every tuned example script (``tuned_examples/<suite>/<task>.py``).

    python tuned_examples/mpe/simple_spread.py --allocator kkt --seeds 0 1 2
    python tuned_examples/mamujoco/halfcheetah_2x3.py --as-test

Each script defines its ``TASK`` (:class:`rllib_hatrpo.experiments.tuned.TunedTask`) and ends
with ``raise SystemExit(run_tuned_example(TASK))``. Training is
:func:`rllib_hatrpo.experiments.tuned.train_task` (Ray Tune, one trial per seed, resumable);
this module parses the options, starts or joins Ray, prints one line per seed and turns
``--as-test`` into the exit code.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from rllib_hatrpo.cli.common import EXIT_ERROR, EXIT_OK, EXIT_USAGE, say
from rllib_hatrpo.experiments.plans import PlanMismatchError
from rllib_hatrpo.experiments.records import METHOD
from rllib_hatrpo.experiments.tuned import (
    DEFAULT_CHECKPOINT_EVERY,
    METHODS,
    TunedTask,
    train_task,
)


def parse_args(task: TunedTask, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The options of ``task``'s script (every tuned example has the same ones)."""
    allocators = ", ".join(m for m in METHODS if m != METHODS[-1])
    parser = argparse.ArgumentParser(
        description=f"HATRPO tuned example: {task.name}. Trains through Ray Tune; set "
        "RAY_ADDRESS (or run under `ray job submit`) to use a cluster."
    )
    parser.add_argument(
        "--method",
        "--allocator",
        dest=METHOD,
        default=METHODS[0],
        choices=METHODS,
        help=f"allocator ({allocators}) or RLlib's {METHODS[-1]} for comparison",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one trial per seed")
    parser.add_argument(
        "--stop-timesteps",
        type=int,
        default=task.env_steps,
        help=f"env steps per trial (default {task.env_steps:,})",
    )
    parser.add_argument(
        "--as-test",
        action="store_true",
        help="exit 1 unless every seed reaches the expected final return",
    )
    parser.add_argument("--num-env-runners", type=int, default=0)
    parser.add_argument(
        "--max-concurrent-trials",
        type=int,
        default=None,
        help="trials at once (default: as many as the cluster's CPUs allow)",
    )
    parser.add_argument(
        "--storage-path",
        default=str(Path("results", "tuned_examples").absolute()),
        help="Tune storage (a local folder, or shared storage such as s3://... on a cluster)",
    )
    parser.add_argument("--checkpoint-every", type=int, default=DEFAULT_CHECKPOINT_EVERY)
    return parser.parse_args(argv)


def run_tuned_example(task: TunedTask, argv: Sequence[str] | None = None) -> int:
    """Trains ``task`` through Ray Tune (one trial per seed); returns the exit code.

    A rerun of the same command resumes an interrupted experiment from its checkpoints; a
    rerun with other seeds or EnvRunners in the same storage path exits with 2.
    """
    import ray

    args = parse_args(task, argv)
    if args.as_test and args.method not in task.expected:
        print(f"--as-test: {task.name} has no expected return for {args.method}", file=sys.stderr)
        return EXIT_USAGE
    ray.init(address=os.environ.get("RAY_ADDRESS"), ignore_reinit_error=True)
    try:
        path, results = train_task(
            task,
            method=args.method,
            seeds=args.seeds,
            env_steps=args.stop_timesteps,
            storage_path=args.storage_path,
            num_env_runners=args.num_env_runners,
            max_concurrent_trials=args.max_concurrent_trials,
            checkpoint_every=args.checkpoint_every,
            log=say,
        )
    except PlanMismatchError as err:
        message = err.render(lambda setting: "--" + setting.replace("_", "-"))
        print(f"{Path(sys.argv[0]).name}: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    say(f"\n{task.name}, {args.method}, {args.stop_timesteps:,} env steps: {path}")
    failed = False
    want = task.expected.get(args.method)
    for result in results:
        ok = task.meets(args.method, result, args.stop_timesteps)
        failed |= not ok
        check = f" (expected >= {want:,.2f}: {'ok' if ok else 'FAILED'})" if args.as_test else ""
        say(
            f"  seed {result.seed}: final team return {result.final_return:,.2f} after "
            f"{result.env_steps:,} env steps{check}"
        )
    if args.as_test and (failed or len(results) < len(args.seeds)):
        print("--as-test: FAILED", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK
