"""The several-learner helpers without a process group: shards, identities, partial losses."""

from __future__ import annotations

import pytest
import torch

from rllib_hatrpo.core.value_loss import clipped_value_loss
from rllib_hatrpo.torch import distributed


def test_without_a_process_group_everything_is_the_single_learner_identity():
    x = torch.arange(4.0)
    assert distributed.world_size() == 1 and not distributed.is_distributed()
    assert distributed.all_reduce_sum(x) is x
    assert distributed.sum_reduce_fn() is None  # the pure maths then run their 1-learner path
    assert distributed.broadcast_object({"a": 1}) == {"a": 1}
    assert distributed.sync_replicas([x]) == 0.0


def test_balanced_shards_keep_whole_items_and_balance_their_sizes():
    """Sizes 25, 25, 25, 15, 15, 5 into 2 shards: LPT gives 25+15+15 = 55 and 25+25+5 = 55."""
    items = list(enumerate((25, 15, 25, 5, 25, 15)))  # (position, size)
    shards = distributed.balanced_shards(items, 2, size=lambda item: item[1])
    assert sorted(item for shard in shards for item in shard) == items  # each once, none cut
    assert [sum(size for _, size in shard) for shard in shards] == [55, 55]
    assert all(shard == sorted(shard) for shard in shards)  # input order kept in a shard


def test_balanced_shards_never_leave_a_shard_empty_and_reject_too_few_items():
    assert [len(s) for s in distributed.balanced_shards(["", "", ""], 3)] == [1, 1, 1]
    assert distributed.balanced_shards(["abc"], 1) == [["abc"]]
    with pytest.raises(ValueError, match="2 episode chunks cannot feed 3 learners"):
        distributed.balanced_shards(["a", "b"], 3)
    with pytest.raises(ValueError, match="num_shards"):
        distributed.balanced_shards(["a"], 0)


def test_partial_critic_losses_of_unequal_shards_sum_to_the_union_loss_and_gradient():
    """Shards of 3 and 7 valid rows: with the global count as denominator the partial losses
    and their gradients add up to the union's; the mean of the per-shard means does not."""
    g = torch.Generator().manual_seed(0)
    values = torch.randn(12, generator=g, requires_grad=True)
    old, targets = torch.randn(12, generator=g), 3.0 * torch.randn(12, generator=g)
    mask = torch.ones(12, dtype=torch.bool)
    mask[[3, 11]] = False  # one bootstrap row per shard
    shards = [slice(0, 4), slice(4, 12)]
    union = clipped_value_loss(values, old, targets, mask)
    (union_grad,) = torch.autograd.grad(union, values)

    def counts(s):
        return torch.tensor([mask[s].sum()], dtype=torch.float64)

    total = counts(shards[0]) + counts(shards[1])
    partial = [
        clipped_value_loss(values[s], old[s], targets[s], mask[s], reduce_fn=lambda _: total)
        for s in shards
    ]
    (partial_grad,) = torch.autograd.grad(sum(partial), values)
    torch.testing.assert_close(sum(partial), union)
    torch.testing.assert_close(partial_grad, union_grad)
    per_shard = [clipped_value_loss(values[s], old[s], targets[s], mask[s]) for s in shards]
    assert not torch.allclose(0.5 * sum(per_shard), union)
