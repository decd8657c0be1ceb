"""``hatrpo tune``: a Ray Tune sweep over allocator × KL budget × seed, resumable.

    hatrpo tune --env mpe --allocators uniform kkt greedy --seeds 0 1 2 --output runs/sweep

The flags become a :class:`~rllib_hatrpo.experiments.sweeps.SweepSpec` (on a
:class:`~rllib_hatrpo.experiments.spec.RunSpec` of the same env, model and EnvRunner flags as
``hatrpo train``); :func:`rllib_hatrpo.experiments.sweeps.run_sweep` runs it. This module
checks the flags, records the sweep's plan, starts Ray and prints the results.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from rllib_hatrpo.cli.args import (
    Group,
    add_groups,
    env_group,
    env_option_values,
    flag,
    flag_namer,
    flag_values,
    int_at_least,
    json_object,
    model_flags,
    positive_float,
    resource_group,
    run_settings,
)
from rllib_hatrpo.cli.common import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    as_usage_errors,
    init_ray,
    say,
    shutdown_ray,
)
from rllib_hatrpo.experiments.loop import DEFAULT_STOP_ITERS
from rllib_hatrpo.experiments.plans import PlanMismatchError
from rllib_hatrpo.experiments.spec import ENV_RUNNERS, RunSpec, resolve_env
from rllib_hatrpo.experiments.summaries import FINAL_FRACTION, FINAL_TEAM_RETURN
from rllib_hatrpo.experiments.sweeps import (
    ASHA_TIME_ATTRS,
    EXPERIMENT,
    KL_PARAMS,
    SweepSpec,
)
from rllib_hatrpo.experiments.tune import METHOD, SEED, TRIAL

#: Flags that do not change what a sweep trains (not compared on a rerun).
OPERATIONAL = ("num_cpus", "max_concurrent_trials", "max_failures", "output")


def groups() -> tuple[Group, ...]:
    """The flags of ``hatrpo tune``."""
    from rllib_hatrpo.core.allocation import ALLOCATOR_NAMES

    sweep = (
        flag(
            "--allocators",
            nargs="+",
            default=list(ALLOCATOR_NAMES),
            metavar="NAME",
            help=f"allocators to compare ({', '.join(ALLOCATOR_NAMES)}, package.module:Class); "
            "default: %(default)s",
        ),
        flag(
            "--allocator-configs",
            type=json_object,
            default={},
            metavar="JSON",
            help='options per allocator, e.g. \'{"kkt": {"min_share": 0.1}}\'',
        ),
        flag(
            "--kl-param",
            choices=KL_PARAMS,
            default=KL_PARAMS[0],
            help="the KL hyperparameter swept: δ per agent or the joint δ_total; default: "
            "%(default)s",
        ),
        flag(
            "--kl-values",
            type=positive_float,
            nargs="+",
            metavar="X",
            help="grid of KL values (default: 0.01 for kl_threshold; required for "
            "total_kl_budget unless --num-samples)",
        ),
        flag(
            "--num-samples",
            type=int_at_least(1),
            metavar="N",
            help="random search: N KL values per allocator and seed, drawn log-uniformly from "
            "--kl-range (instead of --kl-values)",
        ),
        flag(
            "--kl-range",
            type=positive_float,
            nargs=2,
            default=[0.001, 0.05],
            metavar=("LOW", "HIGH"),
            help="log-uniform range of --num-samples; default: %(default)s",
        ),
        flag("--seeds", type=int, nargs="+", default=[0], metavar="S", help="default: 0"),
        *model_flags(),
    )
    budget = (
        flag("--stop-iters", type=int_at_least(1), metavar="N", help="iterations"),
        flag("--stop-timesteps", type=int_at_least(1), metavar="N", help="env steps sampled"),
        flag(
            "--checkpoint-every",
            type=int_at_least(1),
            default=5,
            metavar="N",
            help="checkpoint every N iterations and at the end (what a resumed trial restarts "
            "from); default: %(default)s",
        ),
    )
    early = (
        flag(
            "--scheduler",
            choices=("fifo", "asha"),
            default="fifo",
            help="asha: stop trials whose team return lags (ASHAScheduler); default: %(default)s",
        ),
        flag(
            "--asha-time-attr",
            choices=ASHA_TIME_ATTRS,
            help="ASHA's time axis (default: env_steps with --stop-timesteps, else "
            "training_iteration)",
        ),
        flag(
            "--grace-period",
            type=int_at_least(1),
            metavar="T",
            help="ASHA: time before a trial can be stopped (default: 1 iteration)",
        ),
        flag("--max-t", type=int_at_least(1), metavar="T", help="ASHA: max time (default: budget)"),
        flag(
            "--reduction-factor",
            type=positive_float,
            default=4.0,
            metavar="X",
            help="ASHA: keep 1/X of the trials at each rung; default: %(default)s",
        ),
    )
    trials = (
        flag(
            "--max-concurrent-trials",
            type=int_at_least(1),
            metavar="N",
            help="trials at once (default: as many as the CPUs allow)",
        ),
        flag(
            "--max-failures",
            type=int_at_least(0),
            default=2,
            metavar="N",
            help="retries of a failed trial from its last checkpoint; default: %(default)s",
        ),
        flag(
            "--output",
            "--storage-path",
            dest="output",
            type=Path,
            metavar="DIR",
            help="results folder (default: runs/tune-<env>); the same command with the same "
            "folder resumes the sweep",
        ),
    )
    return (
        env_group(),
        Group("sweep", sweep),
        Group(f"budget per trial (default: --stop-iters {DEFAULT_STOP_ITERS})", budget),
        Group("early stopping", early),
        resource_group(default_env_runners=0),
        Group("trials and output", trials),
    )


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Adds ``tune`` to the ``hatrpo`` subcommands."""
    parser = commands.add_parser(
        "tune",
        help="sweep allocator × KL budget × seed with Ray Tune",
        description="Sweep allocator × KL budget × seed with Ray Tune: a grid by default, or "
        "--num-samples KL values drawn log-uniformly per allocator and seed; optionally ASHA "
        "early stopping. Writes OUTPUT/tune/ (Tune's experiment), OUTPUT/curves.csv (every "
        "trial's iterations: method, seed, kl, env_steps, team_return, ...) and "
        "OUTPUT/summary.csv (one row per trial). Rerunning the same command resumes it; "
        "rerunning it with a larger --stop-iters or --stop-timesteps trains every trial further.",
    )
    parser.set_defaults(run=run, parser=parser)
    return add_groups(parser, groups())


