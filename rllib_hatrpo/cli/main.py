"""The ``hatrpo`` command line: train HATRPO, resume a run, sweep with Tune, evaluate.

    hatrpo train --env mpe --allocator kkt --seeds 0 1 2 --stop-iters 50 --output runs/spread
    hatrpo train --resume runs/spread --stop-iters 100
    hatrpo tune --env mpe --allocators uniform kkt greedy --seeds 0 1 2 --output runs/sweep
    hatrpo evaluate runs/spread/seed_0/checkpoint --episodes 10

``hatrpo train`` prints one line per iteration and writes, per seed, ``OUTPUT/seed_<s>/``
``metrics.csv`` (one row per iteration, flushed as it goes), ``checkpoint/`` (replaced
atomically), ``learning_curve.png`` and ``allocation.png``; with several seeds also
``OUTPUT/summary.csv`` and ``OUTPUT/learning_curve.png`` (mean ± std over seeds).
``hatrpo train --resume OUTPUT`` continues the unfinished seeds of such a run from their
checkpoints (:mod:`rllib_hatrpo.experiments.resume`). ``hatrpo tune`` runs a Ray Tune sweep over
allocator × KL budget × seed (:mod:`rllib_hatrpo.experiments.sweeps`). ``hatrpo evaluate``
rebuilds only
the actors and the env from a checkpoint (:mod:`rllib_hatrpo.experiments.evaluation`).

This module parses the arguments, dispatches, and runs the train loop. It is the user-facing
front end, so it prints; the library it calls does not. Usage errors (a bad flag value, an
unknown env or allocator, a missing or damaged checkpoint) end with exit code 2, as argparse's
own errors do. Ray is imported only once a command needs it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rllib_hatrpo.cli.common import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    import_object,
)
from rllib_hatrpo.metrics import KL_TOTAL, LINE_SEARCH_ACCEPTED, TOTAL_KL_BUDGET

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

DEFAULT_ENV = "mpe"
DEFAULT_STOP_ITERS = 20
#: Iterations between checkpoints of ``hatrpo train``: at most this many are lost to a crash.
DEFAULT_CHECKPOINT_EVERY = 10
ALLOCATOR_NAMES = ("uniform", "kkt", "greedy")
#: RLlib's default cap on EnvRunner restarts (``AlgorithmConfig.max_num_env_runner_restarts``).
DEFAULT_MAX_ENV_RUNNER_RESTARTS = 1000

# The env flags and the env_config key each built-in env takes them as (absent: not taken).
_ENV_FLAGS = ("scenario", "agent_conf", "agent_obsk", "continuous_actions")
_ENV_FLAG_KEYS: dict[str, dict[str, str]] = {
    "mamujoco": {"scenario": "scenario", "agent_conf": "agent_conf", "agent_obsk": "agent_obsk"},
    "mpe": {"scenario": "scenario", "continuous_actions": "continuous_actions"},
    "differential_game": {},
    "matrix_game": {"scenario": "game"},
}
_ENV_DEFAULT_CONFIG: dict[str, dict[str, Any]] = {"mpe": {"scenario": "simple_spread_v3"}}
# One-step games: every env step is a whole episode, which RLlib's sampler handles at a few
# hundred per second; 4000 of them per iteration could miss the sampling timeout.
_ENV_DEFAULT_TRAIN_BATCH: dict[str, int] = {"differential_game": 256, "matrix_game": 256}


# --------------------------------------------------------------------------- the parser


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"invalid JSON {text!r}: {err}") from err
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object {{...}}, got {text!r}")
    return value


def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    parse.__name__ = "int"  # argparse names the type in its messages
    return parse


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be finite, got {text}")
    return value


def _hidden_sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        sizes = []
    if not sizes or any(size <= 0 for size in sizes):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive layer sizes such as 128,128, got {text!r}"
        )
    return sizes


def build_parser() -> argparse.ArgumentParser:
    """The ``hatrpo`` argument parser with its ``train``, ``tune`` and ``evaluate`` commands."""
    parser = argparse.ArgumentParser(
        prog="hatrpo",
        description="HATRPO with an allocated joint KL budget (uniform, kkt = HATRPO-W, "
        "greedy = HATRPO-G) on Ray RLlib.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_train_parser(commands)
    _add_tune_parser(commands)
    _add_evaluate_parser(commands)
    return parser


def _add_train_parser(commands: Any) -> argparse.ArgumentParser:
    p = commands.add_parser(
        "train",
        help="train HATRPO, one run per seed (or resume a run)",
        description="Train HATRPO, one run per seed (sequentially). Writes "
        "OUTPUT/seed_<s>/{metrics.csv, checkpoint/, learning_curve.png, allocation.png}, and "
        "with several seeds OUTPUT/summary.csv and OUTPUT/learning_curve.png. "
        "--resume OUTPUT continues an interrupted run.",
    )
    p.set_defaults(run=_train, parser=p)
    _add_env_arguments(p)
    algo = p.add_argument_group("algorithm")
    algo.add_argument(
        "--allocator",
        default="uniform",
        metavar="NAME|MODULE:CLASS",
        help="uniform (HATRPO), kkt (HATRPO-W), greedy (HATRPO-G) or package.module:Class "
        "(a KLAllocator subclass); default: %(default)s",
    )
    algo.add_argument(
        "--allocator-config",
        type=_json_object,
        default={},
        metavar="JSON",
        help="allocator options, e.g. '{\"min_share\": 0.1}' for kkt",
    )
    algo.add_argument(
        "--kl-threshold", type=_positive_float, metavar="X", help="δ per agent (default 0.01)"
    )
    algo.add_argument(
        "--total-kl-budget",
        type=_positive_float,
        metavar="X",
        help="δ_total, the joint budget (default: n · kl-threshold)",
    )
    _add_model_arguments(algo)
    algo.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0],
        metavar="S",
        help="one run per seed, in OUTPUT/seed_<s>; default: 0",
    )
    _add_resource_arguments(p, default_env_runners=1)
    stop = p.add_argument_group(
        "stopping",
        "Per seed; the first criterion met stops the run. Default: --stop-iters 20. With "
        "--resume, stop flags replace the run's saved stop criteria.",
    )
    stop.add_argument("--stop-iters", type=_int_at_least(1), metavar="N", help="iterations")
    stop.add_argument(
        "--stop-timesteps", type=_int_at_least(1), metavar="N", help="env steps sampled"
    )
    stop.add_argument(
        "--stop-return", type=_finite_float, metavar="R", help="team return (mean per episode)"
    )
    stop.add_argument(
        "--time-budget-s",
        type=_positive_float,
        metavar="S",
        help="wall-clock seconds of training (a resumed run counts its earlier time)",
    )
    out = p.add_argument_group("output")
    out.add_argument(
        "--output",
        type=Path,
        metavar="DIR",
        help="run directory (default: runs/<env>-<allocator>-<date>-<time>)",
    )
    out.add_argument(
        "--checkpoint-every",
        type=_int_at_least(0),
        default=DEFAULT_CHECKPOINT_EVERY,
        metavar="N",
        help="also checkpoint every N iterations, what --resume restarts from (0: only at the "
        "end and on Ctrl-C); default: %(default)s",
    )
    out.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR (an earlier --output) with its saved flags: each "
        "unfinished seed restarts from its last checkpoint and appends to its metrics.csv. "
        "Only stop flags, --num-cpus, --checkpoint-every and the EnvRunner restart flags may "
        "change, e.g. --resume RUN_DIR --stop-iters 100",
    )
    return p


def _add_env_arguments(p: argparse.ArgumentParser) -> None:
    env = p.add_argument_group("environment")
    env.add_argument(
        "--env",
        default=DEFAULT_ENV,
        metavar="NAME|MODULE:OBJ",
        help="mamujoco, mpe, differential_game, matrix_game, or package.module:ClassOrFactory "
        "(called with the env_config dict); default: %(default)s (simple_spread_v3)",
    )
    env.add_argument(
        "--scenario",
        metavar="NAME",
        help="mpe: the mpe2 scenario (simple_spread_v3); mamujoco: the robot (HalfCheetah); "
        "matrix_game: the game (climbing, penalty)",
    )
    env.add_argument("--agent-conf", metavar="CONF", help="mamujoco: joint partition, e.g. 6x1")
    env.add_argument(
        "--agent-obsk", type=_int_at_least(0), metavar="K", help="mamujoco: observation depth"
    )
    env.add_argument(
        "--continuous-actions", action="store_true", default=None, help="mpe: Box actions"
    )
    env.add_argument(
        "--env-config",
        type=_json_object,
        default={},
        metavar="JSON",
        help="more env_config keys, merged last, e.g. '{\"max_cycles\": 50}'",
    )


def _add_model_arguments(group: Any) -> None:
    group.add_argument(
        "--train-batch-size",
        type=_int_at_least(1),
        metavar="N",
        help="env steps per iteration (train_batch_size_per_learner; default 4000, 256 for "
        "the one-step games differential_game and matrix_game)",
    )
    group.add_argument(
        "--hidden-sizes",
        type=_hidden_sizes,
        metavar="N,N",
        help="hidden layers of the actors and the critic (default 128,128)",
    )


def _add_resource_arguments(p: argparse.ArgumentParser, default_env_runners: int) -> None:
    res = p.add_argument_group("resources and fault tolerance")
    res.add_argument(
        "--num-env-runners",
        type=_int_at_least(0),
        default=default_env_runners,
        metavar="N",
        help="remote EnvRunners (0: sample in the driver); default: %(default)s",
    )
    res.add_argument(
        "--num-envs-per-env-runner",
        type=_int_at_least(1),
        default=4,
        metavar="N",
        help="vectorised envs per EnvRunner; default: %(default)s",
    )
    res.add_argument(
        "--num-cpus",
        type=_int_at_least(1),
        metavar="N",
        help="CPUs of the local Ray instance (default: train: num-env-runners + 1, tune: all); "
        "not used when Ray already runs or RAY_ADDRESS names a cluster",
    )
    res.add_argument(
        "--restart-failed-env-runners",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="with --num-env-runners > 0: when an EnvRunner process dies, Ray recreates it, "
        "training goes on with the others meanwhile and the new one gets the current weights "
        "(RLlib's fault_tolerance); --no-restart-failed-env-runners stops the run instead. "
        "Default: on",
    )
    res.add_argument(
        "--max-env-runner-restarts",
        type=_int_at_least(0),
        default=DEFAULT_MAX_ENV_RUNNER_RESTARTS,
        metavar="N",
        help="restarts allowed per EnvRunner; default: %(default)s",
    )


def _add_tune_parser(commands: Any) -> argparse.ArgumentParser:
    p = commands.add_parser(
        "tune",
        help="sweep allocator × KL budget × seed with Ray Tune",
        description="Sweep allocator × KL budget × seed with Ray Tune: a grid by default, or "
        "--num-samples KL values drawn log-uniformly per allocator and seed; optionally ASHA "
        "early stopping. Writes OUTPUT/tune/ (Tune's experiment), OUTPUT/curves.csv (every "
        "trial's iterations: method, seed, kl, env_steps, team_return, ...) and "
        "OUTPUT/summary.csv (one row per trial). Rerunning the same command resumes it.",
    )
    p.set_defaults(run=_tune, parser=p)
    _add_env_arguments(p)
    sweep = p.add_argument_group("sweep")
    sweep.add_argument(
        "--allocators",
        nargs="+",
        default=list(ALLOCATOR_NAMES),
        metavar="NAME",
        help="allocators to compare (uniform, kkt, greedy, package.module:Class); "
        "default: %(default)s",
    )
    sweep.add_argument(
        "--allocator-configs",
        type=_json_object,
        default={},
        metavar="JSON",
        help='options per allocator, e.g. \'{"kkt": {"min_share": 0.1}}\'',
    )
    sweep.add_argument(
        "--kl-param",
        choices=("kl_threshold", "total_kl_budget"),
        default="kl_threshold",
        help="the KL hyperparameter swept: δ per agent or the joint δ_total; default: %(default)s",
    )
    sweep.add_argument(
        "--kl-values",
        type=_positive_float,
        nargs="+",
        metavar="X",
        help="grid of KL values (default: 0.01 for kl_threshold; required for "
        "total_kl_budget unless --num-samples)",
    )
    sweep.add_argument(
        "--num-samples",
        type=_int_at_least(1),
        metavar="N",
        help="random search: N KL values per allocator and seed, drawn log-uniformly from "
        "--kl-range (instead of --kl-values)",
    )
    sweep.add_argument(
        "--kl-range",
        type=_positive_float,
        nargs=2,
        default=[0.001, 0.05],
        metavar=("LOW", "HIGH"),
        help="log-uniform range of --num-samples; default: %(default)s",
    )
    sweep.add_argument("--seeds", type=int, nargs="+", default=[0], metavar="S", help="default: 0")
    _add_model_arguments(sweep)
    budget = p.add_argument_group("budget per trial (default: --stop-iters 20)")
    budget.add_argument("--stop-iters", type=_int_at_least(1), metavar="N", help="iterations")
    budget.add_argument(
        "--stop-timesteps", type=_int_at_least(1), metavar="N", help="env steps sampled"
    )
    budget.add_argument(
        "--checkpoint-every",
        type=_int_at_least(1),
        default=5,
        metavar="N",
        help="checkpoint every N iterations and at the end (what a resumed trial restarts "
        "from); default: %(default)s",
    )
    sched = p.add_argument_group("early stopping")
    sched.add_argument(
        "--scheduler",
        choices=("fifo", "asha"),
        default="fifo",
        help="asha: stop trials whose team return lags (ASHAScheduler); default: %(default)s",
    )
    sched.add_argument(
        "--asha-time-attr",
        choices=("env_steps", "training_iteration"),
        help="ASHA's time axis (default: env_steps with --stop-timesteps, else training_iteration)",
    )
    sched.add_argument(
        "--grace-period",
        type=_int_at_least(1),
        metavar="T",
        help="ASHA: time before a trial can be stopped (default: 1 iteration)",
    )
    sched.add_argument(
        "--max-t", type=_int_at_least(1), metavar="T", help="ASHA: max time (default: budget)"
    )
    sched.add_argument(
        "--reduction-factor",
        type=_positive_float,
        default=4.0,
        metavar="X",
        help="ASHA: keep 1/X of the trials at each rung; default: %(default)s",
    )
    _add_resource_arguments(p, default_env_runners=0)
    trials = p.add_argument_group("trials and output")
    trials.add_argument(
        "--max-concurrent-trials",
        type=_int_at_least(1),
        metavar="N",
        help="trials at once (default: as many as the CPUs allow)",
    )
    trials.add_argument(
        "--max-failures",
        type=_int_at_least(0),
        default=2,
        metavar="N",
        help="retries of a failed trial from its last checkpoint; default: %(default)s",
    )
    trials.add_argument(
        "--output",
        "--storage-path",
        dest="output",
        type=Path,
        metavar="DIR",
        help="results folder (default: runs/tune-<env>); the same command with the same "
        "folder resumes the sweep",
    )
    return p


def _add_evaluate_parser(commands: Any) -> argparse.ArgumentParser:
    p = commands.add_parser(
        "evaluate",
        help="run a checkpoint's policies for a few episodes",
        description="Run the actors of a `hatrpo train` checkpoint for N episodes and print "
        "the team return (mean ± std). Actions are deterministic (the distribution's mode) "
        "unless --explore is given. Only the actors and the env are rebuilt: no Ray cluster.",
    )
    p.set_defaults(run=_evaluate, parser=p)
    p.add_argument(
        "checkpoint",
        type=Path,
        metavar="CHECKPOINT",
        help="the checkpoint directory (or the seed directory holding it)",
    )
    p.add_argument(
        "--episodes", type=_int_at_least(1), default=10, metavar="N", help="default: %(default)s"
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="S",
        help="episode k resets the env with seed S + k; default: %(default)s",
    )
    p.add_argument("--explore", action="store_true", help="sample actions instead of the mode")
    p.add_argument(
        "--render",
        type=Path,
        metavar="OUT.gif|OUT.mp4",
        help="record the first episode (envs with render_mode='rgb_array': mamujoco, mpe)",
    )
    p.add_argument(
        "--render-frames",
        type=_int_at_least(1),
        default=500,
        metavar="N",
        help="record at most N frames; default: %(default)s",
    )
    return p


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


# --------------------------------------------------------------------------- train


@dataclasses.dataclass(frozen=True)
class StopCriteria:
    """When a seed's run stops: the first criterion met (None: not used)."""

    iters: int | None = None
    timesteps: int | None = None
    team_return: float | None = None
    time_budget_s: float | None = None

    def reason(self, row: dict[str, float], elapsed_s: float) -> str | None:
        """Why the run stops after this CSV row, or None to go on."""
        if self.iters is not None and row["training_iteration"] >= self.iters:
            return f"{self.iters} iterations"
        if self.timesteps is not None and row["env_steps"] >= self.timesteps:
            return f"{self.timesteps} env steps"
        if self.team_return is not None and row["team_return"] >= self.team_return:
            return f"team return >= {self.team_return}"  # NaN (no episode yet) never stops
        if self.time_budget_s is not None and elapsed_s >= self.time_budget_s:
            return f"time budget {self.time_budget_s:g} s"
        return None


