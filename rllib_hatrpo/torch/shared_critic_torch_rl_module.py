"""The learner-only central critic V(s) on the environment's global state, with value
normalisation (running mean/variance of the value targets, kept in module buffers so that
checkpoints carry it; [1] §5, HARL's ValueNorm) and, by default, a running mean/std
normalisation of every state feature (:mod:`rllib_hatrpo.input_normalization`). An image state
(a ``Box`` of rank 3) goes through a CNN before the MLP (:mod:`rllib_hatrpo.torch.cnn`).

References:
    [1] Zhong et al., Heterogeneous-Agent Reinforcement Learning, JMLR 25 (2024),
        arXiv:2304.09870.
"""

from __future__ import annotations

from typing import Any

import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis.value_function_api import ValueFunctionAPI
from ray.rllib.core.rl_module.torch.torch_rl_module import TorchRLModule
from ray.rllib.utils.annotations import override
from torch import Tensor

from rllib_hatrpo.core import value_norm
from rllib_hatrpo.default_hatrpo_rl_module import (
    DEFAULT_ACTIVATION,
    DEFAULT_HIDDEN_SIZES,
    DEFAULT_INPUT_NORMALIZATION,
)
from rllib_hatrpo.input_normalization import input_normalization_of
from rllib_hatrpo.torch.cnn import build_network, network_input
from rllib_hatrpo.torch.exact_state import ExactNormalizerState
from rllib_hatrpo.torch.mlp import input_normalizer

#: Output column of the critic's forward pass: V(s) in normalised units.
NORMALIZED_VF_PREDS = "normalized_vf_preds"


class SharedCriticTorchRLModule(ExactNormalizerState, TorchRLModule, ValueFunctionAPI):
    """V(s) for the team; ``compute_values`` returns values in reward units.

    ``model_config`` keys: ``hidden_sizes``, ``activation``, ``input_normalization``
    ("mean_std" | "layer_norm" | "none"), ``use_value_norm`` (default True) and
    ``cnn_filters`` (image states only).
    """

    @override(TorchRLModule)
    def setup(self) -> None:
        cfg: dict[str, Any] = dict(self.model_config or {})
        self.use_value_norm = bool(cfg.get("use_value_norm", True))
        self.vf = build_network(
            self.observation_space,
            cfg,
            cfg.get("hidden_sizes", DEFAULT_HIDDEN_SIZES),
            1,
            activation=cfg.get("activation", DEFAULT_ACTIVATION),
            input_normalization=input_normalization_of(cfg, DEFAULT_INPUT_NORMALIZATION),
            output_gain=1.0,
        )
        self.register_buffer("value_norm_mean", torch.zeros(()))
        self.register_buffer("value_norm_var", torch.ones(()))
        self.register_buffer("value_norm_count", torch.zeros(()))

    @override(TorchRLModule)
    def _forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        state = batch[Columns.OBS]
        return {NORMALIZED_VF_PREDS: self.vf(network_input(self.vf, state)).squeeze(-1)}

    @override(ValueFunctionAPI)
    def compute_values(self, batch: dict[str, Any], embeddings: Any = None) -> Tensor:
        return self.denormalize(self._forward(batch)[NORMALIZED_VF_PREDS])

    @torch.no_grad()
    def update_input_normalization(self, batch: dict[str, Any], reduce_fn: Any = None) -> None:
        """Folds the valid rows (``Columns.LOSS_MASK``) of the global state
        ``batch[Columns.OBS]`` into the state's running mean/std (no-op unless "mean_std")."""
        norm = input_normalizer(self.vf)
        if norm is not None:
            state = batch[Columns.OBS]
            norm.update(state.reshape(state.shape[0], -1), batch.get(Columns.LOSS_MASK), reduce_fn)

    def state_label(self) -> str:
        """Names this module in errors about a saved state of another layout."""
        return "HATRPO central critic"

    def update_value_norm(self, targets: Tensor, mask: Tensor, reduce_fn=None) -> None:
        """Folds the masked value targets into the running moments (no-op if disabled)."""
        if not self.use_value_norm:
            return
        mean, var, count = value_norm.update_running_moments(
            self.value_norm_mean,
            self.value_norm_var,
            self.value_norm_count,
            targets.detach(),
            mask,
            reduce_fn=reduce_fn,
        )
        self.value_norm_mean.copy_(mean)
        self.value_norm_var.copy_(var)
        self.value_norm_count.copy_(count)

    def normalize(self, values: Tensor) -> Tensor:
        """Reward units → the critic's output units."""
        if not self.use_value_norm or self.value_norm_count <= 0:
            return values
        return value_norm.normalize(values, self.value_norm_mean, self.value_norm_var)

    def denormalize(self, values: Tensor) -> Tensor:
        """The critic's output units → reward units."""
        if not self.use_value_norm or self.value_norm_count <= 0:
            return values
        return value_norm.denormalize(values, self.value_norm_mean, self.value_norm_var)
