"""The HATRPO actor: an MLP policy on the agent's own observation.

``Box`` actions: diagonal Gaussian whose log-std is a state-independent parameter.
``Discrete``: categorical. ``MultiDiscrete``: a product of categoricals. The module returns
``Columns.ACTION_DIST_INPUTS``; the distribution classes are RLlib's, so the EnvRunners
sample with them and the learner computes log-probabilities and the exact KL with them.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.distribution.torch.torch_distribution import (
    TorchCategorical,
    TorchDiagGaussian,
    TorchDistribution,
    TorchMultiCategorical,
)
from ray.rllib.core.rl_module.torch.torch_rl_module import TorchRLModule
from ray.rllib.utils.annotations import override
from torch import nn

from rllib_hatrpo.default_hatrpo_rl_module import (
    DEFAULT_ACTIVATION,
    DEFAULT_HIDDEN_SIZES,
    DEFAULT_INITIAL_LOG_STD,
    DEFAULT_INPUT_LAYER_NORM,
)
from rllib_hatrpo.torch.mlp import build_mlp


class DefaultHATRPOTorchRLModule(TorchRLModule):
    """One agent's policy π_i(a_i | o_i).

    ``model_config`` keys: ``hidden_sizes``, ``activation`` ("relu" | "tanh"),
    ``input_layer_norm`` and ``initial_log_std`` (Box actions only).
    """

    @override(TorchRLModule)
    def setup(self) -> None:
        cfg: dict[str, Any] = dict(self.model_config or {})
        if not isinstance(self.observation_space, gym.spaces.Box):
            raise ValueError(
                f"HATRPO actors need a Box observation space, got {self.observation_space}; "
                "wrap the env with rllib_hatrpo.envs.PettingZooEnv, which flattens observations."
            )
        space = self.action_space
        if isinstance(space, gym.spaces.Box):
            out_dim = int(np.prod(space.shape))
            self._dist_cls: type[TorchDistribution] | Any = TorchDiagGaussian
        elif isinstance(space, gym.spaces.Discrete):
            out_dim = int(space.n)
            self._dist_cls = TorchCategorical
        elif isinstance(space, gym.spaces.MultiDiscrete):
            input_lens = [int(n) for n in space.nvec.reshape(-1)]
            out_dim = sum(input_lens)
            self._dist_cls = TorchMultiCategorical.get_partial_dist_cls(input_lens=input_lens)
        else:
            raise ValueError(
                f"Unsupported action space {space}: HATRPO actors handle Box, Discrete and "
                "MultiDiscrete."
            )
        self.pi = build_mlp(
            int(np.prod(self.observation_space.shape)),
            cfg.get("hidden_sizes", DEFAULT_HIDDEN_SIZES),
            out_dim,
            activation=cfg.get("activation", DEFAULT_ACTIVATION),
            input_layer_norm=cfg.get("input_layer_norm", DEFAULT_INPUT_LAYER_NORM),
            output_gain=0.01,
        )
        self.log_std = (
            nn.Parameter(
                torch.full((out_dim,), float(cfg.get("initial_log_std", DEFAULT_INITIAL_LOG_STD)))
            )
            if isinstance(space, gym.spaces.Box)
            else None
        )

    @override(TorchRLModule)
    def _forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        obs = batch[Columns.OBS]
        out = self.pi(obs.reshape(obs.shape[0], -1).float())
        if self.log_std is not None:
            out = torch.cat([out, self.log_std.expand_as(out)], dim=-1)
        return {Columns.ACTION_DIST_INPUTS: out}

    @override(TorchRLModule)
    def get_inference_action_dist_cls(self) -> type[TorchDistribution]:
        return self._dist_cls

    @override(TorchRLModule)
    def get_exploration_action_dist_cls(self) -> type[TorchDistribution]:
        return self._dist_cls

    @override(TorchRLModule)
    def get_train_action_dist_cls(self) -> type[TorchDistribution]:
        return self._dist_cls
