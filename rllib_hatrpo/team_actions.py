"""How RLlib's default module-to-env pipeline turns a module's outputs into the episode's
columns and the env's actions, as plain functions for :class:`rllib_hatrpo.TeamEnvRunner`.

- ``to_numpy``: RLlib's ``TensorToNumpy`` (``convert_to_numpy(reduce_type=True)``): float
  tensors become float32 arrays, integer ones int32.
- ``env_action_fn``: RLlib's ``NormalizeAndClipActions`` (``unsquash_action`` or
  ``clip_action`` on ``ACTIONS_FOR_ENV``), precomputed per action space.

Both give RLlib's results bit for bit (``tests/unit/test_env_action_fn.py``,
``tests/component/test_team_env_runner.py``).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.utils.spaces.space_utils import clip_action, unsquash_action


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
