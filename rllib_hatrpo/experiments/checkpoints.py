"""Checkpoints that are complete, intact and finite, or refused: one save and one restore routine.

Every path that writes or reads a training checkpoint goes through here: ``hatrpo train``
and ``hatrpo train --resume`` (:mod:`rllib_hatrpo.experiments.resume`), and the Tune trainable
(:func:`rllib_hatrpo.experiments.tune.train_trial`, used by ``hatrpo tune``, the tuned examples and
``benchmarks/compare.py``)::

    save_checkpoint_atomically(algo, run_dir / "checkpoint")       # or NonFiniteStateError
    checkpoint, note = recover_checkpoint(run_dir / "checkpoint")  # or CheckpointError
    restore_checkpoint(algo, checkpoint)                           # or CheckpointError

:func:`save_checkpoint_atomically` refuses learner modules with a NaN or inf, writes the
checkpoint to ``<path>.tmp``, adds ``manifest.json`` (size and sha256 of every other file,
:mod:`rllib_hatrpo.experiments.manifest`) last and only then renames it into place.
:func:`check_checkpoint_files` verifies the manifest (a missing, added or changed file is
named in the error) and RLlib's own files;
:func:`restore_checkpoint` also requires every part of the algorithm to be present, because
RLlib's ``restore_from_path`` silently skips a missing one.

No Ray import at module level: the file checks run before Ray starts.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rllib_hatrpo.experiments.manifest import (
    MANIFEST_FILE,
    MANIFEST_FORMAT,
    CheckpointError,
    verify_manifest,
    write_manifest,
)

__all__ = [
    "CHECKPOINT_MARKER",
    "MANIFEST_FILE",
    "MANIFEST_FORMAT",
    "CheckpointError",
    "NonFiniteStateError",
    "check_checkpoint_files",
    "non_finite_arrays",
    "non_finite_module_tensors",
    "recover_checkpoint",
    "restore_checkpoint",
    "save_checkpoint_atomically",
    "verify_manifest",
    "write_manifest",
]

#: The file that marks a directory as a complete RLlib checkpoint (written by ``save_to_path``).
CHECKPOINT_MARKER = "rllib_checkpoint.json"

#: Suffixes of a Checkpointable's state file (``<STATE_FILE_NAME>.pkl`` or ``.msgpack``).
_STATE_SUFFIXES = (".pkl", ".msgpack")

#: Problems shown in one error message (the rest are counted).
_SHOWN = 3


class NonFiniteStateError(CheckpointError):
    """The learner's modules hold a NaN or inf: the save is refused (the message names them)."""


def save_checkpoint_atomically(algo: Any, path: str | os.PathLike) -> Path:
    """Saves ``algo`` to ``path`` so that ``path`` never holds a half-written checkpoint.

    First refuses learner modules with non-finite parameters or buffers (see
    :func:`non_finite_module_tensors`). Then writes to the sibling ``<path>.tmp``, adds
    ``manifest.json`` there (written last, atomically), moves the previous checkpoint (if any)
    to ``<path>.old``, renames the new one into place and only then deletes the old one. A
    crash while saving leaves the previous checkpoint untouched at ``path``; a crash between the
    two renames (a few microseconds) leaves it at ``<path>.old``.

    Args:
        algo: An RLlib ``Algorithm`` (anything with ``save_to_path``; the finiteness check
            needs its ``learner_group`` and is skipped without one).
        path: The checkpoint directory.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        NonFiniteStateError: A module tensor is NaN or inf (nothing is written).
        RuntimeError: The saved directory has no ``rllib_checkpoint.json``.
    """
    path = Path(path).absolute()
    bad = non_finite_module_tensors(algo)
    if bad:
        shown = ", ".join(bad[:_SHOWN]) + (
            f" and {len(bad) - _SHOWN} more" if len(bad) > _SHOWN else ""
        )
        kept = f"{path} keeps the previous checkpoint" if path.exists() else "nothing is written"
        raise NonFiniteStateError(
            f"refusing to save a checkpoint to {path}: the learner's modules hold non-finite "
            f"values ({shown}), so training diverged; {kept}. Continue from an earlier "
            "checkpoint, e.g. with a smaller KL threshold or critic learning rate."
        )
    tmp = path.with_name(path.name + ".tmp")
    old = path.with_name(path.name + ".old")
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(tmp, ignore_errors=True)
    algo.save_to_path(str(tmp))
    if not (tmp / CHECKPOINT_MARKER).is_file():
        raise RuntimeError(f"Saving the checkpoint to {tmp} wrote no {CHECKPOINT_MARKER}.")
    write_manifest(tmp)
    shutil.rmtree(old, ignore_errors=True)
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)
    return path


