"""The image trunk (`rllib_hatrpo.torch.cnn`): shapes, scaling, normalisation, state, and
1-D inputs built exactly as before."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.models.configs import CNNEncoderConfig
from torch import nn

from rllib_hatrpo.core.running_mean_std import RunningMeanStd
from rllib_hatrpo.default_hatrpo_rl_module import DEFAULT_CNN_FILTERS, cnn_output_shape
from rllib_hatrpo.torch.cnn import ImageNet, build_network
from rllib_hatrpo.torch.default_hatrpo_torch_rl_module import DefaultHATRPOTorchRLModule
from rllib_hatrpo.torch.mlp import build_mlp, input_normalizer
from rllib_hatrpo.torch.shared_critic_torch_rl_module import (
    NORMALIZED_VF_PREDS,
    SharedCriticTorchRLModule,
)

IMAGE = gym.spaces.Box(0, 255, (16, 12, 3), np.uint8)
ACTIONS = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
SMALL_FILTERS = [[4, 3, 2], [8, 3, 2, "valid"]]


@pytest.mark.parametrize("shape", [(84, 84, 3), (32, 32, 3), (7, 9, 2), (1, 1, 1)])
@pytest.mark.parametrize(
    "filters",
    [DEFAULT_CNN_FILTERS, [[32, 8, 4, "valid"], [64, 4, 2, "valid"]], [[4, [3, 5], [2, 1]]]],
)
def test_cnn_output_shape_matches_rllib_or_refuses_what_does_not_fit(shape, filters):
    spec = [list(f) for f in filters]
    try:
        ours = cnn_output_shape(shape, spec, "training(cnn_filters=...)")
    except ValueError as err:
        assert "does not fit the image" in str(err) and "valid" in str(err)
        return
    rllib = CNNEncoderConfig(input_dims=list(shape), cnn_filter_specifiers=spec).output_dims
    assert int(np.prod(ours)) == rllib[0]


def test_default_filters_fit_84_and_small_images():
    assert cnn_output_shape((84, 84, 3), DEFAULT_CNN_FILTERS, "f") == (11, 11, 32)
    assert cnn_output_shape((32, 32, 3), DEFAULT_CNN_FILTERS, "f") == (4, 4, 32)


def test_image_net_scales_uint8_and_gives_batch_by_outputs():
    torch.manual_seed(0)
    net = ImageNet(
        IMAGE,
        SMALL_FILTERS,
        [8],
        5,
        activation="relu",
        input_normalization="mean_std",
        output_gain=1.0,
    )
    images = torch.randint(0, 256, (4, 16, 12, 3), dtype=torch.uint8)
    out = net(images)
    assert out.shape == (4, 5)
    torch.testing.assert_close(net(images.float()), out)  # the critic's float32 0..255 batch
    assert input_normalizer(net) is None  # no running pixel statistics
    assert not any(isinstance(m, (RunningMeanStd, nn.LayerNorm)) for m in net.modules())
    with pytest.raises(ValueError, match=r"expected \[B, \*\(16, 12, 3\)\]"):
        net(images[:, :8])


def test_layer_norm_goes_on_the_cnn_features():
    net = build_network(
        IMAGE,
        {"cnn_filters": SMALL_FILTERS},
        [8],
        1,
        activation="tanh",
        input_normalization="layer_norm",
        output_gain=1.0,
    )
    assert isinstance(net, ImageNet) and isinstance(net.mlp[0], nn.LayerNorm)


@pytest.mark.parametrize("space", [gym.spaces.Box(-1, 1, (6,), np.float32)])
def test_vector_inputs_build_the_same_mlp_as_before(space):
    """Same layers, same seeded weights bit for bit, same state keys: the MLP path is unchanged."""
    torch.manual_seed(3)
    actor = DefaultHATRPOTorchRLModule(
        observation_space=space, action_space=ACTIONS, model_config={"hidden_sizes": [8, 8]}
    )
    torch.manual_seed(3)
    reference = build_mlp(6, [8, 8], 2, input_normalization="mean_std", output_gain=0.01)
    assert isinstance(actor.pi, nn.Sequential) and len(actor.pi) == len(reference)
    for key, value in reference.state_dict().items():
        assert torch.equal(actor.pi.state_dict()[key], value), key
    obs = torch.randn(5, 6)
    out = actor.forward_inference({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS]
    assert torch.equal(out[:, :2], reference(obs))
    assert isinstance(input_normalizer(actor.pi), RunningMeanStd)


def test_image_actor_and_critic_state_round_trip():
    config = {"hidden_sizes": [8], "cnn_filters": SMALL_FILTERS}
    actors = [
        DefaultHATRPOTorchRLModule(
            observation_space=IMAGE, action_space=gym.spaces.Discrete(3), model_config=config
        )
        for _ in range(2)
    ]
    images = torch.randint(0, 256, (3, 16, 12, 3), dtype=torch.uint8)
    actors[1].set_state(actors[0].get_state())
    outs = [a.forward_inference({Columns.OBS: images})[Columns.ACTION_DIST_INPUTS] for a in actors]
    assert outs[0].shape == (3, 3) and torch.equal(outs[0], outs[1])
    critic = SharedCriticTorchRLModule(
        observation_space=IMAGE, action_space=ACTIONS, learner_only=True, model_config=config
    )
    assert critic.forward_train({Columns.OBS: images})[NORMALIZED_VF_PREDS].shape == (3,)
    critic.update_input_normalization({Columns.OBS: images})  # no statistics: a no-op


def test_bad_filters_name_the_field_when_a_module_is_built():
    with pytest.raises(ValueError, match=r"training\(cnn_filters=\.\.\.\) does not fit"):
        DefaultHATRPOTorchRLModule(
            observation_space=IMAGE,
            action_space=ACTIONS,
            model_config={"cnn_filters": [[4, 17, 1, "valid"]]},
        )
