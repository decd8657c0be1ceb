"""``hatrpo train``: train HATRPO, one run per seed, or resume such a run.

    hatrpo train --env mpe --allocator kkt --seeds 0 1 2 --stop-iters 50 --output runs/spread
    hatrpo train --resume runs/spread --stop-iters 100

Writes, per seed, ``OUTPUT/seed_<s>/`` ``metrics.csv`` (one row per iteration, flushed as it
goes) and its TensorBoard events (``events.out.tfevents.*``), ``checkpoint/`` (replaced
atomically), ``learning_curve.png`` and ``allocation.png``; with several seeds also
``OUTPUT/summary.csv`` and ``OUTPUT/learning_curve.png`` (mean ± std over seeds),
``OUTPUT/args.json`` (the flags, what ``--resume`` reads back) and MuJoCo's warnings,
``OUTPUT/MUJOCO_LOG.TXT`` (instead of the current directory). The flags become a
:class:`~rllib_hatrpo.experiments.spec.RunSpec`; the training loop, the records, the
checkpoints and the resume checks are :mod:`rllib_hatrpo.experiments`'. This module prints:
one line per iteration with the run's progress and ETA
(:class:`~rllib_hatrpo.cli.printing.RunProgress`); known-harmless Ray/RLlib messages stay
hidden unless ``--verbose``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from rllib_hatrpo.cli.args import (
    Group,
    add_groups,
    env_group,
    env_option_values,
    finite_float,
    flag,
    flag_namer,
    flag_values,
    given_flags,
    int_at_least,
    json_object,
    model_flags,
    positive_float,
    resource_group,
    run_settings,
)
from rllib_hatrpo.cli.common import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    as_usage_errors,
    init_ray,
    known_messages_hidden,
    quiet_runtime_env,
    say,
    shutdown_ray,
)
from rllib_hatrpo.cli.printing import (
    RunProgress,
    describe_stop,
    plot_seed,
    progress_line,  # noqa: F401 (re-exported by rllib_hatrpo.cli.main)
    seed_result,
    write_seed_summary,
)
from rllib_hatrpo.experiments import spec as specs
from rllib_hatrpo.experiments.loop import DEFAULT_STOP_ITERS, StopCriteria
from rllib_hatrpo.experiments.mujoco_log import mujoco_log_in, worker_runtime_env
from rllib_hatrpo.experiments.spec import EnvChoice, RunSpec

#: Iterations between checkpoints of ``hatrpo train``: at most this many are lost to a crash.
DEFAULT_CHECKPOINT_EVERY = 10


def groups() -> tuple[Group, ...]:
    """The flags of ``hatrpo train``."""
    from rllib_hatrpo.core.allocation import ALLOCATOR_NAMES

    names = ", ".join(ALLOCATOR_NAMES)
    algorithm = (
        flag(
            "--allocator",
            default=ALLOCATOR_NAMES[0],
            metavar="NAME|MODULE:CLASS",
            help=f"{names} or package.module:Class (a KLAllocator subclass); uniform is "
            "HATRPO, kkt HATRPO-W, greedy HATRPO-G; default: %(default)s",
        ),
        flag(
            "--allocator-config",
            type=json_object,
            default={},
            metavar="JSON",
            help="allocator options, e.g. '{\"min_share\": 0.1}' for kkt",
        ),
        flag("--kl-threshold", type=positive_float, metavar="X", help="δ per agent (default 0.01)"),
        flag(
            "--total-kl-budget",
            type=positive_float,
            metavar="X",
            help="δ_total, the joint budget (default: n · kl-threshold)",
        ),
        *model_flags(),
        flag(
            "--seeds",
            type=int,
            nargs="+",
            default=[0],
            metavar="S",
            help="one run per seed, in OUTPUT/seed_<s>; default: 0",
        ),
    )
    stopping = (
        flag("--stop-iters", type=int_at_least(1), metavar="N", help="iterations"),
        flag("--stop-timesteps", type=int_at_least(1), metavar="N", help="env steps sampled"),
        flag(
            "--stop-return", type=finite_float, metavar="R", help="team return (mean per episode)"
        ),
        flag(
            "--time-budget-s",
            type=positive_float,
            metavar="S",
            help="wall-clock seconds of training (a resumed run counts its earlier time)",
        ),
    )
    output = (
        flag(
            "--output",
            type=Path,
            metavar="DIR",
            help="run directory (default: runs/<env>-<allocator>-<date>-<time>)",
        ),
        flag(
            "--checkpoint-every",
            type=int_at_least(0),
            default=DEFAULT_CHECKPOINT_EVERY,
            metavar="N",
            help="also checkpoint every N iterations, what --resume restarts from (0: only at "
            "the end and on Ctrl-C); default: %(default)s",
        ),
        flag(
            "--resume",
            type=Path,
            metavar="RUN_DIR",
            help="continue the run in RUN_DIR (an earlier --output) with its saved flags: each "
            "unfinished seed restarts from its last checkpoint and appends to its metrics.csv. "
            "Only stop flags, --num-cpus, --checkpoint-every and the EnvRunner restart flags "
            "may change, e.g. --resume RUN_DIR --stop-iters 100",
        ),
        flag(
            "--verbose",
            action="store_true",
            help="also show the known-harmless Ray/RLlib start-up messages hidden by default",
        ),
    )
    return (
        env_group(),
        Group("algorithm", algorithm),
        resource_group(default_env_runners=1),
        Group(
            "stopping",
            stopping,
            f"Per seed; the first criterion met stops the run. Default: --stop-iters "
            f"{DEFAULT_STOP_ITERS}. With --resume, stop flags replace the run's saved stop "
            "criteria.",
        ),
        Group("output", output),
    )


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Adds ``train`` to the ``hatrpo`` subcommands."""
    parser = commands.add_parser(
        "train",
        help="train HATRPO, one run per seed (or resume a run)",
        description="Train HATRPO, one run per seed (sequentially). Writes "
        "OUTPUT/seed_<s>/{metrics.csv, checkpoint/, learning_curve.png, allocation.png}, and "
        "with several seeds OUTPUT/summary.csv and OUTPUT/learning_curve.png. "
        "--resume OUTPUT continues an interrupted run.",
    )
    parser.set_defaults(run=run, parser=parser)
    return add_groups(parser, groups())


