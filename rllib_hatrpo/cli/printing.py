"""What ``hatrpo train`` prints and draws: progress lines, per-seed results, seed summaries.

Every number comes from the ``metrics.csv`` rows (:mod:`rllib_hatrpo.experiments.records`);
the final team return is :func:`rllib_hatrpo.experiments.summaries.final_return`. The run's
progress towards its stop criteria, over all seeds, with an ETA, is :class:`RunProgress`.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TextIO

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


def progress_line(
    row: dict[str, float],
    agents: Sequence[str],
    seed: int | None = None,
    progress: str | None = None,
) -> str:
    """One line of training progress from a ``metrics.csv`` row.

    Args:
        row: The iteration's ``metrics.csv`` row.
        agents: The agents (for ``accepted n/n``: line searches that accepted a step).
        seed: Its seed, shown first (None: not shown).
        progress: The run's progress, shown last (``33% ETA 0:04``, :func:`progress_text`).
    """
    accepted = sum(
        1 for a in agents if row.get(agent_column(a, LINE_SEARCH_ACCEPTED), math.nan) == 1.0
    )
    team = row[TEAM_RETURN]
    parts = [
        f"seed {seed}" if seed is not None else None,
        f"iter {row[TRAINING_ITERATION]:>4.0f}",
        f"{row[ENV_STEPS]:>9,.0f} steps",
        f"return {team:8.3f}" if math.isfinite(team) else f"return {'-':>8}",
        f"kl {row[KL_TOTAL]:.4f}/{row[TOTAL_KL_BUDGET]:.4f}",
        f"accepted {accepted}/{len(agents)}",
        f"{row[TIME_THIS_ITER_S]:.2f} s/iter",
        progress,
    ]
    return " | ".join(p for p in parts if p)


def seed_fraction(row: Mapping[str, float] | None, stop: StopCriteria) -> float | None:
    """How far a seed is towards its stop criteria: the criterion furthest along, 0 to 1.

    Iterations, env steps and training seconds count; a team return cannot be extrapolated.

    Args:
        row: The seed's last ``metrics.csv`` row (None: none yet).
        stop: The run's stop criteria.

    Returns:
        The fraction, or None when only ``stop.team_return`` is set.
    """
    targets = [
        (TRAINING_ITERATION, stop.iters),
        (ENV_STEPS, stop.timesteps),
        (TIME_TOTAL_S, stop.time_budget_s),
    ]
    targets = [(column, target) for column, target in targets if target is not None]
    if not targets:
        return None
    if row is None:
        return 0.0
    done = [row.get(column, 0.0) / target for column, target in targets]
    return min(1.0, max((d for d in done if math.isfinite(d)), default=0.0))


def eta_s(fraction: float, start_fraction: float, elapsed_s: float) -> float | None:
    """Seconds left at the pace so far: ``elapsed_s`` took the run from start to now.

    Args:
        fraction: The run's progress now, 0 to 1.
        start_fraction: Its progress when the clock started (restored iterations count here).
        elapsed_s: Seconds since then.

    Returns:
        The estimate, or None before any progress.
    """
    gained = fraction - start_fraction
    if gained <= 0 or elapsed_s <= 0:
        return None
    return max(0.0, elapsed_s * (1.0 - fraction) / gained)


def format_duration(seconds: float | None) -> str:
    """``1:02:03``, ``2:03`` or ``-`` (unknown)."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def progress_text(fraction: float | None, eta: float | None) -> str:
    """The run's progress in a progress line: ``33% ETA 0:04`` (``ETA -`` without a fraction)."""
    shown = f"{fraction * 100:3.0f}% " if fraction is not None else ""
    return f"{shown}ETA {format_duration(eta)}"


