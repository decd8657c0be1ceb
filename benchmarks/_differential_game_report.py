"""Summary, table and figures of ``differential_game.py``, from the rows of a setting's
``runs.csv`` (one row per run and iteration; ``iteration = 0`` is the initial policy).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _common import markdown_table
from _toy_games_report import settled_iteration

from rllib_hatrpo.core.allocation import ALL_ALLOCATOR_NAMES

#: The paper's square: both actions bounded to [0, 7].
SQUARE = (0.0, 7.0)
AGENTS = ("agent_0", "agent_1")
#: "Reached the local optimum": the mean action is within this distance of it.
LOCAL_RADIUS = 0.2


def allocator_colour(allocator: str) -> str:
    """C0, C1, ... in the order of ``ALL_ALLOCATOR_NAMES`` (waterfill included); grey else."""
    if allocator not in ALL_ALLOCATOR_NAMES:
        return "grey"
    return f"C{ALL_ALLOCATOR_NAMES.index(allocator)}"


def _allocators(df: pd.DataFrame) -> list[str]:
    present = set(df["allocator"])
    return [a for a in ALL_ALLOCATOR_NAMES if a in present] + sorted(
        present - set(ALL_ALLOCATOR_NAMES)
    )


def per_run(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (allocator, seed): final mean action, success, iterations to success."""
    rows = []
    for (allocator, seed), run in df[df["iteration"] >= 1].groupby(["allocator", "seed"]):
        run = run.set_index("iteration").sort_index()
        last = run.iloc[-1]
        rows.append(
            {
                "allocator": allocator,
                "seed": seed,
                "final_a1": last["action_agent_0"],
                "final_a2": last["action_agent_1"],
                "final_det_return": last["det_return"],
                "final_return": last["team_return"],
                "success": bool(last["global_basin"]),
                "iters_to_success": settled_iteration(run["global_basin"]),
                "iters_to_local": _first_within(run, LOCAL_RADIUS),
                "share_agent_0_first10": float(
                    (run["kl_budget_agent_0"] / run["total_kl_budget"]).iloc[:10].mean()
                ),
                "kl_share_agent_0_first10": float(_kl_share(run).iloc[:10].mean()),
            }
        )
    return pd.DataFrame(rows)


def _first_within(run: pd.DataFrame, radius: float) -> float:
    """First iteration whose mean action is within ``radius`` of the local optimum; NaN if
    none is."""
    from rllib_hatrpo.envs import LOCAL_OPTIMUM

    distance = np.hypot(
        run["action_agent_0"] - LOCAL_OPTIMUM.a1, run["action_agent_1"] - LOCAL_OPTIMUM.a2
    )
    hits = run.index[(distance <= radius).to_numpy()]
    return float(hits.min()) if len(hits) else math.nan


