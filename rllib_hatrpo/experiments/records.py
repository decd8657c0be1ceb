"""What a training run writes: one CSV row per iteration and atomically replaced checkpoints.

The column names (:data:`TEAM_RETURN`, :data:`ENV_STEPS`, ...) are the keys of every row that
``hatrpo train`` writes to ``metrics.csv`` and that a Tune trial reports. Usable from your own
training loop (:func:`rllib_hatrpo.experiments.loop.train_iterations` is the loop of
``hatrpo train`` and of the Tune trials)::

    agents = sorted(algo.config.policies)
    with MetricsCsv(run_dir / "metrics.csv", agents) as csv:
        for step in train_iterations(algo, StopCriteria(iters=10)):
            csv.append(step.row)
    save_checkpoint_atomically(algo, run_dir / "checkpoint")

and to continue such a run after a crash::

    checkpoint, note = recover_checkpoint(run_dir / "checkpoint")  # or CheckpointError
    restore_checkpoint(algo, checkpoint)                           # or CheckpointError
    rows = truncate_metrics_csv(run_dir / "metrics.csv", algo.iteration)
    with MetricsCsv(run_dir / "metrics.csv", agents, append=True) as csv: ...

The checkpoint functions live in :mod:`rllib_hatrpo.experiments.checkpoints` (the one save and
restore routine, with the manifest and the finiteness check) and are importable from here too.

No Ray import at module level: ``flatten_result`` reads a plain result dict.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rllib_hatrpo.experiments.checkpoints import (
    CHECKPOINT_MARKER,
    MANIFEST_FILE,
    CheckpointError,
    NonFiniteStateError,
    check_checkpoint_files,
    recover_checkpoint,
    restore_checkpoint,
    save_checkpoint_atomically,
)
from rllib_hatrpo.metrics import (
    KL_TOTAL,
    NUM_PROPOSALS,
    PER_AGENT_KEYS,
    SKIPPED_STEPS,
    TEAM_EPISODE_RETURN_MEAN,
    TOTAL_KL_BUDGET,
)

__all__ = [
    "CHECKPOINT_MARKER",
    "ENV_STEPS",
    "EPISODE_RETURN_MEAN",
    "ITERATION_COLUMNS",
    "LEARNER_UPDATE_TIME_S",
    "MANIFEST_FILE",
    "METHOD",
    "SAMPLING_TIME_S",
    "SEED",
    "TEAM_RETURN",
    "TIME_THIS_ITER_S",
    "TIME_TOTAL_S",
    "TRAINING_ITERATION",
    "TRIAL",
    "CheckpointError",
    "MetricsCsv",
    "NonFiniteStateError",
    "agent_column",
    "check_checkpoint_files",
    "csv_columns",
    "flatten_result",
    "recover_checkpoint",
    "reset_iteration_timers",
    "restore_checkpoint",
    "save_checkpoint_atomically",
    "truncate_metrics_csv",
]

# RLlib's result keys (the string values of `ray.rllib.utils.metrics` constants, spelled out
# so that this module imports without Ray).
_ENV_RUNNERS = "env_runners"
_LEARNERS = "learners"
_ALL_MODULES = "__all_modules__"
_TIMERS = "timers"
_ENV_STEPS_LIFETIME = "num_env_steps_sampled_lifetime"
_EPISODE_RETURN_MEAN = "episode_return_mean"
_LEARNER_UPDATE_TIMER = "learner_update_timer"
_SAMPLING_TIMER = "env_runner_sampling_timer"
_ITERATION = "training_iteration"
_TIME_TOTAL = "time_total_s"
_TIME_THIS_ITER = "time_this_iter_s"

#: The iteration number (1, 2, ...).
TRAINING_ITERATION = "training_iteration"
#: Env steps sampled so far (lifetime; continues after a restore).
ENV_STEPS = "env_steps"
#: Seconds of training so far (a resumed ``hatrpo train`` run counts its earlier time).
TIME_TOTAL_S = "time_total_s"
#: Seconds of this iteration.
TIME_THIS_ITER_S = "time_this_iter_s"
#: The team return per episode (mean over the recent episodes; NaN: none finished yet).
TEAM_RETURN = "team_return"
#: RLlib's return per episode: the sum over agents, n × the team return.
EPISODE_RETURN_MEAN = "episode_return_mean"
#: Seconds of this iteration's learner update.
LEARNER_UPDATE_TIME_S = "learner_update_time_s"
#: Seconds of this iteration's sampling.
SAMPLING_TIME_S = "sampling_time_s"

#: Column of curves and summaries (and a Tune trial's parameter): the method trained, an
#: allocator name or ``"ppo"``.
METHOD = "method"
#: Column of curves and summaries (and a Tune trial's parameter): the seed.
SEED = "seed"
#: Column of curves and summaries of Tune experiments: the trial's folder name.
TRIAL = "trial"

#: Per-iteration columns of ``metrics.csv``, in order; per-agent columns follow.
ITERATION_COLUMNS = (
    TRAINING_ITERATION,
    ENV_STEPS,
    TIME_TOTAL_S,
    TIME_THIS_ITER_S,
    TEAM_RETURN,
    EPISODE_RETURN_MEAN,
    KL_TOTAL,
    TOTAL_KL_BUDGET,
    SKIPPED_STEPS,
    NUM_PROPOSALS,
    LEARNER_UPDATE_TIME_S,
    SAMPLING_TIME_S,
)


def agent_column(agent: str, key: str) -> str:
    """The ``metrics.csv`` column of a per-agent metric: ``"<agent>/<key>"``."""
    return f"{agent}/{key}"


def csv_columns(agents: Sequence[str]) -> list[str]:
    """All columns of ``metrics.csv`` for these agents (iteration columns, then per agent)."""
    return [*ITERATION_COLUMNS, *(agent_column(a, k) for a in agents for k in PER_AGENT_KEYS)]


def _number(value: Any) -> float:
    """``value`` as a float; NaN for None, missing or non-numeric values."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _get(result: Mapping[str, Any], *path: str) -> float:
    node: Any = result
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return math.nan
        node = node[key]
    return _number(node)


