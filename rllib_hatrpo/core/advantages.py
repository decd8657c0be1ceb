"""Advantages, value normalisation and the critic loss for HATRPO (pure torch, no Ray).

Steps 1–2 of an HATRPO iteration (docs: hatrpo.md §2): a joint advantage Â(s, a) from GAE on the
team reward and the centralised critic V(s), standardised over the valid steps; and the critic
update with a clipped, Huber value loss on normalised value targets.

- :func:`generalized_advantage_estimate`: GAE(γ, λ) over concatenated episode chunks [1].
- :func:`masked_mean`, :func:`masked_standardize`: moments over the valid rows only, optionally
  summed across learners through ``reduce_fn`` so that every learner uses the same moments.
- :func:`update_running_moments`, :func:`normalize`, :func:`denormalize`: value normalisation
  (running mean and variance of the value targets) as used by HARL [3]; the running moments are
  combined with each batch by the exact parallel update of Chan, Golub & LeVeque (1979).
- :func:`huber_loss`, :func:`clipped_value_loss`: the clipped value loss with a Huber penalty,
  HARL's critic loss [3] (clip 0.2, Huber δ 10).

Sufficient statistics are accumulated in float64: the one-pass variance sum_sq/n − mean² loses
digits in float32 when the mean is large against the spread (value targets of order 1/(1−γ)).

References:
    [1] Schulman, Moritz, Levine, Jordan, Abbeel. *High-Dimensional Continuous Control Using
        Generalized Advantage Estimation*. ICLR 2016, arXiv:1506.02438.
    [2] Kuba, Chen, Wen, Wen, Sun, Wang, Yang. *Trust Region Policy Optimisation in Multi-Agent
        Reinforcement Learning*. ICLR 2022, arXiv:2109.11251.
    [3] Zhong, Kuba, Feng, Hu, Ji, Yang. *Heterogeneous-Agent Reinforcement Learning*. JMLR 25
        (2024), arXiv:2304.09870.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

ReduceFn = Callable[[Tensor], Tensor]
"""Maps a 1-D tensor of local sufficient statistics to its elementwise sum over all learners."""

__all__ = [
    "ReduceFn",
    "clipped_value_loss",
    "denormalize",
    "generalized_advantage_estimate",
    "huber_loss",
    "masked_mean",
    "masked_standardize",
    "normalize",
    "update_running_moments",
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


def _reduced_stats(local: Tensor, reduce_fn: ReduceFn | None) -> Tensor:
    """Apply ``reduce_fn`` to local statistics and check it kept their shape."""
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


def _masked_moments(
    x: Tensor, mask: Tensor, reduce_fn: ReduceFn | None
) -> tuple[Tensor, Tensor, Tensor]:
    """Global (count, mean, population variance) in float64 over the rows where mask is True.

    ``x`` has the shape of ``mask`` (0-dim moments) or ``mask.shape + F`` (moments of shape F,
    one per feature, with one shared count); one ``reduce_fn`` call either way.
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
    total = _reduced_stats(local, reduce_fn)
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
    total_sum, count = _reduced_stats(torch.stack([xd.sum(), valid.sum().double()]), reduce_fn)
    # Raise only after reduce_fn: a learner with no valid rows must still join the collective.
    if count.item() <= 0:
        raise ValueError("masked_mean: the mask has no True rows, the mean is undefined.")
    return (total_sum / count).to(x.dtype)


