"""The HATRPO torch learner: critic update, allocation stage, sequential TRPO sweep.

Where each step of the HATRPO algorithm happens is mapped out in the docstring of
:meth:`HATRPOTorchLearner._update`.

One ``_update`` per iteration, on the whole batch (``learner_group.update`` is called without
minibatching, so RLlib's ``MiniBatchDummyIterator`` hands the full batch over once):

1. the central critic: ``critic_epochs`` Adam passes on a clipped Huber loss against
   value-normalised GAE targets ([2] §5);
2. the allocation stage: the configured :class:`~rllib_hatrpo.core.allocation.KLAllocator`
   chooses the agent order and each agent's ``kl_budget`` δ_i (Σ δ_i ≤ δ_total);
3. the sequential per-agent TRPO steps with the compound ratio M ([1], Algorithm 1);
4. the networks' running input mean/std (``input_normalization="mean_std"``) from this
   batch, last, so that the whole update saw one normalisation.

Paper symbols → code: M → ``compound_ratio``; δ → ``kl_threshold``; δ_i → ``kl_budget``;
δ_total → ``total_kl_budget``; g_i → ``policy_grad``; F_i⁻¹g_i → ``search_dir``;
q_i = g_iᵀF_i⁻¹g_i → ``natgrad_sq_norm``.

This overrides RLlib's private ``TorchLearner._update`` hook (Ray 2.60); the component tests
fail loudly if an upgrade changes it.

Several learners (``num_learners > 1``): every learner runs this on its own shard and the
update equals the single-learner update on the union batch. Sums and counts are all-reduced
(:mod:`rllib_hatrpo.torch.distributed`): advantage moments (in the connector), value-norm
moments, critic gradients (of partial losses with the global row count as denominator, summed
by hand: DDP would average per-shard means), and, in the sweep, g_i, every Fisher-vector
product and the line-search scalars. The modules are used ``unwrapped()``, so RLlib's DDP
wrappers only broadcast rank 0's initial weights. The order RNG and the allocator state are
broadcast from rank 0 before each update (``config.seed`` may be None), and the replicas are
checked against rank 0 after it (metric ``replica_max_abs_diff``, 0 when they agree).

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

from rllib_hatrpo.core import value_loss
from rllib_hatrpo.core.advantages import ReduceFn
from rllib_hatrpo.default_hatrpo_rl_module import SHARED_CRITIC_ID
from rllib_hatrpo.hatrpo_learner import HATRPOLearner
from rllib_hatrpo.metrics import REPLICA_MAX_ABS_DIFF, SKIPPED_STEPS, allocation_metrics
from rllib_hatrpo.torch import distributed
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
        """One HATRPO iteration: critic, allocation stage, sequential per-agent TRPO steps.

        Overrides RLlib's private ``TorchLearner._update`` (Ray 2.60), which would compute a
        loss per module and take an optimizer step on each; HATRPO moves its actors by
        trust-region steps instead. ``Learner.update`` calls it once per iteration with the
        whole batch (no minibatching), after the learner connector has computed the
        advantages.

        HATRPO is Algorithm 1 of Kuba et al. (ICLR 2022, arXiv:2109.11251). Here the
        per-agent trust region KL_i ≤ δ becomes the joint budget Σ_i KL_i ≤ δ_total of Shek,
        Shi & Tokekar (arXiv:2508.10340), split into δ_i by an allocation stage. Each step of
        the paper, with the code that does it (the sequential update is steps 3 and 4)::

            for iteration k = 0, 1, ...:
            1. Collect trajectories with the joint policy π_θk.
               -> HATRPO.training_step (EnvRunners), before this call.
            2. Compute Â(s, a) by GAE on the global V-value network.
               -> the learner connector, before this call: CentralCriticGAE ->
                  core.advantages.generalized_advantage_estimate, masked_standardize.
            3. Draw a random permutation i_1:n of the agents [joint budget: the allocation
               stage chooses the order and every δ_i, Σ_i δ_i ≤ δ_total].
               -> self.allocator.run(sweep, self.total_kl_budget, self.order_rng), i.e.
                  KLAllocator.run of core/allocation: UniformAllocator (a random permutation
                  and δ_i = δ_total / n: the paper's HATRPO), KKTAllocator (a pre-pass
                  q_i = sweep.natgrad_sq_norm(i) at M = 1, then δ_i ∝ q_i), GreedyAllocator
                  (rounds of trial steps, the best ΔL_i / KL_i moves). They drive the loop
                  of step 4 through protocol.sweep or their own loop.
            4. M^{i_1}(s, a) = Â(s, a); for agent i_m, m = 1, ..., n:
               a. ĝ = ∇_θ mean[π_θ(a|o) / π_θk(a|o) · M^{i_1:m} · Â]  (at θ = θ_k).
                  -> TorchSequentialUpdate._direction (_surrogate) -> trust_region.flat_grad.
               b. x̂ ≈ Ĥ⁻¹ĝ by conjugate gradient, Ĥ the Hessian of the mean KL.
                  -> trust_region.fisher_vector_product, natural_gradient_direction.
               c. β̂ = sqrt(2δ / x̂ᵀĤx̂)  [δ_i in place of δ].
                  -> TorchSequentialUpdate.propose -> trust_region.propose_step
                     (full_step_scale).
               d. θ^{i_m} ← θ^{i_m} + α^j β̂ x̂, j the first backtracking step whose surrogate
                  gain exceeds κ α^j β̂ x̂ᵀĝ  [and whose KL_i ≤ δ_i].
                  -> trust_region.backtracking_line_search inside propose_step (a proposal
                     leaves θ as it is); the allocator then calls
                     TorchSequentialUpdate.commit -> trust_region.set_flat_params_.
               e. M^{i_1:m+1} = π_θ(k+1)^{i_m}(a^{i_m}|o^{i_m}) / π_θk^{i_m}(a^{i_m}|o^{i_m})
                  · M^{i_1:m}  (the compound ratio).
                  -> TorchSequentialUpdate.commit (compound_ratio; 1 for a rejected step).
            5. φ_k+1 = argmin_φ mean[(V_φ(s_t) − R̂_t)²].
               -> self._update_critic, run first here: clipped Huber loss on value-normalised
                  targets (core.value_norm, core.value_loss.clipped_value_loss), Adam. The
                  actors' steps read only the advantages of step 2, so the order does not
                  change them.

        Then: the per-agent and per-iteration metrics (metrics.allocation_metrics) and the
        networks' running input statistics (_update_input_normalization). With several
        learners, _sync_allocation_state (before) and _sync_replicas (after).

        Args:
            batch: ModuleID → the module's batch (actors and the critic ``SHARED_CRITIC_ID``),
                rows aligned per env step, with advantages and value targets.
            **kwargs: Ignored (RLlib's signature).

        Returns:
            ``(fwd_out, loss_per_module, tensor_metrics)`` as RLlib expects: no forward
            outputs, the critic's mean loss under ``SHARED_CRITIC_ID``, no tensor metrics
            (the metrics are logged here).
        """
        reduce_fn = distributed.sum_reduce_fn()  # None on one learner: the unchanged path
        if distributed.is_distributed():
            self._sync_allocation_state()
        critic_loss = self._update_critic(batch[SHARED_CRITIC_ID], reduce_fn)
        modules = {mid: self.module[mid].unwrapped() for mid in self.actor_ids}
        sweep = TorchSequentialUpdate(modules, batch, self.config, reduce_fn=reduce_fn)
        records = self.allocator.run(sweep, self.total_kl_budget, self.order_rng)
        per_agent, overall = allocation_metrics(records, sweep, self.total_kl_budget)
        if reduce_fn is not None:
            overall[REPLICA_MAX_ABS_DIFF] = self._sync_replicas()
        for mid, values in per_agent.items():
            self.metrics.log_dict(values, key=mid, window=1)
        self.metrics.log_dict(overall, key=ALL_MODULES, window=1)
        if overall[SKIPPED_STEPS]:
            logger.debug("HATRPO: %d agent steps skipped by the guards", overall[SKIPPED_STEPS])
        self._update_input_normalization(batch, reduce_fn)
        return {}, {SHARED_CRITIC_ID: critic_loss}, {}

    def _update_input_normalization(self, batch: dict[str, Any], reduce_fn: Any) -> None:
        """Folds this batch into every network's running input mean/std (``"mean_std"``).

        Runs last in ``_update``: π_old, the actor sweep and the critic of this iteration
        all saw the same normalisation, and the new statistics reach the EnvRunners with the
        weight sync, for the next iteration's sampling. Actors use their valid
        ``Columns.OBS`` rows, the critic its valid global-state rows; ``reduce_fn`` sums the
        statistics over learners (every learner updates every module, in the same order).
        A module without ``update_input_normalization`` (a user's own) is left alone.
        """
        for mid in [*self.actor_ids, SHARED_CRITIC_ID]:
            update = getattr(self.module[mid].unwrapped(), "update_input_normalization", None)
            if update is not None:
                update(batch[mid], reduce_fn)

    def _update_critic(
        self, critic_batch: dict[str, Any], reduce_fn: ReduceFn | None = None
    ) -> torch.Tensor:
        """``critic_epochs`` × ``critic_num_minibatches`` Adam steps on the clipped Huber loss.

        With ``reduce_fn`` (several learners) each learner's loss is its partial loss (the
        global count of valid rows as denominator) and the gradients are summed over learners
        before clipping, so every learner applies the union batch's gradient. Minibatches are
        then the union of every learner's k-th chunk; only with ``critic_num_minibatches=1``
        is that the single learner's update exactly.
        """
        cfg = self.config
        critic = self.module[SHARED_CRITIC_ID].unwrapped()
        mask = critic_batch[Columns.LOSS_MASK]
        targets = critic_batch[Postprocessing.VALUE_TARGETS]
        # The clip window is centred on the critic's own output before this update, in the
        # units it predicts in ([2]'s reference code). Re-normalising the stored reward-unit
        # predictions with the statistics updated below would shift the centre away from the
        # output (in the first iteration most rows would start outside the window and get no
        # gradient at all).
        with torch.no_grad():
            norm_old_values = critic.forward_train({Columns.OBS: critic_batch[Columns.OBS]})[
                NORMALIZED_VF_PREDS
            ]
        critic.update_value_norm(targets, mask, reduce_fn=reduce_fn)
        norm_targets = critic.normalize(targets)
        losses = []
        for _ in range(cfg.critic_epochs):
            for idx in _critic_minibatches(mask, cfg.critic_num_minibatches, reduce_fn):
                preds = critic.forward_train({Columns.OBS: critic_batch[Columns.OBS][idx]})[
                    NORMALIZED_VF_PREDS
                ]
                loss = value_loss.clipped_value_loss(
                    preds,
                    norm_old_values[idx],
                    norm_targets[idx],
                    mask[idx],
                    clip_param=cfg.value_clip_param,
                    huber_delta=cfg.huber_delta,
                    reduce_fn=reduce_fn,
                )
                grads = self.compute_gradients({SHARED_CRITIC_ID: loss})
                if reduce_fn is not None:
                    grads = self._summed_gradients(grads, reduce_fn)
                self.apply_gradients(self.postprocess_gradients(grads))
                losses.append(loss.detach())
        mean_loss = torch.stack(losses).mean()
        return mean_loss if reduce_fn is None else reduce_fn(mean_loss)

    def _summed_gradients(self, grads: dict[Any, Any], reduce_fn: ReduceFn) -> dict[Any, Any]:
        """The gradients summed over learners, in one collective over the flattened vector
        (a missing gradient counts as zeros, so every learner sends the same layout)."""
        params = {pid: self._params[pid] for pid in grads}
        local = [torch.zeros_like(params[pid]) if g is None else g for pid, g in grads.items()]
        total = reduce_fn(torch.cat([g.reshape(-1) for g in local]))
        summed, offset = {}, 0
        for pid, g in zip(grads, local, strict=True):
            summed[pid] = total[offset : offset + g.numel()].view_as(g)
            offset += g.numel()
        return summed

    def _sync_allocation_state(self) -> None:
        """Gives every learner rank 0's order RNG and allocator state (same orders, same EMA),
        also when ``config.seed`` is None and each learner seeded its RNG differently."""
        rng_state, allocator_state = distributed.broadcast_object(
            (self.order_rng.getstate(), self.allocator.get_state())
        )
        self.order_rng.setstate(rng_state)
        self.allocator.set_state(allocator_state)

    def compute_state_values(self, states: Any) -> Any:
        """V(s) of the central critic in reward units, for global states ``[N, *state_shape]``.

        Raises:
            ValueError: ``states`` does not have the critic's input shape.
        """
        import numpy as np

        critic = self.module[SHARED_CRITIC_ID].unwrapped()
        shape = tuple(critic.observation_space.shape)
        states = np.asarray(states, dtype=np.float32)
        if states.shape[1:] != shape:
            raise ValueError(
                f"compute_state_values expects global states of shape [N, *{shape}] (the "
                f"env's state_space), got {states.shape}."
            )
        with torch.no_grad():
            values = critic.compute_values(
                {Columns.OBS: torch.as_tensor(states, device=self._device)}
            )
        return values.cpu().numpy()

    def _sync_replicas(self) -> float:
        """Max |weights − rank 0's| over all modules (parameters and buffers), then synced."""
        tensors = [
            t
            for mid in self.module.keys()
            for t in self.module[mid].unwrapped().state_dict(keep_vars=True).values()
            if torch.is_tensor(t) and t.is_floating_point()
        ]
        gap = distributed.sync_replicas(tensors)
        if gap:
            logger.warning("HATRPO learners differed from learner 0 by up to %g; synced.", gap)
        return gap


def _critic_minibatches(
    mask: torch.Tensor, num_minibatches: int, reduce_fn: ReduceFn | None
) -> list:
    """Row indices of one critic epoch: the full batch, or a random split into chunks.

    With several learners ``tensor_split`` always yields ``num_minibatches`` pieces (some may
    be empty), so every learner issues the same number of collectives; ``chunk`` (kept for one
    learner, whose results must not change) can yield fewer on a small shard.
    """
    if num_minibatches == 1:
        return [slice(None)]
    perm = torch.randperm(mask.shape[0], device=mask.device)
    if reduce_fn is None:
        return list(perm.chunk(num_minibatches))
    return list(perm.tensor_split(num_minibatches))
