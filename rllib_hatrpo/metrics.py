"""Metric keys of HATRPO and the function that fills them from one sweep.

Per agent, under its module ID in ``result["learners"][<module_id>]``; per iteration under
``result["learners"]["__all_modules__"]``. The team return per episode is logged by
:class:`rllib_hatrpo.callbacks.TeamReturnCallback` under ``result["env_runners"]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rllib_hatrpo.core.allocation.protocol import AgentUpdate

# Per agent.
KL_BUDGET = "kl_budget"
KL = "kl"
NATGRAD_SQ_NORM = "natgrad_sq_norm"
# q_i of the allocator's pre-pass at compound ratio 1, the q the kkt budgets are computed
# from; NaN for allocators without a pre-pass (uniform, greedy).
PREPASS_NATGRAD_SQ_NORM = "prepass_natgrad_sq_norm"
EXPECTED_IMPROVEMENT = "expected_improvement"
SURROGATE_IMPROVEMENT = "surrogate_improvement"
LINE_SEARCH_ACCEPTED = "line_search_accepted"
LINE_SEARCH_STEPS = "line_search_steps"
UPDATE_RANK = "update_rank"
CG_RESIDUAL = "cg_residual"
# Per iteration.
TOTAL_KL_BUDGET = "total_kl_budget"
KL_TOTAL = "kl_total"
SKIPPED_STEPS = "skipped_steps"
NUM_PROPOSALS = "num_proposals"
NUM_SEARCH_DIRECTIONS = "num_search_directions"
# Per iteration, only with several learners: max |weights − learner 0's| before the replica
# sync (0.0 when the all-reduced update kept the learners identical).
REPLICA_MAX_ABS_DIFF = "replica_max_abs_diff"
# Per episode (EnvRunner side).
TEAM_EPISODE_RETURN_MEAN = "team_episode_return_mean"

PER_AGENT_KEYS = (
    KL_BUDGET,
    KL,
    NATGRAD_SQ_NORM,
    PREPASS_NATGRAD_SQ_NORM,
    EXPECTED_IMPROVEMENT,
    SURROGATE_IMPROVEMENT,
    LINE_SEARCH_ACCEPTED,
    LINE_SEARCH_STEPS,
    UPDATE_RANK,
    CG_RESIDUAL,
)


def allocation_metrics(
    records: Sequence[AgentUpdate], sweep: Any, total_kl_budget: float
) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Returns (per-agent metrics keyed by module ID, per-iteration metrics).

    ``sweep`` provides the counters ``num_proposals``, ``num_search_directions`` and
    ``num_skipped`` (guards that fired
    in any trial). An agent that was never committed reports zero KL and improvement and rank −1.
    ``prepass_natgrad_sq_norm`` is the record's pre-pass q (NaN without a pre-pass).
    """
    per_agent: dict[str, dict[str, float]] = {}
    for record in records:
        p = record.proposal
        per_agent[record.agent] = {
            KL_BUDGET: float(record.kl_budget),
            KL: float(p.kl) if p else 0.0,
            NATGRAD_SQ_NORM: float(p.natgrad_sq_norm) if p else float("nan"),
            PREPASS_NATGRAD_SQ_NORM: float(record.prepass_natgrad_sq_norm),
            EXPECTED_IMPROVEMENT: float(p.expected_improvement) if p else 0.0,
            SURROGATE_IMPROVEMENT: float(p.surrogate_improvement) if p else 0.0,
            LINE_SEARCH_ACCEPTED: float(bool(p and p.accepted)),
            LINE_SEARCH_STEPS: float(p.line_search_steps) if p else 0.0,
            UPDATE_RANK: float(record.update_rank),
            CG_RESIDUAL: float(p.cg_residual) if p else float("nan"),
        }
    overall = {
        TOTAL_KL_BUDGET: float(total_kl_budget),
        KL_TOTAL: sum(m[KL] for m in per_agent.values()),
        SKIPPED_STEPS: float(sweep.num_skipped),
        NUM_PROPOSALS: float(sweep.num_proposals),
        NUM_SEARCH_DIRECTIONS: float(sweep.num_search_directions),
    }
    return per_agent, overall
