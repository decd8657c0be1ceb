"""Advantages for HATRPO (pure torch, no Ray): GAE and moments over the valid rows.

The first step of an HATRPO iteration ([2], Algorithm 1): a joint advantage Â(s, a) from GAE
on the team reward and the centralised critic V(s), standardised over the valid steps and
shared by every agent.

- :func:`generalized_advantage_estimate`: GAE(γ, λ) over concatenated episode chunks [1].
- :func:`masked_mean`, :func:`masked_standardize`: moments over the valid rows only, optionally
  summed across learners through ``reduce_fn`` so that every learner uses the same moments.
- :func:`masked_moments`, :func:`reduced_stats`: the float64 sufficient statistics behind
  them, also used by value and input normalisation (:mod:`rllib_hatrpo.core.value_norm`) and
  the critic loss (:mod:`rllib_hatrpo.core.value_loss`).

Sufficient statistics are accumulated in float64: the one-pass variance sum_sq/n − mean² loses
digits in float32 when the mean is large against the spread (value targets of order 1/(1−γ)).

References:
    [1] Schulman, Moritz, Levine, Jordan, Abbeel. *High-Dimensional Continuous Control Using
        Generalized Advantage Estimation*. ICLR 2016, arXiv:1506.02438.
    [2] Kuba, Chen, Wen, Wen, Sun, Wang, Yang. *Trust Region Policy Optimisation in Multi-Agent
        Reinforcement Learning*. ICLR 2022, arXiv:2109.11251.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

ReduceFn = Callable[[Tensor], Tensor]
"""Maps a 1-D tensor of local sufficient statistics to its elementwise sum over all learners."""

__all__ = [
    "ReduceFn",
    "generalized_advantage_estimate",
    "masked_mean",
    "masked_moments",
    "masked_standardize",
    "reduced_stats",
]


def generalized_advantage_estimate(
    rewards: Tensor,
    values: Tensor,
    next_values: Tensor,
    terminateds: Tensor,
    segment_ends: Tensor,
    gamma: float,
    lambda_: float,
) -> tuple[Tensor, Tensor]:
    """GAE(γ, λ) advantages and value targets over concatenated episode chunks.

    With term_t = 1 if s_{t+1} is terminal and end_t = 1 if row t is the last row of its chunk::

        δ_t = r_t + γ (1 − term_t) V(s_{t+1}) − V(s_t)
        A_t = δ_t + γ λ (1 − term_t) (1 − end_t) A_{t+1}
        value_target_t = A_t + V(s_t)

    i.e. A_t = Σ_k (γλ)^k δ_{t+k} summed up to the end of the chunk ([1], eq. 16, truncated at
    the chunk boundary). One reverse pass over Python floats (the recursion is sequential).

    Truncation bootstraps, termination does not: a chunk cut by a time limit or by the end of
    the rollout (``segment_ends`` True, ``terminateds`` False) keeps γ V(s_{t+1}) in δ_t, while a
    terminated row uses V(s_{t+1}) = 0. ``next_values`` at terminated rows is never read, so a
    NaN or garbage value there is harmless.

    Args:
        rewards: r_t (the team reward), shape [N], float.
        values: V(s_t), shape [N], float.
        next_values: V(s_{t+1}), the bootstrap value of the next state, shape [N], float.
        terminateds: shape [N], bool (or 0/1): s_{t+1} is terminal. A terminated row also stops
            the λ-propagation, whether or not ``segment_ends`` marks it.
        segment_ends: shape [N], bool (or 0/1): row t is the last row of its chunk, so A_{t+1}
            (row t+1 belongs to another chunk) is not propagated into A_t. The last row of the
            batch is always treated as a chunk end.
        gamma: discount γ, 0 < γ ≤ 1.
        lambda_: GAE λ, 0 ≤ λ ≤ 1 (0: one-step TD error, 1: Monte-Carlo return minus V).

    Returns:
        ``(advantages, value_targets)``, each of shape [N], with the dtype and device of
        ``values``. N = 0 gives two empty tensors.

    Raises:
        ValueError: the five tensors are not all 1-D of the same shape, or γ, λ are out of range.
    """
    shapes = [tuple(t.shape) for t in (rewards, values, next_values, terminateds, segment_ends)]
    if values.dim() != 1 or any(s != shapes[1] for s in shapes):
        raise ValueError(
            "generalized_advantage_estimate expects rewards, values, next_values, terminateds "
            f"and segment_ends all of shape [N]; got shapes {shapes}."
        )
    if not (0.0 < gamma <= 1.0):
        raise ValueError(f"gamma must satisfy 0 < gamma <= 1; got {gamma}.")
    if not (0.0 <= lambda_ <= 1.0):
        raise ValueError(f"lambda_ must satisfy 0 <= lambda_ <= 1; got {lambda_}.")

    terminated = terminateds.to(torch.bool)
    # torch.where rather than (1 − term)·V: 0 · NaN would be NaN for a garbage terminal value.
    bootstrap = torch.where(terminated, torch.zeros_like(next_values), next_values).double()
    deltas = (rewards.double() + gamma * bootstrap - values.double()).tolist()
    continues = (~terminated & ~segment_ends.to(torch.bool)).tolist()

    gamma_lambda = gamma * lambda_
    advantages = [0.0] * len(deltas)
    running = 0.0
    for t in range(len(deltas) - 1, -1, -1):
        running = deltas[t] + gamma_lambda * running if continues[t] else deltas[t]
        advantages[t] = running

    advantages_t = torch.tensor(advantages, dtype=values.dtype, device=values.device)
    return advantages_t, advantages_t + values


def reduced_stats(local: Tensor, reduce_fn: ReduceFn | None) -> Tensor:
    """Sums local sufficient statistics over the learners.

    Args:
        local: This learner's statistics, a 1-D tensor.
        reduce_fn: Sums a tensor over learners; None on a single learner.

    Returns:
        ``local`` itself when ``reduce_fn`` is None, else the sum, with ``local``'s dtype and
        device.

    Raises:
        ValueError: ``reduce_fn`` returned a tensor of another shape.
    """
    if reduce_fn is None:
        return local
    total = reduce_fn(local)
    if tuple(total.shape) != tuple(local.shape):
        raise ValueError(
            f"reduce_fn must return the summed statistics with the shape it received "
            f"{tuple(local.shape)}; got {tuple(total.shape)}."
        )
    return total.to(dtype=local.dtype, device=local.device)


def _check_masked(name: str, x: Tensor, mask: Tensor) -> None:
    if tuple(x.shape) != tuple(mask.shape):
        raise ValueError(
            f"{name} expects x and mask of the same shape [N]; got x {tuple(x.shape)}, "
            f"mask {tuple(mask.shape)}."
        )


def masked_moments(
    x: Tensor, mask: Tensor, reduce_fn: ReduceFn | None
) -> tuple[Tensor, Tensor, Tensor]:
    """Global (count, mean, population variance) in float64 over the rows where mask is True.

    Args:
        x: Values, of the shape of ``mask`` (0-dim moments) or ``mask.shape + F`` (moments of
            shape F, one per feature, with one shared count).
        mask: Bool, True on valid rows; rows where it is False are never read.
        reduce_fn: Sums the float64 ``[sums, sums of squares, count]`` over learners (one
            call either way); None on a single learner.

    Returns:
        ``(count, mean, var)``: the count as a 0-dim float64 tensor, the mean and population
        variance as float64 tensors of shape F (0-dim without features). With no valid row
        the mean and variance are 0.
    """
    valid = mask.to(torch.bool)
    features = x.shape[valid.dim() :]
    row_valid = valid.reshape(valid.shape + (1,) * len(features))
    xd = torch.where(row_valid, x.double(), torch.zeros((), dtype=torch.float64, device=x.device))
    if features:
        rows = tuple(range(valid.dim()))
        sums, sums_sq = xd.sum(dim=rows).reshape(-1), (xd * xd).sum(dim=rows).reshape(-1)
    else:
        sums, sums_sq = xd.sum().reshape(1), (xd * xd).sum().reshape(1)
    local = torch.cat([sums, sums_sq, valid.sum().double().reshape(1)])
    total = reduced_stats(local, reduce_fn)
    size = sums.numel()
    total_sum, total_sum_sq = total[:size].reshape(features), total[size:-1].reshape(features)
    count = total[-1]
    safe_count = count.clamp_min(1.0)
    mean = total_sum / safe_count
    # Population variance; clamp the rounding residue of sum_sq/n − mean² at 0.
    var = (total_sum_sq / safe_count - mean * mean).clamp_min(0.0)
    return count, mean, var


def masked_mean(x: Tensor, mask: Tensor, reduce_fn: ReduceFn | None = None) -> Tensor:
    """Mean of ``x`` over the rows where ``mask`` is True, optionally across learners.

    mean = Σ_t mask_t x_t / Σ_t mask_t, where both sums run over every learner when ``reduce_fn``
    is given (it receives the local float64 ``[sum, count]`` and must return their sum over all
    learners, e.g. an all-reduce; None means a single learner). Masked-out rows are never read,
    so NaN there is harmless.

    Args:
        x: values, shape [N] (any shape equal to ``mask``'s works), float.
        mask: shape of ``x``, bool: True on valid rows.
        reduce_fn: sums a 1-D statistics tensor across learners; identity when None.

    Returns:
        0-dim tensor with the dtype of ``x``.

    Raises:
        ValueError: shapes differ, or no row is valid (on any learner).
    """
    _check_masked("masked_mean", x, mask)
    valid = mask.to(torch.bool)
    xd = torch.where(valid, x.double(), torch.zeros((), dtype=torch.float64, device=x.device))
    total_sum, count = reduced_stats(torch.stack([xd.sum(), valid.sum().double()]), reduce_fn)
    # Raise only after reduce_fn: a learner with no valid rows must still join the collective.
    if count.item() <= 0:
        raise ValueError("masked_mean: the mask has no True rows, the mean is undefined.")
    return (total_sum / count).to(x.dtype)


def masked_standardize(
    x: Tensor, mask: Tensor, eps: float = 1e-8, reduce_fn: ReduceFn | None = None
) -> Tensor:
    """Standardise ``x`` with the mean and std of its valid rows (e.g. the advantages).

    out_t = (x_t − μ) / (σ + eps), with μ and σ the mean and population standard deviation
    (divide by the count) over rows where ``mask`` is True, summed across learners by
    ``reduce_fn`` (it receives the local float64 ``[sum, sum_sq, count]``). Every row is
    transformed, masked-out rows too: their values are meaningless and must be ignored later.
    A constant ``x`` gives σ = 0 and out = 0 on valid rows.

    Args:
        x: values, shape [N] (any shape equal to ``mask``'s works), float.
        mask: shape of ``x``, bool: True on valid rows.
        eps: added to σ (not to the variance), > 0 guards a zero spread.
        reduce_fn: sums a 1-D statistics tensor across learners; identity when None.

    Returns:
        Tensor of the shape and dtype of ``x``.

    Raises:
        ValueError: shapes differ, or no row is valid (on any learner).
    """
    _check_masked("masked_standardize", x, mask)
    count, mean, var = masked_moments(x, mask, reduce_fn)
    if count.item() <= 0:
        raise ValueError("masked_standardize: the mask has no True rows, moments are undefined.")
    return ((x.double() - mean) / (var.sqrt() + eps)).to(x.dtype)