def resolve_env(args: argparse.Namespace) -> tuple[Any, dict[str, Any], str]:
    """(env class or registered name, env_config, short name for the run directory)."""
    flags = {name: getattr(args, name) for name in _ENV_FLAGS if getattr(args, name) is not None}
    if ":" in args.env:
        env = import_object(args.env, "--env")
        if not callable(env):
            raise UsageError("--env", f"{args.env!r} is not a class or function")
        if not isinstance(env, type):
            # RLlib takes an env class or a registered name, not a factory: register it under
            # its import path (Tune's registry reaches the EnvRunners; evaluate re-imports it).
            from ray.tune.registry import register_env

            register_env(args.env, env)
            env = args.env
        keys = {name: name for name in _ENV_FLAGS}  # a user's env takes what it is given
        label = args.env.rpartition(":")[2].rpartition(".")[2]
    else:
        from rllib_hatrpo.envs import ENV_CLASSES

        if args.env not in ENV_CLASSES:
            raise UsageError(
                "--env",
                f"unknown env {args.env!r}; choose one of {sorted(ENV_CLASSES)} or give "
                "package.module:ClassOrFactory",
            )
        env, keys, label = ENV_CLASSES[args.env], _ENV_FLAG_KEYS[args.env], args.env
    env_config = dict(_ENV_DEFAULT_CONFIG.get(args.env, {}))
    for name, value in flags.items():
        if name not in keys:
            taken = ", ".join(f"--{k.replace('_', '-')}" for k in keys) or "none"
            raise UsageError(
                f"--{name.replace('_', '-')}",
                f"--env {args.env} has no such setting (its env flags: {taken}; other "
                "env_config keys go in --env-config)",
            )
        env_config[keys[name]] = value
    env_config.update(args.env_config)
    return env, env_config, label


