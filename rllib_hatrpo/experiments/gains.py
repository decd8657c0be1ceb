"""How much one method beats another over several tasks, with a seed bootstrap interval.

The joint-budget paper states its result as a **relative gain** averaged over tasks: for task
t with seed-mean final returns R_t(method) and R_t(baseline),

    gain_t = (R_t(method) − R_t(baseline)) / |R_t(baseline)|,    gain = mean_t gain_t.

Its uncertainty here is a percentile bootstrap over seeds: every group of seeds (each method
of each task) is resampled with replacement on its own, the statistic is recomputed, and the
interval is the central ``confidence`` share of those values. With n seeds per group there are
n^n equally likely resamples of a group; the bootstrap draws from exactly that distribution.

The same machinery serves any per-task statistic of the groups' final returns, such as the
ratio of two methods' seed variances (:func:`variance_ratio`).

Pure numpy; no Ray, no pandas.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

#: A per-task statistic of the task's groups of final returns (one 1-D array per group).
TaskStatistic = Callable[..., float]


@dataclass(frozen=True)
class Interval:
    """A point estimate and its bootstrap interval (NaN where it cannot be computed)."""

    point: float
    low: float
    high: float


def relative_gain(baseline: np.ndarray, method: np.ndarray) -> float:
    """(mean(method) − mean(baseline)) / |mean(baseline)|; NaN if the baseline mean is 0."""
    base = float(np.mean(baseline))
    if base == 0.0:
        return math.nan
    return (float(np.mean(method)) - base) / abs(base)


def variance_ratio(first: np.ndarray, second: np.ndarray) -> float:
    """var(second) / var(first) over seeds (population variances); NaN if either has fewer
    than two seeds (no variance to measure) or all of ``first``'s seeds are equal.

    Equal seeds are told apart by their values, not by var(first) == 0: the variance of
    equal floats can round to about 1e-25 instead of 0, and a ratio over it is noise.
    """
    if len(first) < 2 or len(second) < 2 or np.ptp(first) == 0.0:
        return math.nan
    return float(np.var(second)) / float(np.var(first))


def mean_over_tasks(statistic: TaskStatistic, groups: Mapping[str, Sequence[np.ndarray]]) -> float:
    """The mean over tasks of ``statistic(*groups[task])`` (NaN if any task's is NaN)."""
    values = [
        statistic(*(np.asarray(g, dtype=float) for g in arrays)) for arrays in groups.values()
    ]
    return float(np.mean(values)) if values else math.nan


def bootstrap_over_tasks(
    statistic: TaskStatistic,
    groups: Mapping[str, Sequence[np.ndarray]],
    *,
    resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """:func:`mean_over_tasks` and its percentile bootstrap interval over seeds.

    Args:
        statistic: Per task, the groups' final returns (1-D arrays, one value per seed) ->
            a number, e.g. :func:`relative_gain`.
        groups: Task -> its groups, in the order ``statistic`` takes them.
        resamples: Bootstrap resamples.
        confidence: The interval's coverage (0.95: the 2.5 % and 97.5 % quantiles).
        seed: The resampling RNG's seed (the interval is reproducible).

    Returns:
        The point estimate on the seeds as run, and the interval's ends (the
        ``inverted_cdf`` quantiles of the resampled statistic, NaN resamples dropped); all
        NaN if a group has no seed.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    arrays = {task: [np.asarray(g, dtype=float) for g in gs] for task, gs in groups.items()}
    if not arrays or any(g.size == 0 for gs in arrays.values() for g in gs):
        return Interval(math.nan, math.nan, math.nan)
    point = mean_over_tasks(statistic, arrays)
    rng = np.random.default_rng(seed)
    values = np.empty(resamples)
    for r in range(resamples):
        resampled = {
            task: [g[rng.integers(0, g.size, g.size)] for g in gs] for task, gs in arrays.items()
        }
        values[r] = mean_over_tasks(statistic, resampled)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return Interval(point, math.nan, math.nan)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail], method="inverted_cdf")
    return Interval(point, float(low), float(high))
