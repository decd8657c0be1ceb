"""Several HATRPO learners as one: sum-all-reduce, replica checks and episode shards.

With ``learners(num_learners=N)``, N > 1, RLlib's LearnerGroup starts one ``torch.distributed``
process group (gloo on CPU, NCCL on GPU) and every learner gets its own shard of the episodes.
HATRPO's update is made the single-learner update on the union batch by reducing **sums and
counts**, never per-shard means: with shard k holding n_k valid rows,

    union mean = Σ_k Σ_{t ∈ k} x_t / Σ_k n_k,   whereas   (1/N) Σ_k mean_k   differs
    whenever the n_k differ.

So every learner first learns the global count N_valid = Σ_k n_k, computes its *partial*
mean Σ_{t ∈ k} x_t / N_valid, and :func:`all_reduce_sum` adds the partials (and, by
linearity, their gradients and Fisher-vector products) into the union's value. The pure maths
(``trust_region``, ``advantages``) takes this as its ``reduce_fn``; :func:`sum_reduce_fn` is
None on one learner, so that path is the single-learner code, unchanged.

Every learner must issue the same collectives in the same order: decisions (CG stop, line-search
acceptance, allocator choices, guards) are taken only on reduced values, which all-reduce hands
identically to every rank.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

T = TypeVar("T")

#: Test switch: False turns :func:`sum_reduce_fn` into None (each learner then trains on its
#: own shard alone) and skips the replica check. Only the negative-control test sets it.
_REDUCE_ENABLED = True


def world_size() -> int:
    """Number of learners in the torch.distributed group; 1 when there is no group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def is_distributed() -> bool:
    """True on a learner of a group of more than one (RLlib's ``num_learners > 1``)."""
    return world_size() > 1


def all_reduce_sum(x: Tensor) -> Tensor:
    """Σ over learners of ``x`` (a new tensor; ``x`` is left as it is); ``x`` on one learner.

    Every rank receives the same reduced buffer, so values computed from it agree bitwise.
    """
    if not is_distributed():
        return x
    total = x.detach().clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total


def sum_reduce_fn() -> Callable[[Tensor], Tensor] | None:
    """The ``reduce_fn`` for the pure maths: :func:`all_reduce_sum` with several learners,
    None (the unchanged single-learner code path) otherwise."""
    return all_reduce_sum if is_distributed() and _REDUCE_ENABLED else None


def broadcast_object(obj: T, src: int = 0) -> T:
    """Rank ``src``'s ``obj`` on every learner (picklable objects, e.g. an RNG state)."""
    if not is_distributed():
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def sync_replicas(tensors: Sequence[Tensor]) -> float:
    """Makes ``tensors`` equal to rank 0's on every learner; returns how far apart they were.

    The reductions keep the learners identical on identical hardware. This check makes a
    drift loud instead of silent (EnvRunners read weights from learner 0 only) and removes
    it: rank 0's values are broadcast, every rank measures max |own − rank 0|, and the
    maximum over ranks is all-reduced, so every rank returns the same number.

    Args:
        tensors: parameters and buffers, the same shapes in the same order on every learner.

    Returns:
        The max abs difference to rank 0 before the sync (0.0 on one learner or when equal).
    """
    if not is_distributed() or not tensors:
        return 0.0
    with torch.no_grad():
        flat = torch.cat([t.detach().reshape(-1).to(torch.float64) for t in tensors])
        reference = flat.clone()
        dist.broadcast(reference, src=0)
        gap = (flat - reference).abs().max().reshape(1)
        dist.all_reduce(gap, op=dist.ReduceOp.MAX)
        max_gap = float(gap)
        if max_gap != 0.0:
            offset = 0
            for t in tensors:
                t.copy_(reference[offset : offset + t.numel()].view_as(t))
                offset += t.numel()
    return max_gap


def balanced_shards(items: Sequence[T], num_shards: int, size: Callable[[T], int] = len) -> list:
    """Splits whole ``items`` into ``num_shards`` lists of similar total ``size``.

    Longest-processing-time rule: items by descending size, each to the currently smallest
    shard (ties: fewer items, then lowest shard index, so that no shard stays empty); inside a
    shard the input order is kept. Items are never
    cut: RLlib's own episode sharding slices episodes, and a slice loses its infos (the
    global state HATRPO's critic reads) and ends in an artificial truncation.

    Args:
        items: e.g. the episode chunks of one iteration, len ≥ num_shards.
        num_shards: ≥ 1.
        size: an item's weight (env steps for episodes).

    Returns:
        ``num_shards`` non-empty lists that together hold every item once.

    Raises:
        ValueError: num_shards < 1, or fewer items than shards (a learner would get nothing).
    """
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    if len(items) < num_shards:
        raise ValueError(
            f"{len(items)} episode chunks cannot feed {num_shards} learners: every learner "
            "needs at least one. Sample more chunks per iteration (more EnvRunners or "
            "num_envs_per_env_runner) or use fewer learners."
        )
    loads, counts = [0] * num_shards, [0] * num_shards
    owner: dict[int, int] = {}
    for index in sorted(range(len(items)), key=lambda i: (-size(items[i]), i)):
        shard = min(range(num_shards), key=lambda s: (loads[s], counts[s], s))
        owner[index] = shard
        loads[shard] += size(items[index])
        counts[shard] += 1
    return [[items[i] for i in range(len(items)) if owner[i] == s] for s in range(num_shards)]


def _set_reduce_enabled(enabled: bool) -> None:
    """Test hook for the negative control (see ``_REDUCE_ENABLED``)."""
    global _REDUCE_ENABLED
    _REDUCE_ENABLED = enabled


__all__ = [
    "all_reduce_sum",
    "balanced_shards",
    "broadcast_object",
    "is_distributed",
    "sum_reduce_fn",
    "sync_replicas",
    "world_size",
]