def resolve_allocator(args: argparse.Namespace) -> tuple[Any, str]:
    """(the ``kl_allocator`` value, its short name); checks --allocator-config against it."""
    from rllib_hatrpo.core.allocation import make_allocator

    allocator, label = allocator_from_name(args.allocator, "--allocator")
    try:
        make_allocator(allocator, args.allocator_config)
    except (TypeError, ValueError) as err:
        raise UsageError("--allocator-config", str(err)) from err
    return allocator, label


def allocator_from_name(name: str, flag: str) -> tuple[Any, str]:
    """(the ``kl_allocator`` value, its short name) of a built-in name or package.module:Class.

    Raises:
        UsageError: An unknown name, or a class that is not a ``KLAllocator`` (names ``flag``).
    """
    from rllib_hatrpo.core.allocation import KLAllocator

    if name in ALLOCATOR_NAMES:
        return name, name
    if ":" in name:
        allocator = import_object(name, flag)
        if not (isinstance(allocator, type) and issubclass(allocator, KLAllocator)):
            raise UsageError(
                flag, f"{name!r} is not a subclass of rllib_hatrpo.core.allocation.KLAllocator"
            )
        return allocator, allocator.__name__
    raise UsageError(
        flag,
        f"unknown allocator {name!r}; choose one of {', '.join(ALLOCATOR_NAMES)} or give "
        "package.module:Class",
    )