def flag_name(setting: str) -> str:
    """The ``hatrpo train`` flag of a setting (``"allocator_config"`` -> ``--allocator-config``)."""
    return flag_namer(groups())(setting)


# --------------------------------------------------------------------------- flags -> spec


def resolve_env(args: argparse.Namespace) -> tuple[Any, dict[str, Any], str]:
    """(env class or registered name, env_config, short name for the run directory)."""
    choice = _env_choice(args)
    return choice.env, dict(choice.env_config), choice.label


def _env_choice(args: argparse.Namespace) -> EnvChoice:
    with as_usage_errors(flag_name):
        return specs.resolve_env(args.env, env_option_values(args), args.env_config)


def resolve_allocator(args: argparse.Namespace) -> tuple[Any, str]:
    """(the ``kl_allocator`` value, its short name); checks --allocator-config against it."""
    with as_usage_errors(flag_name):
        allocator, label = specs.resolve_allocator(args.allocator, "allocator")
        specs.check_allocator_options(allocator, args.allocator_config, "allocator_config")
    return allocator, label


def run_spec(args: argparse.Namespace, choice: EnvChoice, allocator: Any) -> RunSpec:
    """The run the flags describe (env and allocator resolved already)."""
    return RunSpec(
        env=choice.env,
        env_config=dict(choice.env_config),
        allocator=allocator,
        allocator_config=dict(args.allocator_config),
        kl_threshold=args.kl_threshold,
        total_kl_budget=args.total_kl_budget,
        train_batch_size=args.train_batch_size or choice.default_train_batch,
        **run_settings(args),
    )


