"""Actor heads for every supported action space: shapes, log-probs and the exact KL."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns

from rllib_hatrpo.torch.default_hatrpo_torch_rl_module import DefaultHATRPOTorchRLModule

pytestmark = pytest.mark.component

OBS = gym.spaces.Box(-1.0, 1.0, (5,), np.float32)


@pytest.mark.parametrize(
    "space",
    [
        gym.spaces.Box(-1.0, 1.0, (3,), np.float32),
        gym.spaces.Discrete(4),
        gym.spaces.MultiDiscrete([3, 2, 4]),
    ],
    ids=["box", "discrete", "multidiscrete"],
)
def test_actor_head_samples_scores_and_has_zero_self_kl(space):
    module = DefaultHATRPOTorchRLModule(
        observation_space=OBS, action_space=space, model_config={"hidden_sizes": [16]}
    )
    obs = torch.as_tensor(np.stack([OBS.sample() for _ in range(8)]))
    inputs = module.forward_exploration({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS]
    dist_cls = module.get_exploration_action_dist_cls()
    dist = dist_cls.from_logits(inputs)
    actions = dist.sample()
    assert space.contains(np.asarray(actions[0], dtype=space.dtype))
    logp = dist.logp(actions)
    assert logp.shape == (8,) and torch.isfinite(logp).all()
    assert torch.allclose(dist.kl(dist_cls.from_logits(inputs)), torch.zeros(8), atol=1e-6)
    # A different distribution has a positive, finite KL from the sampling one.
    train_inputs = module.forward_train({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS]
    shifted = dist_cls.from_logits(train_inputs + 0.5 * torch.randn_like(train_inputs))
    kl = dist.kl(shifted).mean()
    assert kl > 0
    assert torch.isfinite(kl)
