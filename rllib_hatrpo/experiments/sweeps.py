"""``hatrpo tune``: a Ray Tune sweep over allocator × KL budget × seed, resumable.

Every trial is :func:`rllib_hatrpo.experiments.tune.train_trial` (the function trainable shared with
the tuned examples and the benchmarks) on the config that :class:`SweepTrialBuilder` makes
from the trial's parameters ``method`` (the allocator), ``seed`` and ``kl_threshold`` (or
``total_kl_budget``), on top of the env and model flags shared with ``hatrpo train``
(:func:`rllib_hatrpo.cli.main.build_config`).

Search: a grid over ``--allocators`` × ``--kl-values`` × ``--seeds`` (Tune's ``grid_search``), or
with ``--num-samples N``, N KL values per allocator and seed drawn log-uniformly from
``--kl-range``. ``--scheduler asha`` stops trials whose team return lags (``ASHAScheduler`` on
``team_return``, over ``env_steps`` or ``training_iteration``).

Output folder (``--output``): ``tune/`` (Tune's experiment: one folder per trial with
``params.json``, ``progress.csv`` and its last checkpoint), ``sweep.json`` (the sweep's flags),
``curves.csv`` (every trial's iterations; columns ``method``, ``seed``, the KL parameter,
``training_iteration``, ``env_steps``, ``team_return``, ``trial``, then every other metric; the
layout ``benchmarks/compare.py``'s ``plot_task`` reads) and ``summary.csv`` (one row per
trial: final and best team return). Rerunning the same command restores the experiment with
``Tuner.restore``: finished trials are kept, unfinished and errored ones continue from their
last checkpoints.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rllib_hatrpo.cli.common import EXIT_ERROR, EXIT_OK, UsageError

#: Name of the Tune experiment folder inside the output folder.
EXPERIMENT = "tune"
#: File of the output folder recording the flags that define the sweep.
SWEEP_FILE = "sweep.json"
#: Default KL grid when sweeping ``kl_threshold`` (HATRPOConfig's default δ).
DEFAULT_KL_THRESHOLDS = (0.01,)
#: The flags a sweep's model config is built from (those of ``cli.build_config``).
_MODEL_FLAGS = (
    "train_batch_size",
    "hidden_sizes",
    "num_env_runners",
    "num_envs_per_env_runner",
    "restart_failed_env_runners",
    "max_env_runner_restarts",
)
#: Flags that do not change what a sweep trains (not compared on a rerun).
_OPERATIONAL = ("num_cpus", "max_concurrent_trials", "max_failures", "output")
_NOT_FLAGS = ("run", "parser", "argv")
_ASHA_FLAGS = ("asha_time_attr", "grace_period", "max_t")


@dataclasses.dataclass(frozen=True)
class SweepTrialBuilder:
    """A trial's parameters -> its ``HATRPOConfig``; picklable, so Tune ships it to trials.

    Attributes:
        env: The env class or registered env name (``cli.resolve_env``).
        env_config: The env's config.
        flags: The model and EnvRunner flags of ``cli.build_config`` (:data:`_MODEL_FLAGS`).
        allocator_configs: Allocator name -> its options (``--allocator-configs``).
        kl_param: ``"kl_threshold"`` or ``"total_kl_budget"``: the parameter swept.
    """

    env: Any
    env_config: Mapping[str, Any]
    flags: Mapping[str, Any]
    allocator_configs: Mapping[str, Mapping[str, Any]]
    kl_param: str = "kl_threshold"

    def __call__(self, params: Mapping[str, Any]) -> Any:
        """The config of one trial: ``params`` holds ``method``, ``seed`` and the KL value."""
        from rllib_hatrpo.cli.main import allocator_from_name, build_config

        method = str(params.get("method", "uniform"))
        allocator, _ = allocator_from_name(method, "--allocators")
        args = argparse.Namespace(
            **self.flags,
            allocator_config=dict(self.allocator_configs.get(method, {})),
            kl_threshold=None,
            total_kl_budget=None,
        )
        if params.get(self.kl_param) is not None:
            setattr(args, self.kl_param, float(params[self.kl_param]))
        config = build_config(args, self.env, dict(self.env_config), allocator)
        return config.debugging(seed=int(params.get("seed", 0)))


def builder_from_args(
    args: argparse.Namespace, env: Any, env_config: Mapping[str, Any]
) -> SweepTrialBuilder:
    """Checks the sweep flags and returns the trials' config builder.

    Raises:
        UsageError: Unknown or repeated allocators, options for an allocator not swept or
            rejected by it, both or neither of a grid and random search where one is needed,
            an empty KL range, repeated seeds, or ASHA flags without ``--scheduler asha``.
    """
    from rllib_hatrpo.cli.main import allocator_from_name
    from rllib_hatrpo.core.allocation import make_allocator

    if len(set(args.allocators)) != len(args.allocators):
        raise UsageError("--allocators", f"allocators repeat: {args.allocators}")
    if len(set(args.seeds)) != len(args.seeds):
        raise UsageError("--seeds", f"seeds repeat: {args.seeds}")
    unknown = sorted(set(args.allocator_configs) - set(args.allocators))
    if unknown:
        raise UsageError(
            "--allocator-configs",
            f"options for {unknown}, which --allocators does not sweep ({args.allocators}); "
            "key the JSON object by allocator name",
        )
    for name in args.allocators:
        allocator, _ = allocator_from_name(name, "--allocators")
        options = args.allocator_configs.get(name, {})
        if not isinstance(options, dict):
            raise UsageError(
                "--allocator-configs", f"{name}: expected a JSON object, got {options}"
            )
        try:
            make_allocator(allocator, options)
        except (TypeError, ValueError) as err:
            raise UsageError("--allocator-configs", f"{name}: {err}") from err
    _check_kl_flags(args)
    _check_scheduler_flags(args)
    return SweepTrialBuilder(
        env=env,
        env_config=dict(env_config),
        flags={name: getattr(args, name) for name in _MODEL_FLAGS},
        allocator_configs={k: dict(v) for k, v in args.allocator_configs.items()},
        kl_param=args.kl_param,
    )


def _check_kl_flags(args: argparse.Namespace) -> None:
    if args.num_samples is not None and args.kl_values is not None:
        raise UsageError(
            "--num-samples",
            "give --kl-values (a grid) or --num-samples (random search over --kl-range), not both",
        )
    low, high = args.kl_range
    if not low < high:
        raise UsageError("--kl-range", f"LOW must be < HIGH, got {low} {high}")
    if args.num_samples is None and args.kl_values is None and args.kl_param != "kl_threshold":
        raise UsageError(
            "--kl-values",
            f"sweeping {args.kl_param} needs its values (--kl-values X [X ...]) or random "
            "search (--num-samples N --kl-range LOW HIGH)",
        )


def _check_scheduler_flags(args: argparse.Namespace) -> None:
    given = [name for name in _ASHA_FLAGS if getattr(args, name) is not None]
    if args.scheduler != "asha" and given:
        flag = "--" + given[0].replace("_", "-")
        raise UsageError(flag, "is an ASHA setting: add --scheduler asha")
    if args.scheduler == "asha":
        time_attr, max_t, grace_period = asha_settings(args, batch_size=1)
        if args.max_t is not None and args.grace_period is not None and grace_period > max_t:
            raise UsageError("--grace-period", f"must be <= --max-t ({grace_period} > {max_t})")
        if max_t is None:
            raise UsageError(
                "--max-t",
                f"ASHA over {time_attr} needs its maximum: give --max-t or "
                f"{'--stop-timesteps' if time_attr == 'env_steps' else '--stop-iters'}",
            )


def budget(args: argparse.Namespace) -> tuple[int | None, int | None]:
    """(iterations, env steps) per trial; --stop-iters 20 if neither flag is given."""
    if args.stop_iters is None and args.stop_timesteps is None:
        from rllib_hatrpo.cli.main import DEFAULT_STOP_ITERS

        return DEFAULT_STOP_ITERS, None
    return args.stop_iters, args.stop_timesteps


def asha_settings(args: argparse.Namespace, batch_size: int) -> tuple[str, int | None, int]:
    """(time_attr, max_t, grace_period) of ASHA: the flags, or defaults from the budget.

    The time axis defaults to env steps when the budget is in env steps; ``max_t`` to the
    budget on that axis; the grace period to one iteration (``batch_size`` env steps).
    """
    iterations, env_steps = budget(args)
    time_attr = args.asha_time_attr or ("env_steps" if env_steps else "training_iteration")
    default_max = env_steps if time_attr == "env_steps" else iterations
    max_t = args.max_t or default_max
    grace_period = args.grace_period or (batch_size if time_attr == "env_steps" else 1)
    if max_t is not None:
        grace_period = min(grace_period, max_t)
    return time_attr, max_t, grace_period


def example_configs(args: argparse.Namespace, builder: SweepTrialBuilder) -> list[Any]:
    """One config per allocator (first seed and KL value), to validate before Ray starts."""
    kl_value = (args.kl_values or [None])[0] if args.num_samples is None else args.kl_range[0]
    if kl_value is None and args.kl_param == "kl_threshold":
        kl_value = DEFAULT_KL_THRESHOLDS[0]
    return [
        builder({"method": name, "seed": args.seeds[0], args.kl_param: kl_value})
        for name in args.allocators
    ]


def param_space(args: argparse.Namespace) -> dict[str, Any]:
    """Tune's ``param_space``: grids over method and seed; a grid or log-uniform KL."""
    from ray import tune

    space: dict[str, Any] = {
        "method": tune.grid_search(list(args.allocators)),
        "seed": tune.grid_search(list(args.seeds)),
    }
    if args.num_samples is not None:
        space[args.kl_param] = tune.loguniform(*args.kl_range)
    else:
        space[args.kl_param] = tune.grid_search(list(args.kl_values or DEFAULT_KL_THRESHOLDS))
    return space