def build_config(args: argparse.Namespace, env: Any, env_config: dict, allocator: Any) -> Any:
    """The ``HATRPOConfig`` the flags describe (not yet validated, no seed)."""
    from rllib_hatrpo.envs import ENV_SUITES

    suite = ENV_SUITES.get(getattr(args, "env", ""))
    batch = suite.default_train_batch if suite is not None else None
    choice = EnvChoice(env=env, env_config=env_config, label="", default_train_batch=batch)
    return run_spec(args, choice, allocator).to_config()


def stop_criteria(args: argparse.Namespace) -> StopCriteria:
    """The stop flags, or the default of :data:`DEFAULT_STOP_ITERS` iterations."""
    stop = StopCriteria(args.stop_iters, args.stop_timesteps, args.stop_return, args.time_budget_s)
    return stop.or_default()


def flags(args: argparse.Namespace) -> dict[str, Any]:
    """The flags of a parsed command line (what ``args.json`` records; not ``--verbose``)."""
    return {key: value for key, value in flag_values(args).items() if key != "verbose"}


# --------------------------------------------------------------------------- the command


def run(args: argparse.Namespace) -> int:
    """``hatrpo train``: checks the flags, then trains (or continues) every seed in turn.

    Known-harmless Ray/RLlib messages stay hidden (in the driver and the workers it starts)
    unless ``--verbose``.
    """
    with known_messages_hidden(not args.verbose):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from rllib_hatrpo.experiments import resume

    resuming = args.resume is not None
    if resuming:
        args = _resumed_args(args)
    if len(set(args.seeds)) != len(args.seeds):
        raise UsageError("--seeds", f"seeds repeat: {args.seeds}")
    allocator, allocator_label = resolve_allocator(args)
    choice = _env_choice(args)
    output = args.output or Path("runs") / f"{choice.label}-{allocator_label}-{_timestamp()}"
    with as_usage_errors(flag_name):
        if resuming:
            plans = resume.plan_run(output, args.seeds)
        else:
            plans = resume.check_new_run(output, args.seeds)
        resume.check_writable(output)
    stop = stop_criteria(args)
    config = run_spec(args, choice, allocator).to_config()
    # MuJoCo warnings go to OUTPUT/MUJOCO_LOG.TXT (from when the folder exists), not to ./
    with mujoco_log_in(output) as mujoco_log:
        try:
            config.validate()  # before Ray starts: errors name the config field to change
        except (ValueError, TypeError) as err:
            print(f"{args.parser.prog}: error: {err}", file=sys.stderr)
            return EXIT_USAGE
        except ImportError as err:
            print(f"{args.parser.prog}: error: {err}", file=sys.stderr)
            return EXIT_ERROR
        output.mkdir(parents=True, exist_ok=True)
        if resuming:
            resume.record_resume(output, flags(args), args.argv)
        else:
            resume.write_run_record(output, flags(args), args.argv, choice.env_config)
        say(
            f"HATRPO on {choice.label} {dict(choice.env_config)}, allocator {allocator_label}, "
            f"agents {sorted(config.policies)}, seeds {args.seeds}; stop at {describe_stop(stop)}; "
            f"{'resuming' if resuming else 'writing to'} {output}"
        )
        for plan in plans.values():
            if plan is not None and plan.note:
                say(plan.note)
        runtime_env = worker_runtime_env(mujoco_log)
        started_ray = init_ray(
            args.num_cpus or args.num_env_runners + args.num_learners + 1,
            runtime_env=runtime_env if args.verbose else quiet_runtime_env(runtime_env),
        )
        progress = RunProgress(stop, args.seeds)
        try:
            csvs = []
            for seed in args.seeds:
                run_dir = output / f"seed_{seed}"
                csv_path, interrupted = _train_seed(
                    config, seed, run_dir, stop, args, plans[seed], progress
                )
                csvs.append(csv_path)
                if interrupted:
                    progress.say("interrupted: stopping after this seed")
                    return EXIT_INTERRUPTED
            progress.close()
            if len(csvs) > 1:
                write_seed_summary(output, args.seeds, csvs, f"{choice.label} {allocator_label}")
            return EXIT_OK
        finally:
            progress.close()
            shutdown_ray(started_ray)


