"""How RLlib's default module-to-env pipeline turns a module's outputs into the episode's
columns and the env's actions, as plain functions for :class:`rllib_hatrpo.TeamEnvRunner`.

- ``to_numpy``: RLlib's ``TensorToNumpy`` (``convert_to_numpy(reduce_type=True)``): float
  tensors become float32 arrays, integer ones int32.
- ``env_action_fn``: RLlib's ``NormalizeAndClipActions`` (``unsquash_action`` or
  ``clip_action`` on ``ACTIONS_FOR_ENV``), precomputed per action space.
- ``draw_actions``: the action and its log-probability from the module's action
  distribution class, as RLlib's ``GetActions`` connector draws them; for RLlib's
  ``TorchDiagGaussian`` the same torch operations in the same order, without building
  the distribution objects at every step.

All three give RLlib's results bit for bit (``tests/unit/test_env_action_fn.py``,
``tests/component/test_team_env_runner.py``).
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.core.distribution.torch.torch_distribution import TorchDiagGaussian
from ray.rllib.utils.spaces.space_utils import clip_action, unsquash_action

#: log √(2π), as ``torch.distributions.Normal.log_prob`` subtracts it.
_LOG_SQRT_2PI = math.log(math.sqrt(2 * math.pi))


def env_action_fn(space: Any, normalize: bool, clip: bool) -> Any:
    """The map from a module's actions ``[N, ...]`` to the env's, for one agent's ``space``.

    RLlib's module-to-env pipeline applies ``unsquash_action`` (``normalize_actions=True``)
    or ``clip_action`` (``clip_actions=True``) to every action; for a plain ``Box`` this is
    the same arithmetic, precomputed: a bounded float ``Box`` unsquashes [-1, 1] to
    ``clip(low + (a + 1) · (high − low) / 2, low, high)``, an integer one shifts by ``low``;
    clipping clips to the bounds. Other spaces go through RLlib's functions themselves.
    """
    if not (normalize or clip):
        return lambda a: a
    if not isinstance(space, gym.spaces.Box):
        fn = unsquash_action if normalize else clip_action
        return lambda a: fn(a, space)
    low, high = space.low, space.high
    if not normalize:
        return lambda a: np.clip(a, low, high)
    if not (np.all(space.bounded_below) and np.all(space.bounded_above)):
        return lambda a: a
    if space.dtype in (np.float32, np.float64):
        span = high - low
        return lambda a: np.clip(low + (a + 1.0) * span / 2.0, low, high)
    if np.issubdtype(space.dtype, np.integer):
        return lambda a: low + a
    return lambda a: a


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A tensor as RLlib's module-to-env pipeline converts it: floats to float32, integers to
    int32 (``convert_to_numpy(reduce_type=True)``)."""
    array = tensor.cpu().numpy()
    if np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float32, copy=False)
    if np.issubdtype(array.dtype, np.integer):
        return array.astype(np.int32, copy=False)
    return array


def draw_actions(
    dist_cls: type, dist_inputs: torch.Tensor, explore: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """The actions and their log-probabilities for a batch of distribution inputs.

    What RLlib computes with ``dist_cls.from_logits(dist_inputs)`` (``.to_deterministic()``
    without exploration), ``.sample()`` and ``.logp(action)``. For ``TorchDiagGaussian``,
    inputs [μ, log σ] (μ, log σ ∈ ℝ^d), the same operations directly:

    - exploring: σ = exp(log σ), a = ``torch.normal(μ, σ)`` (the same draw from torch's
      RNG), log π(a) = Σ_d [−(a − μ)² / (2σ²) − log σ − log √(2π)], with log σ recomputed
      as log(exp(log σ)) as torch's ``Normal.log_prob`` does;
    - deterministic (RLlib's ``TorchDeterministic``): a = μ, log π = zeros like μ.

    Other distribution classes go through RLlib's own objects.
    """
    if dist_cls is not TorchDiagGaussian:
        dist = dist_cls.from_logits(dist_inputs)
        if not explore:
            dist = dist.to_deterministic()
        action = dist.sample()
        return action, dist.logp(action)
    loc, log_std = dist_inputs.chunk(2, dim=-1)
    if not explore:
        return torch.ones_like(loc) * loc, torch.zeros_like(loc)
    scale = log_std.exp()
    action = torch.normal(loc, scale)
    var = scale**2
    logp = -((action - loc) ** 2) / (2 * var) - scale.log() - _LOG_SQRT_2PI
    return action, logp.sum(-1)
