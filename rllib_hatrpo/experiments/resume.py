"""Continuing an interrupted ``hatrpo train`` run: ``hatrpo train --resume RUN_DIR``.

A run directory holds ``args.json`` (the flags it was started with, :func:`write_run_record`)
and one ``seed_<s>/`` per seed with ``metrics.csv`` and ``checkpoint/``. Resuming reloads the
flags, restores every unfinished seed from its checkpoint (weights, critic optimizer, the
learner's agent-order RNG and allocator state, the metrics counters such as env steps and the
iteration number), drops the ``metrics.csv`` rows logged after that checkpoint and appends the
new ones, so that every iteration appears exactly once.

Only flags that decide when a run stops or how it runs may change on resume
(:data:`STOP_FLAGS`, :data:`CHANGEABLE_FLAGS`); any other flag given with ``--resume`` must equal
the saved value (:func:`merge_flags`, a :class:`~rllib_hatrpo.experiments.plans.PlanMismatchError`
otherwise). A missing or damaged checkpoint of a seed that logged iterations is a
:class:`ResumeError`, never a silent fresh start: the message names the path and what to do.
The flags are the keys of ``args.json``: the ``hatrpo train`` options without dashes
(``stop_iters`` for ``--stop-iters``).
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rllib_hatrpo.experiments.checkpoints import (
    CheckpointError,
    recover_checkpoint,
    restore_checkpoint,
)
from rllib_hatrpo.experiments.plans import (
    mismatch,
    plain,
    plan_changes,
    read_record,
    write_record,
)
from rllib_hatrpo.experiments.records import truncate_metrics_csv
from rllib_hatrpo.experiments.spec import SettingError, ref

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

#: Flags that say where the run is, not what it is: never compared.
_WHERE = ("output", "resume")

_FIX = (
    "Restore that directory from a backup, or delete it to train this seed again from the "
    "start (the other seeds are kept)."
)


class ResumeError(SettingError):
    """A run directory that cannot be continued; the setting at fault is ``resume``."""

    def __init__(self, message: str) -> None:
        """Says why the run cannot be continued and what to do."""
        super().__init__("resume", message)

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.message,)


def write_run_record(
    run_dir: Path, flags: Mapping[str, Any], argv: Sequence[str], env_config: Mapping
) -> Path:
    """Writes ``RUN_DIR/args.json``: the flags and versions, to repeat, compare or resume a run.

    Args:
        run_dir: The run directory.
        flags: Every ``hatrpo train`` flag's value, keyed by name (``stop_iters``).
        argv: The command line.
        env_config: The env config the flags resolved to.
    """
    import ray
    import torch

    from rllib_hatrpo import __version__

    record = {
        "argv": list(argv),
        "flags": plain(dict(flags)),
        "env_config": plain(dict(env_config)),
        "versions": {
            "rllib_hatrpo": __version__,
            "ray": ray.__version__,
            "torch": torch.__version__,
        },
    }
    path = run_dir / ARGS_FILE
    write_record(path, record, sort_keys=False)
    return path


def load_run_record(run_dir: Path) -> dict[str, Any]:
    """Reads ``RUN_DIR/args.json`` (written by :func:`write_run_record`).

    Raises:
        ResumeError: ``run_dir`` is not a ``hatrpo train`` output directory.
    """
    path = run_dir / ARGS_FILE
    if not path.is_file():
        hint = ""
        if (run_dir.parent / ARGS_FILE).is_file():
            hint = f" (give the run directory {run_dir.parent}, not a seed directory)"
        raise ResumeError(
            f"{run_dir} has no {ARGS_FILE}: not an output directory of `hatrpo train`{hint}"
        )
    try:
        record = read_record(path)
        if not isinstance(record.get("flags"), dict):
            raise ValueError(f"{path} is damaged: no 'flags' object")
    except ValueError as err:
        raise ResumeError(str(err)) from err
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
            defaults; saved entries that are not flags are ignored).
        given: The flags given on this command line with ``--resume`` (not their defaults).
        defaults: Every train flag's default.
        run_dir: The run directory being resumed.

    Returns:
        Every flag of ``defaults``; ``output`` and ``resume`` are ``run_dir``.

    Raises:
        SettingError: ``output`` is given and is not ``run_dir``.
        PlanMismatchError: A given flag that may not change differs from its saved value
            (every such flag is named; ``error.setting`` is the first).
    """
    merged = dict(defaults)
    merged.update({key: value for key, value in saved.items() if key in merged})
    output = given.get("output")
    if output is not None and Path(output).absolute() != run_dir.absolute():
        raise SettingError(
            "output",
            f"a resumed run writes where it started: {ref('resume')} continues the run in "
            f"{run_dir}; drop {ref('output')} {output}",
        )
    fixed = [key for key in given if key not in (*_WHERE, *STOP_FLAGS, *CHANGEABLE_FLAGS)]
    changes = plan_changes(merged, given, fixed)
    if changes:
        changeable = ", ".join(ref(key) for key in CHANGEABLE_FLAGS)
        raise mismatch(
            run_dir / ARGS_FILE,
            changes,
            what="a run",
            kind="flags",
            hint="A resumed run keeps its settings: drop the flag, or start a new run with "
            f"another {ref('output')}. Only the stop flags and {changeable} may change when "
            "a run is resumed.",
        )
    if any(key in given for key in STOP_FLAGS):
        merged.update({key: given.get(key) for key in STOP_FLAGS})
    merged.update({key: given[key] for key in CHANGEABLE_FLAGS if key in given})
    merged["output"] = run_dir
    merged["resume"] = run_dir
    return merged