def _resumed_args(args: argparse.Namespace) -> argparse.Namespace:
    """The flags of the run in ``args.resume`` with the changes this command line allows."""
    from rllib_hatrpo.experiments.resume import load_run_record, merge_flags

    with as_usage_errors(flag_name):
        record = load_run_record(args.resume)
        given = given_flags(groups(), args.argv[2:])
        given.pop("verbose", None)  # not a flag of the run: any command may give it
        merged = merge_flags(record["flags"], given, flags(args.parser.parse_args([])), args.resume)
    return argparse.Namespace(
        **merged, verbose=args.verbose, run=args.run, parser=args.parser, argv=args.argv
    )


def _timestamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


def _train_seed(
    config: Any,
    seed: int,
    run_dir: Path,
    stop: StopCriteria,
    args: argparse.Namespace,
    plan: Any,
    progress: RunProgress,
) -> tuple[Path, bool]:
    """Trains one seed, or continues it (``plan``: a ``resume.SeedResume``).

    Prints through ``progress``, the whole run's.

    Returns:
        (its metrics.csv, whether Ctrl-C interrupted it).
    """
    from rllib_hatrpo.experiments.loop import train_iterations
    from rllib_hatrpo.experiments.records import MetricsCsv, save_checkpoint_atomically
    from rllib_hatrpo.experiments.resume import restore_seed
    from rllib_hatrpo.experiments.tensorboard import TensorBoardScalars

    say = progress.say
    progress.starting(seed)
    algo = config.copy(copy_frozen=False).debugging(seed=seed).build_algo()
    agents = sorted(algo.config.policies)
    csv_path = run_dir / "metrics.csv"
    rows: list[dict[str, float]] = []
    restored, interrupted, failed = 0, False, True
    say(f"seed {seed}: {run_dir}")
    try:
        with as_usage_errors(flag_name):
            rows = restore_seed(algo, plan) if plan is not None else []
        restored = len(rows)
        progress.restored(seed, rows)
        if rows:
            say(f"seed {seed}: restored iteration {restored} from {plan.checkpoint}")
        reason = stop.finished(rows)
        if reason:
            progress.finished(seed)
            say(f"seed {seed}: already finished ({reason}); nothing to train")
        else:
            steps = train_iterations(
                algo, stop, checkpoint_every=args.checkpoint_every, restored=list(rows)
            )
            first_step = restored + 1 if restored else None  # TensorBoard drops later ones
            with (
                MetricsCsv(csv_path, agents, append=bool(rows)) as csv,
                TensorBoardScalars(run_dir, first_step) as board,
            ):
                for step in steps:
                    csv.append(step.row)
                    board.append(step.row)
                    rows.append(step.row)
                    progress.iteration(seed, step.row, agents)
                    if step.stop_reason:
                        progress.finished(seed)
                        say(f"seed {seed}: stopped at {step.stop_reason}")
                    elif step.checkpoint_due:
                        save_checkpoint_atomically(algo, run_dir / "checkpoint")
        failed = False
    except KeyboardInterrupt:
        interrupted, failed = True, False
    finally:
        try:
            if len(rows) > restored and not failed:
                save_checkpoint_atomically(algo, run_dir / "checkpoint")
        finally:
            algo.stop()
            if rows:
                plot_seed(csv_path, run_dir, f"seed {seed}")
    say(f"seed {seed}: {seed_result(rows)}; wrote {run_dir}/")
    return csv_path, interrupted