def progress_bar(fraction: float | None, eta: float | None, label: str, width: int = 24) -> str:
    """A one-line bar: ``[######------------------]  25% seed 1/2 ETA 0:04``."""
    filled = round((fraction or 0.0) * width)
    bar = f"[{'#' * filled}{'-' * (width - filled)}] " if fraction is not None else ""
    return f"{bar}{progress_text(fraction, eta)} | {label}"


class RunProgress:
    """The whole run's progress over all seeds, printed with the lines of ``hatrpo train``.

    Each seed counts 1/len(seeds); within a seed, the stop criterion furthest along
    (:func:`seed_fraction`). On a terminal, a bar at the bottom is redrawn with ``\\r``;
    elsewhere (a log, a pipe, CI) only plain lines are printed, each iteration's with its
    percentage and ETA.
    """

    def __init__(
        self,
        stop: StopCriteria,
        seeds: Sequence[int],
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Starts the clock.

        Args:
            stop: The stop criteria of every seed.
            seeds: The run's seeds, in training order.
            stream: Where to print (None: ``sys.stdout`` at each print).
            clock: Seconds (a test's fake clock).
        """
        self.stop = stop
        self.seeds = list(seeds)
        self._done = {seed: 0.0 for seed in self.seeds}
        self._stream = stream
        self._clock = clock
        self._start_s = clock()
        self._start_fraction = 0.0
        self._seed: int | None = None
        self._bar_shown = False

    @property
    def stream(self) -> TextIO:
        """Where the lines go."""
        return self._stream if self._stream is not None else sys.stdout

    def fraction(self) -> float | None:
        """The run's progress, 0 to 1 (None: only a team return to stop at)."""
        if seed_fraction(None, self.stop) is None:
            return None
        return sum(self._done.values()) / len(self.seeds)

    def eta_s(self) -> float | None:
        """Seconds left at this command's pace so far (None: not known yet)."""
        fraction = self.fraction()
        if fraction is None:
            return None
        return eta_s(fraction, self._start_fraction, self._clock() - self._start_s)

    def restored(self, seed: int, rows: Sequence[Mapping[str, float]]) -> None:
        """A seed continues from ``rows``: their progress is not this command's pace."""
        before = self._done[seed]
        self._set(seed, rows[-1] if rows else None)
        self._start_fraction += (self._done[seed] - before) / len(self.seeds)

    def starting(self, seed: int) -> None:
        """A seed is being built (seconds): the bar shows it from now."""
        self._seed = seed
        self._redraw()

    def iteration(self, seed: int, row: Mapping[str, float], agents: Sequence[str]) -> None:
        """Prints a seed's iteration: its progress line, with the run's percentage and ETA."""
        self._set(seed, row)
        line = progress_line(dict(row), agents, seed, progress_text(self.fraction(), self.eta_s()))
        self.say(line)

    def finished(self, seed: int) -> None:
        """A seed has stopped (any criterion): it counts as done."""
        self._done[seed] = 1.0
        self._seed = seed
        self._redraw()

    def say(self, line: str) -> None:
        """Prints a line above the bar (a terminal) or as is."""
        self._clear()
        print(line, file=self.stream, flush=True)
        self._redraw()

    def close(self) -> None:
        """Removes the bar (a terminal): the lines above it stay."""
        self._clear()

    def _set(self, seed: int, row: Mapping[str, float] | None) -> None:
        self._seed = seed
        self._done[seed] = max(self._done[seed], seed_fraction(row, self.stop) or 0.0)

    def _tty(self) -> bool:
        isatty = getattr(self.stream, "isatty", None)
        return bool(isatty and isatty())

    def _clear(self) -> None:
        if self._bar_shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self._bar_shown = False

    def _redraw(self) -> None:
        if not self._tty() or self._seed is None:
            return
        position = self.seeds.index(self._seed) + 1
        label = f"seed {position}/{len(self.seeds)}"
        self.stream.write("\r\033[K" + progress_bar(self.fraction(), self.eta_s(), label))
        self.stream.flush()
        self._bar_shown = True


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
