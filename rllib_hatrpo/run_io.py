"""What a training run writes: one CSV row per iteration and atomically replaced checkpoints.

Used by the command line (:mod:`rllib_hatrpo.cli`) and usable from your own training loop::

    agents = sorted(algo.config.policies)
    with MetricsCsv(run_dir / "metrics.csv", agents) as csv:
        for _ in range(10):
            csv.append(flatten_result(algo.train(), agents))
    save_checkpoint_atomically(algo, run_dir / "checkpoint")

No Ray import at module level: ``flatten_result`` reads a plain result dict, and
``save_checkpoint_atomically`` only calls ``algo.save_to_path``.
"""

from __future__ import annotations

import csv
import math
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rllib_hatrpo.metrics import (
    KL_TOTAL,
    NUM_PROPOSALS,
    PER_AGENT_KEYS,
    SKIPPED_STEPS,
    TEAM_EPISODE_RETURN_MEAN,
    TOTAL_KL_BUDGET,
)

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

#: Per-iteration columns of ``metrics.csv``, in order; per-agent columns follow.
ITERATION_COLUMNS = (
    "training_iteration",
    "env_steps",
    "time_total_s",
    "time_this_iter_s",
    "team_return",
    "episode_return_mean",
    KL_TOTAL,
    TOTAL_KL_BUDGET,
    SKIPPED_STEPS,
    NUM_PROPOSALS,
    "learner_update_time_s",
    "sampling_time_s",
)

#: Name of the file written next to a checkpoint directory while it is being replaced.
CHECKPOINT_MARKER = "rllib_checkpoint.json"


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
        "training_iteration": _get(result, "training_iteration"),
        "env_steps": env_steps,
        "time_total_s": _get(result, "time_total_s"),
        "time_this_iter_s": _get(result, "time_this_iter_s"),
        "team_return": _get(result, _ENV_RUNNERS, TEAM_EPISODE_RETURN_MEAN),
        "episode_return_mean": _get(result, _ENV_RUNNERS, _EPISODE_RETURN_MEAN),
        "learner_update_time_s": _get(result, _TIMERS, _LEARNER_UPDATE_TIMER),
        "sampling_time_s": _get(result, _TIMERS, _SAMPLING_TIMER),
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
    (pandas reads it back as NaN). The file is created (truncated) when the object is.
    """

    def __init__(self, path: str | os.PathLike, agents: Sequence[str]) -> None:
        """Creates the file and writes the header.

        Args:
            path: The CSV file; its directory is created if needed.
            agents: The agents' module IDs (they fix the per-agent columns).
        """
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.columns = csv_columns(agents)
        self._file = self.path.open("w", newline="", encoding="utf-8")
        self._writer = csv.DictWriter(
            self._file, fieldnames=self.columns, restval="", extrasaction="ignore"
        )
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


def _cell(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return ""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)  # "3" rather than "3.0" for counters and iteration numbers
    return value


def save_checkpoint_atomically(algo: Any, path: str | os.PathLike) -> Path:
    """Saves ``algo`` to ``path`` so that ``path`` never holds a half-written checkpoint.

    Writes to the sibling ``<path>.tmp``, then moves the previous checkpoint (if any) to
    ``<path>.old``, renames the new one into place and only then deletes the old one. A crash
    while saving leaves the previous checkpoint untouched at ``path``; a crash between the two
    renames (a few microseconds) leaves it at ``<path>.old``.

    Args:
        algo: An RLlib ``Algorithm`` (anything with ``save_to_path``).
        path: The checkpoint directory.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        RuntimeError: The saved directory has no ``rllib_checkpoint.json``.
    """
    path = Path(path).absolute()
    tmp = path.with_name(path.name + ".tmp")
    old = path.with_name(path.name + ".old")
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(tmp, ignore_errors=True)
    algo.save_to_path(str(tmp))
    if not (tmp / CHECKPOINT_MARKER).is_file():
        raise RuntimeError(f"Saving the checkpoint to {tmp} wrote no {CHECKPOINT_MARKER}.")
    shutil.rmtree(old, ignore_errors=True)
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)
    return path