def non_finite_module_tensors(algo: Any) -> list[str]:
    """The learner's module tensors (parameters and buffers) with a NaN or inf, as names.

    Reads the local learner's modules in place, or the module state of the first remote
    learner (``learner_group.get_state``; all learners hold the same weights).

    Returns:
        ``"<module_id>/<tensor name>"`` of each non-finite floating tensor; ``[]`` when all
        are finite or ``algo`` has no learner group.
    """
    group = getattr(algo, "learner_group", None)
    if group is None:
        return []
    if not group.is_local:  # ray.rllib.core's COMPONENT_LEARNER and COMPONENT_RL_MODULE
        state = group.get_state(components="learner/rl_module")
        return non_finite_arrays(state["learner"]["rl_module"])
    learner = getattr(group, "_learner", None)
    if learner is None:
        return []
    import torch

    bad = []
    for module_id, module in learner.module.items():
        for name, tensor in (*module.named_parameters(), *module.named_buffers()):
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                bad.append(f"{module_id}/{name}")
    return bad


def non_finite_arrays(state: Any, prefix: str = "") -> list[str]:
    """Names (``"a/b/c"``) of the floating arrays or floats in a nested ``state`` with NaN/inf."""
    import numpy as np

    if isinstance(state, Mapping):
        return [
            name
            for key, value in state.items()
            for name in non_finite_arrays(value, f"{prefix}/{key}" if prefix else str(key))
        ]
    if not isinstance(state, float | np.ndarray | np.generic):
        return []
    array = np.asarray(state)
    finite = not np.issubdtype(array.dtype, np.floating) or bool(np.isfinite(array).all())
    return [] if finite else [prefix]


def recover_checkpoint(path: str | os.PathLike) -> tuple[Path, str | None]:
    """The complete checkpoint of a run at ``path``, recovering from an interrupted replace.

    :func:`save_checkpoint_atomically` moves the previous checkpoint to ``<path>.old`` before
    renaming the new one into place; a crash between the two renames leaves ``path`` missing
    and the previous checkpoint at ``<path>.old``. Then ``<path>.old`` is checked (manifest
    included) and moved back to ``path`` (``<path>.tmp`` is not used: it may be a half-written
    later save).

    Args:
        path: The checkpoint directory.

    Returns:
        (``path``, None), or (``path``, a note saying it was recovered from ``<path>.old``).

    Raises:
        CheckpointError: Neither ``path`` nor ``<path>.old`` holds a complete, intact
            checkpoint (a damaged ``<path>.old`` is left where it is).
    """
    path = Path(path).absolute()
    old = path.with_name(path.name + ".old")
    tmp = path.with_name(path.name + ".tmp")
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
    unfinished = (
        f"; {tmp} is left by a save that did not finish and is not used" if tmp.exists() else ""
    )
    raise CheckpointError(f"no checkpoint at {path} (nor at {old}){unfinished}")


def check_checkpoint_files(path: str | os.PathLike) -> None:
    """Checks a checkpoint's files against its manifest and RLlib's, without loading state.

    The directory must not be a save's temporary ``*.tmp``; every file must match
    ``manifest.json`` (:func:`verify_manifest`); ``rllib_checkpoint.json`` must parse and name
    a constructor file and a state file that exist. :func:`restore_checkpoint` checks the rest
    against the algorithm.

    Raises:
        CheckpointError: Any of these fails; the message names the file.
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path} is not a directory")
    if path.name.endswith(".tmp"):
        raise CheckpointError(
            f"{path} is the temporary directory of a save (save_checkpoint_atomically writes "
            f"there first): it may be unfinished and is never restored; use "
            f"{path.with_name(path.name[: -len('.tmp')])}"
        )
    verify_manifest(path)
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
    """Restores ``algo`` from ``path``, refusing a damaged checkpoint or one lacking a part.

    The one restore routine of ``hatrpo train --resume`` and the Tune trainable. First
    :func:`check_checkpoint_files` (the manifest's sizes and checksums). Then, since RLlib's
    ``restore_from_path`` silently skips a component whose directory is missing (the learner,
    a module, ...) and would continue with freshly initialised weights, every checkpointable
    component of ``algo`` (recursively: learner group, learner, each module, EnvRunner and
    connector states) must have its directory and state file; then any error while loading is
    raised as a :class:`CheckpointError`.

    Args:
        algo: A built RLlib ``Algorithm`` with the checkpoint's config.
        path: A checkpoint directory written by :func:`save_checkpoint_atomically`.

    Raises:
        CheckpointError: A file is missing, added or changed, a part is missing, a file cannot
            be loaded, or the checkpoint holds no training iteration.
    """
    path = Path(path)
    check_checkpoint_files(path)
    missing = _missing_components(algo, path)
    if missing:
        shown = ", ".join(str(m) for m in missing[:_SHOWN]) + (
            " ..." if len(missing) > _SHOWN else ""
        )
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
