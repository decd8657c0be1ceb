"""The training loop: ``algo.train()`` until a stop criterion, one record per iteration.

The one loop of ``hatrpo train`` and of the Tune trials
(:func:`rllib_hatrpo.experiments.tune.train_trial`: ``hatrpo tune``, the tuned examples and
``benchmarks/compare.py``). It trains, flattens each result into a ``metrics.csv`` row, says
when a checkpoint is due and when to stop; the caller writes, prints, saves or reports::

    for step in train_iterations(algo, StopCriteria(timesteps=100_000), checkpoint_every=5):
        csv.append(step.row)
        if step.stop_reason is None and step.checkpoint_due:
            save_checkpoint_atomically(algo, run_dir / "checkpoint")

Before each iteration the timers of the previous one are reset (the rows hold each
iteration's own sampling and learner time, not RLlib's running average). A run continued
from a checkpoint passes the rows it had logged (``restored``): its wall time counts on from
theirs, towards ``time_total_s`` and the time budget (a restored Algorithm counts from 0).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from rllib_hatrpo.experiments.records import (
    ENV_STEPS,
    TEAM_RETURN,
    TIME_TOTAL_S,
    TRAINING_ITERATION,
    flatten_result,
    reset_iteration_timers,
)

#: Iterations of a run that is given no stop criterion.
DEFAULT_STOP_ITERS = 20


@dataclasses.dataclass(frozen=True)
class StopCriteria:
    """When a run stops: the first criterion met (None: not used).

    Attributes:
        iters: Training iterations.
        timesteps: Env steps sampled (lifetime).
        team_return: Team return per episode (an iteration without a finished episode never
            meets it).
        time_budget_s: Seconds of training.
    """

    iters: int | None = None
    timesteps: int | None = None
    team_return: float | None = None
    time_budget_s: float | None = None

    def is_empty(self) -> bool:
        """Whether no criterion is set (such a run would never stop)."""
        return self == StopCriteria()

    def or_default(self) -> StopCriteria:
        """These criteria, or :data:`DEFAULT_STOP_ITERS` iterations if none is set."""
        return StopCriteria(iters=DEFAULT_STOP_ITERS) if self.is_empty() else self

    def reason(self, row: Mapping[str, float], elapsed_s: float) -> str | None:
        """Why the run stops after this ``metrics.csv`` row, or None to go on."""
        if self.iters is not None and row[TRAINING_ITERATION] >= self.iters:
            return f"{self.iters} iterations"
        if self.timesteps is not None and row[ENV_STEPS] >= self.timesteps:
            return f"{self.timesteps} env steps"
        if self.team_return is not None and row[TEAM_RETURN] >= self.team_return:
            return f"team return >= {self.team_return}"  # NaN (no episode yet) never stops
        if self.time_budget_s is not None and elapsed_s >= self.time_budget_s:
            return f"time budget {self.time_budget_s:g} s"
        return None

    def finished(self, rows: Sequence[Mapping[str, float]]) -> str | None:
        """Why a run whose logged rows are ``rows`` has stopped already, or None."""
        return self.reason(rows[-1], rows[-1][TIME_TOTAL_S]) if rows else None


@dataclasses.dataclass(frozen=True)
class Iteration:
    """One finished training iteration.

    Attributes:
        row: Its ``metrics.csv`` row (:func:`~rllib_hatrpo.experiments.records.flatten_result`),
            ``time_total_s`` counting the restored rows' time.
        checkpoint_due: ``checkpoint_every`` divides the iteration number.
        stop_reason: Why the run stops after it (the last record), or None.
    """

    row: dict[str, float]
    checkpoint_due: bool
    stop_reason: str | None


def train_iterations(
    algo: Any,
    stop: StopCriteria,
    *,
    checkpoint_every: int = 0,
    restored: Sequence[Mapping[str, float]] = (),
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[Iteration]:
    """Trains ``algo`` one iteration per step until ``stop``; yields each iteration.

    Args:
        algo: A built (or restored) RLlib ``Algorithm``.
        stop: When to stop; the last record carries the reason.
        checkpoint_every: Iterations between checkpoints (0: none due).
        restored: The rows the run logged before the checkpoint it continues from.
        clock: Seconds, for the time budget (``time.monotonic``).

    Raises:
        ValueError: ``stop`` sets no criterion.
    """
    if stop.is_empty():
        raise ValueError("train_iterations needs a stop criterion (iterations, env steps, ...)")
    agents = sorted(algo.config.policies)
    earlier_s = restored[-1][TIME_TOTAL_S] if restored else 0.0
    start = clock()
    while True:
        reset_iteration_timers(algo)
        row = flatten_result(algo.train(), agents)
        row[TIME_TOTAL_S] += earlier_s
        reason = stop.reason(row, earlier_s + clock() - start)
        due = checkpoint_every > 0 and algo.iteration % checkpoint_every == 0
        yield Iteration(row=row, checkpoint_due=due, stop_reason=reason)
        if reason:
            return


def finite_values(row: Mapping[str, Any]) -> dict[str, Any]:
    """``row`` without its NaN values, as a Tune trial reports it.

    A metric without a value yet (the team return before the first finished episode) is left
    out of the report rather than reported as NaN.
    """
    return {
        key: value
        for key, value in row.items()
        if not (isinstance(value, float) and math.isnan(value))
    }
