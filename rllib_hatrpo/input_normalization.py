"""The ``input_normalization`` setting of HATRPO's networks and its config check (no torch).

- ``"mean_std"`` (default): every input feature normalised by its running mean and std,
  ``clip((x − μ) / sqrt(σ² + 1e-8), ±10)``, statistics updated by the learner at the end of
  each update (:class:`rllib_hatrpo.core.running_mean_std.RunningMeanStd`).
- ``"layer_norm"``: HARL's feature normalisation, a LayerNorm over the features of each row.
  It maps a one-feature input to a constant and a two-feature input to ±1: a state such as
  ``[t/T]`` reaches the critic as one constant value.
- ``"none"``: the raw inputs.

It replaces the boolean ``input_layer_norm`` of earlier versions (True → ``"layer_norm"``,
False → ``"none"``).
"""

from __future__ import annotations

from typing import Any, Literal

InputNormalization = Literal["mean_std", "layer_norm", "none"]

#: The allowed values of ``training(input_normalization=...)``.
INPUT_NORMALIZATIONS: tuple[str, ...] = ("mean_std", "layer_norm", "none")

#: The setting ``input_normalization`` replaced.
REPLACED_SETTING = "input_layer_norm"


def replaced_setting_error(value: Any) -> ValueError:
    """The error for a config or model config that still uses ``input_layer_norm``."""
    new = {True: "'layer_norm'", False: "'none'"}.get(value, "'layer_norm' (True) or 'none'")
    return ValueError(
        f"training(input_layer_norm={value!r}) was replaced by training(input_normalization=...), "
        f"one of {list(INPUT_NORMALIZATIONS)} (default 'mean_std', a running mean/std of every "
        f"input feature); use input_normalization={new} for the old behaviour. A config "
        "restored from a checkpoint written before the change carries the old setting: build "
        "the config anew with input_normalization='layer_norm' and call "
        "algo.restore_from_path(checkpoint)."
    )


def validate_input_normalization(config: Any) -> None:
    """Raises ValueError unless ``config.input_normalization`` is a value HATRPO knows.

    Also rejects a config that still carries ``input_layer_norm`` (set as an attribute, or
    restored from an old checkpoint), naming its replacement. Called by
    :func:`rllib_hatrpo.hatrpo_config_checks.validate_hatrpo_config`.
    """
    if REPLACED_SETTING in vars(config):
        raise replaced_setting_error(vars(config)[REPLACED_SETTING])
    value = getattr(config, "input_normalization", None)
    if not isinstance(value, str) or value not in INPUT_NORMALIZATIONS:
        raise ValueError(
            f"training(input_normalization=...) must be one of {list(INPUT_NORMALIZATIONS)}, "
            f"got {value!r}."
        )


def input_normalization_of(model_config: dict[str, Any], default: str) -> str:
    """The ``input_normalization`` of a module's ``model_config`` (``default`` if unset).

    Raises:
        ValueError: ``model_config`` has the replaced ``input_layer_norm`` key.
    """
    if REPLACED_SETTING in model_config:
        raise replaced_setting_error(model_config[REPLACED_SETTING])
    return model_config.get("input_normalization", default)