def flag_name(setting: str) -> str:
    """The ``hatrpo tune`` flag of a setting (``"kl_range"`` -> ``--kl-range``)."""
    return flag_namer(groups())(setting)


def sweep_spec(args: argparse.Namespace) -> tuple[SweepSpec, str]:
    """(the sweep the flags describe, checked; the env's short name).

    Raises:
        UsageError: A flag the sweep cannot use (names it).
    """
    with as_usage_errors(flag_name):
        choice = resolve_env(args.env, env_option_values(args), args.env_config)
        base = RunSpec(
            env=choice.env,
            env_config=dict(choice.env_config),
            train_batch_size=args.train_batch_size or choice.default_train_batch,
            **run_settings(args),
        )
        sweep = SweepSpec(
            base=base,
            allocators=tuple(args.allocators),
            allocator_configs=dict(args.allocator_configs),
            kl_param=args.kl_param,
            kl_values=None if args.kl_values is None else tuple(args.kl_values),
            num_samples=args.num_samples,
            kl_range=tuple(args.kl_range),
            seeds=tuple(args.seeds),
            stop_iters=args.stop_iters,
            stop_timesteps=args.stop_timesteps,
            checkpoint_every=args.checkpoint_every,
            scheduler=args.scheduler,
            asha_time_attr=args.asha_time_attr,
            grace_period=args.grace_period,
            max_t=args.max_t,
            reduction_factor=args.reduction_factor,
            max_concurrent_trials=args.max_concurrent_trials,
            max_failures=args.max_failures,
        )
        sweep.check()
    return sweep, choice.label


