"""One iteration's sequential TRPO sweep over the agents, in torch ([1], Algorithm 1).

:class:`TorchSequentialUpdate` implements
:class:`rllib_hatrpo.core.allocation.protocol.SequentialUpdate`
for the allocators: ``natgrad_sq_norm`` (the pre-pass), ``propose`` (a trial step that leaves
the parameters untouched) and ``commit`` (write the step, update the compound ratio).

    compound_ratio  M^{i_{1:m}} = Π_{k ≤ m} π_new^{i_k}(a|o) / π_old^{i_k}(a|o)  (agent i_k's a, o)
    surrogate       L_i(θ) = mean[ π_θ(a_i|o_i) / π_old(a_i|o_i) · M · Â ]

Agents that left the episode (``PettingZooEnv(dead_agents="black_death")``): on the rows where
agent i is inactive (column ``AGENT_ACTIVE`` False) its action had no effect, so its means use
only its valid active rows V_i = {t : loss_mask_t ∧ active_i,t} and its factor of M is 1 there::

    surrogate       L_i(θ) = Σ_{t ∈ V_i} ratio_i,t · M_t · Â_t / |V_i|   (KL and Fisher alike)
    compound_ratio  M ← M · where(active_i, π_new^i / π_old^i, 1)

The team advantage and the critic use every valid row. Without the column (every agent always
active) V_i is the valid rows and the computation is the one above, unchanged.

Fisher on a subsample (``training(fvp_subsample=k)``, k > 1): the Fisher-vector products of
agent i use only S_i, every k-th row of V_i (:func:`~rllib_hatrpo.core.trust_region.
subsample_rows`), in a forward pass of those rows alone, so that the double back-propagation
costs about 1/k of the full batch's::

    F_i v ≈ ∇_θ (∇_θ KL_S_iᵀ v),   KL_S_i(θ) = Σ_{t ∈ S_i} KL(π_old(·|o_t) ‖ π_θ(·|o_t)) / |S_i|

CG and xᵀFx (hence the full step sqrt(2δ_i / xᵀF_S_i x)) use F_S_i; g_i, the line search's
ΔL and KL ≤ δ_i, the reported KL and M use every row of V_i. The default is k = 5; k = 1 is
the full batch, computed exactly as without the option.

Search directions are cached per agent until the next accepted commit changes M, so the
KKT pre-pass direction of the first agent in the order is reused instead of being recomputed.

Several learners (``reduce_fn`` given, see :mod:`rllib_hatrpo.torch.distributed`): every mean
over rows is a partial mean Σ_{t ∈ shard} x_t / N_valid with N_valid the all-reduced count, and
``reduce_fn`` sums g_i, every Fisher-vector product and the line-search scalars (ΔL, KL) over
the learners. All of them are then the union batch's values, identical on every learner, and
every branch (CG stop, guards, acceptance, the allocators' choices) is taken on them.

References:
    [1] Kuba et al., Trust Region Policy Optimisation in Multi-Agent RL, ICLR 2022.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from ray.rllib.core.columns import Columns
from ray.rllib.evaluation.postprocessing import Postprocessing
from torch import Tensor

from rllib_hatrpo.connectors.central_critic_gae import AGENT_ACTIVE
from rllib_hatrpo.core import trust_region as tr
from rllib_hatrpo.core.allocation.protocol import Proposal


def validate_fvp_subsample(config: Any) -> None:
    """Rejects a ``training(fvp_subsample=k)`` that is not an integer k ≥ 1.

    Raises:
        ValueError: names the field and the allowed range.
    """
    k = config.fvp_subsample
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(
            f"training(fvp_subsample=...) must be an integer >= 1 (1: Fisher-vector products "
            f"on the full batch; k: on every k-th valid row), got {k!r}."
        )


@dataclass
class _AgentData:
    module: Any
    params: list[torch.nn.Parameter]
    batch: dict[str, Any]
    actions: Tensor
    old_logp: Tensor
    old_dist: Any
    mask: Tensor  # valid rows of this agent: loss_mask (∧ active)
    n_valid: Tensor  # their count, all-reduced, ≥ 1
    active: Tensor | None  # None: active on every row
    fisher: _FisherRows | None  # None: Fisher-vector products on every valid row


@dataclass
class _FisherRows:
    """Agent i's Fisher subsample S_i: its rows of the batch, π_old there, their count."""

    batch: dict[str, Any]
    old_dist: Any
    mask: Tensor  # every row of the subsample is valid: all True
    n_valid: Tensor  # |S_i|, all-reduced, ≥ 1


