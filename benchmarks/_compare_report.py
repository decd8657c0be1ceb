"""The comparison's raw results and report (``benchmarks/compare.py``): pandas and matplotlib.

Raw results: every trial that reached its budget is copied from Tune's folder
(``results/compare/tune/<task>/``) to ``<data>/<task>/<method>_seed<seed>.csv`` (default
``docs/data/compare/``; the ``metrics.csv`` columns, one row per iteration), with the
campaign's plan as ``<data>/campaign.json``. The tables and plots are made from those files
alone, so they can be redrawn from a checkout without the Tune folders.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rllib_hatrpo.core.allocation import ALLOCATOR_NAMES
from rllib_hatrpo.experiments.records import ENV_STEPS, ITERATION_COLUMNS, TEAM_RETURN
from rllib_hatrpo.experiments.summaries import final_return, markdown_table
from rllib_hatrpo.experiments.tune import METHOD, SEED, read_trials
from rllib_hatrpo.experiments.tuned import PPO
from rllib_hatrpo.metrics import KL_TOTAL, TOTAL_KL_BUDGET


def carry_over(config: Any) -> Any:
    """kkt with ``carry_over=True``: unused budget goes on to the agents still to move."""
    return config.training(kl_allocator_config={**config.kl_allocator_config, "carry_over": True})


def team_runner(config: Any) -> Any:
    """Sampling with ``TeamEnvRunner``, which keeps the env's terminated/truncated flags.

    RLlib's ``MultiAgentEpisode`` marks an episode that every agent ends by truncation as
    terminated too, so RLlib's PPO on its own ``MultiAgentEnvRunner`` treats a time-limit cut
    as a terminal state (no V(s_T) bootstrap). On ``TeamEnvRunner``'s episodes its GAE
    bootstraps there; everything else of the batch is the same.
    """
    from rllib_hatrpo.team_env_runner import TeamEnvRunner

    return config.env_runners(env_runner_cls=TeamEnvRunner)


def team_runner_unclipped_value_loss(config: Any) -> Any:
    """:func:`team_runner` and ``vf_clip_param=inf``.

    RLlib's PPO clamps each row's squared value error at ``vf_clip_param`` (default 10), so
    rows whose value is more than √10 off its target give the critic no gradient; MaMuJoCo's
    returns are in the hundreds. Without the clamp the critic learns from every row.
    """
    return team_runner(config).training(vf_clip_param=math.inf)


#: Methods that are another method with settings changed: method -> (base method, change).
VARIANTS = {
    "kkt_carry": ("kkt", carry_over),
    "ppo_bootstrap": (PPO, team_runner),
    "ppo_bootstrap_noclip": (PPO, team_runner_unclipped_value_loss),
}


def _methods() -> tuple[str, ...]:
    methods = []
    for name in (*ALLOCATOR_NAMES, PPO):
        methods += [name, *(v for v, (base, _) in VARIANTS.items() if base == name)]
    return tuple(methods)


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
    "ppo_bootstrap": "RLlib PPO, time limits bootstrapped (ppo_bootstrap)",
    "ppo_bootstrap_noclip": "RLlib PPO, bootstrapped, value loss unclipped (ppo_bootstrap_noclip)",
}
#: The file recording each task's methods, seeds and budget (in the output and data folders).
CAMPAIGN_FILE = "campaign.json"
#: Significant digits of the raw results (8: env-step counts up to 99,999,999 stay exact).
FLOAT_FORMAT = "%.8g"


def label(method: str) -> str:
    """How tables and plots name ``method``."""
    return LABELS.get(method, method)


# --------------------------------------------------------------------------------------------
# Raw results
# --------------------------------------------------------------------------------------------


def run_path(data: Path, task: str, method: str, seed: int) -> Path:
    """Where the raw rows of one finished (task, method, seed) run are kept."""
    return data / task / f"{method}_seed{seed}.csv"


def recorded_runs(data: Path, task: str, env_steps: int) -> set[tuple[str, int]]:
    """The (method, seed) runs of ``task`` whose raw rows in ``data`` reach ``env_steps``."""
    runs = set()
    for path in (data / task).glob("*_seed*.csv"):
        rows = pd.read_csv(path, usecols=[METHOD, SEED, ENV_STEPS])
        if not rows.empty and rows[ENV_STEPS].max() >= env_steps:
            runs.add((str(rows[METHOD].iloc[0]), int(rows[SEED].iloc[0])))
    return runs


def export_finished(tune_dir: Path, data: Path, campaign: dict[str, Any]) -> list[Path]:
    """Copies every trial that reached its task's budget to ``run_path``; returns the paths.

    Args:
        tune_dir: Tune's storage folder (one experiment per task).
        data: The raw-results folder.
        campaign: ``campaign.json``'s content: task -> ``{"env_steps", "methods", "seeds"}``.
    """
    written = []
    for task, plan in campaign.items():
        curves = read_trials(tune_dir / task)
        if curves.empty:
            continue
        columns = [c for c in curves.columns if c in ITERATION_COLUMNS or "/" in c]
        for (method, seed), run in curves.groupby([METHOD, SEED]):
            if run[ENV_STEPS].max() < plan["env_steps"]:
                continue
            path = run_path(data, task, method, int(seed))
            path.parent.mkdir(parents=True, exist_ok=True)
            rows = run[columns].copy()
            rows.insert(0, SEED, int(seed))
            rows.insert(0, METHOD, method)
            rows.to_csv(path, index=False, float_format=FLOAT_FORMAT)
            written.append(path)
    return written


def collect_curves(data: Path, tasks: list[str]) -> pd.DataFrame:
    """Every finished run's rows of the tasks under ``data``, task first."""
    frames = []
    for task in tasks:
        for path in sorted((data / task).glob("*_seed*.csv")):
            frame = pd.read_csv(path)
            frame.insert(0, "task", task)
            frames.append(frame)
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------------------------
# Tables and plots
# --------------------------------------------------------------------------------------------


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
            method: pd.Series({seed: final_return(run) for seed, run in runs.groupby(SEED)})
            for method, runs in task_runs.groupby(METHOD)
        }
        means = {method: float(np.mean(values)) for method, values in finals.items()}
        best = max(means.values())
        target = best - 0.01 * abs(best)
        uniform = finals.get(ALLOCATOR_NAMES[0], pd.Series(dtype=float))
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
                    "gain_vs_uniform": gain_on_common_seeds(finals[method], uniform),
                    "kl_total_mean": _nan_stat(np.mean, spends[:, 0]),
                    "kl_total_std": _nan_stat(np.std, spends[:, 0]),
                    "kl_spend_fraction": _nan_stat(np.mean, spends[:, 1]),
                }
            )
    return pd.DataFrame(rows)


