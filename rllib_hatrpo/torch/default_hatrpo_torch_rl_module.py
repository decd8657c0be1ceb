"""The HATRPO actor: an MLP policy on the agent's own observation (a CNN, then the MLP, on an
image observation: :mod:`rllib_hatrpo.torch.cnn`).

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

from rllib_hatrpo.connectors.central_critic_gae import AGENT_ACTIVE
from rllib_hatrpo.default_hatrpo_rl_module import (
    DEFAULT_ACTIVATION,
    DEFAULT_HIDDEN_SIZES,
    DEFAULT_INITIAL_LOG_STD,
    DEFAULT_INPUT_NORMALIZATION,
)
from rllib_hatrpo.input_normalization import input_normalization_of
from rllib_hatrpo.torch.cnn import build_network, network_input
from rllib_hatrpo.torch.exact_state import ExactNormalizerState
from rllib_hatrpo.torch.mlp import input_normalizer


class DefaultHATRPOTorchRLModule(ExactNormalizerState, TorchRLModule):
    """One agent's policy π_i(a_i | o_i).

    ``model_config`` keys: ``hidden_sizes``, ``activation`` ("relu" | "tanh"),
    ``input_normalization`` ("mean_std" | "layer_norm" | "none", see
    :mod:`rllib_hatrpo.input_normalization`; for images, :mod:`rllib_hatrpo.torch.cnn`),
    ``initial_log_std`` (Box actions only) and ``cnn_filters`` (image observations only).
    """

    @override(TorchRLModule)
    def setup(self) -> None:
        cfg: dict[str, Any] = dict(self.model_config or {})
        if not isinstance(self.observation_space, gym.spaces.Box):
            raise ValueError(
                f"HATRPO actors need a Box observation space, got {self.observation_space}; "
                "wrap the env with rllib_hatrpo.envs.PettingZooEnv, which flattens observations "
                "(and keeps images as (H, W, C) Boxes for a CNN)."
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
        self.pi = build_network(
            self.observation_space,
            cfg,
            cfg.get("hidden_sizes", DEFAULT_HIDDEN_SIZES),
            out_dim,
            activation=cfg.get("activation", DEFAULT_ACTIVATION),
            input_normalization=input_normalization_of(cfg, DEFAULT_INPUT_NORMALIZATION),
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
        out = self.pi(network_input(self.pi, obs))
        if self.log_std is not None:
            out = torch.cat([out, self.log_std.expand_as(out)], dim=-1)
        return {Columns.ACTION_DIST_INPUTS: out}

    @torch.no_grad()
    def update_input_normalization(self, batch: dict[str, Any], reduce_fn: Any = None) -> None:
        """Folds the valid rows (``Columns.LOSS_MASK``) of ``batch[Columns.OBS]`` into the
        running mean/std of the observation (no-op without ``input_normalization="mean_std"``).
        With the column ``AGENT_ACTIVE`` (agents that leave), only the valid rows where the
        agent acts: the zero observations after it left are not its inputs' statistics.

        ``reduce_fn``: ``distributed.sum_reduce_fn()``, so that several learners stay equal.
        """
        norm = input_normalizer(self.pi)
        if norm is not None:
            obs = batch[Columns.OBS]
            mask = batch.get(AGENT_ACTIVE)  # loss_mask ∧ active, where present
            mask = batch.get(Columns.LOSS_MASK) if mask is None else mask
            norm.update(obs.reshape(obs.shape[0], -1), mask, reduce_fn)

    def state_label(self) -> str:
        """Names this module in errors about a saved state of another layout."""
        return f"HATRPO actor ({self.observation_space})"

    @override(TorchRLModule)
    def get_inference_action_dist_cls(self) -> type[TorchDistribution]:
        return self._dist_cls

    @override(TorchRLModule)
    def get_exploration_action_dist_cls(self) -> type[TorchDistribution]:
        return self._dist_cls

    @override(TorchRLModule)
    def get_train_action_dist_cls(self) -> type[TorchDistribution]:
        return self._dist_cls
