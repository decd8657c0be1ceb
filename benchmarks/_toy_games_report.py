"""Summary, markdown table and plots of the toy-game benchmark (``toy_games.py``), from the
rows of ``runs.csv``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _common import allocator_color, markdown_table
from _toy_games_run import AGENTS, ESCAPE_MARGIN, PER_AGENT_METRICS, RUN_KEYS

from rllib_hatrpo.core.allocation import ALL_ALLOCATOR_NAMES
from rllib_hatrpo.metrics import KL, KL_BUDGET, TOTAL_KL_BUDGET

# Differential game: a run whose final |a1| is at least this fraction of action_scale sits on
# the edge of the action box (where the 0.1·a1 slope alone is worth ≈ 0.1·action_scale).
EDGE_FRACTION = 0.99


def settled_iteration(success: pd.Series) -> float:
    """First iteration from which ``success`` (indexed by iteration ≥ 1) holds to the end."""
    success = success.sort_index().astype(bool)
    if not success.iloc[-1]:
        return math.nan
    failures = success.index[~success.to_numpy()]
    return float(failures.max() + 1) if len(failures) else float(success.index.min())


def per_run_table(df: pd.DataFrame, params: dict[str, Any]) -> pd.DataFrame:
    """One row per run: final return, final deterministic return, success and iterations."""
    from rllib_hatrpo.envs import LOCAL_OPTIMUM

    trained = df[df["iteration"] >= 1]
    edge = EDGE_FRACTION * params["action_scale"]
    rows = []
    for (game, allocator, seed), run in trained.groupby(RUN_KEYS):
        run = run.set_index("iteration").sort_index()
        last = run.iloc[-1]
        hits = run.index[run["success"].astype(bool).to_numpy()]
        rows.append(
            {
                "game": game,
                "allocator": allocator,
                "seed": seed,
                "final_return": last["team_return"],
                "final_det_return": last["det_return"],
                "final_p_optimum": last.get("p_optimum", math.nan),
                "success": bool(last["success"]),
                "escaped": bool(
                    last["success"]
                    if game != "differential"
                    else last["det_return"] > LOCAL_OPTIMUM.value + ESCAPE_MARGIN
                ),
                "edge": bool(game == "differential" and abs(last["action_agent_0"]) >= edge),
                "iters_settled": settled_iteration(run["success"]),
                "iters_first_hit": float(hits.min()) if len(hits) else math.nan,
                "learn_ms": 1e3 * run["learn_s"].median(),
                "sample_ms": 1e3 * run["sample_s"].median(),
            }
        )
    return pd.DataFrame(rows)


def summarize(
    df: pd.DataFrame, games: Iterable[str], allocators: Iterable[str], params: dict[str, Any]
) -> pd.DataFrame:
    """Per game × allocator: return mean ± std over seeds, successes, iterations, timing."""
    runs = per_run_table(df, params)
    rows = []
    for game in games:
        for allocator in allocators:
            r = runs[(runs["game"] == game) & (runs["allocator"] == allocator)]
            if r.empty:
                continue
            ok = r[r["success"]]
            rows.append(
                {
                    "game": game,
                    "allocator": allocator,
                    "seeds": len(r),
                    "final_return_mean": r["final_return"].mean(),
                    "final_return_std": r["final_return"].std(ddof=0),
                    "final_det_return_mean": r["final_det_return"].mean(),
                    "final_det_return_std": r["final_det_return"].std(ddof=0),
                    "final_p_optimum_mean": r["final_p_optimum"].mean(),
                    "final_p_optimum_std": r["final_p_optimum"].std(ddof=0),
                    "successes": int(r["success"].sum()),
                    "escaped": int(r["escaped"].sum()),
                    "at_edge": int(r["edge"].sum()),
                    "median_iters_settled": ok["iters_settled"].median(),
                    "median_iters_first_hit": ok["iters_first_hit"].median(),
                    "learn_ms_per_iter": r["learn_ms"].median(),
                    "sample_ms_per_iter": r["sample_ms"].median(),
                }
            )
    return pd.DataFrame(rows)


#: Columns of the summary table (``summary.md`` and the printed table).
TABLE_HEADER = (
    "game",
    "allocator",
    "final return",
    "final det. return",
    "P(optimal cell)",
    "success",
    "median iters to success",
    "beat local opt. / at edge",
    "learner ms/iter",
)


def summary_table(summary: pd.DataFrame, params: dict[str, Any]) -> str:
    """The summary as a markdown table, with the budget it was measured at."""
    from rllib_hatrpo.envs import GLOBAL_OPTIMUM, LOCAL_OPTIMUM

    global_text = f"({GLOBAL_OPTIMUM.a1:.2f}, {GLOBAL_OPTIMUM.a2:.2f})"
    log_std = params["initial_log_std"]
    lines = [
        f"Toy games: {params['iterations']} iterations × {params['batch_size']} env steps, "
        f"kl_threshold {params['kl_threshold']} (δ_total = 2 × {params['kl_threshold']}), "
        f"differential game: action_scale {params['action_scale']}, success radius "
        f"{params['radius']} around {global_text}; actors' initial log-std "
        f"{'package default' if log_std is None else log_std}.",
        "",
    ]
    rows = []
    for _, s in summary.iterrows():
        iters = s["median_iters_settled"]
        escaped = (
            f"{s['escaped']}/{s['seeds']} / {s['at_edge']}/{s['seeds']}"
            if s["game"] == "differential"
            else "—"
        )
        rows.append(
            [
                s["game"],
                s["allocator"],
                f"{s['final_return_mean']:.3f} ± {s['final_return_std']:.3f}",
                f"{s['final_det_return_mean']:.3f} ± {s['final_det_return_std']:.3f}",
                "—"
                if math.isnan(s["final_p_optimum_mean"])
                else f"{s['final_p_optimum_mean']:.3f} ± {s['final_p_optimum_std']:.3f}",
                f"{s['successes']}/{s['seeds']}",
                "—" if math.isnan(iters) else f"{iters:.0f}",
                escaped,
                f"{s['learn_ms_per_iter']:.0f}",
            ]
        )
    lines.append(markdown_table(TABLE_HEADER, rows))
    lines += [
        "",
        "final return: batch team return of the last iteration, mean ± std over seeds; "
        "final det. return: payoff of the deterministic joint action after the last update; "
        "P(optimal cell): probability that the final stochastic joint policy plays an optimal "
        "cell, mean ± std over seeds; "
        "success: that action is within the radius of the global optimum (differential) or "
        "an optimal cell (matrix); iters to success: first iteration from which success holds "
        "to the end, median over successful seeds; beat local opt.: final det. return > "
        f"{LOCAL_OPTIMUM.value:.3f} + {ESCAPE_MARGIN}; "
        f"at edge: final |a1| ≥ {EDGE_FRACTION}·action_scale; "
        f"learner ms/iter: median learner.update wall time ({params['workers']} runs in "
        f"parallel on {os.cpu_count()} cores).",
    ]
    return "\n".join(lines)


def plot_trajectories(df: pd.DataFrame, allocators: list[str], path: Path) -> None:
    """Reward surface of the differential game with each run's deterministic joint actions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rllib_hatrpo.envs import GLOBAL_OPTIMUM, LOCAL_OPTIMUM, differential_game_reward

    diff = df[df["game"] == "differential"]
    allocators = [a for a in allocators if a in set(diff["allocator"])]
    if not allocators:
        return
    grid = np.linspace(-10.0, 10.0, 301)
    a1, a2 = np.meshgrid(grid, grid)
    surface = differential_game_reward(a1, a2)
    fig, axes = plt.subplots(1, len(allocators), figsize=(5.2 * len(allocators), 5), squeeze=False)
    for ax, allocator in zip(axes[0], allocators, strict=True):
        contour = ax.contourf(a1, a2, surface, levels=30, cmap="viridis")
        for _, run in diff[diff["allocator"] == allocator].groupby("seed"):
            run = run.sort_values("iteration")
            x, y = run["action_agent_0"], run["action_agent_1"]
            color = allocator_color(allocator)
            ax.plot(x, y, "-", color=color, lw=1.2, alpha=0.9)
            ax.plot(x.iloc[0], y.iloc[0], "o", color="white", ms=3)
            ax.plot(x.iloc[-1], y.iloc[-1], "o", color=color, mec="black", ms=6)
        ax.plot(GLOBAL_OPTIMUM.a1, GLOBAL_OPTIMUM.a2, "r*", ms=14, label="global optimum")
        ax.plot(LOCAL_OPTIMUM.a1, LOCAL_OPTIMUM.a2, "wx", ms=10, mew=2, label="local optimum")
        n = diff[diff["allocator"] == allocator]["seed"].nunique()
        ax.set(title=f"{allocator} ({n} seeds)", xlabel="a1 (agent_0)")
        if ax is axes[0][0]:
            ax.set_ylabel("a2 (agent_1)")
        ax.set_xlim(-10, 10)
        ax.set_ylim(-10, 10)
        ax.legend(loc="lower left", fontsize=8)
    fig.colorbar(contour, ax=axes[0].tolist(), shrink=0.85, label="R(a1, a2)")
    fig.suptitle("Differential game: deterministic joint action per iteration (dot = end)")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_budget_shares(df: pd.DataFrame, games: list[str], path: Path) -> None:
    """Per-agent δ_i/δ_total (solid) and KL_i/δ_total (dashed), mean over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Every allocator but uniform (whose shares are 1/n by construction), in the usual order.
    allocators = [a for a in ALL_ALLOCATOR_NAMES if a != "uniform" and a in set(df["allocator"])]
    games = [g for g in games if g in set(df["game"])]
    if not allocators or not games:
        return
    trained = df[df["iteration"] >= 1]
    fig, axes = plt.subplots(
        len(games),
        len(allocators),
        figsize=(5.5 * len(allocators), 3.2 * len(games)),
        squeeze=False,
        sharex=True,
        sharey=True,
    )
    for i, game in enumerate(games):
        for j, allocator in enumerate(allocators):
            ax = axes[i][j]
            sub = trained[(trained["game"] == game) & (trained["allocator"] == allocator)]
            mean = sub.groupby("iteration").mean(numeric_only=True)
            for aid, color in zip(AGENTS, ("tab:red", "tab:purple"), strict=True):
                if mean.empty:
                    continue
                ax.plot(
                    mean.index,
                    mean[f"{PER_AGENT_METRICS[KL_BUDGET]}_{aid}"] / mean[TOTAL_KL_BUDGET],
                    color=color,
                    label=f"δ_i share {aid}",
                )
                ax.plot(
                    mean.index,
                    mean[f"{PER_AGENT_METRICS[KL]}_{aid}"] / mean[TOTAL_KL_BUDGET],
                    "--",
                    color=color,
                    alpha=0.7,
                    label=f"KL_i share {aid}",
                )
            ax.axhline(0.5, color="grey", lw=0.8, ls=":")
            n = sub["seed"].nunique()
            ax.set(title=f"{game} / {allocator} ({n} seeds)", ylim=(0, 1.05))
            if i == len(games) - 1:
                ax.set_xlabel("iteration")
            if j == 0:
                ax.set_ylabel("share of δ_total")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_returns(df: pd.DataFrame, games: list[str], allocators: list[str], path: Path) -> None:
    """Mean ± std (over seeds) of the batch team return per iteration, per game."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    games = [g for g in games if g in set(df["game"])]
    if not games:
        return
    trained = df[df["iteration"] >= 1]
    fig, axes = plt.subplots(1, len(games), figsize=(5 * len(games), 3.6), squeeze=False)
    for ax, game in zip(axes[0], games, strict=True):
        for allocator in allocators:
            sub = trained[(trained["game"] == game) & (trained["allocator"] == allocator)]
            if sub.empty:
                continue
            stats = sub.groupby("iteration")["team_return"].agg(["mean", "std"])
            ax.plot(stats.index, stats["mean"], label=allocator)
            ax.fill_between(
                stats.index, stats["mean"] - stats["std"], stats["mean"] + stats["std"], alpha=0.2
            )
        ax.set(title=game, xlabel="iteration", ylabel="team return (batch mean)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
