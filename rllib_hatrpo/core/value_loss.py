"""The critic loss of HATRPO (pure torch, no Ray): a clipped value loss with a Huber penalty.

- :func:`huber_loss`: the elementwise Huber penalty.
- :func:`clipped_value_loss`: HARL's critic loss [1] (clip 0.2, Huber δ 10), a masked mean
  whose denominator counts the valid rows of every learner.

References:
    [1] Zhong, Kuba, Feng, Hu, Ji, Yang. *Heterogeneous-Agent Reinforcement Learning*. JMLR 25
        (2024), arXiv:2304.09870.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from rllib_hatrpo.core.advantages import ReduceFn, reduced_stats

__all__ = ["clipped_value_loss", "huber_loss"]


def huber_loss(error: Tensor, delta: float) -> Tensor:
    """Elementwise Huber loss: 0.5 e² if |e| ≤ δ, else δ (|e| − δ/2).

    Quadratic near zero, linear beyond δ (gradient magnitude capped at δ); continuous with a
    continuous first derivative at |e| = δ. HARL's critic uses δ = 10 [1].

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
    """Clipped value loss with a Huber penalty, masked mean over valid rows (HARL's critic [1]).

    ::

        v_clip_t = V_old(s_t) + clamp(V(s_t) − V_old(s_t), −c, c)
        loss_t   = max(ℓ(target_t − v_clip_t), ℓ(target_t − V(s_t)))
        loss     = Σ_t mask_t loss_t / max(Σ_t mask_t, 1)

    with ℓ = huber(·, huber_delta), or 0.5 e² when huber_delta is None. clip_param None disables
    clipping: loss_t = ℓ(target_t − V(s_t)). The max makes it pessimistic, as in PPO's value
    clipping: moving V outside [V_old − c, V_old + c] is never rewarded.

    All of values, old_values and targets must be in the same space; with value normalisation
    that is the normalised space (targets passed through
    :func:`rllib_hatrpo.core.value_norm.normalize`; the critic's raw output is already
    normalised), so c and δ are in units of the targets' running std.

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
    (count,) = reduced_stats(valid.sum().double().reshape(1), reduce_fn).unbind()
    return loss.sum() / count.clamp_min(1.0).to(loss.dtype)
