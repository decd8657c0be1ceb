"""The ``hatrpo`` command line: train HATRPO on a multi-agent env, evaluate a checkpoint.

    hatrpo train --env mpe --allocator kkt --seeds 0 1 2 --stop-iters 50 --output runs/spread
    hatrpo evaluate runs/spread/seed_0/checkpoint --episodes 10

``hatrpo train`` prints one line per iteration and writes, per seed, ``OUTPUT/seed_<s>/``
``metrics.csv`` (one row per iteration, flushed as it goes), ``checkpoint/`` (replaced
atomically), ``learning_curve.png`` and ``allocation.png``; with several seeds also
``OUTPUT/summary.csv`` and ``OUTPUT/learning_curve.png`` (mean ± std over seeds).
``hatrpo evaluate`` rebuilds only the actors and the env from a checkpoint (no Ray cluster,
no learner, no EnvRunners) and runs episodes with deterministic actions.

This is the user-facing front end, so it prints; the library it calls does not. Usage errors
(a bad flag value, an unknown env or allocator, a missing checkpoint) end with exit code 2,
as argparse's own errors do. Ray is imported only once a command needs it.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import json
import math
import os
import pickle
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rllib_hatrpo.metrics import KL_TOTAL, LINE_SEARCH_ACCEPTED, TOTAL_KL_BUDGET

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

DEFAULT_ENV = "mpe"
DEFAULT_STOP_ITERS = 20
ALLOCATOR_NAMES = ("uniform", "kkt", "greedy")

# The env flags and the env_config key each built-in env takes them as (absent: not taken).
_ENV_FLAGS = ("scenario", "agent_conf", "agent_obsk", "continuous_actions")
_ENV_FLAG_KEYS: dict[str, dict[str, str]] = {
    "mamujoco": {"scenario": "scenario", "agent_conf": "agent_conf", "agent_obsk": "agent_obsk"},
    "mpe": {"scenario": "scenario", "continuous_actions": "continuous_actions"},
    "differential_game": {},
    "matrix_game": {"scenario": "game"},
}
_ENV_DEFAULT_CONFIG: dict[str, dict[str, Any]] = {"mpe": {"scenario": "simple_spread_v3"}}


class UsageError(Exception):
    """A bad command line: reported as ``argument <flag>: <message>``, exit code 2."""

    def __init__(self, flag: str, message: str) -> None:
        super().__init__(f"argument {flag}: {message}")
        self.flag = flag


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
    """The ``hatrpo`` argument parser with its ``train`` and ``evaluate`` subcommands."""
    parser = argparse.ArgumentParser(
        prog="hatrpo",
        description="HATRPO with an allocated joint KL budget (uniform, kkt = HATRPO-W, "
        "greedy = HATRPO-G) on Ray RLlib.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_train_parser(commands)
    _add_evaluate_parser(commands)
    return parser


def _add_train_parser(commands: Any) -> None:
    p = commands.add_parser(
        "train",
        help="train HATRPO, one run per seed",
        description="Train HATRPO, one run per seed (sequentially). Writes "
        "OUTPUT/seed_<s>/{metrics.csv, checkpoint/, learning_curve.png, allocation.png}, and "
        "with several seeds OUTPUT/summary.csv and OUTPUT/learning_curve.png.",
    )
    p.set_defaults(run=_train, parser=p)
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
    algo.add_argument(
        "--train-batch-size",
        type=_int_at_least(1),
        metavar="N",
        help="env steps per iteration (train_batch_size_per_learner; default 4000)",
    )
    algo.add_argument(
        "--hidden-sizes",
        type=_hidden_sizes,
        metavar="N,N",
        help="hidden layers of the actors and the critic (default 128,128)",
    )
    algo.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0],
        metavar="S",
        help="one run per seed, in OUTPUT/seed_<s>; default: 0",
    )
    res = p.add_argument_group("resources")
    res.add_argument(
        "--num-env-runners",
        type=_int_at_least(0),
        default=1,
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
        help="CPUs of the local Ray instance (default: num-env-runners + 1); not used when "
        "Ray already runs or RAY_ADDRESS names a cluster",
    )
    stop = p.add_argument_group(
        "stopping", "Per seed; the first criterion met stops the run. Default: --stop-iters 20."
    )
    stop.add_argument("--stop-iters", type=_int_at_least(1), metavar="N", help="iterations")
    stop.add_argument(
        "--stop-timesteps", type=_int_at_least(1), metavar="N", help="env steps sampled"
    )
    stop.add_argument(
        "--stop-return", type=_finite_float, metavar="R", help="team return (mean per episode)"
    )
    stop.add_argument(
        "--time-budget-s", type=_positive_float, metavar="S", help="wall-clock seconds"
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
        default=0,
        metavar="N",
        help="also checkpoint every N iterations (default 0: only at the end)",
    )


def _add_evaluate_parser(commands: Any) -> None:
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


def _import_object(spec: str, flag: str) -> Any:
    """Imports ``package.module:Name`` (``Name`` may be dotted)."""
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


def resolve_env(args: argparse.Namespace) -> tuple[Any, dict[str, Any], str]:
    """(env class or registered name, env_config, short name for the run directory)."""
    flags = {name: getattr(args, name) for name in _ENV_FLAGS if getattr(args, name) is not None}
    if ":" in args.env:
        env = _import_object(args.env, "--env")
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
    from rllib_hatrpo.kl_allocation import KLAllocator, make_allocator

    if args.allocator in ALLOCATOR_NAMES:
        allocator, label = args.allocator, args.allocator
    elif ":" in args.allocator:
        allocator = _import_object(args.allocator, "--allocator")
        if not (isinstance(allocator, type) and issubclass(allocator, KLAllocator)):
            raise UsageError(
                "--allocator",
                f"{args.allocator!r} is not a subclass of rllib_hatrpo.kl_allocation.KLAllocator",
            )
        label = allocator.__name__
    else:
        raise UsageError(
            "--allocator",
            f"unknown allocator {args.allocator!r}; choose one of {', '.join(ALLOCATOR_NAMES)} "
            "or give package.module:Class",
        )
    try:
        make_allocator(allocator, args.allocator_config)
    except (TypeError, ValueError) as err:
        raise UsageError("--allocator-config", str(err)) from err
    return allocator, label


def build_config(args: argparse.Namespace, env: Any, env_config: dict, allocator: Any) -> Any:
    """The ``HATRPOConfig`` the flags describe (not yet validated, no seed)."""
    from rllib_hatrpo import HATRPOConfig

    training: dict[str, Any] = {
        "kl_allocator": allocator,
        "kl_allocator_config": dict(args.allocator_config),
    }
    if args.kl_threshold is not None:
        training["kl_threshold"] = args.kl_threshold
    if args.total_kl_budget is not None:
        training["total_kl_budget"] = args.total_kl_budget
    if args.train_batch_size is not None:
        training["train_batch_size_per_learner"] = args.train_batch_size
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
    )


def _stop_criteria(args: argparse.Namespace) -> StopCriteria:
    stop = StopCriteria(args.stop_iters, args.stop_timesteps, args.stop_return, args.time_budget_s)
    if stop == StopCriteria():
        stop = dataclasses.replace(stop, iters=DEFAULT_STOP_ITERS)
    return stop


def _train(args: argparse.Namespace) -> int:
    if len(set(args.seeds)) != len(args.seeds):
        raise UsageError("--seeds", f"seeds repeat: {args.seeds}")
    allocator, allocator_label = resolve_allocator(args)
    env, env_config, env_label = resolve_env(args)
    output = args.output or Path("runs") / f"{env_label}-{allocator_label}-{_timestamp()}"
    for seed in args.seeds:
        if (output / f"seed_{seed}" / "metrics.csv").exists():
            raise UsageError(
                "--output", f"{output} already holds a run of seed {seed}; choose a new directory"
            )
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
    _write_args(output, args, env_config)
    print(
        f"HATRPO on {env_label} {env_config}, allocator {allocator_label}, "
        f"agents {sorted(config.policies)}, seeds {args.seeds}; stop at {_describe(stop)}; "
        f"writing to {output}",
        flush=True,
    )
    started_ray = _init_ray(args.num_cpus or args.num_env_runners + 1)
    try:
        csvs = []
        for seed in args.seeds:
            csv_path, interrupted = _train_seed(config, seed, output / f"seed_{seed}", stop, args)
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


def _init_ray(num_cpus: int) -> bool:
    """Starts Ray unless it already runs; returns whether this call started (or joined) it.

    Under ``ray job submit`` (RAY_ADDRESS set) ``ray.init()`` joins that cluster; a local
    instance gets ``num_cpus`` and no dashboard.
    """
    import ray

    if ray.is_initialized():
        return False
    if os.environ.get("RAY_ADDRESS"):
        ray.init()
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False)
    return True


def _reset_iteration_timers(algo: Any) -> None:
    """Makes the result's sampling and learner timers this iteration's, not a running EMA.

    ``Algorithm.metrics.log_time`` reduces with an EMA (coefficient 0.01) over the whole run,
    so after the first iteration ``result["timers"]`` barely moves; a fresh stats object per
    iteration holds exactly this iteration's time.
    """
    from ray.rllib.utils.metrics import ENV_RUNNER_SAMPLING_TIMER, LEARNER_UPDATE_TIMER, TIMERS

    for timer in (ENV_RUNNER_SAMPLING_TIMER, LEARNER_UPDATE_TIMER):
        algo.metrics.delete(TIMERS, timer, key_error=False)


def _train_seed(
    config: Any, seed: int, run_dir: Path, stop: StopCriteria, args: argparse.Namespace
) -> tuple[Path, bool]:
    """Trains one seed; returns (its metrics.csv, whether Ctrl-C interrupted it)."""
    from rllib_hatrpo.run_io import MetricsCsv, flatten_result, save_checkpoint_atomically

    algo = config.copy(copy_frozen=False).debugging(seed=seed).build_algo()
    agents = sorted(algo.config.policies)
    csv_path, checkpoint = run_dir / "metrics.csv", run_dir / "checkpoint"
    rows: list[dict[str, float]] = []
    interrupted, failed = False, True
    print(f"seed {seed}: {run_dir}", flush=True)
    try:
        with MetricsCsv(csv_path, agents) as csv:
            start = time.monotonic()
            while True:
                _reset_iteration_timers(algo)
                row = flatten_result(algo.train(), agents)
                csv.append(row)
                rows.append(row)
                print(progress_line(row, agents, seed), flush=True)
                reason = stop.reason(row, time.monotonic() - start)
                if reason:
                    print(f"seed {seed}: stopped at {reason}", flush=True)
                    break
                if args.checkpoint_every and algo.iteration % args.checkpoint_every == 0:
                    save_checkpoint_atomically(algo, checkpoint)
        failed = False
    except KeyboardInterrupt:
        interrupted, failed = True, False
    finally:
        if rows and not failed:
            save_checkpoint_atomically(algo, checkpoint)
        algo.stop()
        if rows:
            _plot_seed(csv_path, run_dir, f"seed {seed}")
    print(f"seed {seed}: {_seed_result(rows)}; wrote {run_dir}/", flush=True)
    return csv_path, interrupted


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
    from rllib_hatrpo.plotting import plot_allocation, plot_learning_curve

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
    from rllib_hatrpo.plotting import plot_learning_curve

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


# --------------------------------------------------------------------------- evaluate


@dataclasses.dataclass
class CheckpointPolicies:
    """The actors of a HATRPO checkpoint and what is needed to run them in its env."""

    path: Path
    config: dict[str, Any]  # the algorithm config's state (AlgorithmConfig.get_state())
    modules: dict[str, Any]  # module ID -> RLModule (the learner's copy)

    def module_for(self, agent: str) -> Any:
        """The module that acts for ``agent`` (the config's policy mapping)."""
        mapping = self.config.get("policy_mapping_fn")
        mid = mapping(agent, None) if callable(mapping) else agent
        return self.modules[mid]


def _checkpoint_dir(path: Path) -> Path:
    """``path`` itself, or ``path/checkpoint`` if given a seed's run directory."""
    path = path.expanduser()
    if (
        not (path / "rllib_checkpoint.json").is_file()
        and (path / "checkpoint" / "rllib_checkpoint.json").is_file()
    ):
        return path / "checkpoint"
    return path


def load_checkpoint_policies(path: str | os.PathLike) -> CheckpointPolicies:
    """Loads the config and the actor modules of a HATRPO checkpoint, without Ray running.

    Reads ``class_and_ctor_args.pkl`` (the algorithm's config) and each actor from
    ``learner_group/learner/rl_module/<module_id>`` with ``RLModule.from_checkpoint``; the
    critic, the learner and the EnvRunners are not built.

    Raises:
        UsageError: ``path`` is not a HATRPO checkpoint or cannot be read (names the path).
    """
    path = _checkpoint_dir(Path(path))
    where = f"{path} (resolved: {path.resolve()})" if not path.is_absolute() else str(path)
    if not path.is_dir():
        raise UsageError("CHECKPOINT", f"no checkpoint directory at {where}")
    meta_file = path / "rllib_checkpoint.json"
    if not meta_file.is_file():
        raise UsageError(
            "CHECKPOINT", f"{where} is not an RLlib checkpoint (no rllib_checkpoint.json)"
        )
    try:
        meta = json.loads(meta_file.read_text())
        with (path / meta["class_and_ctor_args_file"]).open("rb") as f:
            ctor = pickle.load(f)
        config = ctor["ctor_args_and_kwargs"][0][0]
        algo_class = ctor["class"]
    except Exception as err:  # any unreadable file: report it, never train from scratch
        raise UsageError(
            "CHECKPOINT", f"cannot read the checkpoint at {where}: {type(err).__name__}: {err}"
        ) from err
    from rllib_hatrpo.hatrpo import HATRPO

    if not (isinstance(algo_class, type) and issubclass(algo_class, HATRPO)):
        raise UsageError("CHECKPOINT", f"{where} holds a {algo_class!r}, not a HATRPO checkpoint")
    if not isinstance(config, dict) or not config.get("policies"):
        raise UsageError("CHECKPOINT", f"{where}: its config names no policies")
    if config.get("_env_to_module_connector") or config.get("_module_to_env_connector"):
        # Their observation/action transforms are not rebuilt here: refuse rather than run
        # the actors on inputs they were not trained on.
        raise UsageError(
            "CHECKPOINT",
            f"{where} was trained with custom env-to-module or module-to-env connectors, which "
            "`hatrpo evaluate` does not rebuild; restore it with HATRPO.from_checkpoint(...)",
        )
    from ray.rllib.core.rl_module.rl_module import RLModule

    module_root = path / "learner_group" / "learner" / "rl_module"
    modules = {}
    for mid in sorted(config["policies"]):
        try:
            modules[mid] = RLModule.from_checkpoint(module_root / mid)
        except Exception as err:  # missing or corrupted module files
            raise UsageError(
                "CHECKPOINT",
                f"cannot load module {mid!r} from {module_root / mid}: {type(err).__name__}: {err}",
            ) from err
        modules[mid].eval()
    return CheckpointPolicies(path=path, config=config, modules=modules)


def make_env(config: dict[str, Any], render: bool = False) -> Any:
    """Creates the checkpoint's env (with ``render_mode="rgb_array"`` if ``render``)."""
    from ray.rllib.env.env_context import EnvContext

    env_desc, env_config = config.get("env"), dict(config.get("env_config") or {})
    if render:
        env_config["render_mode"] = "rgb_array"
    if isinstance(env_desc, str):
        env_desc = _env_creator(env_desc)
    if not callable(env_desc):
        raise UsageError("CHECKPOINT", f"its config has no env to build (env={env_desc!r})")
    try:
        return env_desc(EnvContext(env_config, worker_index=0))
    except (ValueError, TypeError) as err:
        if render:
            raise UsageError("--render", f"the env cannot render to RGB frames: {err}") from err
        raise


def _env_creator(name: str) -> Callable[..., Any]:
    """A built-in env name, a ``package.module:Factory`` path or a name registered with Tune."""
    from rllib_hatrpo.envs import ENV_CLASSES

    if name in ENV_CLASSES:
        return ENV_CLASSES[name]
    if ":" in name:
        return _import_object(name, "CHECKPOINT")
    from ray.tune.registry import ENV_CREATOR, _global_registry

    if not _global_registry.contains(ENV_CREATOR, name):
        raise UsageError(
            "CHECKPOINT",
            f"its env {name!r} is a name registered with ray.tune.register_env in the training "
            "process; `hatrpo evaluate` cannot rebuild it",
        )
    return _global_registry.get(ENV_CREATOR, name)


def _act(module: Any, obs: Any, explore: bool) -> np.ndarray:
    import torch
    from ray.rllib.core.columns import Columns

    batch = {Columns.OBS: torch.as_tensor(np.asarray(obs, dtype=np.float32)[None])}
    with torch.no_grad():
        if explore:
            out = module.forward_exploration(batch)
            dist = module.get_exploration_action_dist_cls().from_logits(
                out[Columns.ACTION_DIST_INPUTS]
            )
        else:
            out = module.forward_inference(batch)
            dist = (
                module.get_inference_action_dist_cls()
                .from_logits(out[Columns.ACTION_DIST_INPUTS])
                .to_deterministic()
            )
        return dist.sample()[0].numpy()


def _to_env_action(action: np.ndarray, space: Any, config: dict[str, Any]) -> Any:
    """As RLlib's NormalizeAndClipActions connector: unsquash, or clip, Box actions."""
    from ray.rllib.utils.spaces.space_utils import clip_action, unsquash_action

    if config.get("normalize_actions", True):
        return unsquash_action(action, space)
    if config.get("clip_actions", False):
        return clip_action(action, space)
    return action


def run_episodes(
    policies: CheckpointPolicies,
    env: Any,
    episodes: int,
    seed: int | None = 0,
    explore: bool = False,
    frames: list[np.ndarray] | None = None,
    max_frames: int = 0,
) -> list[float]:
    """Runs ``episodes`` episodes; returns each one's team return.

    The team return sums the team reward, which every agent receives (the package's env
    contract); the first agent's reward is taken. If ``frames`` is a list, the first episode's
    ``env.render()`` frames are appended to it (at most ``max_frames``).
    """
    import torch

    if seed is not None:
        torch.manual_seed(seed)
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=None if seed is None else seed + episode)
        record = frames is not None and episode == 0
        if record:
            _record(env, frames, max_frames)
        total, done = 0.0, False
        while not done:
            actions = {}
            for agent, agent_obs in obs.items():
                module = policies.module_for(agent)
                action = _act(module, agent_obs, explore)
                actions[agent] = _to_env_action(action, module.action_space, policies.config)
            obs, rewards, terminateds, truncateds, _ = env.step(actions)
            total += float(next(iter(rewards.values()), 0.0))
            done = bool(terminateds.get("__all__") or truncateds.get("__all__"))
            if record:
                _record(env, frames, max_frames)
        returns.append(total)
    return returns


