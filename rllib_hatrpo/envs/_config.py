"""Config-dict handling shared by the env classes (no Ray, no env libraries)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def merge_config(
    config: Mapping[str, Any] | None, defaults: Mapping[str, Any], owner: str
) -> dict[str, Any]:
    """Returns `defaults` updated by `config`, rejecting keys that `defaults` does not have.

    A misspelt key raises instead of being ignored silently.

    Args:
        config: The user's env config (RLlib passes an `EnvContext`, a dict subclass), or None.
        defaults: Every allowed key with its default value.
        owner: The class name, for the error message.

    Returns:
        A new plain dict with every key of `defaults`.

    Raises:
        ValueError: `config` has a key that `defaults` does not have.
    """
    config = dict(config or {})
    unknown = sorted(set(config) - set(defaults))
    if unknown:
        raise ValueError(
            f"{owner}: unknown config key(s) {unknown}; allowed keys are {sorted(defaults)}."
        )
    return {**defaults, **config}
