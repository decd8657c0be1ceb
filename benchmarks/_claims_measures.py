"""The MaMuJoCo claims' measures (``benchmarks/claims.py``), on a campaign's finished runs.

HATRPO = uniform, W = kkt, G = greedy; a run's final return is its mean team return over its
last 10 % of iterations. Each comparison uses the seeds both of its methods have finished; a
task counts in a claim over tasks once they have :data:`MIN_SEEDS` such seeds (two for a gain,
three for a variance ratio).

- gain: mean over tasks of (R_method − R_uniform) / |R_uniform| of the seed-mean final
  returns, with a 95 % percentile bootstrap interval over seeds
  (``rllib_hatrpo.experiments.gains``; 10,000 resamples, seed 0);
- variance of G against W: mean over tasks of var_G / var_W − 1 (seed variances of the final
  return), same interval;
- the same gains and variance ratio on each task alone (:func:`per_task_rows`);
- steps to 99 % of the best: per task, the first env-step count at which a method's
  seed-mean curve reaches 99 % of that curve's own maximum (R_max − 0.01·|R_max|); the
  method's count over uniform's, mean over tasks.
"""

from __future__ import annotations

import math
from collections.abc import Collection

import numpy as np
import pandas as pd
from _compare_report import mean_curve, on_common_seeds

from rllib_hatrpo.experiments.gains import (
    bootstrap_over_tasks,
    mean_over_tasks,
    relative_gain,
    variance_ratio,
)
from rllib_hatrpo.experiments.summaries import final_return
from rllib_hatrpo.experiments.tune import METHOD, SEED

#: Common finished seeds two methods need on a task before it counts in a claim, by
#: statistic. One seed has no spread to resample; and two seeds' resampled variance is 0 or
#: the variance itself, so a variance ratio's interval over them would span just those values.
MIN_SEEDS = {relative_gain: 2, variance_ratio: 3}
#: The paper's methods as this package names them.
W, G, HATRPO = "kkt", "greedy", "uniform"
#: The claims measured on final returns: (claim, the paper's figure, first method, second
#: method, statistic of the two methods' seed finals).
COMPARISONS = (
    ("W's final-return gain over HATRPO", "+22.5 %", HATRPO, W, relative_gain),
    ("G's final-return gain over HATRPO", "+25.2 %", HATRPO, G, relative_gain),
    (
        "(control) G's gain over W with carry-over, which spends as much KL",
        "—",
        "kkt_carry",
        G,
        relative_gain,
    ),
    ("G's seed variance over W's", "about +39 %", W, G, variance_ratio),
)
#: Column names of the per-task table of :data:`COMPARISONS`.
PER_TASK_HEADER = ("task", "W vs HATRPO", "G vs HATRPO", "G vs W + carry-over", "var G / var W − 1")


def finals(curves: pd.DataFrame) -> dict[str, dict[str, pd.Series]]:
    """Task -> method -> the final return of each finished seed (indexed by seed)."""
    out: dict[str, dict[str, pd.Series]] = {}
    for (task, method), runs in curves.groupby(["task", METHOD], sort=False):
        values = {int(seed): final_return(run) for seed, run in runs.groupby(SEED)}
        out.setdefault(task, {})[method] = pd.Series(values, dtype=float)
    return out


def no_runs(seeds: int) -> str:
    """The cell of a claim that no task has ``seeds`` common finished seeds for yet."""
    return f"no task where both methods have finished {seeds} common seeds yet"


def same_seeds(methods: dict[str, pd.Series], first: str, second: str) -> tuple | None:
    """The two methods' finals on the seeds both have finished, as arrays (None if one
    method has no run).

    A campaign under way has finished different seeds of different methods, and seeds
    matter: a run's seed fixes its initial networks and its envs' seeds, which every method
    shares. Comparing on the common seeds keeps a seed that only one method has reached from
    moving the comparison.
    """
    if first not in methods or second not in methods:
        return None
    return on_common_seeds(methods[first], methods[second])


def paired(
    table: dict[str, dict[str, pd.Series]],
    first: str,
    second: str,
    min_seeds: int = MIN_SEEDS[relative_gain],
) -> dict:
    """Task -> (first's finals, second's finals) on their common seeds, for the tasks where
    both methods have at least ``min_seeds`` of them (with too few, a task would enter the
    bootstrap with no spread and narrow the interval it does not inform)."""
    out = {}
    for task, methods in table.items():
        pair = same_seeds(methods, first, second)
        if pair is not None and len(pair[0]) >= min_seeds:
            out[task] = pair
    return out