def _sweep_record(args: argparse.Namespace) -> dict[str, Any]:
    flags = {
        key: value
        for key, value in vars(args).items()
        if key not in _NOT_FLAGS and key not in _OPERATIONAL
    }
    return json.loads(json.dumps(flags, default=str))


def check_same_sweep(output: Path, args: argparse.Namespace) -> None:
    """Records the sweep's flags in ``OUTPUT/sweep.json``; refuses a different sweep there.

    Raises:
        UsageError: ``output`` holds a sweep started with other flags (``--output``).
    """
    path = output / SWEEP_FILE
    record = _sweep_record(args)
    if path.is_file():
        saved = json.loads(path.read_text())
        changed = sorted(k for k in set(saved) | set(record) if saved.get(k) != record.get(k))
        if changed:
            shown = "; ".join(
                f"--{k.replace('_', '-')}: {saved.get(k)} then, {record.get(k)} now"
                for k in changed
            )
            raise UsageError(
                "--output",
                f"{output} holds a sweep started with other flags ({shown}). Rerun that sweep "
                "with its flags to resume it, or choose another --output.",
            )
        return
    output.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def _trial_dirname(trial: Any) -> str:
    """A short, readable trial folder: ``<method>_<kl param>=<value>_seed<s>_<trial id>``."""
    config = trial.config
    kl = next(
        (f"{k}={config[k]:.4g}" for k in ("kl_threshold", "total_kl_budget") if k in config), ""
    )
    name = f"{config.get('method')}_{kl}_seed{config.get('seed')}_{trial.trial_id}"
    return re.sub(r"[^A-Za-z0-9_.=-]", "_", name)