def build_config(args: argparse.Namespace, env: Any, env_config: dict, allocator: Any) -> Any:
    """The ``HATRPOConfig`` the flags describe (not yet validated, no seed).

    Reads ``allocator_config``, ``kl_threshold``, ``total_kl_budget``, ``train_batch_size``,
    ``hidden_sizes``, ``num_env_runners``, ``num_envs_per_env_runner``,
    ``restart_failed_env_runners`` and ``max_env_runner_restarts`` from ``args``.
    """
    from rllib_hatrpo import HATRPOConfig

    training: dict[str, Any] = {
        "kl_allocator": allocator,
        "kl_allocator_config": dict(args.allocator_config),
    }
    if args.kl_threshold is not None:
        training["kl_threshold"] = args.kl_threshold
    if args.total_kl_budget is not None:
        training["total_kl_budget"] = args.total_kl_budget
    batch = args.train_batch_size or _ENV_DEFAULT_TRAIN_BATCH.get(getattr(args, "env", None))
    if batch is not None:
        training["train_batch_size_per_learner"] = batch
    if args.hidden_sizes is not None:
        training["actor_hidden_sizes"] = list(args.hidden_sizes)
        training["critic_hidden_sizes"] = list(args.hidden_sizes)
    return (
        HATRPOConfig()
        .environment(env, env_config=env_config)
        .env_runners(
            num_env_runners=args.num_env_runners,
            num_envs_per_env_runner=args.num_envs_per_env_runner,
        )
        .training(**training)
        .fault_tolerance(
            # A dead EnvRunner is recreated by Ray (actor max_restarts) and re-synced by
            # Algorithm.restore_env_runners before the next iteration; the others sample on.
            restart_failed_env_runners=args.restart_failed_env_runners,
            max_num_env_runner_restarts=args.max_env_runner_restarts,
        )
    )