def steps_to_99(runs: pd.DataFrame) -> float:
    """First env-step count where the seed-mean curve reaches 99 % of its own maximum."""
    curve = mean_curve(runs)
    if curve.empty:
        return math.nan
    best = float(curve.max())
    return float(curve.index[curve.to_numpy() >= best - 0.01 * abs(best)][0])


def per_task_ratio(curves: pd.DataFrame, method: str, measure) -> tuple[float, int]:
    """Mean over tasks of measure(method's runs) / measure(uniform's runs) on their common
    seeds; the task count (tasks where they have two common seeds)."""
    ratios = []
    for _, task_runs in curves.groupby("task"):
        mine, base = (task_runs[task_runs[METHOD] == m] for m in (method, HATRPO))
        seeds = set(mine[SEED]) & set(base[SEED])
        if len(seeds) >= MIN_SEEDS[relative_gain]:
            ratios.append(
                measure(mine[mine[SEED].isin(seeds)]) / measure(base[base[SEED].isin(seeds)])
            )
    return (float(np.mean(ratios)) if ratios else math.nan), len(ratios)


def _percent(value: float) -> str:
    return "—" if math.isnan(value) else f"{100 * value:+.1f} %"


def _interval(groups: dict, statistic) -> str:
    """The statistic over ``groups`` with its 95 % bootstrap interval; a variance ratio as the
    change from 1 (var_G / var_W − 1)."""
    offset = float(statistic is variance_ratio)
    interval = bootstrap_over_tasks(statistic, groups)
    point, low, high = (v - offset for v in (interval.point, interval.low, interval.high))
    return f"{_percent(point)} (95 % CI {_percent(low)} to {_percent(high)}"


def _gain_cell(groups: dict, statistic) -> str:
    if not groups:
        return no_runs(MIN_SEEDS[statistic])
    seeds = ", ".join(f"{t} {len(a)}" for t, (a, _) in groups.items())
    return f"{_interval(groups, statistic)}; {len(groups)} task(s), common seeds {seeds})"


def per_task_rows(table: dict[str, dict[str, pd.Series]]) -> list[tuple]:
    """One row per task: every comparison of :data:`COMPARISONS` on that task alone, on the
    two methods' common seeds, with their count n; with fewer than :data:`MIN_SEEDS` of them
    the point alone (NaN for one seed's variance); "—" where they have none."""
    rows = []
    for task, methods in table.items():
        cells = []
        for _, _, first, second, statistic in COMPARISONS:
            pair = same_seeds(methods, first, second)
            if pair is None or not len(pair[0]):
                cells.append("—")
            elif len(pair[0]) < MIN_SEEDS[statistic]:  # too few seeds to bootstrap
                point = mean_over_tasks(statistic, {task: pair})
                offset = float(statistic is variance_ratio)
                cells.append(f"{_percent(point - offset)} (n = {len(pair[0])}, no interval)")
            else:
                cells.append(f"{_interval({task: pair}, statistic)}; n = {len(pair[0])})")
        rows.append((task, *cells))
    return rows


def mamujoco_rows(
    curves: pd.DataFrame, budget: str, command: str = "A", methods: Collection[str] | None = None
) -> list[tuple]:
    """The claims measured on a MaMuJoCo campaign (command A, or D at 10M env steps).

    ``methods``: the campaign's planned methods, where known; a comparison of a method the
    campaign does not train (D has no ``kkt_carry``) gets no row, rather than one that stays
    empty for good.
    """
    table = finals(curves) if not curves.empty else {}
    cells = [
        (claim, paper, _gain_cell(paired(table, first, second, MIN_SEEDS[statistic]), statistic))
        for claim, paper, first, second, statistic in COMPARISONS
        if methods is None or {first, second} <= set(methods)
    ]
    for method, name in ((W, "W"), (G, "G")):
        ratio, n = per_task_ratio(curves, method, steps_to_99) if not curves.empty else (0, 0)
        ours = (
            f"{ratio:.2f}× HATRPO's env steps ({n} task(s))"
            if n
            else no_runs(MIN_SEEDS[relative_gain])
        )
        cells.append((f"{name} reaches 99 % of its best sooner", "sooner", ours))
    return [(claim, paper, ours, budget, command) for claim, paper, ours in cells]
