"""Running mean/std normalisation of every input feature of a network (pure torch, no Ray).

The default first layer of the actors and the critic (``input_normalization="mean_std"``)::

    y = clip((x − μ) / sqrt(σ² + eps), −10, 10)        per feature, identity while n = 0

with μ, σ² and n the exact mean, population variance and count of every valid input row
seen so far (the parallel update of :func:`rllib_hatrpo.core.value_norm.update_running_moments`,
all-reduced over learners). Unlike a LayerNorm over the features of one row (HARL's feature
normalisation [1]), it keeps the information of small inputs: a LayerNorm over one feature
maps every input to the same constant, and over two features to ±1. This is the observation
normalisation of RLlib's ``MeanStdFilter`` and of Stable-Baselines3's ``VecNormalize`` [2],
computed here on the learner and carried to the EnvRunners with the weights.

μ, σ² and n are float64 buffers of the module: checkpoints and the learner → EnvRunner weight
sync carry them (``TorchRLModule.get_state`` is the module's ``state_dict``, buffers included).
RLlib casts float64 to float32 both in ``get_state`` (``convert_to_numpy``) and in
``set_state`` (``convert_to_torch_tensor``); the modules put the exact values back with
:func:`float64_buffers` and :func:`load_float64_buffers`, so that the EnvRunners normalise
exactly as the learner and a restored checkpoint continues with the same statistics.

References:
    [1] Zhong et al., *Heterogeneous-Agent Reinforcement Learning*, JMLR 25 (2024),
        arXiv:2304.09870.
    [2] Raffin et al., *Stable-Baselines3: Reliable Reinforcement Learning Implementations*,
        JMLR 22 (2021); ``VecNormalize`` (clip_obs = 10, epsilon = 1e-8).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from rllib_hatrpo.core.advantages import ReduceFn
from rllib_hatrpo.core.value_norm import update_running_moments

#: eps in sqrt(σ² + eps): a feature that never varied (σ² = 0) maps to 0, not to NaN.
DEFAULT_EPS = 1e-8
#: |y| ≤ 10, as RLlib's MeanStdFilter (clip 10) and SB3's VecNormalize (clip_obs 10) do: a rare
#: far-out input, or a feature whose variance so far is ~0 and then moves, cannot feed the
#: network values of thousands of standard deviations (and blow up its output and the KL).
DEFAULT_CLIP = 10.0


class RunningMeanStd(nn.Module):
    """Normalises each of ``num_features`` input features by its running mean and std.

    Args:
        num_features: D, the size of the last input dimension.
        eps: Added to the variance under the square root, > 0.
        clip: Bound of the normalised values, > 0.
    """

    def __init__(
        self, num_features: int, eps: float = DEFAULT_EPS, clip: float = DEFAULT_CLIP
    ) -> None:
        super().__init__()
        if num_features < 1 or not eps > 0 or not clip > 0:
            raise ValueError(
                f"RunningMeanStd needs num_features >= 1, eps > 0 and clip > 0; got "
                f"{num_features}, {eps}, {clip}."
            )
        self.num_features, self.eps, self.clip = int(num_features), float(eps), float(clip)
        self.register_buffer("mean", torch.zeros(self.num_features, dtype=torch.float64))
        self.register_buffer("var", torch.ones(self.num_features, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    def forward(self, x: Tensor) -> Tensor:
        """clip((x − μ) / sqrt(σ² + eps), ±clip) over the last dim; x itself while n = 0.

        Computed in float64 and returned in ``x``'s dtype; no host sync (``torch.where``).
        """
        y = ((x.double() - self.mean) / torch.sqrt(self.var + self.eps)).clamp(
            -self.clip, self.clip
        )
        return torch.where(self.count > 0, y.to(x.dtype), x)

    @torch.no_grad()
    def update(
        self, x: Tensor, mask: Tensor | None = None, reduce_fn: ReduceFn | None = None
    ) -> None:
        """Folds the valid rows of ``x`` into μ, σ² and n (exactly; over all learners).

        A row enters only if ``mask`` is True there and all its values are finite: a NaN or
        inf row would poison the statistics for good.

        Args:
            x: Inputs, shape [N, D] (or [N, ...] with D values per row).
            mask: Shape [N], bool: rows to use (e.g. ``Columns.LOSS_MASK``); all when None.
            reduce_fn: Sums the statistics over learners (``distributed.sum_reduce_fn()``);
                None on one learner. Every learner must call this, with or without rows.
        """
        rows = x.detach().reshape(x.shape[0], -1)
        if rows.shape[1] != self.num_features:
            raise ValueError(
                f"RunningMeanStd.update: expected {self.num_features} features per row, got "
                f"{rows.shape[1]} (x of shape {tuple(x.shape)})."
            )
        valid = torch.isfinite(rows).all(dim=1)
        if mask is not None:
            valid = valid & mask.reshape(-1).to(device=rows.device, dtype=torch.bool)
        mean, var, count = update_running_moments(
            self.mean, self.var, self.count, rows, valid, reduce_fn=reduce_fn
        )
        self.mean.copy_(mean)
        self.var.copy_(var)
        self.count.copy_(count)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, clip={self.clip}"


def float64_buffers(module: nn.Module) -> dict[str, np.ndarray]:
    """The float64 buffers of ``module`` as float64 numpy arrays, keyed like its state dict.

    Put them into the state after RLlib's ``TorchRLModule.get_state``, which converts every
    float64 array to float32.
    """
    return {
        name: buffer.detach().cpu().numpy().copy()
        for name, buffer in module.named_buffers()
        if buffer.dtype == torch.float64
    }


def load_float64_buffers(module: nn.Module, state: Mapping[str, Any]) -> None:
    """Copies the float64 buffers of ``module`` from ``state`` at full precision.

    Call it after RLlib's ``TorchRLModule.set_state(state)``, which converts every float64
    array to float32 before ``load_state_dict``. Keys not in ``state`` are left as they are.
    """
    with torch.no_grad():
        for name, buffer in module.named_buffers():
            if buffer.dtype == torch.float64 and name in state:
                value = state[name]
                if torch.is_tensor(value):
                    value = value.detach().cpu().numpy()
                exact = torch.from_numpy(np.array(value, dtype=np.float64))
                buffer.copy_(exact.reshape(buffer.shape))


def check_state_layout(module: nn.Module, state: Mapping[str, Any], what: str) -> None:
    """Raises ValueError if ``state`` is a state of ``module`` with some of its keys missing.

    RLlib loads module states with ``strict=False``, so a checkpoint of another network layout
    (e.g. written with another ``input_normalization``) would otherwise load silently in part.

    Args:
        module: The module being loaded.
        state: Its new state (``TorchRLModule.set_state``'s argument).
        what: The module's name in the message.
    """
    own = list(module.state_dict())
    missing = [key for key in own if key not in state]
    if missing and len(missing) < len(own):
        extra = sorted(str(key) for key in state if key not in set(own))
        raise ValueError(
            f"{what}: the state to load lacks {missing} (and has {extra} that this module "
            "does not): it was written for another network layout. If it comes from a "
            "checkpoint of an earlier version or another setting, build the config with the "
            "checkpoint's training(input_normalization=...) ('layer_norm' for checkpoints "
            "written before input_normalization existed) and restore into that."
        )
