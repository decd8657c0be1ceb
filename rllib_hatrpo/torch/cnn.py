"""The networks' trunk for image inputs: RLlib's catalog CNN encoder, then the MLP.

An input whose space is a ``Box`` of rank 3, (height, width, channels) as
``rllib_hatrpo.envs.PettingZooEnv`` keeps images, is encoded by RLlib's
``CNNEncoderConfig(...).build(framework="torch")`` (``ray/rllib/core/models/configs.py``; it
takes channels-last images) and flattened, and the MLP of :func:`rllib_hatrpo.torch.mlp.build_mlp`
maps the features to the outputs. Images of a uint8 space are scaled to [0, 1] (the tensors may
be uint8, or float32 holding 0..255 as the critic's batch does); other images enter unscaled.

``input_normalization`` on an image input: "layer_norm" puts HARL's LayerNorm on the CNN's
features (the MLP's input); "mean_std" and "none" leave the pixels as they are after the
[0, 1] scaling. No running per-pixel statistics are kept: pixels already share one known
range, and running statistics of the CNN's features would drift as the encoder trains.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.models.base import ENCODER_OUT
from ray.rllib.core.models.configs import CNNEncoderConfig
from torch import Tensor, nn

from rllib_hatrpo.default_hatrpo_rl_module import DEFAULT_CNN_FILTERS, cnn_output_shape
from rllib_hatrpo.envs.observations import is_image
from rllib_hatrpo.torch.mlp import build_mlp

#: Orthogonal-init gain of the convolutions (ReLU/Tanh hidden layers, as in ``build_mlp``).
_CONV_GAIN = math.sqrt(2.0)
#: Largest value of a uint8 pixel: uint8 images are divided by it.
_UINT8_MAX = 255.0


class ImageNet(nn.Module):
    """``[B, H, W, C]`` → scale → CNN encoder → flatten → MLP → ``[B, out_dim]``.

    Args:
        space: The input's image ``Box`` (H, W, C).
        filters: The CNN's filter spec (``training(cnn_filters=...)``, see
            ``rllib_hatrpo.default_hatrpo_rl_module.DEFAULT_CNN_FILTERS``).
        hidden_sizes: The MLP's hidden layers.
        out_dim: Number of outputs.
        activation: "relu" or "tanh", for the convolutions and the MLP.
        input_normalization: "layer_norm" (a LayerNorm on the CNN's features), "mean_std" or
            "none" (neither normalises the images; see the module docstring).
        output_gain: Orthogonal-init gain of the output layer.

    Raises:
        ValueError: ``space`` is not an image, or ``filters`` is malformed or does not fit it
            (the message names ``training(cnn_filters=...)``).
    """

    def __init__(
        self,
        space: gym.spaces.Box,
        filters: Sequence[Sequence[Any]],
        hidden_sizes: Sequence[int],
        out_dim: int,
        *,
        activation: str,
        input_normalization: str,
        output_gain: float,
    ) -> None:
        super().__init__()
        if not is_image(space):
            raise ValueError(f"ImageNet needs a Box of rank 3 (H, W, C), got {space}.")
        cnn_output_shape(space.shape, filters, "training(cnn_filters=...)")
        self.image_shape = tuple(int(d) for d in space.shape)
        self.scale = 1.0 / _UINT8_MAX if space.dtype == np.uint8 else 1.0
        config = CNNEncoderConfig(
            input_dims=list(self.image_shape),
            cnn_filter_specifiers=[list(f) for f in filters],
            cnn_activation=activation,
            cnn_kernel_initializer="orthogonal_",
            cnn_kernel_initializer_config={"gain": _CONV_GAIN},
            cnn_bias_initializer="zeros_",
        )
        self.encoder = config.build(framework="torch")
        self.mlp = build_mlp(
            int(config.output_dims[0]),
            hidden_sizes,
            out_dim,
            activation=activation,
            input_normalization="layer_norm" if input_normalization == "layer_norm" else "none",
            output_gain=output_gain,
        )

    def forward(self, images: Tensor) -> Tensor:
        """Maps a batch of images ``[B, H, W, C]`` (any dtype) to ``[B, out_dim]``.

        Raises:
            ValueError: The images do not have the shape of the input space.
        """
        if tuple(images.shape[1:]) != self.image_shape:
            raise ValueError(
                f"Image batch of shape {tuple(images.shape)}; expected [B, *{self.image_shape}]."
            )
        if images.dtype == torch.uint8:
            x = images.float().mul_(self.scale)  # in place on the fresh float copy
        else:
            x = images.float() * self.scale if self.scale != 1.0 else images.float()
        return self.mlp(self.encoder({Columns.OBS: x})[ENCODER_OUT])


def build_network(
    space: gym.spaces.Box,
    model_config: dict[str, Any],
    hidden_sizes: Sequence[int],
    out_dim: int,
    *,
    activation: str,
    input_normalization: str,
    output_gain: float,
) -> nn.Module:
    """An :class:`ImageNet` for an image space, else the :func:`build_mlp` network as before.

    Args:
        space: The network's input space.
        model_config: The module's model config (its ``cnn_filters``, if any, for images).
        hidden_sizes: The hidden layers of the MLP.
        out_dim: Number of outputs.
        activation: "relu" or "tanh".
        input_normalization: "mean_std", "layer_norm" or "none".
        output_gain: Orthogonal-init gain of the output layer.

    Raises:
        ValueError: A bad ``cnn_filters`` for an image space, or a bad MLP setting.
    """
    kwargs = {
        "activation": activation,
        "input_normalization": input_normalization,
        "output_gain": output_gain,
    }
    if is_image(space):
        filters = model_config.get("cnn_filters", DEFAULT_CNN_FILTERS)
        return ImageNet(space, filters, hidden_sizes, out_dim, **kwargs)
    return build_mlp(int(np.prod(space.shape)), hidden_sizes, out_dim, **kwargs)


def network_input(net: nn.Module, x: Tensor) -> Tensor:
    """``x`` as ``net`` takes it: images as they are, anything else flattened to float32."""
    if isinstance(net, ImageNet):
        return x
    return x.reshape(x.shape[0], -1).float()
