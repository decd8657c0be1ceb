"""The command line every tuned example script shares (``tuned_examples/<suite>/<task>.py``).

    python tuned_examples/mpe/simple_spread.py --allocator kkt --seeds 0 1 2
    python tuned_examples/mamujoco/halfcheetah_2x3.py --as-test

Each script defines its ``TASK`` (:class:`rllib_hatrpo.experiments.tuned.TunedTask`) and ends
with::

    if __name__ == "__main__":
        raise SystemExit(run_tuned_example(TASK, out=sys.stdout, err=sys.stderr))

:func:`run_tuned_example` parses the options, starts or joins Ray, trains with
:func:`rllib_hatrpo.experiments.tuned.train_task` (Ray Tune, one trial per seed, resumable),
writes one line per seed to ``out`` (errors to ``err``; None: not written) and turns
``--as-test`` into the exit code. It writes nothing to a stream it is not given.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from rllib_hatrpo.experiments.plans import PlanMismatchError
from rllib_hatrpo.experiments.records import METHOD
from rllib_hatrpo.experiments.tuned import (
    DEFAULT_CHECKPOINT_EVERY,
    METHODS,
    PPO,
    TunedTask,
    train_task,
)

#: Exit codes: success; a seed below its expectation; no expectation or a changed plan.
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def parse_args(task: TunedTask, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The options of ``task``'s script (every tuned example has the same ones)."""
    allocators = ", ".join(m for m in METHODS if m != PPO)
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
        help=f"allocator ({allocators}) or RLlib's {PPO} for comparison",
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
        "--num-learners",
        type=int,
        default=0,
        help="learner actors per trial (0: one learner in the trial's process)",
    )
    parser.add_argument(
        "--num-gpus-per-learner", type=float, default=0, help="GPUs of each learner (0: CPU)"
    )
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


def _write(stream: TextIO | None, line: str) -> None:
    if stream is not None:
        stream.write(line + "\n")
        stream.flush()


def run_tuned_example(
    task: TunedTask,
    argv: Sequence[str] | None = None,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Trains ``task`` through Ray Tune (one trial per seed); returns the exit code.

    A rerun of the same command resumes an interrupted experiment from its checkpoints; one
    with a larger ``--stop-timesteps`` trains the finished run further from its checkpoints; a
    rerun with other seeds or EnvRunners in the same storage path is refused (exit code 2).

    Args:
        task: The task.
        argv: The script's options (default: ``sys.argv[1:]``).
        out: Where the resumed-experiment note and the per-seed results go.
        err: Where errors and the ``--as-test`` verdict go.

    Returns:
        0; 1 if ``--as-test`` and a seed is below the expectation or reported nothing; 2 if
        ``--as-test`` and the task has no expectation for the method, or the plan changed.
    """
    import ray

    args = parse_args(task, argv)
    if args.as_test and args.method not in task.expected:
        _write(err, f"--as-test: {task.name} has no expected return for {args.method}")
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
            num_learners=args.num_learners,
            num_gpus_per_learner=args.num_gpus_per_learner,
            max_concurrent_trials=args.max_concurrent_trials,
            checkpoint_every=args.checkpoint_every,
            log=lambda line: _write(out, line),
        )
    except PlanMismatchError as error:
        _write(err, f"error: {error.render(lambda key: '--' + key.replace('_', '-'))}")
        return EXIT_USAGE
    _write(out, f"\n{task.name}, {args.method}, {args.stop_timesteps:,} env steps: {path}")
    failed = False
    want = task.expected.get(args.method)
    for result in results:
        ok = task.meets(args.method, result, args.stop_timesteps)
        failed |= not ok
        check = f" (expected >= {want:,.2f}: {'ok' if ok else 'FAILED'})" if args.as_test else ""
        _write(
            out,
            f"  seed {result.seed}: final team return {result.final_return:,.2f} after "
            f"{result.env_steps:,} env steps{check}",
        )
    if args.as_test and (failed or len(results) < len(args.seeds)):
        _write(err, "--as-test: FAILED")
        return EXIT_FAILED
    return EXIT_OK
