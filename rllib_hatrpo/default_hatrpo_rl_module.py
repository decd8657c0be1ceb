"""The module contract of HATRPO: one actor per agent and a learner-only central critic.

Actors map an agent's own observation to ``Columns.ACTION_DIST_INPUTS`` (no padding: each
agent keeps its own observation and action space). The critic reads the environment's global
state from ``Columns.OBS`` of its own batch and never leaves the learner.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: Module ID of the learner-only central critic V(s) on the global state.
SHARED_CRITIC_ID = "__shared_critic__"

#: Actor/critic network defaults: HARL's HATRPO settings for MPE and MaMuJoCo (Zhong et al.,
#: Heterogeneous-Agent Reinforcement Learning, JMLR 25 (2024), arXiv:2304.09870).
DEFAULT_HIDDEN_SIZES = (128, 128)
DEFAULT_ACTIVATION = "relu"
#: The networks' first layer: a running mean/std of every input feature
#: (``rllib_hatrpo.input_normalization``; "layer_norm" is HARL's feature normalisation).
DEFAULT_INPUT_NORMALIZATION = "mean_std"
#: Initial log-std of the Gaussian head: std ≈ 0.37, HARL's sigmoid(1)·0.5 at initialisation.
DEFAULT_INITIAL_LOG_STD = -1.0

#: The convolutional encoder of image inputs (a `Box` of rank 3, (H, W, C)), in the format of
#: RLlib's ``CNNEncoderConfig.cnn_filter_specifiers``: ``[out_channels, kernel, stride]`` or
#: ``[out_channels, kernel, stride, "same" | "valid"]`` per layer ("same" if not given). The
#: default is Nature-CNN's kernels and strides (Mnih et al., Nature 518, 2015) with half its
#: channels and "same" padding, so that it fits any image: 84×84 → 21×21 → 11×11 → 11×11×32
#: features, 32×32 → 8×8 → 4×4 → 4×4×32.
DEFAULT_CNN_FILTERS = ((16, 8, 4, "same"), (32, 4, 2, "same"), (32, 3, 1, "same"))
CNN_PADDINGS = ("same", "valid")


def cnn_output_shape(image_shape: Sequence[int], filters: Any, field: str) -> tuple[int, ...]:
    """The (H, W, C) output of the convolutional encoder ``filters`` on ``image_shape``.

    Sizes as RLlib's ``same_padding``/``valid_padding``: "same" gives ceil(in / stride),
    "valid" ceil((in − kernel + 1) / stride), which must stay ≥ 1.

    Args:
        image_shape: (height, width, channels) of the input.
        filters: The filter spec (see ``DEFAULT_CNN_FILTERS``).
        field: How the error names the setting, e.g. ``"training(cnn_filters=...)"``.

    Raises:
        ValueError: ``filters`` is not a non-empty list of ``[out_channels, kernel, stride]``
            or ``[out_channels, kernel, stride, padding]`` of positive integers (kernel and
            stride: one or two), or a "valid" layer is larger than its input.
    """
    form = (
        "a non-empty list of [out_channels, kernel, stride] or [out_channels, kernel, stride, "
        '"same" | "valid"] with positive integers (kernel, stride: an int or [h, w])'
    )
    if not isinstance(filters, (list, tuple)) or not filters:
        raise ValueError(f"{field} must be {form}, got {filters!r}.")
    height, width, _ = (int(d) for d in image_shape)
    channels = 0
    for i, spec in enumerate(filters):
        parsed = _parse_filter(spec)
        if parsed is None:
            raise ValueError(f"{field}: layer {i} must be {form}, got {spec!r}.")
        channels, kernel, stride, padding = parsed
        if padding == "valid" and (kernel[0] > height or kernel[1] > width):
            raise ValueError(
                f"{field} does not fit the image {tuple(image_shape)}: layer {i} {list(spec)} "
                f"has a {kernel[0]}×{kernel[1]} kernel with 'valid' padding on a "
                f"{height}×{width} input. Use smaller kernels or strides, 'same' padding, or "
                "larger images (SuperSuit resize_v1)."
            )
        grow = (0, 0) if padding == "same" else (kernel[0] - 1, kernel[1] - 1)
        height = -(-(height - grow[0]) // stride[0])
        width = -(-(width - grow[1]) // stride[1])
    return height, width, channels


def _parse_filter(spec: Any) -> tuple[int, tuple[int, int], tuple[int, int], str] | None:
    """(out_channels, kernel, stride, padding) of one layer spec; None if malformed."""
    if not isinstance(spec, (list, tuple)) or len(spec) not in (3, 4):
        return None
    padding = spec[3] if len(spec) == 4 else "same"
    pairs = [_pair(v) for v in spec[1:3]]
    channels = spec[0]
    if not _positive_int(channels) or None in pairs or padding not in CNN_PADDINGS:
        return None
    return channels, pairs[0], pairs[1], padding


def _pair(value: Any) -> tuple[int, int] | None:
    if _positive_int(value):
        return value, value
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(map(_positive_int, value)):
        return value[0], value[1]
    return None


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