def _stop_criteria(args: argparse.Namespace) -> StopCriteria:
    stop = StopCriteria(args.stop_iters, args.stop_timesteps, args.stop_return, args.time_budget_s)
    if stop == StopCriteria():
        stop = dataclasses.replace(stop, iters=DEFAULT_STOP_ITERS)
    return stop


def _train(args: argparse.Namespace) -> int:
    resuming = args.resume is not None
    if resuming:
        args = _resumed_args(args)
    if len(set(args.seeds)) != len(args.seeds):
        raise UsageError("--seeds", f"seeds repeat: {args.seeds}")
    allocator, allocator_label = resolve_allocator(args)
    env, env_config, env_label = resolve_env(args)
    output = args.output or Path("runs") / f"{env_label}-{allocator_label}-{_timestamp()}"
    plans = _resume_plans(output, args.seeds) if resuming else _check_new_run(output, args.seeds)
    stop = _stop_criteria(args)
    config = build_config(args, env, env_config, allocator)
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
        from rllib_hatrpo.experiments.resume import record_resume

        record_resume(output, vars(args), args.argv)
    else:
        _write_args(output, args, env_config)
    print(
        f"HATRPO on {env_label} {env_config}, allocator {allocator_label}, "
        f"agents {sorted(config.policies)}, seeds {args.seeds}; stop at {_describe(stop)}; "
        f"{'resuming' if resuming else 'writing to'} {output}",
        flush=True,
    )
    for plan in plans.values():
        if plan is not None and plan.note:
            print(plan.note, flush=True)
    started_ray = _init_ray(args.num_cpus or args.num_env_runners + 1)
    try:
        csvs = []
        for seed in args.seeds:
            run_dir = output / f"seed_{seed}"
            csv_path, interrupted = _train_seed(config, seed, run_dir, stop, args, plans[seed])
            csvs.append(csv_path)
            if interrupted:
                print("interrupted: stopping after this seed", flush=True)
                return EXIT_INTERRUPTED
        if len(csvs) > 1:
            _write_seed_summary(output, args.seeds, csvs, f"{env_label} {allocator_label}")
        return EXIT_OK
    finally:
        if started_ray:
            import ray

            ray.shutdown()


