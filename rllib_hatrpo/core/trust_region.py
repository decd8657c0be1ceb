"""Trust-region maths of one HATRPO agent step: Fisher-vector products, CG, line search.

Pure torch (no Ray): every function takes tensors or callables, never a model or a batch, so
that it can be checked against closed forms in milliseconds.

One agent step of HATRPO ([1], Algorithm 1; [2], §3):

    g   = ∇_θ L(θ_old)                   L(θ) = mean[ π_θ(a|o)/π_old(a|o) · M · Â ]
    x  ≈ (F + λI)⁻¹ g                    conjugate gradient on Fisher-vector products
    q   = gᵀx                            natgrad_sq_norm
    Δ   = sqrt(2δ / xᵀ(F + λI)x) · x     so that ½ ΔᵀFΔ ≈ δ (the KL budget)
    backtrack Δ ← β Δ until  KL ≤ δ,  L(θ_old + Δ) − L(θ_old) > 0  and  actual/expected > r

F may be estimated on a subsample S of the valid rows (:func:`subsample_rows`, every k-th
row, as OpenAI baselines' and rllab's TRPO do): F_S = Hessian of the mean KL over S. CG and
the step size then both use F_S (xᵀ(F_S + λI)x comes from the same products as CG), while g,
the line search's KL ≤ δ and ΔL stay on the full batch, so the trust region is still enforced
exactly on every valid row.

References:
    [1] Kuba et al., Trust Region Policy Optimisation in Multi-Agent Reinforcement Learning,
        ICLR 2022, arXiv:2109.11251.
    [2] Schulman et al., Trust Region Policy Optimization, ICML 2015, arXiv:1502.05477
        (Appendix C: conjugate gradient, Fisher-vector products, the line search).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from rllib_hatrpo.core.advantages import ReduceFn

# ReduceFn: each learner passes *partial* means (its shard's sum divided by the global count),
# so the sum over learners is the union batch's mean, never a mean of per-shard means.
#: Default CG stopping threshold on the squared residual rᵀr (as in the HARL reference code).
DEFAULT_RESIDUAL_TOL = 1e-10


def flat_params(params: Sequence[Tensor]) -> Tensor:
    """Returns a detached 1-D copy of ``params`` concatenated in order."""
    return torch.cat([p.detach().reshape(-1) for p in params]).clone()


def set_flat_params_(params: Sequence[Tensor], flat: Tensor) -> None:
    """Writes the 1-D ``flat`` into ``params`` in place (``p.copy_``), keeping every Parameter
    object alive: RLlib's optimizers and DDP hold references to them.

    Raises:
        ValueError: ``flat`` does not have exactly as many elements as ``params``.
    """
    numel = sum(p.numel() for p in params)
    if flat.dim() != 1 or flat.numel() != numel:
        raise ValueError(f"flat has shape {tuple(flat.shape)}; params need [{numel}]")
    offset = 0
    with torch.no_grad():
        for p in params:
            p.copy_(flat[offset : offset + p.numel()].view_as(p))
            offset += p.numel()


def flat_grad(
    output: Tensor,
    params: Sequence[Tensor],
    *,
    create_graph: bool = False,
    retain_graph: bool | None = None,
) -> Tensor:
    """Returns ∂output/∂params as one 1-D tensor; parameters the output ignores get zeros."""
    grads = torch.autograd.grad(
        output, params, create_graph=create_graph, retain_graph=retain_graph, allow_unused=True
    )
    return torch.cat(
        [
            (torch.zeros_like(p) if g is None else g).reshape(-1)
            for g, p in zip(grads, params, strict=True)
        ]
    )


def fisher_vector_product(
    mean_kl: Tensor,
    params: Sequence[Tensor],
    damping: float,
    reduce_fn: ReduceFn | None = None,
) -> Callable[[Tensor], Tensor]:
    """Returns v ↦ (F + λI) v, with F the Hessian of the mean KL at θ_old ([2], App. C).

    At θ = θ_old the Hessian of  mean KL(π_old ‖ π_θ)  equals the Fisher information matrix,
    so  F v = ∇_θ (∇_θ KLᵀ v)  (double back-propagation, no explicit matrix).

    Args:
        mean_kl: 0-dim mean KL(π_old ‖ π_θ) evaluated at θ = θ_old, with its graph to
            ``params`` attached (the old distribution detached). With several learners, each
            passes its shard's KL sum divided by the global row count.
        params: the policy parameters θ.
        damping: λ ≥ 0, added as λ·v; it keeps CG well-posed when F is singular.
        reduce_fn: sums F v over learners before the damping is added, which by linearity
            of the Hessian gives the union batch's F v (identity if None).

    Returns:
        A function mapping a 1-D tensor v of size n_params to (F + λI) v.
    """
    if mean_kl.dim() != 0:
        raise ValueError(f"mean_kl must be 0-dim, got shape {tuple(mean_kl.shape)}")
    kl_grad = flat_grad(mean_kl, params, create_graph=True)

    def fvp(v: Tensor) -> Tensor:
        hv = flat_grad((kl_grad * v.detach()).sum(), params, retain_graph=True)
        if reduce_fn is not None:
            hv = reduce_fn(hv)
        return hv + damping * v

    return fvp


def subsample_rows(mask: Tensor, stride: int) -> Tensor:
    """Indices of every ``stride``-th valid row: S = {t_0, t_k, t_2k, …}, t_0 < t_1 < … the
    rows where ``mask`` is True, k = ``stride``.

    The Fisher-vector products of a step may use the rows S only (|S| = ⌈|V| / k⌉ of the
    |V| valid rows); rows where ``mask`` is False (padding, an inactive agent) never enter.
    With k = 1, S is every valid row.

    Args:
        mask: valid rows, bool, shape [B].
        stride: k ≥ 1.

    Returns:
        int64 row indices into the batch, shape [⌈|V| / k⌉], increasing.

    Raises:
        ValueError: ``mask`` is not a 1-D bool tensor, or ``stride`` < 1.
    """
    if mask.dim() != 1 or mask.dtype != torch.bool:
        raise ValueError(f"mask must be 1-D bool, got {mask.dtype} of shape {tuple(mask.shape)}")
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride must be an integer >= 1, got {stride!r}")
    return mask.nonzero().squeeze(-1)[::stride]


@dataclass(frozen=True)
class ConjugateGradientResult:
    """x ≈ A⁻¹b, the norm of the final residual ‖b − Ax‖ and the iterations made."""

    solution: Tensor
    residual_norm: float
    iterations: int


def conjugate_gradient(
    matvec: Callable[[Tensor], Tensor],
    b: Tensor,
    num_iters: int = 10,
    residual_tol: float = DEFAULT_RESIDUAL_TOL,
) -> ConjugateGradientResult:
    """Solves A x = b for a symmetric positive-definite A given only v ↦ A v.

    Hestenes–Stiefel CG from x₀ = 0: α = rᵀr / pᵀAp, x += αp, r −= αAp, p = r + (r'ᵀr'/rᵀr) p.
    Stops after ``num_iters`` products or when rᵀr < ``residual_tol``. The stopping test uses
    only reduced quantities, so several learners stop at the same iteration.

    Args:
        matvec: v ↦ A v on 1-D tensors of b's size.
        b: right-hand side, shape [n].
        num_iters: maximum matrix-vector products, ≥ 1.
        residual_tol: threshold on the squared residual norm.
    """
    if b.dim() != 1:
        raise ValueError(f"b must be 1-D, got shape {tuple(b.shape)}")
    if num_iters < 1:
        raise ValueError(f"num_iters must be >= 1, got {num_iters}")
    x = torch.zeros_like(b)
    r = b.clone()
    p = b.clone()
    r_dot_r = torch.dot(r, r)
    iterations = 0
    while iterations < num_iters and r_dot_r >= residual_tol:
        a_p = matvec(p)
        alpha = r_dot_r / torch.dot(p, a_p)
        x = x + alpha * p
        r = r - alpha * a_p
        new_r_dot_r = torch.dot(r, r)
        p = r + (new_r_dot_r / r_dot_r) * p
        r_dot_r = new_r_dot_r
        iterations += 1
    return ConjugateGradientResult(x, float(r_dot_r.sqrt()), iterations)


@dataclass(frozen=True)
class SearchDirection:
    """The natural-gradient direction of one agent under the current compound ratio.

    Attributes:
        policy_grad: g = ∇L(θ_old), shape [n_params].
        search_dir: x ≈ (F + λI)⁻¹ g, shape [n_params].
        fisher_sq_norm: xᵀ(F + λI)x.
        natgrad_sq_norm: q = gᵀx (equals xᵀ(F + λI)x up to CG error).
        cg_residual: ‖g − (F + λI)x‖ at the last CG iteration.
    """

    policy_grad: Tensor
    search_dir: Tensor
    fisher_sq_norm: float
    natgrad_sq_norm: float
    cg_residual: float

    @property
    def is_valid(self) -> bool:
        """False when a guard must skip the step: q or xᵀFx is ≤ 0 or not finite."""
        return all(
            math.isfinite(v) and v > 0 for v in (self.fisher_sq_norm, self.natgrad_sq_norm)
        ) and bool(torch.isfinite(self.search_dir).all())


def natural_gradient_direction(
    policy_grad: Tensor,
    fvp: Callable[[Tensor], Tensor],
    num_iters: int = 10,
    residual_tol: float = DEFAULT_RESIDUAL_TOL,
) -> SearchDirection:
    """Solves (F + λI) x = g by CG and returns x with q = gᵀx and xᵀ(F + λI)x.

    xᵀ(F + λI)x is one more call of ``fvp``, so the step size sqrt(2δ / xᵀ(F + λI)x) uses the
    same F as CG, also when ``fvp`` is the product of a subsample's F_S: then x ≈ (F_S + λI)⁻¹g
    and ½ ΔᵀF_SΔ = δ, the quadratic model the line search checks against the full batch's KL.
    """
    cg = conjugate_gradient(fvp, policy_grad, num_iters, residual_tol)
    x = cg.solution
    return SearchDirection(
        policy_grad=policy_grad,
        search_dir=x,
        fisher_sq_norm=float(torch.dot(x, fvp(x))),
        natgrad_sq_norm=float(torch.dot(policy_grad, x)),
        cg_residual=cg.residual_norm,
    )


def full_step_scale(fisher_sq_norm: float, kl_budget: float) -> float:
    """β = sqrt(2δ / xᵀFx): the quadratic model ½(βx)ᵀF(βx) of the KL then equals δ ([2], App. C).

    Raises:
        ValueError: a non-positive or non-finite input.
    """
    if not (math.isfinite(fisher_sq_norm) and fisher_sq_norm > 0):
        raise ValueError(f"fisher_sq_norm must be finite and > 0, got {fisher_sq_norm}")
    if not (math.isfinite(kl_budget) and kl_budget > 0):
        raise ValueError(f"kl_budget must be finite and > 0, got {kl_budget}")
    return math.sqrt(2.0 * kl_budget / fisher_sq_norm)


@dataclass(frozen=True)
class LineSearchResult:
    """Outcome of the backtracking line search.

    Attributes:
        accepted: a try met every acceptance condition.
        step_fraction: fraction of the full step that was accepted (0.0 if none).
        steps: tries evaluated.
        kl: achieved mean KL of the accepted try (0.0 if none).
        improvement: achieved surrogate improvement of the accepted try (0.0 if none).
        non_finite: a try produced a non-finite KL or surrogate (the search stopped there).
    """

    accepted: bool
    step_fraction: float
    steps: int
    kl: float
    improvement: float
    non_finite: bool = False


def backtracking_line_search(
    evaluate: Callable[[float], tuple[float, float]],
    expected_improvement: float,
    kl_budget: float,
    max_backtracks: int = 10,
    backtrack_coeff: float = 0.8,
    accept_ratio: float = 0.5,
) -> LineSearchResult:
    """Backtracks along the full step until a try is acceptable ([2], App. C; [1], Alg. 1).

    Try k uses the fraction f = β^k of the full step (k = 0, …, max_backtracks − 1) and is
    accepted when  KL ≤ δ,  ΔL > 0  and  ΔL / (f · expected_improvement) > accept_ratio.
    A non-finite ΔL or KL stops the search unaccepted, so that no NaN or inf reaches the
    weights.

    Args:
        evaluate: f ↦ (ΔL, KL) at θ_old + f·Δ; it may change the parameters, the caller restores.
        expected_improvement: gᵀΔ of the full step, > 0 for a valid direction.
        kl_budget: δ.
        max_backtracks: tries, ≥ 1. backtrack_coeff: β in (0, 1). accept_ratio: r ≥ 0.
    """
    fraction = 1.0
    for step in range(1, max_backtracks + 1):
        improvement, kl = evaluate(fraction)
        if not (math.isfinite(improvement) and math.isfinite(kl)):
            return LineSearchResult(False, 0.0, step, 0.0, 0.0, non_finite=True)
        expected = fraction * expected_improvement
        if kl <= kl_budget and improvement > 0 and improvement > accept_ratio * expected:
            return LineSearchResult(True, fraction, step, kl, improvement)
        fraction *= backtrack_coeff
    return LineSearchResult(False, 0.0, max_backtracks, 0.0, 0.0)


@dataclass(frozen=True)
class TrustRegionStep:
    """A proposed, uncommitted step: the parameters hold θ_old again when it is returned.

    Attributes:
        new_params: θ_old + f·Δ as a flat tensor if accepted, else None.
        line_search: the line-search outcome.
        expected_improvement: gᵀΔ of the full step.
    """

    new_params: Tensor | None
    line_search: LineSearchResult
    expected_improvement: float


def propose_step(
    params: Sequence[Tensor],
    direction: SearchDirection,
    evaluate: Callable[[], tuple[float, float]],
    kl_budget: float,
    max_backtracks: int = 10,
    backtrack_coeff: float = 0.8,
    accept_ratio: float = 0.5,
) -> TrustRegionStep:
    """Runs the line search along ``direction`` and restores θ_old by value afterwards.

    Args:
        params: the agent's parameters, holding θ_old on entry and on return.
        direction: a valid :class:`SearchDirection` (``is_valid``).
        evaluate: () ↦ (ΔL, KL) at the parameters' current values, without gradients.
        kl_budget: δ_i.
    """
    if not direction.is_valid:
        raise ValueError("propose_step needs a valid direction (check SearchDirection.is_valid)")
    theta_old = flat_params(params)
    full_step = full_step_scale(direction.fisher_sq_norm, kl_budget) * direction.search_dir
    expected = float(torch.dot(direction.policy_grad, full_step))

    def evaluate_fraction(fraction: float) -> tuple[float, float]:
        set_flat_params_(params, theta_old + fraction * full_step)
        return evaluate()

    try:
        result = backtracking_line_search(
            evaluate_fraction, expected, kl_budget, max_backtracks, backtrack_coeff, accept_ratio
        )
    finally:
        set_flat_params_(params, theta_old)
    new_params = theta_old + result.step_fraction * full_step if result.accepted else None
    return TrustRegionStep(new_params, result, expected)
