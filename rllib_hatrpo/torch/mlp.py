"""A small MLP builder shared by the actor and the critic (HARL's network shape)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from rllib_hatrpo.core.running_mean_std import RunningMeanStd
from rllib_hatrpo.input_normalization import INPUT_NORMALIZATIONS

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}
#: Orthogonal-init gains: sqrt(2) for hidden ReLU/Tanh layers; the output layer gain is passed.
_HIDDEN_GAIN = {"relu": nn.init.calculate_gain("relu"), "tanh": nn.init.calculate_gain("tanh")}


def build_mlp(
    in_dim: int,
    hidden_sizes: Sequence[int],
    out_dim: int,
    *,
    activation: str = "relu",
    input_normalization: str = "mean_std",
    output_gain: float = 0.01,
) -> nn.Sequential:
    """Returns ``[input normalisation] → (Linear → act)* → Linear``, orthogonally initialised.

    The small output gain (0.01 for policies) starts every policy near uniform / zero-mean, as
    in the HARL reference implementation.

    Args:
        in_dim: Number of input features.
        hidden_sizes: Widths of the hidden layers.
        out_dim: Number of outputs.
        activation: "relu" or "tanh".
        input_normalization: The first layer: "mean_std" (a :class:`RunningMeanStd` of every
            input feature, updated by the learner), "layer_norm" (HARL's LayerNorm over the
            features of each row) or "none".
        output_gain: Orthogonal-init gain of the output layer.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    if input_normalization not in INPUT_NORMALIZATIONS:
        raise ValueError(
            f"input_normalization must be one of {list(INPUT_NORMALIZATIONS)}, got "
            f"{input_normalization!r}"
        )
    first = {"mean_std": RunningMeanStd, "layer_norm": nn.LayerNorm}.get(input_normalization)
    layers: list[nn.Module] = [first(in_dim)] if first else []
    last = in_dim
    for size in hidden_sizes:
        linear = nn.Linear(last, int(size))
        nn.init.orthogonal_(linear.weight, gain=_HIDDEN_GAIN[activation])
        nn.init.zeros_(linear.bias)
        layers += [linear, ACTIVATIONS[activation]()]
        last = int(size)
    head = nn.Linear(last, out_dim)
    nn.init.orthogonal_(head.weight, gain=output_gain)
    nn.init.zeros_(head.bias)
    layers.append(head)
    return nn.Sequential(*layers)


def input_normalizer(net: nn.Module) -> RunningMeanStd | None:
    """The running mean/std layer of a :func:`build_mlp` network; None without one (also for
    any other network, e.g. :class:`rllib_hatrpo.torch.cnn.ImageNet`)."""
    if isinstance(net, nn.Sequential) and isinstance(net[0], RunningMeanStd):
        return net[0]
    return None
