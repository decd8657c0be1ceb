"""What a training run writes: one CSV row per iteration and atomically replaced checkpoints.

Used by the command line (:mod:`rllib_hatrpo.cli`) and usable from your own training loop::

    agents = sorted(algo.config.policies)
    with MetricsCsv(run_dir / "metrics.csv", agents) as csv:
        for _ in range(10):
            reset_iteration_timers(algo)
            csv.append(flatten_result(algo.train(), agents))
    save_checkpoint_atomically(algo, run_dir / "checkpoint")

and to continue such a run after a crash::

    checkpoint, note = recover_checkpoint(run_dir / "checkpoint")  # or CheckpointError
    restore_checkpoint(algo, checkpoint)                           # or CheckpointError
    rows = truncate_metrics_csv(run_dir / "metrics.csv", algo.iteration)
    with MetricsCsv(run_dir / "metrics.csv", agents, append=True) as csv: ...

No Ray import at module level: ``flatten_result`` reads a plain result dict, and the checkpoint
functions only call ``algo.save_to_path``/``algo.restore_from_path``.
"""

from __future__ import annotations

import csv
import json
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

#: The file that marks a directory as a complete RLlib checkpoint (written by ``save_to_path``).
CHECKPOINT_MARKER = "rllib_checkpoint.json"

#: Suffixes of a Checkpointable's state file (``<STATE_FILE_NAME>.pkl`` or ``.msgpack``).
_STATE_SUFFIXES = (".pkl", ".msgpack")


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
    if "training_iteration" not in header:
        raise ValueError(f"{path} has no training_iteration column: not a metrics.csv")
    column = header.index("training_iteration")
    kept_lines, rows = lines[:1], []
    for line in lines[1:]:
        cells = next(csv.reader([line]), [])
        if len(cells) != len(header) or not line.endswith("\n"):
            continue  # an incomplete line: the crash interrupted its write
        iteration = _number(cells[column])
        if iteration <= last_iteration:
            kept_lines.append(line)
            rows.append({name: _number(cell) for name, cell in zip(header, cells, strict=True)})
    iterations = [int(row["training_iteration"]) for row in rows]
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


class CheckpointError(Exception):
    """A checkpoint that is missing, incomplete or damaged; the message names the path."""


def recover_checkpoint(path: str | os.PathLike) -> tuple[Path, str | None]:
    """The complete checkpoint of a run at ``path``, recovering from an interrupted replace.

    :func:`save_checkpoint_atomically` moves the previous checkpoint to ``<path>.old`` before
    renaming the new one into place; a crash between the two renames leaves ``path`` missing
    and the previous checkpoint at ``<path>.old``. Then ``<path>.old`` is checked and moved
    back to ``path`` (``<path>.tmp`` is not used: it may be a half-written later save).

    Args:
        path: The checkpoint directory.

    Returns:
        (``path``, None), or (``path``, a note saying it was recovered from ``<path>.old``).

    Raises:
        CheckpointError: Neither ``path`` nor ``<path>.old`` holds a complete checkpoint.
    """
    path = Path(path).absolute()
    old = path.with_name(path.name + ".old")
    if path.exists():
        check_checkpoint_files(path)
        return path, None
    if old.is_dir():
        check_checkpoint_files(old)
        os.replace(old, path)
        return path, (
            f"{path} was missing and {old} holds the previous complete checkpoint (the run "
            f"stopped while replacing it): continuing from it, now moved back to {path}"
        )
    raise CheckpointError(f"no checkpoint at {path} (nor at {old})")