def _record(env: Any, frames: list[np.ndarray], max_frames: int) -> None:
    if len(frames) >= max_frames:
        return
    frame = env.render()
    if not (isinstance(frame, np.ndarray) and frame.ndim == 3):
        raise UsageError(
            "--render",
            f"{type(env).__name__}.render() returned {type(frame).__name__}, not an RGB frame",
        )
    frames.append(frame)


def _render_fps(env: Any, default: float = 30.0) -> float:
    """The env's ``metadata["render_fps"]``, looked up through wrapper layers."""
    seen, todo = set(), [env]
    while todo:
        obj = todo.pop(0)
        if obj is None or id(obj) in seen:
            continue
        seen.add(id(obj))
        fps = (getattr(obj, "metadata", None) or {}).get("render_fps")
        if fps:
            return float(fps)
        todo += [getattr(obj, name, None) for name in ("env", "single_agent_env", "unwrapped")]
    return default


def _check_video_path(path: Path) -> None:
    suffix = path.suffix.lower()
    if suffix not in (".gif", ".mp4"):
        raise UsageError("--render", f"the file must end in .gif or .mp4, got {path}")
    if suffix == ".mp4" and not any(_importable(m) for m in ("imageio_ffmpeg", "av")):
        raise UsageError(
            "--render",
            "writing MP4 needs imageio with an FFmpeg backend (pip install imageio-ffmpeg) or "
            "PyAV (pip install av); or give a .gif path",
        )
    if suffix == ".mp4" and not _importable("imageio"):
        raise UsageError("--render", "writing MP4 needs imageio (pip install imageio)")


def _importable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def write_video(frames: Sequence[np.ndarray], path: Path, fps: float) -> None:
    """Writes RGB frames as a GIF (imageio, else matplotlib's PillowWriter) or an MP4."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".mp4":
        import imageio.v3 as iio

        iio.imwrite(path, np.stack(frames), fps=fps)
        return
    if _importable("imageio"):
        import imageio.v3 as iio

        iio.imwrite(path, np.stack(frames), duration=1000.0 / fps, loop=0)  # ms per frame
        return
    from matplotlib.animation import PillowWriter
    from matplotlib.figure import Figure

    height, width = frames[0].shape[:2]
    fig = Figure(figsize=(width / 100, height / 100), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    image = ax.imshow(frames[0])
    writer = PillowWriter(fps=fps)
    with writer.saving(fig, str(path), dpi=100):
        for frame in frames:
            image.set_data(frame)
            writer.grab_frame()


def _evaluate(args: argparse.Namespace) -> int:
    if args.render is not None:
        _check_video_path(args.render)
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
        write_video(frames, args.render, _render_fps(env))
        print(f"wrote {args.render} ({len(frames)} frames of episode 1)")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