class TorchSequentialUpdate:
    """The agents' trust-region steps of one iteration on the full batch.

    Args:
        modules: ModuleID → (unwrapped) actor module, in the env's agent order.
        batch: the learner batch (every actor's rows aligned per env step).
        config: the HATRPOConfig (CG, damping, ``fvp_subsample`` and line-search settings).
        reduce_fn: sums a tensor over learners; None on a single learner.
    """

    def __init__(
        self,
        modules: dict[str, Any],
        batch: dict[str, Any],
        config: Any,
        reduce_fn: tr.ReduceFn | None = None,
    ):
        self._config = config
        self._reduce = reduce_fn
        first = next(iter(modules))
        self._mask = batch[first][Columns.LOSS_MASK].bool()
        self._advantages = batch[first][Postprocessing.ADVANTAGES].detach()
        n_valid = self._mask.sum()
        self._n_valid = (n_valid if reduce_fn is None else reduce_fn(n_valid)).clamp(min=1)
        self.compound_ratio = torch.ones_like(self._advantages)
        self._data: dict[str, _AgentData] = {}
        for mid, module in modules.items():
            with torch.no_grad():
                dist = self._dist(module, batch[mid])
                actions = batch[mid][Columns.ACTIONS]
                active = batch[mid].get(AGENT_ACTIVE)
                mask, count = self._mask, self._n_valid
                if active is not None:
                    active = active.bool()
                    mask = self._mask & active
                    count = mask.sum() if reduce_fn is None else reduce_fn(mask.sum())
                    count = count.clamp(min=1)
                self._data[mid] = _AgentData(
                    module=module,
                    params=[p for p in module.parameters() if p.requires_grad],
                    batch=batch[mid],
                    actions=actions,
                    old_logp=dist.logp(actions).detach(),
                    old_dist=dist,
                    mask=mask,
                    n_valid=count,
                    active=active,
                    fisher=self._fisher_rows(module, batch[mid], mask, config.fvp_subsample),
                )
        self._directions: dict[str, tr.SearchDirection] = {}
        self.num_proposals = 0
        self.num_skipped = 0
        self.num_search_directions = 0  # conjugate-gradient solves: the dominant cost

    @property
    def agents(self) -> Sequence[str]:
        return list(self._data)

    def natgrad_sq_norm(self, agent: str) -> float:
        """q_i under the current compound ratio; 0.0 when a guard will skip the agent's step
        (a non-finite or non-positive q carries no usable information for the allocator)."""
        direction = self._direction(agent)
        return direction.natgrad_sq_norm if direction.is_valid else 0.0

    def propose(self, agent: str, kl_budget: float) -> Proposal:
        self.num_proposals += 1
        direction = self._direction(agent)
        data = self._data[agent]
        cfg = self._config
        if not direction.is_valid:
            self.num_skipped += 1
            return Proposal(
                agent,
                kl_budget,
                0.0,
                0.0,
                0.0,
                direction.natgrad_sq_norm,
                False,
                0,
                direction.cg_residual,
                skipped=True,
            )
        (baseline,) = self._union_floats(
            self._masked_mean(self.compound_ratio * self._advantages, data)
        )
        last_logp: list[Tensor] = []

        def evaluate() -> tuple[float, float]:
            with torch.no_grad():
                dist = self._dist(data.module, data.batch)
                logp = dist.logp(data.actions)
                last_logp[:] = [logp]
                surrogate = self._surrogate(logp, data)
                kl = self._masked_mean(data.old_dist.kl(dist), data)
            surrogate_value, kl_value = self._union_floats(surrogate, kl)
            return surrogate_value - baseline, kl_value

        step = tr.propose_step(
            data.params,
            direction,
            evaluate,
            kl_budget,
            cfg.line_search_steps,
            cfg.backtrack_coeff,
            cfg.accept_ratio,
        )
        ls = step.line_search
        self.num_skipped += int(ls.non_finite)
        payload = (step.new_params, last_logp[0]) if ls.accepted else None
        return Proposal(
            agent,
            kl_budget,
            ls.kl,
            ls.improvement,
            step.expected_improvement,
            direction.natgrad_sq_norm,
            ls.accepted,
            ls.steps,
            direction.cg_residual,
            skipped=ls.non_finite,
            payload=payload,
        )

    def commit(self, proposal: Proposal) -> None:
        if not proposal.accepted:
            return
        new_params, new_logp = proposal.payload
        data = self._data[proposal.agent]
        tr.set_flat_params_(data.params, new_params)
        # No gradient flows through M: it multiplies the surrogate of later agents only.
        factor = torch.exp(new_logp - data.old_logp)
        if data.active is not None:  # Its action had no effect where it was inactive.
            factor = torch.where(data.active, factor, torch.ones_like(factor))
        self.compound_ratio = self.compound_ratio * factor
        self._directions.clear()

    def fisher_vector_product(self, agent: str, dist: Any = None) -> Callable[[Tensor], Tensor]:
        """v ↦ (F_i + λI) v at the agent's current parameters: F_i on its valid rows V_i, or
        on its subsample S_i with ``fvp_subsample`` > 1 (then ``dist`` is not used).

        Args:
            agent: the agent's ModuleID.
            dist: π_θ on the full batch, from a forward pass whose graph is still alive
                (k = 1 reuses it); None: a new forward pass.
        """
        data, cfg = self._data[agent], self._config
        if data.fisher is None:
            dist = self._dist(data.module, data.batch) if dist is None else dist
            mean_kl = self._masked_mean(data.old_dist.kl(dist), data)
        else:
            rows = data.fisher
            mean_kl = self._masked_mean(rows.old_dist.kl(self._dist(data.module, rows.batch)), rows)
        return tr.fisher_vector_product(mean_kl, data.params, cfg.fvp_damping, self._reduce)

    # -- internals -------------------------------------------------------------------------

    def _direction(self, agent: str) -> tr.SearchDirection:
        if agent not in self._directions:
            self.num_search_directions += 1
            data, cfg = self._data[agent], self._config
            dist = self._dist(data.module, data.batch)
            surrogate = self._surrogate(dist.logp(data.actions), data)
            policy_grad = tr.flat_grad(surrogate, data.params, retain_graph=True)
            if self._reduce is not None:
                policy_grad = self._reduce(policy_grad)
            fvp = self.fisher_vector_product(agent, dist)
            self._directions[agent] = tr.natural_gradient_direction(
                policy_grad, fvp, cfg.cg_iters, cfg.cg_residual_tol
            )
        return self._directions[agent]

    def _fisher_rows(
        self, module: Any, batch: dict[str, Any], mask: Tensor, stride: int
    ) -> _FisherRows | None:
        """S_i: every ``stride``-th row of the agent's valid rows ``mask``, with π_old from a
        forward pass of those rows alone (as the products will see them); None for 1."""
        if stride == 1:
            return None
        rows = tr.subsample_rows(mask, stride)
        size = mask.shape[0]
        sub_batch = {
            key: value[rows]
            if torch.is_tensor(value) and value.dim() and len(value) == size
            else value
            for key, value in batch.items()
        }
        count = torch.tensor(len(rows), device=mask.device)
        count = (count if self._reduce is None else self._reduce(count)).clamp(min=1)
        with torch.no_grad():
            old_dist = self._dist(module, sub_batch)
        return _FisherRows(
            sub_batch, old_dist, torch.ones(len(rows), dtype=torch.bool, device=mask.device), count
        )

    def _surrogate(self, logp: Tensor, data: _AgentData) -> Tensor:
        ratio = torch.exp(logp - data.old_logp)
        return self._masked_mean(ratio * self.compound_ratio * self._advantages, data)

    @staticmethod
    def _masked_mean(x: Tensor, data: _AgentData | _FisherRows) -> Tensor:
        """Σ_{t ∈ V_i} x_t / |V_i| over agent i's valid (active) rows: the mean on one learner,
        a partial mean on several."""
        return torch.where(data.mask, x, torch.zeros_like(x)).sum() / data.n_valid

    def _union_floats(self, *partial_means: Tensor) -> list[float]:
        """The union batch's values of 0-dim partial means, in one collective."""
        if self._reduce is None:
            return [float(x) for x in partial_means]
        return self._reduce(torch.stack([x.detach() for x in partial_means])).tolist()

    @staticmethod
    def _dist(module: Any, batch: dict[str, Any]) -> Any:
        out = module.forward_train(batch)
        return module.get_train_action_dist_cls().from_logits(out[Columns.ACTION_DIST_INPUTS])