def plan(args: argparse.Namespace) -> dict[str, Any]:
    """What ``sweep.json`` records: every flag but those of :data:`OPERATIONAL`.

    The learner flags, ``--env-runner``, ``--fvp-subsample`` and ``--max-batch-memory-gib``
    are left out at their defaults, so that a sweep recorded before they existed still
    resumes (both samplers give the learner the same batches).
    """
    flags = {k: v for k, v in flag_values(args).items() if k not in OPERATIONAL}
    for key in ("num_learners", "num_gpus_per_learner"):
        if not flags.get(key):
            flags.pop(key, None)
    if flags.get("env_runner") == ENV_RUNNERS[0]:
        flags.pop("env_runner")
    for key in ("fvp_subsample", "max_batch_memory_gib"):
        if flags.get(key) is None:
            flags.pop(key, None)
    return flags


def run(args: argparse.Namespace) -> int:
    """``hatrpo tune``: checks the flags, starts Ray and runs (or resumes) the sweep."""
    from rllib_hatrpo.experiments import sweeps

    sweep, label = sweep_spec(args)
    output = args.output or Path("runs") / f"tune-{label}"
    try:
        for config in sweep.example_configs():
            config.validate()  # before Ray starts: errors name the config field to change
    except (ValueError, TypeError) as err:
        print(f"{args.parser.prog}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    from rllib_hatrpo.experiments.resume import check_writable

    with as_usage_errors(flag_name):
        check_writable(output)
    try:
        extend = sweeps.check_same_sweep(output, plan(args))
    except PlanMismatchError as err:
        raise UsageError("--output", err.render(flag_name)) from err
    started_ray = init_ray(args.num_cpus)
    try:
        if not sweeps.sweep_exists(output):
            say(f"sweep on {label}: {_describe(sweep)}; writing to {output}")
        outcome = sweeps.run_sweep(sweep, output, log=say, extend=extend)
        if extend:
            sweeps.record_sweep(output, plan(args))  # once every trial went on to the new stop
        print_table(outcome.summary, sweep.kl_param, output)
        if outcome.errors:
            say(f"{outcome.errors} trial(s) errored; rerun the same command to resume them")
            return EXIT_ERROR
        return EXIT_OK
    finally:
        shutdown_ray(started_ray)


def _describe(sweep: SweepSpec) -> str:
    budget = sweep.budget()
    if sweep.num_samples is not None:
        kl = f"{sweep.num_samples} log-uniform {sweep.kl_param} in {list(sweep.kl_range)}"
    else:
        kl = f"{sweep.kl_param} {sweep.kl_grid()}"
    stop = " or ".join(
        f"{value} {name}"
        for name, value in (("iterations", budget.iters), ("env steps", budget.timesteps))
        if value
    )
    return (
        f"allocators {list(sweep.allocators)} × {kl} × seeds {list(sweep.seeds)}, {stop} per "
        f"trial, scheduler {sweep.scheduler}"
    )


def print_table(summary: Any, kl_param: str, output: Path) -> None:
    """Prints each trial's final team return, the best trial and, over seeds, each setting's."""
    if summary.empty:
        say(f"no trial reported a result yet ({output / EXPERIMENT})")
        return
    shown = summary.drop(columns=TRIAL)
    say(
        f"\nfinal team return per trial (mean of the last {FINAL_FRACTION * 100:.0f} % of "
        "iterations):\n" + shown.to_string(index=False, float_format=lambda x: f"{x:.4g}")
    )
    best = summary.iloc[0]
    say(
        f"best trial: method {best[METHOD]}, {kl_param} {best[kl_param]:.4g}, seed "
        f"{best[SEED]}: final team return {best[FINAL_TEAM_RETURN]:.3f} ({best[TRIAL]})"
    )
    if summary[SEED].nunique() > 1:
        by_setting = (
            summary.groupby([METHOD, kl_param])[FINAL_TEAM_RETURN]
            .agg(["mean", "std", "count"])
            .sort_values("mean", ascending=False)
        )
        say("over seeds:\n" + by_setting.to_string(float_format=lambda x: f"{x:.4g}"))
    say(f"wrote {output / 'curves.csv'} and {output / 'summary.csv'}")
