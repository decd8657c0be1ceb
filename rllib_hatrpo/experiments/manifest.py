"""A checkpoint's manifest: the size and sha256 of each of its files, written last.

:func:`write_manifest` runs at the end of every save
(:func:`rllib_hatrpo.experiments.checkpoints.save_checkpoint_atomically`);
:func:`verify_manifest` runs before every restore and before ``hatrpo evaluate`` reads a
checkpoint, and names each file that is missing, added or changed. No Ray import.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

#: The size and sha256 of every other file of a checkpoint, written last by the save.
MANIFEST_FILE = "manifest.json"

#: Version of the manifest's layout: ``{"format": 1, "files": {path: {size, sha256}}}``.
MANIFEST_FORMAT = 1

#: Files Ray may add to a checkpoint it stores (``Checkpoint.set_metadata``): not checked.
_IGNORED_FILES = frozenset({".metadata.json"})

#: Problems shown in one error message (the rest are counted).
_SHOWN = 3


class CheckpointError(Exception):
    """A checkpoint that is missing, incomplete or damaged; the message names the path."""


def write_manifest(path: str | os.PathLike) -> Path:
    """Writes ``path/manifest.json``: the size and sha256 of every file under ``path``.

    Each file is flushed to disk (``fsync``) as it is hashed; the manifest is written to a
    temporary file, flushed and renamed, so it exists only once everything it lists does.

    Returns:
        The manifest's path.
    """
    path = Path(path)
    files = {}
    for file in _files(path):
        size, digest = _digest(file, sync=True)
        files[file.relative_to(path).as_posix()] = {"size": size, "sha256": digest}
    manifest = path / MANIFEST_FILE
    tmp = path / (MANIFEST_FILE + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        json.dump({"format": MANIFEST_FORMAT, "files": files}, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, manifest)
    return manifest


def verify_manifest(path: str | os.PathLike) -> None:
    """Checks every file under ``path`` against ``path/manifest.json``.

    Raises:
        CheckpointError: The manifest is missing (an interrupted save, or a checkpoint written
            without one) or unreadable; or a file it lists is missing, has another size or
            sha256, or a file is there that it does not list. The message names the files.
    """
    path = Path(path)
    manifest = path / MANIFEST_FILE
    if not manifest.is_file():
        raise CheckpointError(
            f"{path} has no {MANIFEST_FILE}: the save that wrote it did not finish (the manifest "
            "is written last), or it was not written by save_checkpoint_atomically (e.g. by "
            "algo.save_to_path, or by rllib_hatrpo before checkpoints had manifests), so it is "
            "not used"
        )
    try:
        record = json.loads(manifest.read_text(encoding="utf-8"))
        if record["format"] != MANIFEST_FORMAT:
            raise ValueError(f"format {record['format']!r}, not {MANIFEST_FORMAT}")
        listed = {
            _relative(name): (int(e["size"]), str(e["sha256"]))
            for name, e in record["files"].items()
        }
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise CheckpointError(f"{manifest} is damaged: {type(err).__name__}: {err}") from err
    problems = _missing(path, listed)
    present = {file.relative_to(path).as_posix(): file for file in _files(path)}
    for name, (size, digest) in sorted(listed.items()):
        file = present.get(name)
        if file is None:
            continue
        actual = file.stat().st_size
        if actual != size:
            problems.append(f"{file} has {actual} bytes, {MANIFEST_FILE} says {size}")
        elif _digest(file)[1] != digest:
            problems.append(f"{file} differs from the sha256 in {MANIFEST_FILE}")
    problems += [
        f"{present[name]} is not in {MANIFEST_FILE}"
        for name in sorted(present.keys() - listed.keys())
    ]
    if problems:
        shown = "; ".join(problems[:_SHOWN])
        more = f"; and {len(problems) - _SHOWN} more" if len(problems) > _SHOWN else ""
        raise CheckpointError(f"{path} was changed or damaged after it was saved: {shown}{more}")


def _relative(name: str) -> str:
    """A manifest entry's path, refused if it points outside the checkpoint."""
    pure = PurePosixPath(name)
    if pure.is_absolute() or ".." in pure.parts or not pure.parts:
        raise ValueError(f"{name!r} is not a path inside the checkpoint")
    return pure.as_posix()


def _missing(path: Path, listed: Mapping[str, Any]) -> list[str]:
    """The listed files that are absent; a whole missing directory is named once."""
    problems, reported = [], set()
    for name in sorted(listed):
        if (path / name).is_file():
            continue
        parts = PurePosixPath(name).parts
        for depth in range(1, len(parts) + 1):  # the outermost missing directory, or the file
            top = PurePosixPath(*parts[:depth])
            if not (path / top).exists():
                break
        if top in reported:
            continue
        reported.add(top)
        if depth == len(parts):
            problems.append(f"{path / name} is missing")
        else:
            count = sum(1 for other in listed if other.startswith(f"{top.as_posix()}/"))
            problems.append(f"{path / top} is missing ({count} files listed in {MANIFEST_FILE})")
    return problems


def _files(path: Path) -> list[Path]:
    """Every file under ``path`` but the manifest (and its temporary) and Ray's metadata."""
    skip = {MANIFEST_FILE, MANIFEST_FILE + ".tmp", *_IGNORED_FILES}
    return sorted(
        file
        for file in path.rglob("*")
        if file.is_file() and not (file.parent == path and file.name in skip)
    )


def _digest(file: Path, sync: bool = False) -> tuple[int, str]:
    sha = hashlib.sha256()
    size = 0
    with file.open("rb") as f:
        while chunk := f.read(1 << 20):
            sha.update(chunk)
            size += len(chunk)
        if sync:
            os.fsync(f.fileno())
    return size, sha.hexdigest()