def _kl_share(run: pd.DataFrame) -> pd.Series:
    """KL_0 / (KL_0 + KL_1) per iteration (an agent not updated counts 0; NaN if neither is)."""
    kl_0, kl_1 = run["kl_agent_0"].fillna(0.0), run["kl_agent_1"].fillna(0.0)
    return kl_0 / (kl_0 + kl_1).where(kl_0 + kl_1 > 0)


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Per allocator: final mean action (mean ± std over seeds), successes, iterations."""
    runs = per_run(df)
    rows = []
    for allocator in _allocators(df):
        r = runs[runs["allocator"] == allocator]
        ok = r[r["success"]]
        rows.append(
            {
                "allocator": allocator,
                "seeds": len(r),
                "final_a1_mean": r["final_a1"].mean(),
                "final_a1_std": r["final_a1"].std(ddof=0),
                "final_a2_mean": r["final_a2"].mean(),
                "final_a2_std": r["final_a2"].std(ddof=0),
                "final_det_return_mean": r["final_det_return"].mean(),
                "successes": int(r["success"].sum()),
                "median_iters_to_success": ok["iters_to_success"].median(),
                "median_iters_to_local": r["iters_to_local"].median(),
                "share_agent_0_first10": r["share_agent_0_first10"].mean(),
                "kl_share_agent_0_first10": r["kl_share_agent_0_first10"].mean(),
            }
        )
    return pd.DataFrame(rows)


TABLE_HEADER = (
    "setting",
    "allocator",
    "final mean action (a1, a2)",
    "R(final mean action)",
    "success",
    "median iters to success",
    f"median iters to local opt. (≤ {LOCAL_RADIUS})",
    "agent_0 δ share / KL share, iters 1-10",
)


def summary_markdown(summary: pd.DataFrame) -> str:
    """The summary of every setting as one markdown table."""
    rows = []
    for _, s in summary.iterrows():
        iters = s["median_iters_to_success"]
        rows.append(
            [
                s["setting"],
                s["allocator"],
                f"({s['final_a1_mean']:.2f} ± {s['final_a1_std']:.2f}, "
                f"{s['final_a2_mean']:.2f} ± {s['final_a2_std']:.2f})",
                f"{s['final_det_return_mean']:.3f}",
                f"{s['successes']}/{s['seeds']}",
                "—" if math.isnan(iters) else f"{iters:.0f}",
                "—"
                if math.isnan(s["median_iters_to_local"])
                else f"{s['median_iters_to_local']:.0f}",
                f"{s['share_agent_0_first10']:.2f} / {s['kl_share_agent_0_first10']:.2f}",
            ]
        )
    return markdown_table(TABLE_HEADER, rows)


def _reward_surface(ax, grid_points: int) -> Any:
    from rllib_hatrpo.envs import GLOBAL_OPTIMUM, LOCAL_OPTIMUM, differential_game_reward

    grid = np.linspace(*SQUARE, grid_points)
    a1, a2 = np.meshgrid(grid, grid)
    surface = differential_game_reward(a1, a2)
    image = ax.contourf(a1, a2, surface, levels=40, cmap="viridis")
    ax.contour(a1, a2, surface, levels=12, colors="white", linewidths=0.4, alpha=0.6)
    ax.plot(GLOBAL_OPTIMUM.a1, GLOBAL_OPTIMUM.a2, "r*", ms=13, label="global optimum")
    ax.plot(LOCAL_OPTIMUM.a1, LOCAL_OPTIMUM.a2, "wx", ms=9, mew=2, label="local optimum")
    ax.set(xlim=SQUARE, ylim=SQUARE, xlabel="a1 (agent_0)", aspect="equal")
    return image


def plot_trajectories(
    df: pd.DataFrame,
    tag: str,
    setting: dict[str, Any],
    path: Path,
    grid_points: int = 281,
    dpi: int = 100,
) -> None:
    """The paper's figure: reward heatmap on [0, 7]² (``grid_points`` per axis), mean-action
    trajectories per method (seed mean thick, each seed thin); first panel all methods, then
    one panel each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    allocators = _allocators(df)
    if not allocators:
        return
    n = len(allocators) + 1
    fig, axes = plt.subplots(1, n, figsize=(4.3 * n, 4.6), squeeze=False)
    panels = [(axes[0][0], allocators, False)]
    panels += [(axes[0][k + 1], [a], True) for k, a in enumerate(allocators)]
    for ax, shown, per_seed in panels:
        image = _reward_surface(ax, grid_points)
        for allocator in shown:
            sub = df[df["allocator"] == allocator]
            colour = allocator_colour(allocator)
            if per_seed:
                for _, run in sub.groupby("seed"):
                    run = run.sort_values("iteration")
                    ax.plot(run["action_agent_0"], run["action_agent_1"], color=colour, lw=0.6)
            mean = sub.groupby("iteration")[["action_agent_0", "action_agent_1"]].mean()
            ax.plot(
                mean["action_agent_0"],
                mean["action_agent_1"],
                color=colour,
                lw=2.4,
                path_effects=_outline(),
                label=f"{allocator} ({sub['seed'].nunique()} seeds)",
            )
            ax.plot(*mean.iloc[-1], "o", color=colour, mec="black", ms=6)
        ax.plot(*setting["start"], "o", color="white", mec="black", ms=5)
        ax.set_title(shown[0] if per_seed else "seed means")
        ax.legend(loc="upper left", fontsize=6, framealpha=0.6)
    axes[0][0].set_ylabel("a2 (agent_1)")
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="R(a1, a2)")
    fig.suptitle(f"Differential game, mean action per iteration ({tag}; white dot = start)")
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)


