"""`GroupedActors`: one batched forward pass equals each actor's own, up to float rounding."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns

from rllib_hatrpo.torch.default_hatrpo_torch_rl_module import DefaultHATRPOTorchRLModule
from rllib_hatrpo.torch.grouped_actors import GroupedActors, group_actors


def _actor(obs_dim, action_space, seed, **model_config):
    torch.manual_seed(seed)
    return DefaultHATRPOTorchRLModule(
        observation_space=gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32),
        action_space=action_space,
        model_config={"hidden_sizes": [16, 16], **model_config},
    )


BOX = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)


def test_layouts_group_as_expected():
    actors = {
        "a": _actor(9, BOX, 0),
        "b": _actor(8, BOX, 1),
        "c": _actor(9, BOX, 2),
        "d": _actor(9, gym.spaces.Discrete(4), 3),
        "e": _actor(9, BOX, 4, input_normalization="layer_norm"),
        "f": _actor(9, gym.spaces.Discrete(4), 5),
    }
    assert group_actors(actors) == [["a", "c"], ["b"], ["d", "f"], ["e"]]


@pytest.mark.parametrize("space", [BOX, gym.spaces.Discrete(4)], ids=["box", "discrete"])
@pytest.mark.parametrize("normalization", ["mean_std", "none"])
def test_batched_forward_equals_each_actor(space, normalization):
    actors = [_actor(9, space, seed, input_normalization=normalization) for seed in range(3)]
    rng = np.random.default_rng(0)
    if normalization == "mean_std":  # Statistics seen (a count of 0 passes x through).
        for actor in actors[:2]:
            actor.update_input_normalization(
                {Columns.OBS: torch.as_tensor(rng.normal(3.0, 2.0, (50, 9)), dtype=torch.float32)}
            )
    obs = torch.as_tensor(rng.normal(3.0, 2.0, (3, 16, 9)), dtype=torch.float32)
    out = GroupedActors(actors).forward(obs)
    for g, actor in enumerate(actors):
        with torch.no_grad():
            expected = actor._forward({Columns.OBS: obs[g]})[Columns.ACTION_DIST_INPUTS]
        torch.testing.assert_close(out[g], expected, rtol=1e-5, atol=1e-6)
        assert not torch.equal(out[g], out[(g + 1) % 3])  # each actor keeps its own weights


def test_refuses_mixed_layouts():
    with pytest.raises(ValueError, match="one layout"):
        GroupedActors([_actor(9, BOX, 0), _actor(8, BOX, 1)])