def _check_new_run(output: Path, seeds: Sequence[int]) -> dict[int, None]:
    """Refuses an output directory that already holds a run of one of the seeds."""
    for seed in seeds:
        if (output / f"seed_{seed}" / "metrics.csv").exists():
            raise UsageError(
                "--output",
                f"{output} already holds a run of seed {seed}; choose a new directory, or "
                f"continue that run with --resume {output}",
            )
    return dict.fromkeys(seeds)


def _resumed_args(args: argparse.Namespace) -> argparse.Namespace:
    """The flags of the run in ``args.resume`` with the changes this command line allows."""
    from rllib_hatrpo.experiments.resume import load_run_record, merge_flags

    record = load_run_record(args.resume)
    defaults = vars(args.parser.parse_args([]))
    merged = merge_flags(record["flags"], _given_flags(args.argv[2:]), defaults, args.resume)
    return argparse.Namespace(**merged, run=args.run, parser=args.parser, argv=args.argv)


def _given_flags(train_argv: Sequence[str]) -> dict[str, Any]:
    """The ``hatrpo train`` flags given in ``train_argv``, without the defaults of the others."""
    parser = _add_train_parser(argparse.ArgumentParser().add_subparsers())
    # argparse has no public way to tell a given flag from a default: drop the defaults.
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    given = vars(parser.parse_args(train_argv))
    return {key: value for key, value in given.items() if key not in ("run", "parser")}


def _resume_plans(output: Path, seeds: Sequence[int]) -> dict[int, Any]:
    """Per seed: the checkpoint it continues from (checked before Ray starts)."""
    from rllib_hatrpo.experiments.resume import plan_seed

    return {seed: plan_seed(output / f"seed_{seed}", seed) for seed in seeds}


def _timestamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


def _describe(stop: StopCriteria) -> str:
    parts = {
        "iters": stop.iters,
        "env steps": stop.timesteps,
        "team return": stop.team_return,
        "seconds": stop.time_budget_s,
    }
    return " or ".join(f"{value} {name}" for name, value in parts.items() if value is not None)


def _write_args(output: Path, args: argparse.Namespace, env_config: dict) -> None:
    """Writes OUTPUT/args.json: the flags and versions, to repeat or compare a run."""
    import ray
    import torch

    from rllib_hatrpo import __version__

    flags = {
        key: str(value) if isinstance(value, Path) else value
        for key, value in vars(args).items()
        if key not in ("run", "parser", "argv")
    }
    record = {
        "argv": args.argv,
        "flags": flags,
        "env_config": env_config,
        "versions": {
            "rllib_hatrpo": __version__,
            "ray": ray.__version__,
            "torch": torch.__version__,
        },
    }
    (output / "args.json").write_text(json.dumps(record, indent=2, default=str) + "\n")


def _init_ray(num_cpus: int | None) -> bool:
    """Starts Ray unless it already runs; returns whether this call started (or joined) it.

    Under ``ray job submit`` (RAY_ADDRESS set) ``ray.init()`` joins that cluster; a local
    instance gets ``num_cpus`` (None: all of the machine's) and no dashboard.
    """
    import ray

    if ray.is_initialized():
        return False
    if os.environ.get("RAY_ADDRESS"):
        ray.init()
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False)
    return True


