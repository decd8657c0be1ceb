"""A small MLP builder shared by the actor and the critic (HARL's network shape)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}
#: Orthogonal-init gains: sqrt(2) for hidden ReLU/Tanh layers; the output layer gain is passed.
_HIDDEN_GAIN = {"relu": nn.init.calculate_gain("relu"), "tanh": nn.init.calculate_gain("tanh")}


def build_mlp(
    in_dim: int,
    hidden_sizes: Sequence[int],
    out_dim: int,
    *,
    activation: str = "relu",
    input_layer_norm: bool = True,
    output_gain: float = 0.01,
) -> nn.Sequential:
    """Returns ``[LayerNorm] → (Linear → act)* → Linear`` with orthogonal initialisation.

    The small output gain (0.01 for policies) starts every policy near uniform / zero-mean, as
    in the HARL reference implementation.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    layers: list[nn.Module] = [nn.LayerNorm(in_dim)] if input_layer_norm else []
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