def _outline() -> list:
    import matplotlib.patheffects as pe

    return [pe.Stroke(linewidth=3.6, foreground="black"), pe.Normal()]


def plot_budget_shares(df: pd.DataFrame, tag: str, path: Path) -> None:
    """agent_0's budget share δ_0/δ_total (solid) and KL share KL_0/δ_total (dashed) per
    iteration for every allocator but uniform: seed mean thick, each seed thin."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    allocators = [a for a in _allocators(df) if a != "uniform"]
    if not allocators:
        return
    trained = df[df["iteration"] >= 1].copy()
    for aid in AGENTS:
        trained[f"share_{aid}"] = trained[f"kl_budget_{aid}"] / trained["total_kl_budget"]
        trained[f"kl_share_{aid}"] = trained[f"kl_{aid}"].fillna(0) / trained["total_kl_budget"]
    fig, axes = plt.subplots(
        1, len(allocators), figsize=(4.4 * len(allocators), 3.3), squeeze=False, sharey=True
    )
    for ax, allocator in zip(axes[0], allocators, strict=True):
        sub = trained[trained["allocator"] == allocator]
        for _, run in sub.groupby("seed"):
            ax.plot(run["iteration"], run["share_agent_0"], color="tab:red", lw=0.4, alpha=0.5)
        mean = sub.groupby("iteration").mean(numeric_only=True)
        ax.plot(mean.index, mean["share_agent_0"], color="tab:red", lw=2, label="δ_0 / δ_total")
        ax.plot(mean.index, mean["share_agent_1"], color="tab:purple", lw=2, label="δ_1 / δ_total")
        ax.plot(mean.index, mean["kl_share_agent_0"], "--", color="tab:red", label="KL_0 / δ_total")
        ax.plot(
            mean.index, mean["kl_share_agent_1"], "--", color="tab:purple", label="KL_1 / δ_total"
        )
        ax.axhline(0.5, color="grey", lw=0.8, ls=":")
        ax.set(title=allocator, xlabel="iteration", ylim=(0, 1.05))
    axes[0][0].set_ylabel("share of δ_total (agent_0 thin: per seed)")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"Budget shares ({tag})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def smoothed_gradient(
    mean: tuple[float, float], std: float, nodes: int = 80, step: float = 1e-4
) -> tuple[float, float, float]:
    """J(μ) = E[R(clip(μ + std·ε, 0, 7))], ε ~ N(0, I), by Gauss–Hermite quadrature, and its
    gradient in the mean by central differences: (J, ∂J/∂μ1, ∂J/∂μ2). This is the objective
    the policies' means ascend (in expectation) at a given std."""
    from rllib_hatrpo.envs import differential_game_reward

    x, w = np.polynomial.hermite_e.hermegauss(nodes)
    w = w / w.sum()

    def objective(m1: float, m2: float) -> float:
        a1 = np.clip(m1 + std * x, *SQUARE)[:, None]
        a2 = np.clip(m2 + std * x, *SQUARE)[None, :]
        return float((w[:, None] * w[None, :] * differential_game_reward(a1, a2)).sum())

    m1, m2 = mean
    d1 = (objective(m1 + step, m2) - objective(m1 - step, m2)) / (2 * step)
    d2 = (objective(m1, m2 + step) - objective(m1, m2 - step)) / (2 * step)
    return objective(m1, m2), d1, d2


def gradient_table(starts: list[tuple[float, float]], stds: list[float]) -> str:
    """Markdown: the smoothed reward's gradient at each start and std, and the ratio of the
    agents' mean-parameter q_i = std²·(∂J/∂μ_i)² (what kkt's shares follow)."""
    rows = []
    for start in starts:
        for std in stds:
            value, d1, d2 = smoothed_gradient(start, std)
            ratio = (d1 / d2) ** 2 if d2 else math.inf
            cells = (value, d1, d2, ratio)
            formats = ("{:.3f}", "{:+.4f}", "{:+.4f}", "{:.3g}")
            rows.append(
                [f"({start[0]:g}, {start[1]:g})", f"{std:g}"]
                + [fmt.format(cell) for fmt, cell in zip(formats, cells, strict=True)]
            )
    header = ("start", "std", "J", "∂J/∂μ1", "∂J/∂μ2", "q_0 / q_1 (mean part)")
    return markdown_table(header, rows)
