"""The built-in allocators by name, and `make_allocator`, which builds the configured one.

Adding an allocator: write its module (a `KLAllocator` subclass with a ``name``) and list the
class in `_BUILT_IN` below. `ALLOCATORS`, `ALLOCATOR_NAMES` (the order of every comparison,
table and plot), the config check and the error messages all follow from that list.

`_READINGS` holds allocators that are readings of the paper rather than its methods (the
water-filling reading of HATRPO-W, `waterfill`): `training(kl_allocator=...)` and
`make_allocator` accept their names (`READING_ALLOCATORS`, `ALL_ALLOCATOR_NAMES`), but the
default comparisons, sweeps and command-line choices stay the three of `ALLOCATOR_NAMES`.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from rllib_hatrpo.core.allocation.base import KLAllocator
from rllib_hatrpo.core.allocation.greedy import GreedyAllocator
from rllib_hatrpo.core.allocation.kkt import KKTAllocator
from rllib_hatrpo.core.allocation.uniform import UniformAllocator
from rllib_hatrpo.core.allocation.waterfill import WaterFillAllocator

__all__ = [
    "ALLOCATORS",
    "ALLOCATOR_NAMES",
    "ALL_ALLOCATOR_NAMES",
    "READING_ALLOCATORS",
    "make_allocator",
]

#: The built-in allocator classes, in the order they are listed and compared everywhere.
_BUILT_IN: tuple[type[KLAllocator], ...] = (UniformAllocator, KKTAllocator, GreedyAllocator)

ALLOCATORS: dict[str, type[KLAllocator]] = {cls.name: cls for cls in _BUILT_IN}
#: The built-in allocators' names, in the order they are listed and compared everywhere.
ALLOCATOR_NAMES: tuple[str, ...] = tuple(ALLOCATORS)
#: Readings of the paper, not its methods: accepted by name, left out of default comparisons.
_READINGS: tuple[type[KLAllocator], ...] = (WaterFillAllocator,)
READING_ALLOCATORS: dict[str, type[KLAllocator]] = {cls.name: cls for cls in _READINGS}
#: Every name `make_allocator` accepts: the built-in allocators, then the readings.
ALL_ALLOCATOR_NAMES: tuple[str, ...] = (*ALLOCATOR_NAMES, *READING_ALLOCATORS)


def make_allocator(
    kl_allocator: str | type[KLAllocator], options: Mapping[str, Any] | None = None
) -> KLAllocator:
    """Builds the allocator named by the config's `kl_allocator` with `kl_allocator_config`.

    Args:
        kl_allocator: A name in `ALL_ALLOCATOR_NAMES` (the built-in "uniform", "kkt",
            "greedy", and the reading "waterfill") or a subclass of `KLAllocator`.
        options: Constructor keyword arguments; None for the defaults.

    Returns:
        The allocator instance.

    Raises:
        ValueError: Unknown name, unknown option, or an option value out of range.
        TypeError: `kl_allocator` is neither a string nor a `KLAllocator` subclass, or
            `options` is not a mapping.
    """
    known = {**ALLOCATORS, **READING_ALLOCATORS}
    if isinstance(kl_allocator, str):
        if kl_allocator not in known:
            raise ValueError(
                f"kl_allocator must be one of {sorted(known)} or a subclass of "
                f"rllib_hatrpo.core.allocation.KLAllocator, got {kl_allocator!r}"
            )
        cls = known[kl_allocator]
    elif isinstance(kl_allocator, type) and issubclass(kl_allocator, KLAllocator):
        cls = kl_allocator
    else:
        raise TypeError(
            f"kl_allocator must be one of {sorted(ALLOCATORS)} or a class that subclasses "
            f"rllib_hatrpo.core.allocation.KLAllocator, got {kl_allocator!r}"
        )
    if options is not None and not isinstance(options, Mapping):
        raise TypeError(f"kl_allocator_config must be a mapping or None, got {options!r}")
    options = dict(options or {})
    accepted = _option_names(cls)
    if accepted is not None:
        unknown = sorted(str(key) for key in options if key not in accepted)
        if unknown:
            raise ValueError(
                f"kl_allocator_config has unknown option(s) {unknown} for kl_allocator "
                f"{cls.name!r}; accepted options: {sorted(accepted)}"
            )
    return cls(**options)


def _option_names(cls: type[KLAllocator]) -> set[str] | None:
    """Keyword arguments of cls's constructor; None if it takes **kwargs."""
    parameters = inspect.signature(cls).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    keyword_kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {p.name for p in parameters if p.kind in keyword_kinds}