def _scheduler(args: argparse.Namespace, batch_size: int) -> Any:
    if args.scheduler != "asha":
        return None
    from ray.tune.schedulers import ASHAScheduler

    time_attr, max_t, grace_period = asha_settings(args, batch_size)
    return ASHAScheduler(
        time_attr=time_attr,
        max_t=max_t,
        grace_period=grace_period,
        reduction_factor=args.reduction_factor,
    )


def run_sweep(
    args: argparse.Namespace, builder: SweepTrialBuilder, output: Path, label: str
) -> int:
    """Runs (or resumes) the sweep in ``output``, writes the CSVs, prints the table.

    Ray must be running. Returns the exit code: 1 if a trial errored (rerun to resume it).
    """
    from ray import tune

    from rllib_hatrpo.experiments.tune import TEAM_RETURN, make_trainable, restore_or_create_tuner

    iterations, env_steps = budget(args)
    first = {"method": args.allocators[0], "seed": args.seeds[0]}
    trainable = make_trainable(
        builder,
        env_steps=env_steps,
        iterations=iterations,
        checkpoint_every=args.checkpoint_every,
        resources_params=first,
    )
    storage = str(output.absolute())
    path = os.path.join(storage, EXPERIMENT)
    if not tune.Tuner.can_restore(path):
        print(f"sweep on {label}: {_describe(args)}; writing to {output}", flush=True)
    tuner = restore_or_create_tuner(
        storage,
        EXPERIMENT,
        trainable,
        max_failures=args.max_failures,
        label="the sweep",
        param_space=param_space(args),
        tune_config=tune.TuneConfig(
            metric=TEAM_RETURN,
            mode="max",
            num_samples=args.num_samples or 1,
            max_concurrent_trials=args.max_concurrent_trials,
            scheduler=_scheduler(args, builder(first).train_batch_size_per_learner),
            trial_dirname_creator=_trial_dirname,
        ),
    )
    results = tuner.fit()
    summary = write_results(Path(path), output, args.kl_param)
    print_table(summary, args.kl_param, output)
    if results.errors:
        print(
            f"{len(results.errors)} trial(s) errored; rerun the same command to resume them",
            flush=True,
        )
        return EXIT_ERROR
    return EXIT_OK