def _train_seed(
    config: Any,
    seed: int,
    run_dir: Path,
    stop: StopCriteria,
    args: argparse.Namespace,
    plan: Any = None,
) -> tuple[Path, bool]:
    """Trains one seed, or continues it (``plan``: a ``resume.SeedResume``).

    Returns:
        (its metrics.csv, whether Ctrl-C interrupted it).
    """
    from rllib_hatrpo.experiments.records import save_checkpoint_atomically
    from rllib_hatrpo.experiments.resume import restore_seed

    algo = config.copy(copy_frozen=False).debugging(seed=seed).build_algo()
    csv_path = run_dir / "metrics.csv"
    rows: list[dict[str, float]] = []
    restored, interrupted, failed = 0, False, True
    print(f"seed {seed}: {run_dir}", flush=True)
    try:
        rows = restore_seed(algo, plan) if plan is not None else []
        restored = len(rows)
        reason = stop.reason(rows[-1], rows[-1]["time_total_s"]) if rows else None
        if rows:
            print(f"seed {seed}: restored iteration {restored} from {plan.checkpoint}", flush=True)
        if reason:
            print(f"seed {seed}: already finished ({reason}); nothing to train", flush=True)
        else:
            _train_iterations(algo, csv_path, seed, stop, args, rows)
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
                _plot_seed(csv_path, run_dir, f"seed {seed}")
    print(f"seed {seed}: {_seed_result(rows)}; wrote {run_dir}/", flush=True)
    return csv_path, interrupted


def _train_iterations(
    algo: Any,
    csv_path: Path,
    seed: int,
    stop: StopCriteria,
    args: argparse.Namespace,
    rows: list[dict[str, float]],
) -> None:
    """Trains until a stop criterion, appending each iteration to ``rows`` and ``csv_path``.

    ``rows`` holds the iterations restored from a checkpoint (empty for a new run): the CSV
    is appended to, and the time of those iterations counts towards ``time_total_s`` and the
    time budget (a restored Algorithm counts its time from 0).
    """
    from rllib_hatrpo.experiments.records import (
        MetricsCsv,
        flatten_result,
        reset_iteration_timers,
        save_checkpoint_atomically,
    )

    agents = sorted(algo.config.policies)
    earlier_s = rows[-1]["time_total_s"] if rows else 0.0
    with MetricsCsv(csv_path, agents, append=bool(rows)) as csv:
        start = time.monotonic()
        while True:
            reset_iteration_timers(algo)
            row = flatten_result(algo.train(), agents)
            row["time_total_s"] += earlier_s
            csv.append(row)
            rows.append(row)
            print(progress_line(row, agents, seed), flush=True)
            reason = stop.reason(row, earlier_s + time.monotonic() - start)
            if reason:
                print(f"seed {seed}: stopped at {reason}", flush=True)
                return
            if args.checkpoint_every and algo.iteration % args.checkpoint_every == 0:
                save_checkpoint_atomically(algo, csv_path.parent / "checkpoint")


def progress_line(row: dict[str, float], agents: Sequence[str], seed: int | None = None) -> str:
    """One line of training progress from a ``metrics.csv`` row."""
    accepted = sum(1 for a in agents if row.get(f"{a}/{LINE_SEARCH_ACCEPTED}", math.nan) == 1.0)
    team = row["team_return"]
    parts = [
        f"seed {seed}" if seed is not None else None,
        f"iter {row['training_iteration']:4.0f}",
        f"env steps {row['env_steps']:>9,.0f}",
        f"team return {team:9.3f}" if math.isfinite(team) else f"team return {'-':>9}",
        f"kl {row[KL_TOTAL]:.4f}/{row[TOTAL_KL_BUDGET]:.4f}",
        f"accepted {accepted}/{len(agents)}",
        f"{row['time_this_iter_s']:.2f} s/iter",
    ]
    return " | ".join(p for p in parts if p)


def _seed_result(rows: list[dict[str, float]]) -> str:
    if not rows:
        return "no iteration finished"
    last = rows[-1]
    returns = [r["team_return"] for r in rows if math.isfinite(r["team_return"])]
    final = f"{returns[-1]:.3f}" if returns else "-"
    return (
        f"{_count(last['training_iteration'], 'iteration')}, {last['env_steps']:,.0f} env steps, "
        f"{last['time_total_s']:.1f} s, final team return {final}"
    )


def _count(n: float, word: str) -> str:
    return f"{n:.0f} {word}" if n == 1 else f"{n:.0f} {word}s"


