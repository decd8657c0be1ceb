"""``env_action_fn`` sends the env what RLlib's ``unsquash_action``/``clip_action`` would, and
``draw_actions`` draws the actions and log-probabilities that RLlib's distributions draw."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.utils.spaces.space_utils import clip_action, unsquash_action

from rllib_hatrpo.team_actions import draw_actions, env_action_fn

SPACES = {
    "box": gym.spaces.Box(np.array([-2.0, 0.0], np.float32), np.array([3.0, 7.0], np.float32)),
    "box_float64": gym.spaces.Box(-1.0, 1.0, shape=(3,), dtype=np.float64),
    "unbounded": gym.spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32),
    "half_bounded": gym.spaces.Box(
        np.array([0.0, -np.inf], np.float32), np.array([1.0, 5.0], np.float32)
    ),
    "box_int": gym.spaces.Box(2, 9, shape=(2,), dtype=np.int64),
    "discrete": gym.spaces.Discrete(4),
    "multi_discrete": gym.spaces.MultiDiscrete([3, 2]),
}


@pytest.mark.parametrize("name", sorted(SPACES))
@pytest.mark.parametrize(("normalize", "clip"), [(True, False), (False, True), (False, False)])
def test_matches_rllibs_functions_bit_for_bit(name, normalize, clip):
    space = SPACES[name]
    rng = np.random.default_rng(0)
    if np.issubdtype(space.dtype, np.integer):
        actions = np.stack([space.sample() for _ in range(16)])
    else:
        actions = rng.normal(0.0, 2.0, (16, *space.shape)).astype(space.dtype)
    if normalize:
        expected = unsquash_action(actions, space)
    elif clip:
        expected = clip_action(actions, space)
    else:
        expected = actions
    got = env_action_fn(space, normalize, clip)(actions)
    np.testing.assert_array_equal(got, expected, strict=True)


@pytest.mark.parametrize("explore", [True, False], ids=["explore", "deterministic"])
@pytest.mark.parametrize("dist_name", ["TorchDiagGaussian", "TorchCategorical"])
def test_draw_actions_equals_rllibs_distribution_objects(dist_name, explore):
    from ray.rllib.core.distribution.torch import torch_distribution

    dist_cls = getattr(torch_distribution, dist_name)
    inputs = torch.randn(64, 6, generator=torch.Generator().manual_seed(3)) * 2.0
    torch.manual_seed(11)
    expected_dist = dist_cls.from_logits(inputs)
    if not explore:
        expected_dist = expected_dist.to_deterministic()
    expected = expected_dist.sample()
    expected_logp = expected_dist.logp(expected)
    torch.manual_seed(11)
    action, logp = draw_actions(dist_cls, inputs, explore)
    torch.testing.assert_close(action, expected, rtol=0, atol=0)
    torch.testing.assert_close(logp, expected_logp, rtol=0, atol=0)
