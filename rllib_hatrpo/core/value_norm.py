"""Running moments and value normalisation (pure torch, no Ray).

- :func:`update_running_moments`: folds a batch into running (mean, variance, count) by the
  exact parallel update of Chan, Golub & LeVeque (1979); the critic's value normalisation and
  the networks' input normalisation (:mod:`rllib_hatrpo.core.running_mean_std`) both use it.
- :func:`normalize`, :func:`denormalize`: value normalisation as used by HARL [1]: the critic
  predicts (V − μ) / sqrt(σ² + eps) of the value targets' running moments.

References:
    [1] Zhong, Kuba, Feng, Hu, Ji, Yang. *Heterogeneous-Agent Reinforcement Learning*. JMLR 25
        (2024), arXiv:2304.09870.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from rllib_hatrpo.core.advantages import ReduceFn, masked_moments

__all__ = ["denormalize", "normalize", "update_running_moments"]


def update_running_moments(
    mean: Tensor,
    var: Tensor,
    count: Tensor,
    batch: Tensor,
    mask: Tensor | None = None,
    reduce_fn: ReduceFn | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Fold a batch into running (mean, population variance, count): value and input normalisation.

    Exact parallel combination (Chan, Golub & LeVeque 1979) of the running moments (μ_a, σ²_a, n_a)
    with the batch's moments (μ_b, σ²_b, n_b) over its valid rows::

        n = n_a + n_b,   d = μ_b − μ_a,   μ = μ_a + d n_b / n,
        σ² = (n_a σ²_a + n_b σ²_b + d² n_a n_b / n) / n

    so that after several batches the result equals the mean and population variance of their
    concatenation (no decay, unlike HARL's β-weighted ValueNorm [1]). Starting
    from n_a = 0 returns the batch's moments; a batch with no valid rows (on every learner)
    returns the inputs unchanged. No host sync: safe inside a compiled or GPU loop.

    Per-feature moments (the input normalisation of the networks): mean and var of shape [D]
    and a batch of shape [N, D] give every feature its own moments over the same valid rows
    (one count), in one ``reduce_fn`` call.

    Args:
        mean: running mean μ_a, 0-dim float, or shape [D] for per-feature moments.
        var: running population variance σ²_a, the shape of ``mean``, ≥ 0.
        count: running count n_a, 0-dim float, ≥ 0.
        batch: new samples, shape [N] (value targets) or [N, D] with per-feature moments.
        mask: shape [N], bool: rows to include; all rows when None.
        reduce_fn: sums the batch's float64 ``[sum, sum_sq, count]`` (per feature: the D
            sums, the D sums of squares, then the count) across learners, so that every
            learner applies the same update; identity when None.

    Returns:
        ``(mean, var, count)``, tensors of the shapes of the inputs, with the dtype and device
        of ``mean``.

    Raises:
        ValueError: count is not 0-dim, var's shape differs from mean's, or batch's shape is
            not mask's shape followed by mean's.
    """
    if count.dim() != 0 or tuple(var.shape) != tuple(mean.shape):
        shapes = [tuple(t.shape) for t in (mean, var, count)]
        raise ValueError(
            "update_running_moments expects mean and var of one shape (0-dim, or [D] per "
            f"feature) and a 0-dim count; got shapes {shapes}."
        )
    features = tuple(mean.shape)
    if mask is None:
        mask = torch.ones(batch.shape[: batch.dim() - len(features)], dtype=torch.bool)
        mask = mask.to(batch.device)
    if tuple(batch.shape) != tuple(mask.shape) + features:
        raise ValueError(
            "update_running_moments expects batch of shape mask.shape + mean.shape; got batch "
            f"{tuple(batch.shape)}, mask {tuple(mask.shape)}, mean {features}."
        )

    n_b, mean_b, var_b = masked_moments(batch, mask, reduce_fn)
    n_a, mean_a, var_a = count.double(), mean.double(), var.double()
    n = n_a + n_b
    safe_n = n.clamp_min(1.0)
    delta = mean_b - mean_a
    new_mean = mean_a + delta * n_b / safe_n
    new_var = (n_a * var_a + n_b * var_b + delta * delta * n_a * n_b / safe_n) / safe_n
    # An empty batch on every learner (n_b = 0) must not move the moments, nor zero them at n = 0.
    has_new = n_b > 0
    new_mean = torch.where(has_new, new_mean, mean_a)
    new_var = torch.where(has_new, new_var, var_a)
    out = {"dtype": mean.dtype, "device": mean.device}
    return new_mean.to(**out), new_var.to(**out), n.to(**out)


def _check_moments(name: str, mean: Tensor, var: Tensor, eps: float) -> None:
    if mean.dim() != 0 or var.dim() != 0:
        raise ValueError(
            f"{name} expects 0-dim mean and var; got mean {tuple(mean.shape)}, "
            f"var {tuple(var.shape)}."
        )
    if not (eps > 0.0 and math.isfinite(eps)):
        raise ValueError(f"{name}: eps must be positive and finite; got {eps}.")


def normalize(x: Tensor, mean: Tensor, var: Tensor, eps: float = 1e-5) -> Tensor:
    """Map value targets into the critic's normalised space: (x − μ) / sqrt(σ² + eps).

    Args:
        x: any shape, float.
        mean: μ, 0-dim.
        var: σ², 0-dim, ≥ 0.
        eps: > 0, keeps the scale finite while σ² is 0 (e.g. before the first update).

    Returns:
        Tensor of the shape of ``x``.

    Raises:
        ValueError: mean or var is not 0-dim, or eps is not positive.
    """
    _check_moments("normalize", mean, var, eps)
    return (x - mean) / torch.sqrt(var + eps)


def denormalize(x: Tensor, mean: Tensor, var: Tensor, eps: float = 1e-5) -> Tensor:
    """Exact inverse of :func:`normalize`: x · sqrt(σ² + eps) + μ (critic output → value scale).

    Args:
        x: normalised values, any shape, float.
        mean: μ, 0-dim.
        var: σ², 0-dim, ≥ 0.
        eps: > 0, the same eps as passed to :func:`normalize`.

    Returns:
        Tensor of the shape of ``x``.

    Raises:
        ValueError: mean or var is not 0-dim, or eps is not positive.
    """
    _check_moments("denormalize", mean, var, eps)
    return x * torch.sqrt(var + eps) + mean
