"""Fisher-vector products on every k-th valid row (``training(fvp_subsample=k)``).

A tiny Gaussian actor (a linear mean and a state-free log std) on a hand-built batch of 60
rows: some rows padding (loss mask False), and agent "b" inactive on a block of rows. No Ray
instance: :class:`TorchSequentialUpdate` runs on the module objects directly.
"""

from __future__ import annotations

import math

import pytest
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.evaluation.postprocessing import Postprocessing
from ray.rllib.models.torch.torch_distributions import TorchDiagGaussian
from torch import nn

from rllib_hatrpo import HATRPOConfig
from rllib_hatrpo.connectors.central_critic_gae import AGENT_ACTIVE
from rllib_hatrpo.core import trust_region as tr
from rllib_hatrpo.torch.sequential_trpo import TorchSequentialUpdate

ROWS, OBS_DIM, ACT_DIM = 60, 3, 2
PADDING = torch.tensor([t % 7 == 6 for t in range(ROWS)])  # 8 rows of loss mask False
INACTIVE_B = torch.arange(ROWS) >= 40  # agent "b" left at row 40
KL_BUDGET = 0.01


class _Actor(nn.Module):
    """π(a|o) = N(W o + c, diag(exp(2 log_std))): the module API the sweep uses."""

    def __init__(self, seed: int):
        super().__init__()
        torch.manual_seed(seed)
        self.pi = nn.Linear(OBS_DIM, ACT_DIM)
        self.log_std = nn.Parameter(torch.full((ACT_DIM,), -0.5))

    def forward_train(self, batch):
        mean = self.pi(batch[Columns.OBS])
        return {Columns.ACTION_DIST_INPUTS: torch.cat([mean, self.log_std.expand_as(mean)], -1)}

    @staticmethod
    def get_train_action_dist_cls():
        return TorchDiagGaussian


def _batch(obs_scale: torch.Tensor | None = None) -> dict[str, dict[str, torch.Tensor]]:
    """Agents "a" and "b" on the same env steps; ``obs_scale`` multiplies each row's obs."""
    g = torch.Generator().manual_seed(0)
    advantages = torch.randn(ROWS, generator=g)
    batch = {}
    for mid in ("a", "b"):
        obs = torch.randn(ROWS, OBS_DIM, generator=g)
        if obs_scale is not None:
            obs = obs * obs_scale[:, None]
        batch[mid] = {
            Columns.OBS: obs,
            Columns.ACTIONS: torch.randn(ROWS, ACT_DIM, generator=g),
            Columns.LOSS_MASK: ~PADDING,
            Postprocessing.ADVANTAGES: advantages,
        }
    batch["b"][AGENT_ACTIVE] = ~INACTIVE_B
    return batch


def _rows(batch, rows: torch.Tensor):
    """The batch of the given rows only (every column indexed)."""
    return {mid: {k: v[rows] for k, v in cols.items()} for mid, cols in batch.items()}


def _sweep(batch, k: int, modules=None) -> TorchSequentialUpdate:
    config = HATRPOConfig().training(fvp_subsample=k)
    modules = modules or {"a": _Actor(1), "b": _Actor(2)}
    return TorchSequentialUpdate(modules, batch, config)


def _probe(seed: int = 3) -> torch.Tensor:
    n = sum(p.numel() for p in _Actor(0).parameters())
    return torch.randn(n, generator=torch.Generator().manual_seed(seed))


def test_fvp_subsample_one_is_the_full_batch_update_bitwise():
    """k = 1 is the full-batch step computed as before the option existed:
    g and F = Hessian of the masked mean KL over every valid row, the same CG, the same
    step and line search. Every number of the proposal and the new parameters are equal."""
    batch = _batch()
    sweep = _sweep(batch, 1)
    assert HATRPOConfig().fvp_subsample == 5  # the default; k = 1 is asked for
    for mid in ("a", "b"):
        data = sweep._data[mid]
        assert data.fisher is None
        dist = sweep._dist(data.module, data.batch)
        surrogate = sweep._surrogate(dist.logp(data.actions), data)
        policy_grad = tr.flat_grad(surrogate, data.params, retain_graph=True)
        mean_kl = sweep._masked_mean(data.old_dist.kl(dist), data)
        fvp = tr.fisher_vector_product(mean_kl, data.params, sweep._config.fvp_damping)
        reference = tr.natural_gradient_direction(policy_grad, fvp, 10, 1e-10)
        ours = sweep._direction(mid)
        assert torch.equal(ours.search_dir, reference.search_dir)
        assert ours.fisher_sq_norm == reference.fisher_sq_norm
        assert ours.natgrad_sq_norm == reference.natgrad_sq_norm
        proposal = sweep.propose(mid, KL_BUDGET)
        baseline = float(sweep._masked_mean(sweep.compound_ratio * sweep._advantages, data))

        def evaluate(data=data, baseline=baseline):
            with torch.no_grad():
                new = sweep._dist(data.module, data.batch)
                kl = sweep._masked_mean(data.old_dist.kl(new), data)
                return float(sweep._surrogate(new.logp(data.actions), data)) - baseline, float(kl)

        step = tr.propose_step(data.params, reference, evaluate, KL_BUDGET)
        assert proposal.accepted and step.line_search.accepted
        assert torch.equal(proposal.payload[0], step.new_params)
        assert (proposal.kl, proposal.surrogate_improvement) == (
            step.line_search.kl,
            step.line_search.improvement,
        )
        sweep.commit(proposal)