def on_common_seeds(first: pd.Series, second: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Two methods' finals (indexed by seed) on the seeds both have finished, in seed order."""
    seeds = first.index.intersection(second.index).sort_values()
    return first[seeds].to_numpy(), second[seeds].to_numpy()


def gain_on_common_seeds(finals: pd.Series, uniform: pd.Series) -> float:
    """(R − R_uniform) / |R_uniform| of the seed-mean finals on the seeds both have finished
    (indexed by seed); NaN without a common seed."""
    mine, base = on_common_seeds(finals, uniform)
    if not len(base):
        return math.nan
    return float((mine.mean() - base.mean()) / abs(base.mean()))


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
    """The summary as markdown: a table per task and method, then the mean gain per method
    (left out while only uniform has runs)."""
    header = (
        "task|method|seeds|env steps|final team return|steps to 99 %|gain vs uniform|"
        "seed variance|Σ KL / iteration"
    ).split("|")
    rows = []
    for row in summary.itertuples():
        steps = "—" if math.isnan(row.steps_to_99pct) else f"{row.steps_to_99pct:,.0f}"
        no_gain = row.method == ALLOCATOR_NAMES[0] or math.isnan(row.gain_vs_uniform)
        gain = "—" if no_gain else f"{100 * row.gain_vs_uniform:+.1f} %"
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
    paired = summary[(summary[METHOD] != ALLOCATOR_NAMES[0]) & summary["gain_vs_uniform"].notna()]
    mean_gains = [
        (label(method), f"{100 * runs['gain_vs_uniform'].mean():+.1f} %", len(runs))
        for method, runs in paired.groupby(METHOD, sort=False)
    ]
    tables = [markdown_table(header, rows)]
    if mean_gains:  # none until a method other than uniform has finished a run
        tables.append(
            markdown_table(("method", "mean gain vs uniform over tasks", "tasks"), mean_gains)
        )
    return "\n\n".join(tables)


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


def plot_allocations(curves: pd.DataFrame, task: str, data: Path) -> list[Path]:
    """Per HATRPO method, the allocation plot (budget shares, achieved KL per agent) of its
    lowest finished seed: ``allocation_<task>_<method>_seed<seed>.png``."""
    from rllib_hatrpo.experiments.plots import plot_allocation

    paths = []
    for method, runs in curves.groupby(METHOD, sort=False):
        if KL_TOTAL not in runs or runs[KL_TOTAL].isna().all():
            continue  # PPO has no allocation
        seed = int(runs[SEED].min())
        run = runs[runs[SEED] == seed].sort_values(ENV_STEPS)
        title = f"{task}: {label(method)}, seed {seed}"
        path = data / f"allocation_{task}_{method}_seed{seed}.png"
        paths.append(plot_allocation(run.reset_index(drop=True), path, title=title))
    return paths


def report(tune_dir: Path, data: Path, tasks: list[str], campaign: dict[str, Any]) -> str:
    """Exports the finished runs, then writes the plots, ``summary.csv`` and ``summary.md`` to
    ``data`` from its raw results; returns the table."""
    export_finished(tune_dir, data, campaign)
    curves = collect_curves(data, tasks)
    if curves.empty:
        return f"No finished runs under {data} yet."
    for task, task_curves in curves.groupby("task"):
        plot_task(task_curves, task, data / f"curves_{task}.png")
        if KL_TOTAL in task_curves and task_curves[KL_TOTAL].notna().any():
            plot_task(task_curves, task, data / f"kl_total_{task}.png", column=KL_TOTAL)
        plot_allocations(task_curves, task, data)
    budgets = {task: plan["env_steps"] for task, plan in campaign.items()}
    summary = summarize(curves, budgets)
    summary.to_csv(data / "summary.csv", index=False, float_format=FLOAT_FORMAT)
    table = markdown(summary)
    (data / "summary.md").write_text(table + "\n")
    return table
