"""The running mean/std input normalisation of the networks (pure torch, no Ray)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rllib_hatrpo.core.running_mean_std import RunningMeanStd


def _batch(n=200, seed=0):
    """Features on very different scales: the case a per-feature normaliser is for."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)) * np.array([1e-3, 1.0, 50.0]) + np.array([0.5, -2.0, 300.0])
    return torch.as_tensor(x, dtype=torch.float32)


def _numpy_normalised(x, mean, var):
    return np.clip((x - mean) / np.sqrt(var + 1e-8), -10.0, 10.0)


def test_statistics_match_numpy_and_normalise_each_feature():
    x = _batch()
    mask = torch.arange(len(x)) % 4 != 0  # a quarter of the rows is padding
    norm = RunningMeanStd(3)
    norm.update(x, mask)
    kept = x.numpy().astype(np.float64)[mask.numpy()]
    assert norm.count.item() == len(kept)
    np.testing.assert_allclose(norm.mean.numpy(), kept.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(norm.var.numpy(), kept.var(axis=0), rtol=1e-9)
    assert norm.mean.dtype == norm.var.dtype == norm.count.dtype == torch.float64
    y = norm(x)
    assert y.dtype == torch.float32
    expected = _numpy_normalised(x.numpy().astype(np.float64), kept.mean(0), kept.var(0))
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-5, atol=1e-5)
    # Every feature, whatever its scale, comes out with mean 0 and std sqrt(σ²/(σ² + eps)) ≈ 1
    # (0.995 for the feature of std 1e-3) on the rows used.
    used = y.numpy().astype(np.float64)[mask.numpy()]
    np.testing.assert_allclose(used.mean(axis=0), 0.0, atol=1e-5)
    var = kept.var(axis=0)
    np.testing.assert_allclose(used.std(axis=0), np.sqrt(var / (var + 1e-8)), rtol=1e-4)


def test_identity_before_the_first_update_and_clipping_at_ten():
    norm = RunningMeanStd(2)
    x = torch.tensor([[1e4, -3.0], [0.25, 7.0]])
    assert torch.equal(norm(x), x)  # no statistics yet: the raw inputs
    norm.update(torch.tensor([[0.0, 0.0], [2.0, 2.0]]))  # mean 1, var 1 per feature
    y = norm(torch.tensor([[1e4, 1.0], [-1e4, 3.0]]))
    torch.testing.assert_close(y, torch.tensor([[10.0, 0.0], [-10.0, 2.0]]))


def test_several_batches_and_learners_equal_one_update_on_their_union():
    x_a, x_b, x_c = _batch(30, 1), _batch(70, 2), _batch(5, 3)
    seq = RunningMeanStd(3)
    for x in (x_a, x_b, x_c):
        seq.update(x)
    union = RunningMeanStd(3)
    union.update(torch.cat([x_a, x_b, x_c]))
    for name in ("mean", "var", "count"):
        torch.testing.assert_close(getattr(seq, name), getattr(union, name), rtol=1e-9, atol=0)
    # Two learners: reduce_fn sums the other learner's local statistics into this one's.
    other_stats = []
    RunningMeanStd(3).update(x_b, reduce_fn=lambda s: other_stats.append(s.clone()) or s)
    shard = RunningMeanStd(3)
    shard.update(x_a, reduce_fn=lambda s: s + other_stats[0])
    both = RunningMeanStd(3)
    both.update(torch.cat([x_a, x_b]))
    for name in ("mean", "var", "count"):
        torch.testing.assert_close(getattr(shard, name), getattr(both, name), rtol=1e-9, atol=0)


def test_rows_with_non_finite_values_never_enter_the_statistics():
    x = _batch(50)
    poisoned = x.clone()
    poisoned[3, 0] = float("nan")
    poisoned[10, 2] = float("inf")
    poisoned[11, 1] = -float("inf")
    good = torch.ones(50, dtype=torch.bool)
    good[[3, 10, 11]] = False
    norm, clean = RunningMeanStd(3), RunningMeanStd(3)
    norm.update(poisoned, torch.ones(50, dtype=torch.bool))
    clean.update(x[good])
    assert norm.count.item() == 47
    for name in ("mean", "var", "count"):
        assert torch.isfinite(getattr(norm, name)).all()
        torch.testing.assert_close(getattr(norm, name), getattr(clean, name), rtol=1e-9, atol=0)
    # A batch of nothing but bad or masked rows changes nothing.
    before = {k: v.clone() for k, v in norm.state_dict().items()}
    norm.update(torch.full((4, 3), float("nan")))
    norm.update(x[:4], torch.zeros(4, dtype=torch.bool))
    assert all(torch.equal(before[k], v) for k, v in norm.state_dict().items())


def test_statistics_survive_a_state_dict_round_trip():
    norm = RunningMeanStd(3)
    norm.update(_batch())
    assert set(norm.state_dict()) == {"mean", "var", "count"}
    restored = RunningMeanStd(3)
    restored.load_state_dict(norm.state_dict())
    for name in ("mean", "var", "count"):
        assert torch.equal(getattr(restored, name), getattr(norm, name))
    x = _batch(10, 4)
    assert torch.equal(restored(x), norm(x))


def test_bad_arguments_are_errors():
    with pytest.raises(ValueError, match="num_features >= 1"):
        RunningMeanStd(0)
    with pytest.raises(ValueError, match="expected 3 features per row, got 2"):
        RunningMeanStd(3).update(torch.zeros(4, 2))
