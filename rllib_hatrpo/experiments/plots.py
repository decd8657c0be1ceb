"""Pictures of a training run from its ``metrics.csv`` (matplotlib, Agg backend; no Ray).

- :func:`plot_learning_curve`: team return against env steps, one run or several seeds
  (mean ± std band).
- :func:`plot_allocation`: what the KL allocator did: each agent's share of the joint budget,
  each agent's achieved KL, and the achieved total against the budget.

Both take DataFrames or CSV paths with the columns written by
:mod:`rllib_hatrpo.experiments.records`.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

# The Agg canvas with matplotlib's object API, not pyplot: no display needed, and the
# backend of the caller's process (a notebook's, say) is left alone.
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from rllib_hatrpo.experiments.records import (
    ENV_STEPS,
    TEAM_RETURN,
    TRAINING_ITERATION,
    agent_column,
)
from rllib_hatrpo.metrics import KL, KL_BUDGET, KL_TOTAL, LINE_SEARCH_ACCEPTED, TOTAL_KL_BUDGET

FrameOrCsv = pd.DataFrame | str | os.PathLike

_DPI = 120
# Number of points of the common env-step grid on which several seeds are averaged.
_GRID_POINTS = 200


def _frame(data: FrameOrCsv) -> pd.DataFrame:
    return data if isinstance(data, pd.DataFrame) else pd.read_csv(data)


def _xy(frame: pd.DataFrame, x: str, y: str) -> tuple[np.ndarray, np.ndarray]:
    """The finite (x, y) points of a run, sorted by x (iterations without episodes dropped)."""
    if x not in frame or y not in frame:
        return np.empty(0), np.empty(0)
    pts = frame[[x, y]].apply(pd.to_numeric, errors="coerce").dropna().sort_values(x)
    return pts[x].to_numpy(float), pts[y].to_numpy(float)


def seed_band(
    curves: Sequence[tuple[np.ndarray, np.ndarray]], points: int = _GRID_POINTS
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean and standard deviation of several runs' curves on a common x grid.

    Each curve is linearly interpolated on a grid spanning all runs; at every grid point only
    the runs whose x range covers it count (a run that stopped early adds nothing after its
    last point).

    Args:
        curves: (x, y) per run, x sorted ascending.
        points: Grid size.

    Returns:
        (grid, mean, std, count): arrays of shape [points]; std is the population std
        (0 where one run covers the point), mean/std NaN where none does.
    """
    curves = [(x, y) for x, y in curves if len(x)]
    if not curves:
        empty = np.empty(0)
        return empty, empty, empty, empty
    lo = min(x[0] for x, _ in curves)
    hi = max(x[-1] for x, _ in curves)
    grid = np.linspace(lo, hi, points) if hi > lo else np.array([lo])
    values = np.full((len(curves), len(grid)), np.nan)
    for i, (x, y) in enumerate(curves):
        inside = (grid >= x[0]) & (grid <= x[-1])
        values[i, inside] = np.interp(grid[inside], x, y)
    count = np.sum(~np.isnan(values), axis=0)
    with warnings.catch_warnings():  # "Mean of empty slice" where no run covers the grid
        warnings.simplefilter("ignore", category=RuntimeWarning)
        mean = np.nanmean(values, axis=0)
        std = np.nanstd(values, axis=0)
    return grid, mean, std, count


