"""Input normalisation of the RLModules and its config setting (no Ray cluster)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns

from rllib_hatrpo import HATRPOConfig
from rllib_hatrpo.default_hatrpo_rl_module import SHARED_CRITIC_ID
from rllib_hatrpo.envs import MPEEnv
from rllib_hatrpo.torch.default_hatrpo_torch_rl_module import DefaultHATRPOTorchRLModule
from rllib_hatrpo.torch.shared_critic_torch_rl_module import SharedCriticTorchRLModule

pytestmark = pytest.mark.component

T = 25  # odd, so that t/T is never 0.5 below


def _critic(state_dim, **model_config):
    space = gym.spaces.Box(-np.inf, np.inf, (state_dim,), np.float32)
    return SharedCriticTorchRLModule(
        observation_space=space,
        action_space=gym.spaces.Discrete(2),
        model_config={"hidden_sizes": [32, 32], **model_config},
    )


def _time_states(state_dim):
    """[t/T] (1 feature) or [t/T, 0.5] (2 features) for t = 0..T: all distinct."""
    t = torch.arange(T + 1, dtype=torch.float32)[:, None] / T
    return t if state_dim == 1 else torch.cat([t, torch.full_like(t, 0.5)], dim=1)


def _values(critic, states):
    with torch.no_grad():
        return critic.compute_values({Columns.OBS: states}).numpy().astype(np.float64)


def _resolution(values):
    """How much V still varies inside each half (t < T/2, t > T/2), relative to its whole
    range: ~0 when V is (nearly) a step function of the sign of t/T − 0.5."""
    spread = np.ptp(values)
    if spread == 0:
        return 0.0
    halves = values[: (T + 1) // 2], values[(T + 1) // 2 :]
    return min(np.ptp(half) for half in halves) / spread


@pytest.mark.parametrize("state_dim", [1, 2])
def test_critic_tells_small_states_apart(state_dim):
    """A state [t/T]: with the default normalisation V differs at every t."""
    torch.manual_seed(0)
    critic = _critic(state_dim)  # the default input_normalization
    states = _time_states(state_dim)
    mask = torch.ones(len(states), dtype=torch.bool)
    critic.update_input_normalization({Columns.OBS: states, Columns.LOSS_MASK: mask})
    values = _values(critic, states)
    assert len(np.unique(values)) == len(states)
    assert _resolution(values) > 0.05


def test_layer_norm_collapses_one_feature_to_a_constant_and_two_to_about_two_values():
    """Why the default changed: HARL's LayerNorm maps one feature to 0 (V constant) and two
    features to ±d/sqrt(d² + 1e-5), d = half their difference (V ≈ two values)."""
    torch.manual_seed(0)
    one = _values(_critic(1, input_normalization="layer_norm"), _time_states(1))
    assert len(np.unique(one)) == 1
    two = _values(_critic(2, input_normalization="layer_norm"), _time_states(2))
    assert _resolution(two) < 0.01


def _actor():
    torch.manual_seed(1)
    obs = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    return DefaultHATRPOTorchRLModule(
        observation_space=obs,
        action_space=gym.spaces.Discrete(4),
        model_config={"hidden_sizes": [16]},
    )


def _fit(module):
    obs = torch.as_tensor(np.random.default_rng(0).normal(size=(64, 3)) * [1.0, 1e-3, 30.0])
    obs = (obs + torch.tensor([0.1, 0.7, 100.0])).float()
    module.update_input_normalization(
        {Columns.OBS: obs, Columns.LOSS_MASK: torch.ones(64, dtype=torch.bool)}
    )
    return obs


def test_normaliser_statistics_survive_the_module_state_round_trip():
    """get_state → set_state (the weight sync and checkpoints) keeps the float64 statistics
    exactly, although RLlib's set_state converts float64 arrays to float32."""
    source, target = _actor(), _actor()
    obs = _fit(source)
    state = source.get_state()
    assert state["pi.0.mean"].dtype == np.float64
    target.set_state(state)
    for key in ("pi.0.mean", "pi.0.var", "pi.0.count"):
        np.testing.assert_array_equal(target.get_state()[key], state[key])
    assert target.get_state()["pi.0.count"] == 64
    out = [
        m.forward_inference({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS]
        for m in (source, target)
    ]
    assert torch.equal(out[0], out[1])


def test_a_state_of_another_layout_is_an_error_not_a_partial_load():
    layer_norm = DefaultHATRPOTorchRLModule(
        observation_space=gym.spaces.Box(-1.0, 1.0, (3,), np.float32),
        action_space=gym.spaces.Discrete(4),
        model_config={"hidden_sizes": [16], "input_normalization": "layer_norm"},
    )
    with pytest.raises(ValueError, match=r"pi\.0\.mean.*input_normalization"):
        _actor().set_state(layer_norm.get_state())


def _config(**training):
    return HATRPOConfig().environment(MPEEnv, env_config={}).training(**training)


def test_config_passes_input_normalization_to_actors_and_critic():
    config = _config(input_normalization="none")
    config.validate()
    spec = config.get_multi_rl_module_spec(env=MPEEnv({}))
    assert SHARED_CRITIC_ID in spec.rl_module_specs
    assert {s.model_config["input_normalization"] for s in spec.rl_module_specs.values()} == {
        "none"
    }
    assert HATRPOConfig().input_normalization == "mean_std"


def test_input_layer_norm_is_replaced_with_a_clear_error():
    with pytest.raises(ValueError, match=r"input_layer_norm=True\) was replaced.*'layer_norm'"):
        HATRPOConfig().training(input_layer_norm=True)
    with pytest.raises(ValueError, match=r"input_normalization=.*must be one of.*'batch_norm'"):
        _config(input_normalization="batch_norm").validate()
    old = _config()
    old.input_layer_norm = False  # e.g. a config restored from an old checkpoint
    with pytest.raises(ValueError, match=r"input_layer_norm=False\) was replaced.*'none'"):
        old.validate()
    with pytest.raises(ValueError, match="was replaced"):
        _critic(2, input_layer_norm=True)