def check_checkpoint_files(path: str | os.PathLike) -> None:
    """Checks the files every RLlib algorithm checkpoint has, without loading any state.

    ``rllib_checkpoint.json`` must parse and name a constructor file and a state file that
    exist. :func:`restore_checkpoint` checks the rest against the algorithm.

    Raises:
        CheckpointError: A file is missing or ``rllib_checkpoint.json`` is not valid JSON.
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path} is not a directory")
    marker = path / CHECKPOINT_MARKER
    if not marker.is_file():
        raise CheckpointError(f"{path} has no {CHECKPOINT_MARKER}: not a complete checkpoint")
    try:
        meta = json.loads(marker.read_text())
        ctor_file, state_file = meta["class_and_ctor_args_file"], meta["state_file"]
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{marker} is damaged: {type(err).__name__}: {err}") from err
    if not (path / ctor_file).is_file():
        raise CheckpointError(f"{path / ctor_file} is missing")
    if not _has_state_file(path, state_file):
        raise CheckpointError(f"{path / state_file}.pkl is missing")


def restore_checkpoint(algo: Any, path: str | os.PathLike) -> None:
    """Restores ``algo`` from ``path``, refusing a checkpoint that lacks a part of ``algo``.

    RLlib's ``restore_from_path`` silently skips a component whose directory is missing (the
    learner, a module, ...), which would continue with freshly initialised weights. Here every
    checkpointable component of ``algo`` (recursively: learner group, learner, each module,
    EnvRunner and connector states) must have its directory and state file; then any error
    while loading (truncated or garbage files) is raised as a :class:`CheckpointError`.

    Args:
        algo: A built RLlib ``Algorithm`` with the checkpoint's config.
        path: A checkpoint directory written by ``algo.save_to_path``.

    Raises:
        CheckpointError: A part is missing, a file cannot be loaded, or the checkpoint holds
            no training iteration.
    """
    path = Path(path)
    check_checkpoint_files(path)
    missing = _missing_components(algo, path)
    if missing:
        shown = ", ".join(str(m) for m in missing[:3]) + (" ..." if len(missing) > 3 else "")
        raise CheckpointError(f"{path} is incomplete: missing {shown}")
    try:
        algo.restore_from_path(str(path))
    except Exception as err:  # any unreadable file: report it, never continue half-restored
        detail = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
        raise CheckpointError(f"cannot restore {path}: {detail}") from err
    if algo.iteration < 1:
        raise CheckpointError(f"{path} holds no training iteration")


def _missing_components(algo: Any, path: Path) -> list[Path]:
    """Parts of ``algo``'s checkpoint absent under ``path``.

    Every top-level component (learner group, EnvRunner or connectors) needs its directory
    and state file; inside the learner group, every sub-component down to each module (these
    hold the weights, the optimizer and HATRPO's learner state, and are always saved whole).
    EnvRunner sub-components are not checked: RLlib saves only those with state.
    """
    from ray.rllib.core import COMPONENT_LEARNER_GROUP

    missing = []
    for name, component in algo.get_checkpointable_components():
        directory = path / name
        missing += _missing_state(component, directory)
        if name == COMPONENT_LEARNER_GROUP and directory.is_dir():
            missing += _missing_subcomponents(component, directory)
    return missing


def _missing_subcomponents(obj: Any, path: Path) -> list[Path]:
    missing = []
    for name, component in obj.get_checkpointable_components():
        directory = path / name
        missing += _missing_state(component, directory)
        if directory.is_dir() and hasattr(component, "get_checkpointable_components"):
            missing += _missing_subcomponents(component, directory)
    return missing


def _missing_state(component: Any, directory: Path) -> list[Path]:
    """``[directory]`` if it is absent; its state file if that is; else ``[]``.

    Remote actors (an actor manager) are restored, and checked, by RLlib itself.
    """
    if not directory.is_dir():
        return [directory]
    if not hasattr(component, "get_checkpointable_components"):
        return []
    state_file = getattr(component, "STATE_FILE_NAME", "state")
    return [] if _has_state_file(directory, state_file) else [directory / f"{state_file}.pkl"]


def _has_state_file(directory: Path, stem: str) -> bool:
    return any((directory / f"{stem}{suffix}").is_file() for suffix in _STATE_SUFFIXES)


def reset_iteration_timers(algo: Any) -> None:
    """Makes the result's sampling and learner timers this iteration's, not a running EMA.

    ``Algorithm.metrics.log_time`` reduces with an EMA (coefficient 0.01) over the whole run,
    so after the first iteration ``result["timers"]`` barely moves; deleting the two timers
    before ``algo.train()`` makes its result hold exactly this iteration's time.
    """
    from ray.rllib.utils.metrics import ENV_RUNNER_SAMPLING_TIMER, LEARNER_UPDATE_TIMER, TIMERS

    for timer in (ENV_RUNNER_SAMPLING_TIMER, LEARNER_UPDATE_TIMER):
        algo.metrics.delete(TIMERS, timer, key_error=False)
