"""The HATRPO torch learner: critic update, allocation stage, sequential TRPO sweep.

One ``_update`` per iteration, on the whole batch (``learner_group.update`` is called without
minibatching, so RLlib's ``MiniBatchDummyIterator`` hands the full batch over once):

1. the central critic: ``critic_epochs`` Adam passes on a clipped Huber loss against
   value-normalised GAE targets ([2] §5);
2. the allocation stage: the configured :class:`~rllib_hatrpo.kl_allocation.KLAllocator`
   chooses the agent order and each agent's ``kl_budget`` δ_i (Σ δ_i ≤ δ_total);
3. the sequential per-agent TRPO steps with the compound ratio M ([1], Algorithm 1).

Paper symbols → code: M → ``compound_ratio``; δ → ``kl_threshold``; δ_i → ``kl_budget``;
δ_total → ``total_kl_budget``; g_i → ``policy_grad``; F_i⁻¹g_i → ``search_dir``;
q_i = g_iᵀF_i⁻¹g_i → ``natgrad_sq_norm``.

This overrides RLlib's private ``TorchLearner._update`` hook (Ray 2.60); the component tests
fail loudly if an upgrade changes it.

References:
    [1] Kuba et al., Trust Region Policy Optimisation in Multi-Agent RL, ICLR 2022.
    [2] Zhong et al., Heterogeneous-Agent Reinforcement Learning, JMLR 25 (2024).
    [3] Shek, Shi & Tokekar, Multi-Agent Trust Region Policy Optimisation: A Joint
        Constraint Approach, arXiv:2508.10340.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.learner import Learner
from ray.rllib.core.learner.torch.torch_learner import TorchLearner
from ray.rllib.evaluation.postprocessing import Postprocessing
from ray.rllib.utils.annotations import override
from ray.rllib.utils.metrics import ALL_MODULES

from rllib_hatrpo import advantages
from rllib_hatrpo.default_hatrpo_rl_module import SHARED_CRITIC_ID
from rllib_hatrpo.hatrpo_learner import HATRPOLearner
from rllib_hatrpo.metrics import allocation_metrics
from rllib_hatrpo.torch.sequential_trpo import TorchSequentialUpdate
from rllib_hatrpo.torch.shared_critic_torch_rl_module import NORMALIZED_VF_PREDS

logger = logging.getLogger(__name__)


class HATRPOTorchLearner(HATRPOLearner, TorchLearner):
    """Critic by gradient descent; actors by sequential, allocated trust-region steps."""

    @override(TorchLearner)
    def configure_optimizers_for_module(self, module_id, config=None) -> None:
        # Actors move by trust-region steps only; the critic is the one module with Adam.
        if module_id != SHARED_CRITIC_ID:
            return
        params = self.get_parameters(self._module[module_id])
        self.register_optimizer(
            module_id=module_id,
            optimizer=torch.optim.Adam(params, eps=config.critic_optimizer_eps),
            params=params,
            lr_or_lr_schedule=config.critic_lr,
        )

    @override(Learner)
    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out):
        raise NotImplementedError(
            "HATRPO has no per-module loss: its update is the sequential sweep in _update()."
        )

    @override(TorchLearner)
    def _update(self, batch: dict[str, Any], **kwargs) -> tuple[Any, Any, Any]:
        critic_loss = self._update_critic(batch[SHARED_CRITIC_ID])
        modules = {mid: self.module[mid].unwrapped() for mid in self.actor_ids}
        sweep = TorchSequentialUpdate(modules, batch, self.config)
        records = self.allocator.run(sweep, self.total_kl_budget, self.order_rng)
        per_agent, overall = allocation_metrics(records, sweep, self.total_kl_budget)
        for mid, values in per_agent.items():
            self.metrics.log_dict(values, key=mid, window=1)
        self.metrics.log_dict(overall, key=ALL_MODULES, window=1)
        if overall["skipped_steps"]:
            logger.debug("HATRPO: %d agent steps skipped by the guards", overall["skipped_steps"])
        return {}, {SHARED_CRITIC_ID: critic_loss}, {}

    def _update_critic(self, critic_batch: dict[str, Any]) -> torch.Tensor:
        """``critic_epochs`` × ``critic_num_minibatches`` Adam steps on the clipped Huber loss."""
        cfg = self.config
        critic = self.module[SHARED_CRITIC_ID].unwrapped()
        mask = critic_batch[Columns.LOSS_MASK]
        targets = critic_batch[Postprocessing.VALUE_TARGETS]
        critic.update_value_norm(targets, mask)
        norm_targets = critic.normalize(targets)
        norm_old_values = critic.normalize(critic_batch[Columns.VF_PREDS])
        losses = []
        for _ in range(cfg.critic_epochs):
            minibatches = (
                [slice(None)]
                if cfg.critic_num_minibatches == 1
                else torch.randperm(mask.shape[0], device=mask.device).chunk(
                    cfg.critic_num_minibatches
                )
            )
            for idx in minibatches:
                preds = self.module[SHARED_CRITIC_ID].forward_train(
                    {Columns.OBS: critic_batch[Columns.OBS][idx]}
                )[NORMALIZED_VF_PREDS]
                loss = advantages.clipped_value_loss(
                    preds,
                    norm_old_values[idx],
                    norm_targets[idx],
                    mask[idx],
                    clip_param=cfg.value_clip_param,
                    huber_delta=cfg.huber_delta,
                )
                grads = self.compute_gradients({SHARED_CRITIC_ID: loss})
                self.apply_gradients(self.postprocess_gradients(grads))
                losses.append(loss.detach())
        return torch.stack(losses).mean()