def flatten_result(result: Mapping[str, Any], agents: Sequence[str]) -> dict[str, float]:
    """One ``metrics.csv`` row (see :func:`csv_columns`) from a result dict of ``algo.train()``.

    Missing values are NaN: ``team_return`` in an iteration in which no episode finished, and
    every metric of an agent the learner did not report.

    Args:
        result: The dict returned by ``algo.train()``.
        agents: The agents' module IDs, e.g. ``sorted(algo.config.policies)``.

    Returns:
        A flat dict of floats keyed by column name.
    """
    env_steps = _get(result, _ENV_RUNNERS, _ENV_STEPS_LIFETIME)
    if math.isnan(env_steps):
        env_steps = _get(result, _ENV_STEPS_LIFETIME)
    row = {
        TRAINING_ITERATION: _get(result, _ITERATION),
        ENV_STEPS: env_steps,
        TIME_TOTAL_S: _get(result, _TIME_TOTAL),
        TIME_THIS_ITER_S: _get(result, _TIME_THIS_ITER),
        TEAM_RETURN: _get(result, _ENV_RUNNERS, TEAM_EPISODE_RETURN_MEAN),
        EPISODE_RETURN_MEAN: _get(result, _ENV_RUNNERS, _EPISODE_RETURN_MEAN),
        LEARNER_UPDATE_TIME_S: _get(result, _TIMERS, _LEARNER_UPDATE_TIMER),
        SAMPLING_TIME_S: _get(result, _TIMERS, _SAMPLING_TIMER),
    }
    for key in (KL_TOTAL, TOTAL_KL_BUDGET, SKIPPED_STEPS, NUM_PROPOSALS):
        row[key] = _get(result, _LEARNERS, _ALL_MODULES, key)
    for agent in agents:
        for key in PER_AGENT_KEYS:
            row[agent_column(agent, key)] = _get(result, _LEARNERS, agent, key)
    return {column: row[column] for column in csv_columns(agents)}


