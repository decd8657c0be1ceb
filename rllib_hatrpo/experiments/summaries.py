"""What a run achieved: its final team return, per-seed summaries and markdown tables.

The **final team return** of a run is the mean team return over its last 10 %
(:data:`FINAL_FRACTION`) of iterations that finished an episode, at least one of them
(:func:`final_return`). It is the number that ``hatrpo train`` and ``hatrpo tune`` print and
write to ``summary.csv``, that a tuned example's ``--as-test`` checks and that
``benchmarks/compare.py`` compares.

No Ray import; pandas only where a function reads CSV files.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from rllib_hatrpo.experiments.records import (
    ENV_STEPS,
    METHOD,
    SEED,
    TEAM_RETURN,
    TIME_TOTAL_S,
    TRAINING_ITERATION,
    TRIAL,
)
from rllib_hatrpo.metrics import KL_TOTAL, SKIPPED_STEPS

#: Fraction of a run's last iterations averaged into its final return.
FINAL_FRACTION = 0.1

#: Summary column: the final team return (:func:`final_return`).
FINAL_TEAM_RETURN = "final_team_return"
#: Summary column: the highest team return of any iteration.
BEST_TEAM_RETURN = "best_team_return"


def final_value(values: Iterable[float], fraction: float = FINAL_FRACTION) -> float:
    """The mean of the last ``fraction`` (at least one) of the finite ``values``, in order.

    NaN if no value is finite.
    """
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        return math.nan
    tail = max(1, math.ceil(fraction * len(finite)))
    return sum(finite[-tail:]) / tail


def final_return(curve: Any, fraction: float = FINAL_FRACTION) -> float:
    """A run's final team return: the mean over its last ``fraction`` of iterations (≥ 1).

    Args:
        curve: The run's rows as a DataFrame (``metrics.csv``, a Tune trial's
            ``progress.csv``) with ``env_steps`` and ``team_return`` columns, or a sequence
            of row dicts in iteration order. Rows without a team return (no episode finished
            yet) do not count.
        fraction: The share of the last iterations averaged.

    Returns:
        The mean, or NaN if no row has a team return.
    """
    if isinstance(curve, Sequence):
        return final_value((row.get(TEAM_RETURN, math.nan) for row in curve), fraction)
    if TEAM_RETURN not in curve:  # no episode finished: Tune trials report no NaN values
        return math.nan
    ordered = curve.sort_values(ENV_STEPS) if ENV_STEPS in curve else curve
    return final_value(ordered[TEAM_RETURN].to_numpy(dtype=float), fraction)


#: Share of the distance to a random policy's return that a threshold leaves as margin.
THRESHOLD_MARGIN = 0.25


def expected_threshold(
    finals: Sequence[float], random_return: float, margin: float = THRESHOLD_MARGIN
) -> float:
    """The ``expected`` return of a method measured at ``finals`` (one final return a seed).

    threshold = min_s (R_s − margin · |R_s − R_random|), rounded down to 0.1: every measured
    seed meets it, with a margin of a quarter of its distance from a random policy.

    Args:
        finals: The measured seeds' final team returns.
        random_return: A uniformly random policy's team return on the task.
        margin: The share of |R_s − R_random| left as margin.
    """
    if not len(finals):
        raise ValueError("finals is empty: measure at least one seed")
    lowest = min(value - margin * abs(value - random_return) for value in finals)
    return math.floor(round(lowest * 10, 6)) / 10


def best_return(curve: Any) -> float:
    """The highest team return of any iteration of a run (a DataFrame); NaN if none."""
    if TEAM_RETURN not in curve:
        return math.nan
    return float(curve[TEAM_RETURN].max())


def seed_summary(seeds: Sequence[int], csvs: Sequence[str | os.PathLike]) -> Any:
    """One row per seed (final and best team return, steps, time, KL use), then mean and std.

    Args:
        seeds: The seeds, one per ``metrics.csv``.
        csvs: Each seed's ``metrics.csv``.

    Returns:
        A DataFrame with columns ``seed`` (the seed, then ``"mean"`` and ``"std"``, the
        population std over seeds), ``iterations``, ``env_steps``, ``time_total_s``,
        ``final_team_return``, ``best_team_return``, ``mean_kl_total`` and
        ``mean_skipped_steps``.
    """
    import pandas as pd

    rows = []
    for seed, csv_path in zip(seeds, csvs, strict=True):
        frame = pd.read_csv(csv_path)
        rows.append(
            {
                SEED: str(seed),
                "iterations": int(frame[TRAINING_ITERATION].iloc[-1]),
                ENV_STEPS: float(frame[ENV_STEPS].iloc[-1]),
                TIME_TOTAL_S: float(frame[TIME_TOTAL_S].iloc[-1]),
                FINAL_TEAM_RETURN: final_return(frame),
                BEST_TEAM_RETURN: best_return(frame),
                f"mean_{KL_TOTAL}": float(frame[KL_TOTAL].mean()),
                f"mean_{SKIPPED_STEPS}": float(frame[SKIPPED_STEPS].mean()),
            }
        )
    table = pd.DataFrame(rows)
    numeric = table.drop(columns=SEED)
    stats = pd.DataFrame([numeric.mean(), numeric.std(ddof=0)]).assign(**{SEED: ["mean", "std"]})
    return pd.concat([table, stats[table.columns]], ignore_index=True)


def trial_summary(curves: Any, kl_param: str) -> Any:
    """One row per Tune trial of a sweep, the best final team return first.

    Args:
        curves: Every trial's rows (``method``, ``seed``, the KL parameter,
            ``training_iteration``, ``env_steps``, ``team_return``, ``trial``), one trial's
            rows in iteration order.
        kl_param: The KL parameter swept (``kl_threshold`` or ``total_kl_budget``).

    Returns:
        A DataFrame with ``method``, ``seed``, the KL parameter, ``iterations``,
        ``env_steps``, ``final_team_return``, ``best_team_return`` and ``trial``.
    """
    import pandas as pd

    rows = []
    for trial, curve in curves.groupby(TRIAL, sort=False):
        last = curve.iloc[-1]
        rows.append(
            {
                METHOD: last[METHOD],
                SEED: int(last[SEED]),
                kl_param: float(last[kl_param]) if kl_param in curve else math.nan,
                "iterations": int(last[TRAINING_ITERATION]),
                ENV_STEPS: float(last[ENV_STEPS]),
                FINAL_TEAM_RETURN: final_return(curve),
                BEST_TEAM_RETURN: best_return(curve),
                TRIAL: trial,
            }
        )
    return pd.DataFrame(rows).sort_values(FINAL_TEAM_RETURN, ascending=False, na_position="last")


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A markdown table: ``header``, then one line per row (each cell shown with ``str``)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_results(experiment: Path, output: Path, kl_param: str) -> Any:
    """Writes ``curves.csv`` and ``summary.csv`` from the Tune experiment; returns the summary.

    A trial that Tune restored from a checkpoint reports the iterations after that checkpoint
    again; ``curves.csv`` keeps the last report of each (trial, iteration).
    """
    import pandas as pd

    from rllib_hatrpo.experiments.tune import read_trials  # pandas only: no Ray import

    curves = read_trials(experiment)
    if curves.empty:
        return pd.DataFrame()
    curves = curves.drop_duplicates(subset=[TRIAL, TRAINING_ITERATION], keep="last")
    curves[TRAINING_ITERATION] = curves[TRAINING_ITERATION].astype(int)
    if TEAM_RETURN not in curves:
        curves[TEAM_RETURN] = math.nan  # no episode finished in any trial yet
    first = [METHOD, SEED, kl_param, TRAINING_ITERATION, ENV_STEPS, TEAM_RETURN, TRIAL]
    first = [c for c in first if c in curves]
    curves = curves[first + [c for c in curves.columns if c not in first]]
    curves = curves.sort_values([TRIAL, TRAINING_ITERATION])
    curves.to_csv(output / "curves.csv", index=False)
    summary = trial_summary(curves, kl_param)
    summary.to_csv(output / "summary.csv", index=False)
    return summary