def masked_standardize(
    x: Tensor, mask: Tensor, eps: float = 1e-8, reduce_fn: ReduceFn | None = None
) -> Tensor:
    """Standardise ``x`` with the mean and std of its valid rows (e.g. advantages, hatrpo.md §2).

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
    count, mean, var = _masked_moments(x, mask, reduce_fn)
    if count.item() <= 0:
        raise ValueError("masked_standardize: the mask has no True rows, moments are undefined.")
    return ((x.double() - mean) / (var.sqrt() + eps)).to(x.dtype)


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
    concatenation (no decay, unlike HARL's β-weighted ValueNorm [3]; decided: exact). Starting
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

    n_b, mean_b, var_b = _masked_moments(batch, mask, reduce_fn)
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


def huber_loss(error: Tensor, delta: float) -> Tensor:
    """Elementwise Huber loss: 0.5 e² if |e| ≤ δ, else δ (|e| − δ/2).

    Quadratic near zero, linear beyond δ (gradient magnitude capped at δ); continuous with a
    continuous first derivative at |e| = δ. HARL's critic uses δ = 10 [3].

    Args:
        error: e, any shape, float.
        delta: δ > 0.

    Returns:
        Tensor of the shape of ``error``.

    Raises:
        ValueError: δ is not positive and finite.
    """
    if not (delta > 0.0 and math.isfinite(delta)):
        raise ValueError(f"huber_loss: delta must be positive and finite; got {delta}.")
    abs_error = error.abs()
    return torch.where(abs_error <= delta, 0.5 * error * error, delta * (abs_error - 0.5 * delta))


def clipped_value_loss(
    values: Tensor,
    old_values: Tensor,
    targets: Tensor,
    mask: Tensor,
    clip_param: float | None = 0.2,
    huber_delta: float | None = 10.0,
    reduce_fn: ReduceFn | None = None,
) -> Tensor:
    """Clipped value loss with a Huber penalty, masked mean over valid rows (HARL's critic [3]).

    ::

        v_clip_t = V_old(s_t) + clamp(V(s_t) − V_old(s_t), −c, c)
        loss_t   = max(ℓ(target_t − v_clip_t), ℓ(target_t − V(s_t)))
        loss     = Σ_t mask_t loss_t / max(Σ_t mask_t, 1)

    with ℓ = huber(·, huber_delta), or 0.5 e² when huber_delta is None. clip_param None disables
    clipping: loss_t = ℓ(target_t − V(s_t)). The max makes it pessimistic, as in PPO's value
    clipping: moving V outside [V_old − c, V_old + c] is never rewarded.

    All of values, old_values and targets must be in the same space; with value normalisation
    that is the normalised space (targets passed through :func:`normalize`; the critic's raw
    output is already normalised), so c and δ are in units of the targets' running std.

    Masked-out rows are never read (NaN there gives neither a NaN loss nor a NaN gradient). With
    no valid row the loss is 0 with zero gradient rather than an error, to avoid a host sync in
    the training loop.

    With several learners (``reduce_fn`` given), Σ_t mask_t in the denominator runs over every
    learner, so each learner returns its *partial* loss Σ_{t ∈ shard} loss_t / N_valid; the sum
    of the partials (and of their gradients) over learners is the union batch's loss. A mean
    of per-shard means, e.g. DDP averaging per-shard losses, would weight unequal shards wrongly.

    Args:
        values: V(s_t) from the critic being trained, shape [N], float, requires grad.
        old_values: V_old(s_t) predicted when the batch was collected, shape [N], float.
        targets: value targets (GAE returns), shape [N], float.
        mask: shape [N], bool: True on valid rows.
        clip_param: c ≥ 0, or None for no clipping.
        huber_delta: δ > 0, or None for the squared error.
        reduce_fn: sums the float64 ``[count]`` of valid rows across learners; None for a
            single learner (the local count).

    Returns:
        0-dim loss tensor.

    Raises:
        ValueError: the four tensors differ in shape, or c, δ are out of range.
    """
    shapes = [tuple(t.shape) for t in (values, old_values, targets, mask)]
    if any(s != shapes[0] for s in shapes):
        raise ValueError(
            "clipped_value_loss expects values, old_values, targets and mask all of shape [N]; "
            f"got shapes {shapes}."
        )
    if clip_param is not None and not (clip_param >= 0.0 and math.isfinite(clip_param)):
        raise ValueError(f"clip_param must be >= 0 and finite, or None; got {clip_param}.")
    if huber_delta is not None and not (huber_delta > 0.0 and math.isfinite(huber_delta)):
        raise ValueError(f"huber_delta must be > 0 and finite, or None; got {huber_delta}.")

    valid = mask.to(torch.bool)

    def penalty(prediction: Tensor) -> Tensor:
        # Zero the error on invalid rows *before* the penalty: a NaN there would otherwise
        # leak into the gradient (0 · NaN) through torch.where's backward.
        error = torch.where(valid, targets - prediction, torch.zeros_like(prediction))
        return 0.5 * error * error if huber_delta is None else huber_loss(error, huber_delta)

    loss = penalty(values)
    if clip_param is not None:
        clipped = old_values + torch.clamp(values - old_values, -clip_param, clip_param)
        loss = torch.maximum(loss, penalty(clipped))
    if reduce_fn is None:
        return loss.sum() / valid.sum().clamp_min(1).to(loss.dtype)
    (count,) = _reduced_stats(valid.sum().double().reshape(1), reduce_fn).unbind()
    return loss.sum() / count.clamp_min(1.0).to(loss.dtype)
