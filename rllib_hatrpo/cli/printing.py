"""What ``hatrpo train`` prints and draws: progress lines, per-seed results, seed summaries.

Every number comes from the ``metrics.csv`` rows (:mod:`rllib_hatrpo.experiments.records`);
the final team return is :func:`rllib_hatrpo.experiments.summaries.final_return`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from rllib_hatrpo.cli.common import say
from rllib_hatrpo.experiments.loop import StopCriteria
from rllib_hatrpo.experiments.records import (
    ENV_STEPS,
    SEED,
    TEAM_RETURN,
    TIME_THIS_ITER_S,
    TIME_TOTAL_S,
    TRAINING_ITERATION,
    agent_column,
)
from rllib_hatrpo.experiments.summaries import FINAL_FRACTION, FINAL_TEAM_RETURN, final_return
from rllib_hatrpo.metrics import KL_TOTAL, LINE_SEARCH_ACCEPTED, TOTAL_KL_BUDGET


def describe_stop(stop: StopCriteria) -> str:
    """The stop criteria in words: ``20 iters or 100000 env steps``."""
    parts = {
        "iters": stop.iters,
        "env steps": stop.timesteps,
        "team return": stop.team_return,
        "seconds": stop.time_budget_s,
    }
    return " or ".join(f"{value} {name}" for name, value in parts.items() if value is not None)


def progress_line(row: dict[str, float], agents: Sequence[str], seed: int | None = None) -> str:
    """One line of training progress from a ``metrics.csv`` row."""
    accepted = sum(
        1 for a in agents if row.get(agent_column(a, LINE_SEARCH_ACCEPTED), math.nan) == 1.0
    )
    team = row[TEAM_RETURN]
    parts = [
        f"seed {seed}" if seed is not None else None,
        f"iter {row[TRAINING_ITERATION]:4.0f}",
        f"env steps {row[ENV_STEPS]:>9,.0f}",
        f"team return {team:9.3f}" if math.isfinite(team) else f"team return {'-':>9}",
        f"kl {row[KL_TOTAL]:.4f}/{row[TOTAL_KL_BUDGET]:.4f}",
        f"accepted {accepted}/{len(agents)}",
        f"{row[TIME_THIS_ITER_S]:.2f} s/iter",
    ]
    return " | ".join(p for p in parts if p)


def seed_result(rows: list[dict[str, float]]) -> str:
    """What one seed reached: iterations, env steps, time, final team return."""
    if not rows:
        return "no iteration finished"
    last = rows[-1]
    final = final_return(rows)
    shown = f"{final:.3f}" if math.isfinite(final) else "-"
    return (
        f"{_count(last[TRAINING_ITERATION], 'iteration')}, {last[ENV_STEPS]:,.0f} env steps, "
        f"{last[TIME_TOTAL_S]:.1f} s, final team return {shown} (mean of the last "
        f"{FINAL_FRACTION * 100:.0f} % of iterations)"
    )


def _count(n: float, word: str) -> str:
    return f"{n:.0f} {word}" if n == 1 else f"{n:.0f} {word}s"


def plot_seed(csv_path: Path, run_dir: Path, label: str) -> None:
    """Writes a seed's ``learning_curve.png`` and ``allocation.png`` from its metrics.csv."""
    from rllib_hatrpo.experiments.plots import plot_allocation, plot_learning_curve

    plot_learning_curve(csv_path, run_dir / "learning_curve.png", label=label)
    plot_allocation(csv_path, run_dir / "allocation.png", title=f"KL allocation ({label})")


def write_seed_summary(output: Path, seeds: Sequence[int], csvs: list[Path], label: str) -> None:
    """Writes ``summary.csv`` and the seeds' ``learning_curve.png``; prints the mean return."""
    from rllib_hatrpo.experiments.plots import plot_learning_curve
    from rllib_hatrpo.experiments.summaries import seed_summary

    table = seed_summary(seeds, csvs)
    table.to_csv(output / "summary.csv", index=False)
    plot_learning_curve(csvs, output / "learning_curve.png", label=label)
    mean, std = (table.loc[table[SEED] == s, FINAL_TEAM_RETURN].iloc[0] for s in ("mean", "std"))
    say(
        f"final team return over {len(seeds)} seeds: {mean:.3f} ± {std:.3f}; wrote "
        f"{output / 'summary.csv'} and {output / 'learning_curve.png'}"
    )
