"""Several HATRPO actors of one layout evaluated as one batched network (sampling only).

Agents whose actors have the same layout (observation size, hidden layers, activation, input
normalisation, action head), as the agents of MaMuJoCo's HalfCheetah 2x3 or Ant 4x2 or the
MPE agents do, can share one forward pass: their weights are stacked, ``W ∈ ℝ^{G×out×in}``,
and each layer is one batched matrix product ``Y = X Wᵀ + b`` over ``X ∈ ℝ^{G×N×in}``
(``torch.baddbmm``) instead of G small ones. At the sizes of sampling (N = the envs of one
EnvRunner) the per-call overhead of G separate forward passes costs more than the arithmetic.

The result is each actor's ``Columns.ACTION_DIST_INPUTS`` up to float rounding (a batched
product sums in another order); :func:`group_actors` only groups the plain MLP actors of
:class:`~rllib_hatrpo.torch.default_hatrpo_torch_rl_module.DefaultHATRPOTorchRLModule`,
anything else (images, a user's module) runs on its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from rllib_hatrpo.core.running_mean_std import RunningMeanStd
from rllib_hatrpo.torch.default_hatrpo_torch_rl_module import DefaultHATRPOTorchRLModule

_ACTIVATIONS = {nn.ReLU: torch.relu, nn.Tanh: torch.tanh}


def _layout(module: Any) -> tuple | None:
    """What must be equal for two actors to share a batched forward pass; None: never."""
    if type(module) is not DefaultHATRPOTorchRLModule or not isinstance(module.pi, nn.Sequential):
        return None
    layers = []
    for layer in module.pi:
        if isinstance(layer, nn.Linear):
            layers.append(("linear", tuple(layer.weight.shape)))
        elif type(layer) in _ACTIVATIONS:
            layers.append((type(layer).__name__,))
        elif isinstance(layer, RunningMeanStd) and layer is module.pi[0]:
            layers.append(("mean_std", layer.num_features, layer.eps, layer.clip))
        else:
            return None  # LayerNorm, an image encoder, anything else: alone.
    log_std = None if module.log_std is None else tuple(module.log_std.shape)
    return (
        tuple(module.observation_space.shape),
        repr(module.action_space),
        tuple(layers),
        log_std,
    )


def group_actors(modules: Mapping[str, Any]) -> list[list[str]]:
    """The agents in groups of one shared layout (order kept); singletons where none is shared."""
    groups: dict[Any, list[str]] = {}
    for aid, module in modules.items():
        layout = _layout(module)
        groups.setdefault(aid if layout is None else layout, []).append(aid)
    return list(groups.values())


class GroupedActors:
    """The stacked weights of actors of one layout and their batched forward pass.

    Args:
        modules: The actors, all of one layout (see :func:`group_actors`).
    """

    def __init__(self, modules: Sequence[DefaultHATRPOTorchRLModule]) -> None:
        if len({_layout(m) for m in modules}) != 1 or _layout(modules[0]) is None:
            raise ValueError("GroupedActors needs plain MLP actors of one layout.")
        first = modules[0].pi
        self._steps: list[tuple[str, Any]] = []
        for index, layer in enumerate(first):
            stack = [m.pi[index] for m in modules]
            if isinstance(layer, nn.Linear):
                weight = torch.stack([lin.weight.detach() for lin in stack]).transpose(1, 2)
                bias = torch.stack([lin.bias.detach() for lin in stack]).unsqueeze(1)
                self._steps.append(("linear", (bias, weight.contiguous())))
            elif isinstance(layer, RunningMeanStd):
                mean = torch.stack([n.mean for n in stack]).unsqueeze(1)
                std = torch.sqrt(torch.stack([n.var for n in stack]) + layer.eps).unsqueeze(1)
                seen = torch.stack([n.count > 0 for n in stack]).reshape(-1, 1, 1)
                self._steps.append(("mean_std", (mean, std, seen, layer.clip)))
            else:
                self._steps.append(("activation", _ACTIVATIONS[type(layer)]))
        self._log_std = (
            None
            if modules[0].log_std is None
            else torch.stack([m.log_std.detach() for m in modules]).unsqueeze(1)
        )

    @torch.no_grad()
    def forward(self, obs: Tensor) -> Tensor:
        """``Columns.ACTION_DIST_INPUTS`` of every actor: ``[G, N, out]`` from ``[G, N, in]``.

        Each step is the actor's own layer on a stack: the input normalisation
        clip((x − μ) / sqrt(σ² + eps), ±clip) in float64 (x itself while n = 0), then
        ``baddbmm`` per linear layer, then the activation; a Gaussian head appends its
        state-independent log-std.
        """
        x = obs.float()
        for kind, params in self._steps:
            if kind == "linear":
                bias, weight = params
                x = torch.baddbmm(bias, x, weight)
            elif kind == "mean_std":
                mean, std, seen, clip = params
                y = ((x.double() - mean) / std).clamp(-clip, clip)
                x = torch.where(seen, y.to(x.dtype), x)
            else:
                x = params(x)
        if self._log_std is not None:
            x = torch.cat([x, self._log_std.expand_as(x)], dim=-1)
        return x