def test_subsample_rows_are_every_kth_valid_row():
    mask = ~PADDING & ~INACTIVE_B
    for k in (1, 2, 3, 5, 100):
        rows = tr.subsample_rows(mask, k)
        valid = mask.nonzero().squeeze(-1)
        assert torch.equal(rows, valid[::k])
        assert len(rows) == math.ceil(int(mask.sum()) / k)
        assert bool(mask[rows].all())  # padding and inactive rows never enter
    with pytest.raises(ValueError, match="stride"):
        tr.subsample_rows(mask, 0)
    with pytest.raises(ValueError, match="1-D bool"):
        tr.subsample_rows(mask.float(), 2)


@pytest.mark.parametrize("k", [2, 3, 7])
def test_fvp_equals_the_full_batch_fvp_of_the_subsample(k):
    """Agent "a" (valid rows = loss mask): with k > 1 the product is exactly the k = 1
    product of a batch made of every k-th valid row only; CG and xᵀFx use that F_S, g the
    full batch."""
    batch = _batch()
    modules = {"a": _Actor(1), "b": _Actor(2)}
    sweep = _sweep(batch, k, modules)
    subsample = _sweep(_rows(batch, tr.subsample_rows(~PADDING, k)), 1, modules)
    full = _sweep(batch, 1, modules)
    fvp_s = subsample.fisher_vector_product("a")
    v = _probe()
    assert torch.equal(sweep.fisher_vector_product("a")(v), fvp_s(v))
    assert not torch.allclose(full.fisher_vector_product("a")(v), fvp_s(v))
    direction = sweep._direction("a")
    g = full._direction("a").policy_grad
    assert torch.equal(direction.policy_grad, g)
    expected = tr.natural_gradient_direction(g, fvp_s, 10, 1e-10)
    assert torch.equal(direction.search_dir, expected.search_dir)
    # The step size sqrt(2δ / xᵀFx) uses the F of CG: F_S.
    assert direction.fisher_sq_norm == float(
        torch.dot(expected.search_dir, fvp_s(expected.search_dir))
    )
    proposal = sweep.propose("a", KL_BUDGET)
    scale = math.sqrt(2 * KL_BUDGET / direction.fisher_sq_norm)
    assert proposal.expected_improvement == pytest.approx(scale * direction.natgrad_sq_norm)


def test_inactive_and_padding_rows_never_enter_the_fisher():
    """Agent "b" is inactive from row 40 and padding rows are invalid: its products are those
    of every 2nd row of loss mask ∧ active, and differ from every 2nd row of the loss mask
    alone (which would take rows after it left)."""
    batch = _batch()
    modules = {"a": _Actor(1), "b": _Actor(2)}
    sweep = _sweep(batch, 2, modules)
    valid = ~PADDING & ~INACTIVE_B
    rows = sweep._data["b"].fisher.batch
    assert torch.equal(rows[Columns.OBS], batch["b"][Columns.OBS][tr.subsample_rows(valid, 2)])
    v = _probe()
    only_valid = _sweep(_rows(batch, tr.subsample_rows(valid, 2)), 1, modules)
    ignoring_active = {
        mid: {k: v for k, v in c.items() if k != AGENT_ACTIVE} for mid, c in batch.items()
    }
    with_inactive = _sweep(_rows(ignoring_active, tr.subsample_rows(~PADDING, 2)), 1, modules)
    ours = sweep.fisher_vector_product("b")(v)
    assert torch.equal(ours, only_valid.fisher_vector_product("b")(v))
    assert not torch.allclose(ours, with_inactive.fisher_vector_product("b")(v))


def test_line_search_and_reported_kl_stay_on_the_full_batch():
    """The rows outside the subsample (k = 2: the odd valid rows) have 4x larger observations,
    so F_S underestimates the full batch's curvature and the full step that the quadratic
    model puts at KL_S ≈ δ overshoots the full-batch KL. The line search must backtrack until
    the *full-batch* KL ≤ δ, and the reported KL is the full batch's, not the subsample's."""
    valid_rank = torch.cumsum((~PADDING).long(), 0) - 1
    scale = torch.where(~PADDING & (valid_rank % 2 == 1), 4.0, 1.0)
    batch = _batch(scale)
    modules = {"a": _Actor(1), "b": _Actor(2)}
    sweep = _sweep(batch, 2, modules)
    data = sweep._data["a"]
    proposal = sweep.propose("a", KL_BUDGET)
    assert proposal.accepted and proposal.line_search_steps > 1
    tr.set_flat_params_(data.params, proposal.payload[0])
    with torch.no_grad():
        new = sweep._dist(data.module, data.batch)
        full_kl = float(sweep._masked_mean(data.old_dist.kl(new), data))
        rows = data.fisher
        sub_kl = float(
            sweep._masked_mean(rows.old_dist.kl(sweep._dist(data.module, rows.batch)), rows)
        )
    assert proposal.kl == full_kl <= KL_BUDGET
    assert sub_kl < 0.5 * full_kl
    # The same batch at k = 1 accepts a step of its own, within the same full-batch budget.
    full = _sweep(batch, 1, {"a": _Actor(1), "b": _Actor(2)}).propose("a", KL_BUDGET)
    assert full.accepted and full.kl <= KL_BUDGET


@pytest.mark.parametrize("value", [0, -1, 2.0, True, "2", None])
def test_config_rejects_a_bad_fvp_subsample(value):
    config = HATRPOConfig().training(fvp_subsample=value)
    with pytest.raises(ValueError, match=r"fvp_subsample=.*integer >= 1"):
        config.validate()