class MetricsCsv:
    """Writes ``metrics.csv`` one row at a time, flushed after every row.

    A run that crashes keeps every finished iteration. NaN is written as an empty cell
    (pandas reads it back as NaN). The file is created (truncated) when the object is, unless
    ``append``: then rows go after the existing ones.
    """

    def __init__(
        self, path: str | os.PathLike, agents: Sequence[str], append: bool = False
    ) -> None:
        """Creates the file and writes the header, or opens an existing file to append to.

        Args:
            path: The CSV file; its directory is created if needed.
            agents: The agents' module IDs (they fix the per-agent columns).
            append: Continue an existing file (a resumed run); its header must be this one.

        Raises:
            ValueError: ``append`` and the file's header is not the columns of ``agents``.
        """
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.columns = csv_columns(agents)
        if append and self.path.is_file() and self.path.stat().st_size > 0:
            header = _read_header(self.path)
            if header != self.columns:
                raise ValueError(
                    f"{self.path} has other columns than this run writes (agents {list(agents)}); "
                    "it belongs to another run"
                )
            self._file = self.path.open("a", newline="", encoding="utf-8")
            write_header = False
        else:
            self._file = self.path.open("w", newline="", encoding="utf-8")
            write_header = True
        self._writer = csv.DictWriter(
            self._file, fieldnames=self.columns, restval="", extrasaction="ignore"
        )
        if write_header:
            self._writer.writeheader()
        self._file.flush()

    def append(self, row: Mapping[str, Any]) -> None:
        """Writes one row (missing columns and NaN left empty) and flushes it to disk."""
        self._writer.writerow({key: _cell(value) for key, value in row.items()})
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        """Closes the file."""
        self._file.close()

    def __enter__(self) -> MetricsCsv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as f:
        return next(csv.reader(f), [])


def truncate_metrics_csv(path: str | os.PathLike, last_iteration: int) -> list[dict[str, float]]:
    """Keeps the rows of iterations 1..``last_iteration`` of ``metrics.csv``; returns them.

    A run that crashed after its last checkpoint logged iterations the checkpoint does not
    hold; a resumed run repeats them, so they are dropped first (no iteration twice). An
    incomplete last line (a crash while writing it) is dropped too. The file is replaced
    atomically and the kept lines are copied byte for byte.

    Args:
        path: A ``metrics.csv`` written by :class:`MetricsCsv`.
        last_iteration: The training iteration of the checkpoint the run continues from.

    Returns:
        The kept rows as dicts of floats (NaN for empty cells), in file order.

    Raises:
        ValueError: The kept rows are not exactly iterations 1..``last_iteration``, once each
            (rows are missing, e.g. the file was edited, or belong to another run).
    """
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as f:
        lines = f.read().splitlines(keepends=True)
    header = next(csv.reader(lines[:1]), [])
    if TRAINING_ITERATION not in header:
        raise ValueError(f"{path} has no {TRAINING_ITERATION} column: not a metrics.csv")
    column = header.index(TRAINING_ITERATION)
    kept_lines, rows = lines[:1], []
    for line in lines[1:]:
        cells = next(csv.reader([line]), [])
        if len(cells) != len(header) or not line.endswith("\n"):
            continue  # an incomplete line: the crash interrupted its write
        iteration = _number(cells[column])
        if iteration <= last_iteration:
            kept_lines.append(line)
            rows.append({name: _number(cell) for name, cell in zip(header, cells, strict=True)})
    iterations = [int(row[TRAINING_ITERATION]) for row in rows]
    if iterations != list(range(1, last_iteration + 1)):
        raise ValueError(
            f"{path} does not hold iterations 1..{last_iteration} once each (it has "
            f"{_span(iterations)}), so it does not match the checkpoint at iteration "
            f"{last_iteration}"
        )
    if len(kept_lines) != len(lines):
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w", newline="", encoding="utf-8") as f:
            f.writelines(kept_lines)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    return rows


def _span(iterations: list[int]) -> str:
    if not iterations:
        return "no rows"
    return f"{len(iterations)} rows, iterations {iterations[0]}..{iterations[-1]}"


def _cell(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return ""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)  # "3" rather than "3.0" for counters and iteration numbers
    return value


def reset_iteration_timers(algo: Any) -> None:
    """Makes the result's sampling and learner timers this iteration's, not a running EMA.

    ``Algorithm.metrics.log_time`` reduces with an EMA (coefficient 0.01) over the whole run,
    so after the first iteration ``result["timers"]`` barely moves; deleting the two timers
    before ``algo.train()`` makes its result hold exactly this iteration's time. The training
    loop (:func:`rllib_hatrpo.experiments.loop.train_iterations`) calls it before every
    iteration.
    """
    from ray.rllib.utils.metrics import ENV_RUNNER_SAMPLING_TIMER, LEARNER_UPDATE_TIMER, TIMERS

    for timer in (ENV_RUNNER_SAMPLING_TIMER, LEARNER_UPDATE_TIMER):
        algo.metrics.delete(TIMERS, timer, key_error=False)
