"""rllib_hatrpo.core.value_norm: running moments, value normalisation."""

from __future__ import annotations

import math

import pytest
import torch

from rllib_hatrpo.core.value_norm import denormalize, normalize, update_running_moments


def _assert_close(actual, expected, *, atol=1e-6, rtol=1e-5):
    """Shape, dtype and value check (torch.testing.assert_close costs ~1 s on its first call)."""
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    assert torch.allclose(actual, expected, atol=atol, rtol=rtol), (actual, expected)


def test_running_moments_equal_moments_of_concatenation():
    g = torch.Generator().manual_seed(5)
    batches = [torch.randn(n, generator=g) * 4.0 + 30.0 for n in (7, 50, 1, 23)]
    masks = [torch.rand(b.shape, generator=g) < 0.8 for b in batches]
    masks[2][:] = True
    mean, var, count = torch.tensor(0.0), torch.tensor(1.0), torch.tensor(0.0)
    for batch, mask in zip(batches, masks, strict=True):
        mean, var, count = update_running_moments(mean, var, count, batch, mask)
    kept = torch.cat([b[m] for b, m in zip(batches, masks, strict=True)]).double()
    assert count.item() == kept.numel()
    assert mean.item() == pytest.approx(kept.mean().item(), rel=1e-6)
    assert var.item() == pytest.approx(kept.var(correction=0).item(), rel=1e-5)
    assert mean.dtype == torch.float32 and mean.shape == ()


def test_running_moments_empty_batch_and_reduce_fn():
    mean, var, count = torch.tensor(3.0), torch.tensor(2.0), torch.tensor(10.0)
    same = update_running_moments(mean, var, count, torch.zeros(0))
    assert [t.item() for t in same] == [3.0, 2.0, 10.0]
    # Two workers, starting from count 0: equals one update with the union batch.
    x_a, x_b = torch.arange(5.0), torch.arange(10.0, 14.0)
    stats_b = torch.tensor([x_b.sum(), (x_b * x_b).sum(), 4.0], dtype=torch.float64)
    zero = torch.tensor(0.0)
    two = update_running_moments(zero, zero, zero, x_a, reduce_fn=lambda s: s + stats_b)
    one = update_running_moments(zero, zero, zero, torch.cat([x_a, x_b]))
    for a, b in zip(two, one, strict=True):
        _assert_close(a, b)


def test_normalize_denormalize_roundtrip_and_errors():
    x = torch.randn(20, dtype=torch.float64) * 50.0
    mean, var = torch.tensor(12.0, dtype=torch.float64), torch.tensor(9.0, dtype=torch.float64)
    z = normalize(x, mean, var)
    _assert_close(z, (x - 12.0) / math.sqrt(9.0 + 1e-5))
    _assert_close(denormalize(z, mean, var), x)
    _assert_close(normalize(denormalize(x, mean, var), mean, var), x)
    with pytest.raises(ValueError, match="0-dim"):
        update_running_moments(mean[None], var, mean, x)
    with pytest.raises(ValueError, match="0-dim"):
        normalize(x, mean[None], var)