def plot_learning_curve(
    frames_or_csvs: FrameOrCsv | Sequence[FrameOrCsv],
    png: str | os.PathLike,
    label: str | None = None,
    *,
    x: str = ENV_STEPS,
    y: str = TEAM_RETURN,
    title: str | None = None,
) -> Path:
    """Plots the team return against env steps and saves it as a PNG.

    One run: its curve. Several runs (seeds): each run as a thin line, their mean as a thick
    line and mean ± std as a band (see :func:`seed_band`). Iterations in which no episode
    finished (NaN return) are skipped.

    Args:
        frames_or_csvs: One run or a list of runs, each a DataFrame or a ``metrics.csv`` path.
        png: Output file; its directory is created if needed.
        label: Legend label of the run (or of the mean of several).
        x: Column on the x axis (``"env_steps"``).
        y: Column on the y axis (``"team_return"``).
        title: Figure title (default: none).

    Returns:
        The PNG's path.
    """
    if isinstance(frames_or_csvs, (pd.DataFrame, str, os.PathLike)):
        frames_or_csvs = [frames_or_csvs]
    curves = [_xy(_frame(f), x, y) for f in frames_or_csvs]
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    if len(curves) == 1:
        ax.plot(*curves[0], marker="." if len(curves[0][0]) < 30 else None, label=label)
    else:
        for cx, cy in curves:
            ax.plot(cx, cy, color="0.6", linewidth=0.8, alpha=0.7)
        grid, mean, std, _ = seed_band(curves)
        name = f"{label}: " if label else ""
        ax.plot(grid, mean, color="C0", linewidth=2, label=f"{name}mean of {len(curves)}")
        ax.fill_between(grid, mean - std, mean + std, color="C0", alpha=0.25, label="± std")
    if not any(len(cx) for cx, _ in curves):
        ax.text(0.5, 0.5, "no finished episode yet", ha="center", transform=ax.transAxes)
    ax.set_xlabel(x.replace("_", " "))
    ax.set_ylabel(y.replace("_", " "))
    if title:
        ax.set_title(title)
    if label or len(curves) > 1:
        ax.legend(loc="best")
    ax.grid(alpha=0.3)
    return _save(fig, png)


def allocation_agents(frame: pd.DataFrame) -> list[str]:
    """The agents of a ``metrics.csv`` frame, from its ``<agent>/kl_budget`` columns."""
    pattern = re.compile(rf"^(.+)/{re.escape(KL_BUDGET)}$")
    return [m.group(1) for c in frame.columns if (m := pattern.match(str(c)))]


def plot_allocation(csv: FrameOrCsv, png: str | os.PathLike, *, title: str | None = None) -> Path:
    """Plots what the KL allocator did over the iterations and saves it as a PNG.

    Top panel: each agent's budget share δ_i / δ_total (uniform: all at 1/n). Bottom panel:
    each agent's achieved KL, their sum ``kl_total`` and the joint budget ``total_kl_budget``
    (dashed); an agent whose line search was rejected shows 0.

    Args:
        csv: A ``metrics.csv`` path or its DataFrame.
        png: Output file; its directory is created if needed.
        title: Figure title (default: none).

    Returns:
        The PNG's path.
    """
    frame = _frame(csv)
    it = _column(frame, TRAINING_ITERATION) if TRAINING_ITERATION in frame else frame.index + 1
    budget = _column(frame, TOTAL_KL_BUDGET)
    agents = allocation_agents(frame)
    fig = Figure(figsize=(7, 6.5), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    shares = []
    for i, agent in enumerate(agents):
        color = f"C{i % 10}"
        share = _column(frame, agent_column(agent, KL_BUDGET)) / budget
        shares.append(share)
        top.plot(it, share, color=color, marker=".", label=agent)
        kl = _column(frame, agent_column(agent, KL))
        bottom.plot(it, kl, color=color, marker=".", linewidth=1, label=agent)
        rejected = _column(frame, agent_column(agent, LINE_SEARCH_ACCEPTED)) == 0
        if rejected.any():
            bottom.plot(
                it[rejected], kl[rejected], color=color, marker="x", markersize=8, linestyle="none"
            )
    if agents:
        top.axhline(1 / len(agents), color="0.5", linestyle=":", linewidth=1, label="1/n")
        highest = max(float(np.nanmax(np.append(sh.to_numpy(float), 0.0))) for sh in shares)
        top.set_ylim(0, 1.15 * max(highest, 1 / len(agents)))
    bottom.plot(it, _column(frame, KL_TOTAL), color="k", linewidth=2, label=KL_TOTAL)
    bottom.plot(it, budget, color="k", linestyle="--", linewidth=1, label=TOTAL_KL_BUDGET)
    top.set_ylabel("budget share δ_i / δ_total")
    bottom.set_ylabel("achieved KL (x: step rejected)")
    bottom.set_ylim(bottom=0)
    bottom.set_xlabel("training iteration")
    bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize="small", ncol=2)
    if title:
        top.set_title(title)
    return _save(fig, png)


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    """A numeric column (NaN where missing or empty); all NaN if the frame lacks it."""
    if name not in frame:
        return pd.Series(np.nan, index=frame.index)
    return pd.to_numeric(frame[name], errors="coerce")


def _save(fig: Figure, png: str | os.PathLike) -> Path:
    path = Path(png)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)  # attaches itself as fig.canvas
    fig.savefig(path, dpi=_DPI)
    return path
