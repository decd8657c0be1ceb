"""`PackedInfos`: an episode's list of info dicts that pickles as columns.

A remote EnvRunner ships its episodes to the learner by pickling them, and most of those bytes
and of that time are the per-step info dicts: one small dict per agent and step, holding
numpy scalars (gymnasium's ``x_position``, ...) and small arrays (the global state), each
pickled as an object of its own. :class:`PackedInfos` is a ``list`` of exactly those dicts
that, when pickled, stores the dicts of one key layout as one array per key instead, and is
unpickled into the same list again: equal keys in the same order, values of the same types
and dtypes, each array its own copy.

A key is packed when all its values (within one layout) are of one type among: Python
``float``, ``bool`` and ``int`` (restored with ``ndarray.tolist``), numeric or boolean numpy
scalars of one dtype (restored by indexing the array) and numpy arrays of one shape and
non-object dtype (restored as copies of the stacked rows). Any other key keeps its values as a
plain list.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Python scalar types packed into an array and restored with ``tolist`` (exact round trip:
#: float64 holds every float, bool and int64 every bool and int that fits).
_PYTHON_SCALARS = {float: np.float64, bool: np.bool_, int: np.int64}


class PackedInfos(list):
    """A list of info dicts whose pickled form is per-key arrays (see the module docstring)."""

    def __reduce__(self) -> tuple:
        return _unpack, (len(self), _pack(self))


def _pack(infos: list) -> list[tuple[list[int], list[tuple[str, str, Any]]]]:
    """Per key layout: the positions of its dicts and, per key, (key, how, values)."""
    layouts: dict[tuple, list[int]] = {}
    for position, info in enumerate(infos):
        layouts.setdefault(tuple(info), []).append(position)
    groups = []
    for keys, positions in layouts.items():
        columns = []
        for key in keys:
            values = [infos[p][key] for p in positions]
            columns.append((key, *_pack_column(values)))
        groups.append((positions, columns))
    return groups


def _pack_column(values: list) -> tuple[str, Any]:
    """(how, data): "tolist", "item" or "rows" with an array, or "list" with the values."""
    first = type(values[0])
    if any(type(v) is not first for v in values):
        return "list", values
    if first in _PYTHON_SCALARS:
        if first is int and not all(-(2**63) <= v < 2**63 for v in values):
            return "list", values
        return "tolist", np.array(values, dtype=_PYTHON_SCALARS[first])
    if issubclass(first, np.number | np.bool_):
        return "item", np.array(values, dtype=first)
    if first is np.ndarray:
        shape, dtype = values[0].shape, values[0].dtype
        if dtype.kind != "O" and all(v.shape == shape and v.dtype == dtype for v in values):
            return "rows", np.stack(values)
    return "list", values


def _unpack(length: int, groups: list) -> PackedInfos:
    """The list of dicts again (see :func:`_pack`)."""
    infos: list[Any] = [None] * length
    for positions, columns in groups:
        restored = []
        for key, how, data in columns:
            if how == "tolist":
                restored.append((key, data.tolist()))
            elif how == "rows":
                restored.append((key, [row.copy() for row in data]))
            elif how == "item":
                restored.append((key, [data[i] for i in range(len(data))]))
            else:
                restored.append((key, data))
        keys = [key for key, _ in restored]
        for i, position in enumerate(positions):
            infos[position] = dict(zip(keys, (values[i] for _, values in restored), strict=True))
    return PackedInfos(infos)
