"""Continuing an interrupted ``hatrpo train`` run: ``hatrpo train --resume RUN_DIR``.

A run directory holds ``args.json`` (the flags it was started with) and one ``seed_<s>/`` per
seed with ``metrics.csv`` and ``checkpoint/``. Resuming reloads the flags, restores every
unfinished seed from its checkpoint (weights, critic optimizer, the learner's agent-order RNG
and allocator state, the metrics counters such as env steps and the iteration number), drops
the ``metrics.csv`` rows logged after that checkpoint and appends the new ones, so that every
iteration appears exactly once.

Only flags that decide when a run stops or how it runs may change on resume
(:data:`STOP_FLAGS`, :data:`CHANGEABLE_FLAGS`); any other flag given with ``--resume`` must equal
the saved value. A missing or damaged checkpoint of a seed that logged iterations is an error,
never a silent fresh start: the message names the path and what to do.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rllib_hatrpo.cli.common import UsageError
from rllib_hatrpo.experiments.checkpoints import (
    CheckpointError,
    recover_checkpoint,
    restore_checkpoint,
)
from rllib_hatrpo.experiments.records import truncate_metrics_csv

#: File of a run directory holding the flags the run was started with.
ARGS_FILE = "args.json"

#: Stop flags: given with ``--resume``, they replace the saved stop criteria as a whole.
STOP_FLAGS = ("stop_iters", "stop_timesteps", "stop_return", "time_budget_s")

#: Flags that change how a run executes, not what it learns: ``--resume`` may change them.
CHANGEABLE_FLAGS = (
    "num_cpus",
    "checkpoint_every",
    "restart_failed_env_runners",
    "max_env_runner_restarts",
)

#: Namespace entries that are not flags of a run.
_NOT_SAVED = ("run", "parser", "argv")

_FIX = (
    "Restore that directory from a backup, or delete it to train this seed again from the "
    "start (the other seeds are kept)."
)


def load_run_record(run_dir: Path) -> dict[str, Any]:
    """Reads ``RUN_DIR/args.json`` (written by ``hatrpo train``).

    Raises:
        UsageError: ``run_dir`` is not a ``hatrpo train`` output directory (``--resume``).
    """
    path = run_dir / ARGS_FILE
    if not path.is_file():
        hint = ""
        if (run_dir.parent / ARGS_FILE).is_file():
            hint = f" (give the run directory {run_dir.parent}, not a seed directory)"
        raise UsageError(
            "--resume",
            f"{run_dir} has no {ARGS_FILE}: not an output directory of `hatrpo train`{hint}",
        )
    try:
        record = json.loads(path.read_text())
        if not isinstance(record.get("flags"), dict):
            raise ValueError("no 'flags' object")
    except (ValueError, AttributeError) as err:
        raise UsageError("--resume", f"{path} is damaged: {err}") from err
    return record


def merge_flags(
    saved: Mapping[str, Any],
    given: Mapping[str, Any],
    defaults: Mapping[str, Any],
    run_dir: Path,
) -> dict[str, Any]:
    """The flags of the resumed run: the saved ones, with the allowed changes given now.

    Args:
        saved: ``args.json``'s ``flags`` (flags added since the run started take their
            defaults).
        given: The flags given on this command line with ``--resume`` (not their defaults).
        defaults: Every train flag's default.
        run_dir: The run directory being resumed.

    Returns:
        Every train flag's value; ``output`` and ``resume`` are ``run_dir``.

    Raises:
        UsageError: A given flag that may not change differs from its saved value.
    """
    merged = {key: value for key, value in defaults.items() if key not in _NOT_SAVED}
    merged.update({key: value for key, value in saved.items() if key in merged})
    for key, value in given.items():
        if key in ("resume", *_NOT_SAVED, *STOP_FLAGS, *CHANGEABLE_FLAGS):
            continue
        if key == "output":
            if Path(value).absolute() != run_dir.absolute():
                raise UsageError(
                    "--output",
                    f"a resumed run writes where it started: --resume continues the run in "
                    f"{run_dir}; drop --output {value}",
                )
            continue
        if _plain(value) != _plain(merged.get(key)):
            flag = "--" + key.replace("_", "-")
            raise UsageError(
                flag,
                f"{_show(value)} conflicts with the run being resumed, which was started with "
                f"{flag} {_show(merged.get(key))} ({run_dir / ARGS_FILE}): a resumed run keeps "
                "its settings. Drop the flag, or start a new run with another --output. Only "
                "the stop flags, --num-cpus, --checkpoint-every and the EnvRunner restart "
                "flags may change on resume.",
            )
    if any(key in given for key in STOP_FLAGS):
        merged.update({key: given.get(key) for key in STOP_FLAGS})
    merged.update({key: given[key] for key in CHANGEABLE_FLAGS if key in given})
    merged["output"] = run_dir
    merged["resume"] = run_dir
    return merged


def _plain(value: Any) -> Any:
    """``value`` as JSON would hold it (Path -> str, tuple -> list), for comparisons."""
    return json.loads(json.dumps(value, default=str))


def _show(value: Any) -> str:
    if isinstance(value, list | tuple):
        return " ".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def record_resume(run_dir: Path, flags: Mapping[str, Any], argv: Sequence[str]) -> None:
    """Updates ``args.json``: the flags now in force and a line per resume (time, argv)."""
    path = run_dir / ARGS_FILE
    record = json.loads(path.read_text())
    record["flags"] = {
        key: str(value) if isinstance(value, Path) else value
        for key, value in flags.items()
        if key not in _NOT_SAVED
    }
    record.setdefault("resumed", []).append(
        {"time": time.strftime("%Y-%m-%d %H:%M:%S"), "argv": list(argv)}
    )
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str) + "\n")
    os.replace(tmp, path)


@dataclasses.dataclass(frozen=True)
class SeedResume:
    """How one seed of a resumed run continues.

    Attributes:
        seed: The seed.
        run_dir: ``RUN_DIR/seed_<seed>``.
        checkpoint: The checkpoint to restore, or None: the seed never finished an iteration
            (it had not started, or was stopped in its first one) and trains from the start.
        note: A message for the user (the checkpoint came from ``checkpoint.old``, or the seed
            starts afresh), or None.
    """

    seed: int
    run_dir: Path
    checkpoint: Path | None
    note: str | None = None


def plan_seed(run_dir: Path, seed: int) -> SeedResume:
    """Finds the checkpoint a seed continues from, checking its files (no Ray needed).

    Raises:
        UsageError: The seed logged iterations but its checkpoint is missing or damaged
            (``--resume``; the message names the path and the fix).
    """
    csv_path, checkpoint = run_dir / "metrics.csv", run_dir / "checkpoint"
    rows = _count_rows(csv_path)
    nothing_saved = not any(
        p.exists() for p in (checkpoint, checkpoint.with_name(checkpoint.name + ".old"))
    )
    if rows == 0 and nothing_saved:
        return SeedResume(
            seed, run_dir, None, f"seed {seed}: no finished iteration yet: from the start"
        )
    try:
        path, note = recover_checkpoint(checkpoint)
    except CheckpointError as err:
        if nothing_saved:
            tmp = checkpoint.with_name(checkpoint.name + ".tmp")
            when = "during" if tmp.exists() else "before"
            raise UsageError(
                "--resume",
                f"seed {seed}: {csv_path} holds {rows} iteration(s) but there is no checkpoint "
                f"at {checkpoint}: the run stopped {when} its first checkpoint (train with "
                f"--checkpoint-every N to checkpoint during training). Delete {run_dir} to "
                "train this seed again from the start.",
            ) from err
        raise UsageError("--resume", f"seed {seed}: {err}. {_FIX}") from err
    return SeedResume(seed, run_dir, path, note and f"seed {seed}: {note}")


def _count_rows(csv_path: Path) -> int:
    if not csv_path.is_file():
        return 0
    with csv_path.open(encoding="utf-8") as f:
        return max(0, sum(1 for line in f if line.strip()) - 1)


def restore_seed(algo: Any, plan: SeedResume) -> list[dict[str, float]]:
    """Restores ``algo`` from the seed's checkpoint and cuts ``metrics.csv`` to match it.

    Returns:
        The ``metrics.csv`` rows of iterations 1..``algo.iteration`` (empty for a fresh seed).

    Raises:
        UsageError: The checkpoint cannot be restored, or ``metrics.csv`` does not hold the
            iterations the checkpoint has (``--resume``; names the path and the fix).
    """
    if plan.checkpoint is None:
        return []
    try:
        restore_checkpoint(algo, plan.checkpoint)
    except CheckpointError as err:
        raise UsageError("--resume", f"seed {plan.seed}: {err}. {_FIX}") from err
    try:
        return truncate_metrics_csv(plan.run_dir / "metrics.csv", algo.iteration)
    except (OSError, ValueError) as err:
        raise UsageError(
            "--resume",
            f"seed {plan.seed}: {err}. The metrics of that seed cannot be continued. {_FIX}",
        ) from err
