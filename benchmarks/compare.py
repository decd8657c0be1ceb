"""Comparison of HATRPO (uniform), HATRPO-W (kkt), HATRPO-G (greedy) and RLlib's PPO.

How to run
----------
From the repository root::

    python benchmarks/compare.py --tasks halfcheetah_2x3 simple_spread --seeds 0 1 2
    python benchmarks/compare.py --tasks simple_spread --env-steps 50000 --seeds 0 1
    python benchmarks/compare.py --report-only                 # tables and plots only
    python benchmarks/compare.py --tasks simple_spread --methods kkt kkt_carry greedy \
        --out results/compare_spend                            # equal-spend comparison

Each task is a tuned example (``tuned_examples/*/<task>.py``, its ``TASK``): every method
trains that task's env, env config, sampler settings (``num_envs_per_env_runner`` envs in the
trial's own process, ``rollout_fragment_length="auto"``), batch size, γ, λ, network sizes and
seeds, to the same env-step budget (the task's ``env_steps`` unless ``--env-steps``). PPO is
RLlib's built-in PPO with one module per agent (``TunedTask.ppo_config``). One Ray Tune
experiment per task holds every (method, seed) trial, ``--max-concurrent-trials`` at once.

Equal budget is not equal spend: every HATRPO method gets the same δ_total, but greedy hands
the budget an agent did not use to the agents after it, so it spends more KL per iteration
than uniform or kkt. ``kkt_carry`` (kkt with ``carry_over=True``, not in the default
``--methods``) hands unused budget on as well; comparing greedy with it tells a gain of
greedy's choices apart from a gain of its bigger steps. The table reports each method's spend.

Resuming: trials checkpoint every ``--checkpoint-every`` iterations; rerunning the same command
restores the task's Tune experiment and continues unfinished or errored trials from their last
checkpoints (finished ones are kept). ``campaign.json`` records each task's methods, seeds and
budget, and a rerun with different ones stops with an error rather than mixing campaigns.

Outputs in ``--out`` (default ``results/compare/``): ``tune/<task>/`` (Tune's folders),
``curves.csv`` (every trial's per-iteration rows: task, method, seed, env_steps,
team_return, kl_total, total_kl_budget, ...), ``curves_<task>.png`` (team return against env
steps, mean ± std over seeds per method), ``kl_total_<task>.png`` (Σ achieved KL per
iteration against env steps per HATRPO method, with δ_total dashed), ``summary.csv`` and
``summary.md`` (the table, printed last).

Table columns, per task and method (n seeds):

- final team return: each run's mean over its last 10 % of iterations
  (``rllib_hatrpo.experiments.summaries.final_return``); mean ± std over seeds (population
  std);
- steps to 99 %: the first env-step count at which the method's seed-mean curve reaches
  99 % of the best method's final mean (R* − 0.01·|R*|); "—" if never;
- gain vs uniform: (R_method − R_uniform) / |R_uniform| of the seed means, as the joint-budget
  paper computes it; its mean over tasks is the last table;
- seed variance: the variance over seeds of the final return;
- Σ KL / iteration: ``kl_total`` (Σ_i achieved KL_i) averaged over each run's iterations,
  mean ± std over seeds, and as a percentage of δ_total (``total_kl_budget``); "—" for PPO.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rllib_hatrpo.core.allocation import ALLOCATOR_NAMES
from rllib_hatrpo.experiments.records import ENV_STEPS, TEAM_RETURN, TRAINING_ITERATION
from rllib_hatrpo.experiments.summaries import final_return, markdown_table
from rllib_hatrpo.experiments.tune import METHOD, SEED
from rllib_hatrpo.experiments.tuned import PPO
from rllib_hatrpo.metrics import KL_TOTAL, TOTAL_KL_BUDGET

ROOT = Path(__file__).resolve().parents[1]
TUNED_EXAMPLES = ROOT / "tuned_examples"
#: Methods that are an allocator with options: method -> (kl_allocator, kl_allocator_config).
VARIANTS = {"kkt_carry": ("kkt", {"carry_over": True})}


def _methods() -> tuple[str, ...]:
    methods = []
    for name in ALLOCATOR_NAMES:
        methods += [name, *(v for v, (allocator, _) in VARIANTS.items() if allocator == name)]
    return (*methods, PPO)


#: Every method, each variant after its allocator (the order of tables and plot colours).
METHODS = _methods()
#: What ``--methods`` trains by default (a variant such as ``kkt_carry`` is asked for by name).
DEFAULT_METHODS = (*ALLOCATOR_NAMES, PPO)
#: How tables and plots name a method (another method is shown by its name).
LABELS = {
    "uniform": "HATRPO (uniform)",
    "kkt": "HATRPO-W (kkt)",
    "kkt_carry": "HATRPO-W + carry-over (kkt_carry)",
    "greedy": "HATRPO-G (greedy)",
    PPO: "RLlib PPO",
}
#: The file of ``--out`` recording each task's methods, seeds and budget.
CAMPAIGN_FILE = "campaign.json"


def label(method: str) -> str:
    """How tables and plots name ``method``."""
    return LABELS.get(method, method)


def load_tasks() -> dict[str, Any]:
    """Every tuned example's ``TASK``, keyed by its name."""
    tasks = {}
    for path in sorted(TUNED_EXAMPLES.glob("*/*.py")):
        spec = importlib.util.spec_from_file_location(f"tuned_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        task = getattr(module, "TASK", None)
        if task is not None:
            tasks[task.name] = task
    return tasks


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def check_campaign(out: Path, task: str, plan: dict[str, Any]) -> None:
    """Records ``plan`` for ``task`` in ``campaign.json``; refuses a different plan."""
    from rllib_hatrpo.experiments.plans import PlanMismatchError, check_same_plan

    try:
        check_same_plan(
            out / CAMPAIGN_FILE,
            plan,
            section=task,
            what=f"task {task}",
            hint="Rerun with the same --methods/--seeds/--env-steps, or choose another --out.",
        )
    except PlanMismatchError as err:
        raise SystemExit(
            f"--out {out}: {err.render(lambda key: '--' + key.replace('_', '-'))}"
        ) from err


def train_task(task: Any, args: argparse.Namespace) -> None:
    """Trains (or resumes) every (method, seed) trial of ``task`` in one Tune experiment."""
    from ray import tune

    from rllib_hatrpo.experiments.tune import make_trainable, restore_or_create_tuner

    env_steps = args.env_steps or task.env_steps
    plan = {"methods": list(args.methods), "seeds": list(args.seeds), "env_steps": env_steps}
    check_campaign(args.out, task.name, plan)
    trainable = make_trainable(
        functools.partial(trial_config, task),
        env_steps=env_steps,
        checkpoint_every=args.checkpoint_every,
    )
    storage = str((args.out / "tune").absolute())
    tuner = restore_or_create_tuner(
        storage,
        task.name,
        trainable,
        max_failures=2,
        log=lambda line: print(line, flush=True),
        param_space={
            METHOD: tune.grid_search(list(args.methods)),
            SEED: tune.grid_search(list(args.seeds)),
        },
        tune_config=tune.TuneConfig(
            metric=TEAM_RETURN, mode="max", max_concurrent_trials=args.max_concurrent_trials
        ),
    )
    results = tuner.fit()
    if results.errors:
        print(f"{task.name}: {len(results.errors)} trial(s) errored; rerun to resume them.")
    short = unfinished(results, env_steps)
    if short:
        raise SystemExit(
            f"{task.name}: {short} trial(s) stopped short of {env_steps:,} env steps (the "
            "experiment was interrupted); rerun the same command to continue it."
        )


def unfinished(results: Any, env_steps: int) -> int:
    """How many trials of a ``ResultGrid`` neither errored nor reached ``env_steps``.

    Tune's ``fit`` returns normally when it is interrupted (SIGINT, SIGTERM); its unfinished
    trials are told apart by their last reported env-step count.
    """
    return sum(
        1
        for result in results
        if result.error is None and (result.metrics or {}).get(ENV_STEPS, 0) < env_steps
    )


def trial_config(task: Any, params: dict[str, Any]) -> Any:
    """The trial's config: ``task.build_trial_config`` with a ``VARIANTS`` method resolved."""
    params = dict(params)
    allocator, options = VARIANTS.get(params.get(METHOD, ALLOCATOR_NAMES[0]), (None, None))
    if allocator is None:
        return task.build_trial_config(params)
    config = task.build_trial_config({**params, METHOD: allocator})
    return config.training(kl_allocator_config={**config.kl_allocator_config, **options})


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def collect_curves(out: Path, tasks: list[str]) -> pd.DataFrame:
    """Every trial's rows of the tasks' Tune experiments under ``out/tune``, task first."""
    from rllib_hatrpo.experiments.tune import read_trials

    frames = []
    for task in tasks:
        frame = read_trials(out / "tune" / task)
        if not frame.empty:
            frame.insert(0, "task", task)
            frames.append(frame)
    if not frames:
        return pd.DataFrame()
    curves = pd.concat(frames, ignore_index=True)
    first = ["task", METHOD, SEED, TRAINING_ITERATION, ENV_STEPS, TEAM_RETURN]
    return curves[first + [c for c in curves.columns if c not in first]]


def mean_curve(runs: pd.DataFrame) -> pd.Series:
    """The seed-mean team return per env-step count (only counts every seed reached)."""
    table = runs.pivot_table(index=ENV_STEPS, columns=SEED, values=TEAM_RETURN)
    return table.dropna().mean(axis=1)


def kl_spend(run: pd.DataFrame) -> tuple[float, float]:
    """A run's mean Σ achieved KL per iteration and its mean fraction of δ_total.

    NaN for a run without ``kl_total`` (PPO) or without ``total_kl_budget``.
    """
    if KL_TOTAL not in run:
        return math.nan, math.nan
    spent = pd.to_numeric(run[KL_TOTAL], errors="coerce")
    mean = float(spent.mean()) if spent.notna().any() else math.nan
    if TOTAL_KL_BUDGET not in run:
        return mean, math.nan
    fraction = spent / pd.to_numeric(run[TOTAL_KL_BUDGET], errors="coerce")
    return mean, float(fraction.mean()) if fraction.notna().any() else math.nan


def summarize(curves: pd.DataFrame, env_steps: dict[str, int]) -> pd.DataFrame:
    """One row per task and method: final return, steps to 99 %, gain, variance, KL spend."""
    rows = []
    for task, task_runs in curves.groupby("task", sort=False):
        finals = {
            method: np.array([final_return(run) for _, run in runs.groupby(SEED)])
            for method, runs in task_runs.groupby(METHOD)
        }
        means = {method: float(np.mean(values)) for method, values in finals.items()}
        best = max(means.values())
        target = best - 0.01 * abs(best)
        uniform = means.get(ALLOCATOR_NAMES[0], math.nan)
        for method in [m for m in METHODS if m in finals]:
            runs = task_runs[task_runs[METHOD] == method]
            curve = mean_curve(runs)
            reached = curve.index[curve.to_numpy() >= target]
            spends = np.array([kl_spend(run) for _, run in runs.groupby(SEED)])
            rows.append(
                {
                    "task": task,
                    METHOD: method,
                    "seeds": len(finals[method]),
                    ENV_STEPS: int(runs.groupby(SEED)[ENV_STEPS].max().min()),
                    "budget": env_steps.get(task, math.nan),
                    "final_mean": means[method],
                    "final_std": float(np.std(finals[method])),
                    "seed_variance": float(np.var(finals[method])),
                    "steps_to_99pct": float(reached[0]) if len(reached) else math.nan,
                    "gain_vs_uniform": (means[method] - uniform) / abs(uniform),
                    "kl_total_mean": _nan_stat(np.mean, spends[:, 0]),
                    "kl_total_std": _nan_stat(np.std, spends[:, 0]),
                    "kl_spend_fraction": _nan_stat(np.mean, spends[:, 1]),
                }
            )
    return pd.DataFrame(rows)


def _nan_stat(stat: Any, values: np.ndarray) -> float:
    """``stat`` over the finite values; NaN if there are none."""
    finite = values[np.isfinite(values)]
    return float(stat(finite)) if finite.size else math.nan


def _spend_cell(row: Any) -> str:
    if math.isnan(row.kl_total_mean):
        return "—"
    cell = f"{row.kl_total_mean:.4g} ± {row.kl_total_std:.2g}"
    if not math.isnan(row.kl_spend_fraction):
        cell += f" ({100 * row.kl_spend_fraction:.0f} % of δ_total)"
    return cell


def markdown(summary: pd.DataFrame) -> str:
    """The summary as two markdown tables: per task and method, then the mean gain per method."""
    header = (
        "task|method|seeds|env steps|final team return|steps to 99 %|gain vs uniform|"
        "seed variance|Σ KL / iteration"
    ).split("|")
    rows = []
    for row in summary.itertuples():
        steps = "—" if math.isnan(row.steps_to_99pct) else f"{row.steps_to_99pct:,.0f}"
        uniform = row.method == ALLOCATOR_NAMES[0]
        gain = "—" if uniform else f"{100 * row.gain_vs_uniform:+.1f} %"
        rows.append(
            (
                row.task,
                label(row.method),
                row.seeds,
                f"{row.env_steps:,}",
                f"{row.final_mean:,.1f} ± {row.final_std:,.1f}",
                steps,
                gain,
                f"{row.seed_variance:,.1f}",
                _spend_cell(row),
            )
        )
    gains = summary[summary[METHOD] != ALLOCATOR_NAMES[0]].groupby(METHOD, sort=False)
    mean_gains = [
        (label(method), f"{100 * runs['gain_vs_uniform'].mean():+.1f} %", len(runs))
        for method, runs in gains
    ]
    return "\n\n".join(
        (
            markdown_table(header, rows),
            markdown_table(("method", "mean gain vs uniform over tasks", "tasks"), mean_gains),
        )
    )


def plot_task(curves: pd.DataFrame, task: str, path: Path, column: str = TEAM_RETURN) -> None:
    """``column`` against env steps, mean ± std over seeds per method (methods without it are
    left out); for ``kl_total`` the joint budget ``total_kl_budget`` is drawn dashed."""
    from matplotlib.figure import Figure

    from rllib_hatrpo.experiments.plots import seed_band

    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    for method in (m for m in METHODS if m in set(curves[METHOD])):
        i = METHODS.index(method)  # one colour per method in every plot
        runs = curves[curves[METHOD] == method]
        if column not in runs or runs[column].isna().all():
            continue
        per_seed = [
            (run[ENV_STEPS].to_numpy(float), run[column].to_numpy(float))
            for _, run in runs.dropna(subset=[column]).sort_values(ENV_STEPS).groupby(SEED)
        ]
        grid, mean, std, _ = seed_band(per_seed)
        ax.plot(grid, mean, color=f"C{i}", linewidth=2, label=f"{label(method)} ({len(per_seed)})")
        ax.fill_between(grid, mean - std, mean + std, color=f"C{i}", alpha=0.2)
    if column == KL_TOTAL and TOTAL_KL_BUDGET in curves and curves[TOTAL_KL_BUDGET].notna().any():
        budget = float(curves[TOTAL_KL_BUDGET].max())
        ax.axhline(budget, color="k", linestyle="--", linewidth=1, label="δ_total")
    ax.set_xlabel("env steps")
    what = "Σ achieved KL per iteration" if column == KL_TOTAL else column.replace("_", " ")
    ax.set_ylabel(f"{what} (mean ± std over seeds)")
    ax.set_title(task)
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def report(args: argparse.Namespace, tasks: list[str]) -> str:
    """Writes ``curves.csv``, the plots, ``summary.csv`` and ``summary.md``; returns the table."""
    campaign_file = args.out / CAMPAIGN_FILE
    campaign = json.loads(campaign_file.read_text()) if campaign_file.is_file() else {}
    curves = collect_curves(args.out, tasks)
    if curves.empty:
        return f"No trial results under {args.out / 'tune'} yet."
    curves.to_csv(args.out / "curves.csv", index=False)
    for task, task_curves in curves.groupby("task"):
        plot_task(task_curves, task, args.out / f"curves_{task}.png")
        if KL_TOTAL in task_curves and task_curves[KL_TOTAL].notna().any():
            plot_task(task_curves, task, args.out / f"kl_total_{task}.png", column=KL_TOTAL)
    budgets = {task: plan["env_steps"] for task, plan in campaign.items()}
    summary = summarize(curves, budgets)
    summary.to_csv(args.out / "summary.csv", index=False)
    table = markdown(summary)
    (args.out / "summary.md").write_text(table + "\n")
    return table


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line: tasks, methods, seeds, budget, output folder, resources."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=None, help="tuned example names")
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), choices=METHODS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--env-steps", type=int, default=None, help="override every budget")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "compare")
    parser.add_argument("--max-concurrent-trials", type=int, default=2)
    parser.add_argument("--checkpoint-every", type=int, default=5)
    parser.add_argument("--num-cpus", type=int, default=None, help="local Ray CPUs")
    parser.add_argument("--report-only", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Trains (or resumes) every task's campaign unless ``--report-only``, then reports."""
    args = parse_args(argv)
    available = load_tasks()
    names = args.tasks or sorted(available)
    unknown = sorted(set(names) - set(available))
    if unknown:
        raise SystemExit(f"--tasks: unknown {unknown}; tuned examples: {sorted(available)}")
    if not args.report_only:
        import ray

        ray.init(num_cpus=args.num_cpus, include_dashboard=False)
        for name in names:
            train_task(available[name], args)
    print(report(args, names))


if __name__ == "__main__":
    sys.exit(main())