def _describe(args: argparse.Namespace) -> str:
    iterations, env_steps = budget(args)
    if args.num_samples is not None:
        kl = f"{args.num_samples} log-uniform {args.kl_param} in {args.kl_range}"
    else:
        kl = f"{args.kl_param} {list(args.kl_values or DEFAULT_KL_THRESHOLDS)}"
    stop = " or ".join(
        f"{value} {name}"
        for name, value in (("iterations", iterations), ("env steps", env_steps))
        if value
    )
    return (
        f"allocators {args.allocators} × {kl} × seeds {args.seeds}, {stop} per trial, "
        f"scheduler {args.scheduler}"
    )


def write_results(experiment: Path, output: Path, kl_param: str) -> Any:
    """Writes ``curves.csv`` and ``summary.csv`` from the Tune experiment; returns the summary.

    A trial that Tune restored from a checkpoint reports the iterations after that checkpoint
    again; ``curves.csv`` keeps the last report of each (trial, iteration).
    """
    import pandas as pd

    from rllib_hatrpo.experiments.tune import TEAM_RETURN, final_return, read_trials

    curves = read_trials(experiment)
    if curves.empty:
        return pd.DataFrame()
    curves = curves.drop_duplicates(subset=["trial", "training_iteration"], keep="last")
    curves["training_iteration"] = curves["training_iteration"].astype(int)
    if TEAM_RETURN not in curves:
        curves[TEAM_RETURN] = math.nan  # no episode finished in any trial yet
    first = ["method", "seed", kl_param, "training_iteration", "env_steps", TEAM_RETURN, "trial"]
    first = [c for c in first if c in curves]
    curves = curves[first + [c for c in curves.columns if c not in first]]
    curves = curves.sort_values(["trial", "training_iteration"])
    curves.to_csv(output / "curves.csv", index=False)
    rows = []
    for trial, curve in curves.groupby("trial", sort=False):
        last = curve.iloc[-1]
        rows.append(
            {
                "method": last["method"],
                "seed": int(last["seed"]),
                kl_param: float(last[kl_param]) if kl_param in curve else math.nan,
                "iterations": int(last["training_iteration"]),
                "env_steps": float(last["env_steps"]),
                "final_team_return": final_return(curve),
                "best_team_return": float(curve[TEAM_RETURN].max()),
                "trial": trial,
            }
        )
    summary = pd.DataFrame(rows).sort_values(
        "final_team_return", ascending=False, na_position="last"
    )
    summary.to_csv(output / "summary.csv", index=False)
    return summary


def print_table(summary: Any, kl_param: str, output: Path) -> None:
    """Prints each trial's final team return, the best trial and, over seeds, each setting's."""
    if summary.empty:
        print(f"no trial reported a result yet ({output / EXPERIMENT})", flush=True)
        return
    shown = summary.drop(columns="trial")
    print(
        "\nfinal team return per trial (mean of the last 10 % of iterations):\n"
        + shown.to_string(index=False, float_format=lambda x: f"{x:.4g}"),
        flush=True,
    )
    best = summary.iloc[0]
    print(
        f"best trial: method {best['method']}, {kl_param} {best[kl_param]:.4g}, seed "
        f"{best['seed']}: final team return {best['final_team_return']:.3f} ({best['trial']})",
        flush=True,
    )
    if summary["seed"].nunique() > 1:
        by_setting = (
            summary.groupby(["method", kl_param])["final_team_return"]
            .agg(["mean", "std", "count"])
            .sort_values("mean", ascending=False)
        )
        print("over seeds:\n" + by_setting.to_string(float_format=lambda x: f"{x:.4g}"), flush=True)
    print(f"wrote {output / 'curves.csv'} and {output / 'summary.csv'}", flush=True)
