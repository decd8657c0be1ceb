"""HATRPOConfig: defaults, the builder, and validate()'s errors naming the field."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from ray.rllib.env.multi_agent_env import MultiAgentEnv

from rllib_hatrpo import HATRPOConfig
from rllib_hatrpo.core.allocation import KLAllocator, UniformAllocator
from rllib_hatrpo.envs import DifferentialGameEnv, MatrixGameEnv

pytestmark = pytest.mark.component


def _config(**training):
    return HATRPOConfig().environment(DifferentialGameEnv).training(**training)


def test_defaults_are_harls_and_the_builder_sets_fields():
    c = HATRPOConfig()
    assert (c.kl_threshold, c.cg_iters, c.fvp_damping, c.line_search_steps) == (0.01, 10, 0.1, 10)
    assert (c.backtrack_coeff, c.accept_ratio, c.critic_lr, c.critic_epochs) == (0.8, 0.5, 5e-4, 5)
    assert (c.gamma, c.lambda_, c.value_clip_param, c.huber_delta) == (0.99, 0.95, 0.2, 10.0)
    c = _config(kl_threshold=0.02, kl_allocator="greedy", total_kl_budget=0.1, lr=1e-3)
    assert (c.kl_threshold, c.kl_allocator, c.total_kl_budget, c.lr) == (0.02, "greedy", 0.1, 1e-3)
    assert c.get_total_kl_budget(5) == 0.1
    assert _config(kl_threshold=0.02).get_total_kl_budget(3) == pytest.approx(0.06)


def test_validate_maps_every_agent_to_its_own_module():
    c = _config()
    c.validate()
    assert sorted(c.policies) == ["agent_0", "agent_1"]
    assert c.policy_mapping_fn("agent_1", None) == "agent_1"


@pytest.mark.parametrize(
    "training, match",
    [
        ({"kl_threshold": 0.0}, r"kl_threshold=.*> 0"),
        ({"kl_threshold": float("nan")}, r"kl_threshold"),
        ({"total_kl_budget": -1.0}, r"total_kl_budget"),
        ({"kl_allocator": "bogus"}, r"kl_allocator"),
        ({"kl_allocator": "kkt", "kl_allocator_config": {"max_share": 0.5}}, r"max_share"),
        ({"kl_allocator": "kkt", "kl_allocator_config": {"typo": 1}}, r"typo"),
        ({"cg_iters": 0}, r"cg_iters=.*>= 1"),
        ({"backtrack_coeff": 1.0}, r"backtrack_coeff=.*\(0, 1\)"),
        ({"minibatch_size": 128}, r"num_epochs=.*minibatch_size"),
        ({"num_epochs": 3}, r"critic_epochs"),
        ({"lambda_": 1.5}, r"lambda_"),
        ({"activation": "gelu"}, r"activation"),
        ({"actor_hidden_sizes": [64, 0]}, r"actor_hidden_sizes"),
        ({"critic_hidden_sizes": [64, True]}, r"critic_hidden_sizes"),
        ({"initial_log_std": "x"}, r"initial_log_std=.*finite number"),
        ({"use_value_norm": "no"}, r"use_value_norm=.*True or False"),
        ({"train_batch_size_per_learner": -5}, r"train_batch_size_per_learner=.*>= 1"),
    ],
)
def test_validate_rejects_bad_values_naming_the_field(training, match):
    with pytest.raises(ValueError, match=match):
        _config(**training).validate()


def test_validate_rejects_more_learners_than_envs_and_shared_modules():
    with pytest.raises(ValueError, match="num_learners"):
        _config().learners(num_learners=2).validate()
    shared = _config().multi_agent(
        policies={"shared"}, policy_mapping_fn=lambda agent_id, episode, **kw: "shared"
    )
    with pytest.raises(ValueError, match=r"share module 'shared'.*parameter sharing"):
        shared.validate()


class _NoStateEnv(MultiAgentEnv):
    def __init__(self, config=None):
        super().__init__()
        self.agents = self.possible_agents = ["a", "b"]
        box = gym.spaces.Box(-1, 1, (2,), np.float32)
        self.observation_spaces = {a: box for a in self.agents}
        self.action_spaces = {a: gym.spaces.Discrete(2) for a in self.agents}


def test_validate_rejects_an_env_without_global_state():
    with pytest.raises(ValueError, match=r"no usable global state.*PettingZooEnv"):
        HATRPOConfig().environment(_NoStateEnv).validate()


def test_user_defined_allocator_class_is_accepted():
    class FirstAgentFirst(KLAllocator):
        def run(self, update, total_kl_budget, rng):
            return UniformAllocator().run(update, total_kl_budget, rng)

    c = HATRPOConfig().environment(MatrixGameEnv).training(kl_allocator=FirstAgentFirst)
    c.validate()
    with pytest.raises(ValueError, match="KLAllocator"):
        HATRPOConfig().environment(MatrixGameEnv).training(kl_allocator=dict).validate()