def record_resume(run_dir: Path, flags: Mapping[str, Any], argv: Sequence[str]) -> None:
    """Updates ``args.json``: the flags now in force and a line per resume (time, argv)."""
    path = run_dir / ARGS_FILE
    record = read_record(path) or {}
    record["flags"] = plain(dict(flags))
    record.setdefault("resumed", []).append(
        {"time": time.strftime("%Y-%m-%d %H:%M:%S"), "argv": list(argv)}
    )
    write_record(path, record, sort_keys=False)


def check_new_run(run_dir: Path, seeds: Sequence[int]) -> dict[int, None]:
    """Refuses a run directory that already holds a run (of any seed).

    A new run in it would mix its seeds with the other run's and replace its ``args.json``,
    after which the other run could not be resumed.

    Returns:
        ``{seed: None}``: no seed continues from a checkpoint.

    Raises:
        SettingError: ``output`` holds ``args.json`` or a ``seed_<s>/metrics.csv``.
    """
    held = sorted(
        int(path.parent.name.removeprefix("seed_"))
        for path in run_dir.glob("seed_*/metrics.csv")
        if path.parent.name.removeprefix("seed_").lstrip("-").isdigit()
    )
    if held or (run_dir / ARGS_FILE).exists():
        what = f"a run of seed(s) {held}" if held else f"a run ({ARGS_FILE})"
        raise SettingError(
            "output",
            f"{run_dir} already holds {what}; continue that run with {ref('resume')} "
            f"{run_dir}, or give another {ref('output')} for the new one",
        )
    return dict.fromkeys(seeds)


def check_writable(run_dir: Path) -> None:
    """Checks that files can be written in ``run_dir`` (made if missing) before training.

    Writes and removes one temporary file in ``run_dir``, or, if it does not exist yet, in its
    nearest existing parent; creates nothing else.

    Raises:
        SettingError: ``output``: a parent is a file, or the folder is read-only (names it).
    """
    existing = run_dir.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise SettingError(
            "output", f"cannot create {run_dir}: {existing} is a file; give another {ref('output')}"
        )
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise SettingError(
            "output",
            f"cannot write in {existing} ({err.strerror or err}); give a writable {ref('output')}",
        ) from err


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


def plan_run(run_dir: Path, seeds: Sequence[int]) -> dict[int, SeedResume]:
    """Per seed of the run in ``run_dir``: the checkpoint it continues from (:func:`plan_seed`)."""
    return {seed: plan_seed(run_dir / f"seed_{seed}", seed) for seed in seeds}


def plan_seed(run_dir: Path, seed: int) -> SeedResume:
    """Finds the checkpoint a seed continues from, checking its files (no Ray needed).

    Raises:
        ResumeError: The seed logged iterations but its checkpoint is missing or damaged
            (the message names the path and the fix).
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
            raise ResumeError(
                f"seed {seed}: {csv_path} holds {rows} iteration(s) but there is no checkpoint "
                f"at {checkpoint}: the run stopped {when} its first checkpoint (train with "
                f"{ref('checkpoint_every')} N to checkpoint during training). Delete {run_dir} "
                "to train this seed again from the start."
            ) from err
        raise ResumeError(f"seed {seed}: {err}. {_FIX}") from err
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
        ResumeError: The checkpoint cannot be restored, or ``metrics.csv`` does not hold the
            iterations the checkpoint has (names the path and the fix).
    """
    if plan.checkpoint is None:
        return []
    try:
        restore_checkpoint(algo, plan.checkpoint)
    except CheckpointError as err:
        raise ResumeError(f"seed {plan.seed}: {err}. {_FIX}") from err
    try:
        return truncate_metrics_csv(plan.run_dir / "metrics.csv", algo.iteration)
    except (OSError, ValueError) as err:
        raise ResumeError(
            f"seed {plan.seed}: {err}. The metrics of that seed cannot be continued. {_FIX}"
        ) from err
