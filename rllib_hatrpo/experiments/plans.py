"""Plan records: an output folder remembers what it was started with and refuses another plan.

Rerunning a command resumes what its output folder holds, so every resumable experiment
records its plan next to its results and compares it on every rerun: ``hatrpo train``'s
``args.json`` (:mod:`rllib_hatrpo.experiments.resume`), ``hatrpo tune``'s ``sweep.json``
(:mod:`rllib_hatrpo.experiments.sweeps`), a tuned example's ``tuned_example.json``
(:mod:`rllib_hatrpo.experiments.tuned`) and ``benchmarks/compare.py``'s ``campaign.json``.
A different plan raises :class:`PlanMismatchError`, which names every setting that differs,
rather than mixing two plans in one folder::

    check_same_plan(output / "sweep.json", {"seeds": [0, 1], ...}, what="a sweep")

Records are JSON files, replaced atomically. No Ray import.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from rllib_hatrpo.experiments.spec import SettingError, ref


@dataclasses.dataclass(frozen=True)
class PlanChange:
    """One setting whose value differs from the recorded one.

    Attributes:
        setting: The setting's name.
        recorded: Its value in the record (JSON form; None if the record lacks it).
        given: Its value now (JSON form).
    """

    setting: str
    recorded: Any
    given: Any


class PlanMismatchError(SettingError):
    """An output folder holds an experiment started with other settings.

    Attributes:
        setting: The first setting that differs.
        path: The record file.
        changes: Every setting that differs.
    """

    def __init__(
        self,
        setting: str,
        message: str,
        path: str | os.PathLike | None = None,
        changes: tuple[PlanChange, ...] = (),
    ) -> None:
        """Names the first setting that differs; ``changes`` lists all of them."""
        self.path = None if path is None else Path(path)
        self.changes = tuple(changes)
        super().__init__(setting, message)

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.setting, self.message, self.path, self.changes)


def plain(value: Any) -> Any:
    """``value`` as a JSON record holds it (Path -> str, tuple -> list), for comparisons."""
    return json.loads(json.dumps(value, default=str))


def plan_changes(
    recorded: Mapping[str, Any], given: Mapping[str, Any], keys: Iterable[str] | None = None
) -> list[PlanChange]:
    """The settings whose given value differs from the recorded one, sorted by name.

    Args:
        recorded: The record's settings.
        given: The settings now.
        keys: The settings compared (default: every key of either).
    """
    names = set(recorded) | set(given) if keys is None else set(keys)
    changes = []
    for name in sorted(names):
        old, new = plain(recorded.get(name)), plain(given.get(name))
        if old != new:
            changes.append(PlanChange(name, old, new))
    return changes


def show(value: Any) -> str:
    """A recorded value as a message shows it (JSON for lists and objects)."""
    return json.dumps(value) if isinstance(value, list | dict) else str(value)


def mismatch(
    path: str | os.PathLike,
    changes: list[PlanChange],
    *,
    what: str,
    hint: str,
    kind: str = "settings",
) -> PlanMismatchError:
    """The error for a plan that differs from the record at ``path`` in ``changes``.

    Args:
        path: The record file.
        changes: What differs (not empty).
        what: What the folder holds, e.g. ``"a sweep"`` (``"... holds a sweep started with
            other settings"``).
        hint: What to do instead; may name settings with :func:`ref`.
        kind: What the record calls its entries (``"settings"``, ``"flags"``).
    """
    shown = "; ".join(
        f"{ref(c.setting)}: {show(c.recorded)} then, {show(c.given)} now" for c in changes
    )
    message = f"{path} holds {what} started with other {kind} ({shown}). {hint}"
    return PlanMismatchError(changes[0].setting, message, path, tuple(changes))


def read_record(path: str | os.PathLike) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None if there is no such file.

    Raises:
        ValueError: The file is not a JSON object (names the file).
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise ValueError(f"{path} is damaged: {err}") from err
    if not isinstance(record, dict):
        raise ValueError(f"{path} is damaged: not a JSON object")
    return record


def write_record(path: str | os.PathLike, record: Mapping[str, Any], **dump: Any) -> None:
    """Writes ``record`` to ``path`` as JSON, atomically (a temporary file, then a rename).

    ``dump`` overrides ``json.dumps`` options (default: ``indent=2``, ``sort_keys=True``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    options = {"indent": 2, "sort_keys": True, "default": str, **dump}
    tmp.write_text(json.dumps(record, **options) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def grown(changes: Iterable[PlanChange], growable: Iterable[str]) -> bool:
    """Whether ``changes`` only raise settings of ``growable`` (a number to a larger number)."""
    changes, growable = list(changes), set(growable)
    return bool(changes) and all(
        c.setting in growable
        and isinstance(c.recorded, int | float)
        and isinstance(c.given, int | float)
        and c.given >= c.recorded
        for c in changes
    )


def check_plan(
    path: str | os.PathLike,
    plan: Mapping[str, Any],
    *,
    what: str,
    hint: str,
    section: str | None = None,
    kind: str = "settings",
    growable: Iterable[str] = (),
) -> tuple[bool, list[PlanChange]]:
    """Like :func:`check_same_plan`, but a plan may raise the settings of ``growable``.

    A plan that differs from the record only in raising ``growable`` settings (a number to a
    larger one, e.g. a stop criterion) is accepted, and left for the caller to record with
    :func:`record_plan` once it has acted on it; a new plan is recorded at once.

    Returns:
        (whether the plan was recorded before, the growable settings it raises).

    Raises:
        PlanMismatchError: The plan differs otherwise (every differing setting is named).
        ValueError: The record file is damaged.
    """
    record = read_record(path) or {}
    recorded = record.get(section) if section is not None else (record or None)
    if recorded is None:
        record_plan(path, plan, section=section)
        return False, []
    changes = plan_changes(recorded, plan)
    if not changes or grown(changes, growable):
        return True, changes
    raise mismatch(path, changes, what=what, hint=hint, kind=kind)


def record_plan(
    path: str | os.PathLike, plan: Mapping[str, Any], *, section: str | None = None
) -> None:
    """Writes ``plan`` to the record ``path`` (to its ``section``, keeping the others)."""
    record = read_record(path) or {}
    new = plain(dict(plan))
    write_record(path, {**record, section: new} if section is not None else new)


def check_same_plan(
    path: str | os.PathLike,
    plan: Mapping[str, Any],
    *,
    what: str,
    hint: str,
    section: str | None = None,
    kind: str = "settings",
) -> bool:
    """Records ``plan`` in ``path``, or checks that it equals the plan recorded there.

    Args:
        path: The record file (created with its folder if missing).
        plan: The settings that define the experiment (JSON values).
        what: What the folder holds, for the error (``"a sweep"``).
        hint: What to do instead, for the error.
        section: Keep one plan per section of the record (e.g. per task), not one in all.
        kind: What the record calls its entries, for the error.

    Returns:
        Whether the plan was recorded before (the experiment resumes).

    Raises:
        PlanMismatchError: The recorded plan differs (every differing setting is named).
        ValueError: The record file is damaged.
    """
    recorded, _ = check_plan(path, plan, what=what, hint=hint, section=section, kind=kind)
    return recorded


def rename_shorter_run(
    storage: str | os.PathLike,
    name: str,
    prefix: str,
    plan: Mapping[str, Any],
    record_file: str,
    *,
    growable: Iterable[str],
) -> bool:
    """Renames the longest shorter run of ``plan`` to ``name``, so that a rerun extends it.

    For experiments named by their budget (``<prefix><budget>``): if the local ``storage``
    has no folder ``name``, the folders ``<prefix><N>`` whose record ``record_file`` differs
    from ``plan`` only in raising ``growable`` settings are candidates; the one with the
    largest N is renamed to ``name`` (Ray Tune restores a moved experiment). A URI is left
    alone.

    Returns:
        Whether a run was renamed.
    """
    if "://" in str(storage) or Path(storage, name).exists():
        return False
    shorter = []
    for folder in Path(storage).glob(f"{prefix}*"):
        budget = folder.name[len(prefix) :]
        record = read_record(folder / record_file) if budget.isdigit() else None
        if record is not None and grown(plan_changes(record, plan), growable):
            shorter.append((int(budget), folder))
    if shorter:
        max(shorter)[1].rename(Path(storage, name))
    return bool(shorter)
