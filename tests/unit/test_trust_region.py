"""Closed-form checks of the trust-region maths."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
from torch import nn

from rllib_hatrpo.core import trust_region as tr


def _spd(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, n, generator=g, dtype=torch.float64)
    return a @ a.T + n * torch.eye(n, dtype=torch.float64)


@pytest.mark.parametrize("n", [3, 10, 25])
def test_conjugate_gradient_recovers_solution(n):
    a = _spd(n, seed=n)
    x_true = torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    result = tr.conjugate_gradient(lambda v: a @ v, a @ x_true, num_iters=n, residual_tol=0.0)
    torch.testing.assert_close(result.solution, x_true, rtol=1e-8, atol=1e-8)
    assert result.iterations == n
    assert result.residual_norm < 1e-6


def test_conjugate_gradient_stops_early_on_small_residual():
    a = torch.eye(4, dtype=torch.float64)
    b = torch.arange(1.0, 5.0, dtype=torch.float64)
    result = tr.conjugate_gradient(lambda v: a @ v, b, num_iters=10)
    # The identity is solved exactly in one step; the residual test then stops CG.
    assert result.iterations == 1
    torch.testing.assert_close(result.solution, b)


def _tiny_policy(out_dim: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, out_dim)).double()


def _gaussian_kl(net, log_std, obs, old_mean, old_log_std):
    mean = net(obs)
    old = torch.distributions.Normal(old_mean, old_log_std.exp())
    new = torch.distributions.Normal(mean, log_std.exp())
    return torch.distributions.kl_divergence(old, new).sum(-1).mean()


def _categorical_kl(net, obs, old_logits):
    old = torch.distributions.Categorical(logits=old_logits)
    new = torch.distributions.Categorical(logits=net(obs))
    return torch.distributions.kl_divergence(old, new).mean()


def _explicit_hessian(fn, params):
    flat = tr.flat_params(params).requires_grad_(True)

    def f(theta):
        offset, views = 0, []
        for p in params:
            views.append(theta[offset : offset + p.numel()].view_as(p))
            offset += p.numel()
        return fn(views)

    return torch.autograd.functional.hessian(f, flat)


@pytest.mark.parametrize("head", ["gaussian", "categorical"])
def test_fisher_vector_product_equals_explicit_hessian(head):
    obs = torch.randn(7, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    damping = 0.1
    if head == "gaussian":
        net = _tiny_policy(2)
        log_std = nn.Parameter(torch.tensor([-0.3, 0.2], dtype=torch.float64))
        params = [*net.parameters(), log_std]
        with torch.no_grad():
            old_mean, old_log_std = net(obs), log_std.clone()
        kl = _gaussian_kl(net, log_std, obs, old_mean, old_log_std)

        def functional(views):
            w1, b1, w2, b2, ls = views
            mean = torch.tanh(obs @ w1.T + b1) @ w2.T + b2
            old = torch.distributions.Normal(old_mean, old_log_std.exp())
            new = torch.distributions.Normal(mean, ls.exp())
            return torch.distributions.kl_divergence(old, new).sum(-1).mean()
    else:
        net = _tiny_policy(4)
        params = list(net.parameters())
        with torch.no_grad():
            old_logits = net(obs)
        kl = _categorical_kl(net, obs, old_logits)

        def functional(views):
            w1, b1, w2, b2 = views
            logits = torch.tanh(obs @ w1.T + b1) @ w2.T + b2
            old = torch.distributions.Categorical(logits=old_logits)
            new = torch.distributions.Categorical(logits=logits)
            return torch.distributions.kl_divergence(old, new).mean()

    fvp = tr.fisher_vector_product(kl, params, damping)
    hessian = _explicit_hessian(functional, params)
    v = torch.randn(
        hessian.shape[0], dtype=torch.float64, generator=torch.Generator().manual_seed(5)
    )
    torch.testing.assert_close(fvp(v), hessian @ v + damping * v, rtol=1e-7, atol=1e-9)


def test_set_flat_params_writes_in_place_and_checks_size():
    net = _tiny_policy(2)
    params = list(net.parameters())
    ids = [id(p) for p in params]
    flat = torch.arange(tr.flat_params(params).numel(), dtype=torch.float64)
    tr.set_flat_params_(params, flat)
    assert [id(p) for p in net.parameters()] == ids
    torch.testing.assert_close(tr.flat_params(params), flat)
    with pytest.raises(ValueError, match="params need"):
        tr.set_flat_params_(params, flat[:-1])


def test_full_step_scale_meets_the_quadratic_kl_model():
    f = torch.diag(torch.tensor([2.0, 0.5], dtype=torch.float64))
    x = torch.tensor([1.0, -3.0], dtype=torch.float64)
    scale = tr.full_step_scale(float(x @ f @ x), kl_budget=0.01)
    step = scale * x
    assert math.isclose(0.5 * float(step @ f @ step), 0.01, rel_tol=1e-12)
    with pytest.raises(ValueError, match="fisher_sq_norm"):
        tr.full_step_scale(0.0, 0.01)


def _quadratic_problem(kl_curvature: float):
    """One parameter θ (θ_old = 0) with surrogate L(θ) = θ − θ²/2 and KL(θ) = c·θ²/2.

    g = 1, F = c, so the natural step for budget δ is Δ = sqrt(2δ/c) and the quadratic KL
    model is exact: the line search's KL test binds only when it should.
    """
    theta = nn.Parameter(torch.zeros(1, dtype=torch.float64))
    direction = tr.SearchDirection(
        policy_grad=torch.ones(1, dtype=torch.float64),
        search_dir=torch.tensor([1.0 / kl_curvature], dtype=torch.float64),
        fisher_sq_norm=1.0 / kl_curvature,
        natgrad_sq_norm=1.0 / kl_curvature,
        cg_residual=0.0,
    )

    def evaluate(kl_scale=kl_curvature):
        t = float(theta)
        return t - t * t / 2, kl_scale * t * t / 2

    return theta, direction, evaluate


def test_line_search_accepts_full_step_on_concave_quadratic():
    theta, direction, evaluate = _quadratic_problem(kl_curvature=100.0)
    step = tr.propose_step([theta], direction, evaluate, kl_budget=0.005)
    assert step.line_search.accepted and step.line_search.steps == 1
    assert step.line_search.step_fraction == 1.0
    expected_theta = math.sqrt(2 * 0.005 / 100.0)
    assert math.isclose(float(step.new_params), expected_theta, rel_tol=1e-12)
    assert math.isclose(step.line_search.kl, 0.005, rel_tol=1e-9)
    assert float(theta) == 0.0  # proposal only: θ_old is back in place


def test_line_search_backtracks_when_the_full_step_overshoots_the_kl():
    theta, direction, _ = _quadratic_problem(kl_curvature=100.0)

    def evaluate():  # the true KL is 3× the quadratic model: the full step overshoots
        t = float(theta)
        return t - t * t / 2, 3 * 100.0 * t * t / 2

    step = tr.propose_step([theta], direction, evaluate, kl_budget=0.005, backtrack_coeff=0.8)
    # KL scales with f², so the first accepted fraction is the first 0.8^k ≤ 1/sqrt(3).
    k = math.ceil(math.log(1 / math.sqrt(3)) / math.log(0.8))
    assert step.line_search.accepted and step.line_search.steps == k + 1
    assert math.isclose(step.line_search.step_fraction, 0.8**k)
    assert step.line_search.kl <= 0.005


def test_line_search_restores_theta_old_exactly_when_nothing_is_acceptable():
    theta, direction, _ = _quadratic_problem(kl_curvature=100.0)
    with torch.no_grad():
        theta.copy_(torch.tensor([0.123456789], dtype=torch.float64))
    before = theta.detach().clone()

    def evaluate():  # the surrogate only ever gets worse
        return -1.0 - float(theta) ** 2, 0.0

    step = tr.propose_step([theta], direction, evaluate, kl_budget=0.01, max_backtracks=5)
    assert not step.line_search.accepted and step.new_params is None
    assert step.line_search.steps == 5
    assert torch.equal(theta.detach(), before)


def test_line_search_stops_on_non_finite_values_and_restores():
    theta, direction, _ = _quadratic_problem(kl_curvature=1.0)
    step = tr.propose_step([theta], direction, lambda: (float("nan"), 0.0), kl_budget=0.01)
    assert step.line_search.non_finite and not step.line_search.accepted
    assert step.line_search.steps == 1
    assert float(theta) == 0.0


def test_invalid_direction_is_flagged():
    bad = tr.SearchDirection(torch.ones(1), torch.ones(1), float("nan"), 1.0, 0.0)
    negative = tr.SearchDirection(torch.ones(1), torch.ones(1), 1.0, -1.0, 0.0)
    assert not bad.is_valid and not negative.is_valid
    with pytest.raises(ValueError, match="valid direction"):
        tr.propose_step([nn.Parameter(torch.zeros(1))], bad, lambda: (0.0, 0.0), 0.01)


def test_pure_modules_do_not_import_ray():
    code = (
        "import sys; import rllib_hatrpo.core.trust_region, rllib_hatrpo.core.advantages, "
        "rllib_hatrpo.core.value_norm, rllib_hatrpo.core.value_loss, "
        "rllib_hatrpo.core.running_mean_std, rllib_hatrpo.core.allocation, "
        "rllib_hatrpo.core.allocation.protocol; "
        "assert 'ray' not in sys.modules, 'ray imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