def _plot_seed(csv_path: Path, run_dir: Path, label: str) -> None:
    from rllib_hatrpo.experiments.plots import plot_allocation, plot_learning_curve

    plot_learning_curve(csv_path, run_dir / "learning_curve.png", label=label)
    plot_allocation(csv_path, run_dir / "allocation.png", title=f"KL allocation ({label})")


def seed_summary(seeds: Sequence[int], csvs: Sequence[Path]) -> Any:
    """One row per seed (final and best team return, steps, time, KL use), then mean and std."""
    import pandas as pd

    rows = []
    for seed, csv_path in zip(seeds, csvs, strict=True):
        frame = pd.read_csv(csv_path)
        returns = frame["team_return"].dropna()
        rows.append(
            {
                "seed": str(seed),
                "iterations": int(frame["training_iteration"].iloc[-1]),
                "env_steps": float(frame["env_steps"].iloc[-1]),
                "time_total_s": float(frame["time_total_s"].iloc[-1]),
                "final_team_return": float(returns.iloc[-1]) if len(returns) else math.nan,
                "best_team_return": float(returns.max()) if len(returns) else math.nan,
                "mean_kl_total": float(frame[KL_TOTAL].mean()),
                "mean_skipped_steps": float(frame["skipped_steps"].mean()),
            }
        )
    table = pd.DataFrame(rows)
    numeric = table.drop(columns="seed")
    stats = pd.DataFrame([numeric.mean(), numeric.std(ddof=0)]).assign(seed=["mean", "std"])
    return pd.concat([table, stats[table.columns]], ignore_index=True)


def _write_seed_summary(output: Path, seeds: Sequence[int], csvs: list[Path], label: str) -> None:
    from rllib_hatrpo.experiments.plots import plot_learning_curve

    table = seed_summary(seeds, csvs)
    table.to_csv(output / "summary.csv", index=False)
    plot_learning_curve(csvs, output / "learning_curve.png", label=label)
    mean, std = (
        table.loc[table["seed"] == s, "final_team_return"].iloc[0] for s in ("mean", "std")
    )
    print(
        f"final team return over {len(seeds)} seeds: {mean:.3f} ± {std:.3f}; wrote "
        f"{output / 'summary.csv'} and {output / 'learning_curve.png'}",
        flush=True,
    )


# --------------------------------------------------------------------------- tune


def _tune(args: argparse.Namespace) -> int:
    """``hatrpo tune``: checks the flags, starts Ray and runs the sweep (experiments.sweeps)."""
    from rllib_hatrpo import sweep

    env, env_config, env_label = resolve_env(args)
    output = args.output or Path("runs") / f"tune-{env_label}"
    builder = sweep.builder_from_args(args, env, env_config)
    try:
        for config in sweep.example_configs(args, builder):
            config.validate()  # before Ray starts: errors name the config field to change
    except (ValueError, TypeError) as err:
        print(f"{args.parser.prog}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    sweep.check_same_sweep(output, args)
    started_ray = _init_ray(args.num_cpus)
    try:
        return sweep.run_sweep(args, builder, output, env_label)
    finally:
        if started_ray:
            import ray

            ray.shutdown()


# --------------------------------------------------------------------------- evaluate


def _evaluate(args: argparse.Namespace) -> int:
    from rllib_hatrpo.experiments.evaluation import (
        check_video_path,
        load_checkpoint_policies,
        make_env,
        render_fps,
        run_episodes,
        write_video,
    )

    if args.render is not None:
        check_video_path(args.render)
        if not os.environ.get("DISPLAY"):
            # Headless: MuJoCo's default GLFW backend needs a display; EGL renders without.
            os.environ.setdefault("MUJOCO_GL", "egl")
    start = time.monotonic()
    policies = load_checkpoint_policies(args.checkpoint)
    env = make_env(policies.config, render=args.render is not None)
    frames: list[np.ndarray] | None = [] if args.render is not None else None
    try:
        returns = run_episodes(
            policies, env, args.episodes, args.seed, args.explore, frames, args.render_frames
        )
    finally:
        env.close()
    for episode, value in enumerate(returns, 1):
        print(f"episode {episode}: team return {value:.3f}")
    mode = "sampled" if args.explore else "deterministic"
    print(
        f"team return: {np.mean(returns):.3f} ± {np.std(returns):.3f} over "
        f"{_count(len(returns), 'episode')} ({mode} actions; {policies.path}; "
        f"{time.monotonic() - start:.1f} s)",
        flush=True,
    )
    if frames:
        write_video(frames, args.render, render_fps(env))
        print(f"wrote {args.render} ({len(frames)} frames of episode 1)")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
