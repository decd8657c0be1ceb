"""Relative gains over tasks and their seed bootstrap (rllib_hatrpo.experiments.gains)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from rllib_hatrpo.experiments.gains import (
    bootstrap_over_tasks,
    mean_over_tasks,
    relative_gain,
    variance_ratio,
)


def test_relative_gain_is_taken_against_the_baselines_magnitude():
    assert relative_gain(np.array([100.0, 300.0]), np.array([250.0])) == pytest.approx(0.25)
    # A negative baseline: a higher (less negative) return is a positive gain.
    assert relative_gain(np.array([-50.0]), np.array([-41.0])) == pytest.approx(0.18)
    assert math.isnan(relative_gain(np.array([1.0, -1.0]), np.array([3.0])))


def test_variance_ratio_and_the_mean_over_tasks():
    assert variance_ratio(np.array([1.0, 3.0]), np.array([0.0, 4.0])) == pytest.approx(4.0)
    assert math.isnan(variance_ratio(np.array([2.0, 2.0]), np.array([0.0, 4.0])))
    # One seed has no variance: not a ratio of 0 (a finished seed of G against two of W).
    assert math.isnan(variance_ratio(np.array([1.0, 3.0]), np.array([5.0])))
    # Equal seeds whose variance rounds to about 1e-25, not to 0 (a bootstrap resample).
    equal = np.full(3, 5662.409750000001)
    assert np.var(equal) > 0.0
    assert math.isnan(variance_ratio(equal, np.array([0.0, 4.0, 8.0])))
    groups = {"a": ([100.0], [110.0]), "b": ([-10.0], [-12.0])}
    assert mean_over_tasks(relative_gain, groups) == pytest.approx((0.1 - 0.2) / 2)


def test_identical_seeds_give_a_point_interval():
    groups = {"a": ([5.0, 5.0, 5.0], [6.0, 6.0]), "b": ([-2.0], [-1.0])}
    interval = bootstrap_over_tasks(relative_gain, groups, resamples=200)
    assert interval.point == interval.low == interval.high == pytest.approx((0.2 + 0.5) / 2)


def _exact_distribution(groups):
    """Every equally likely resample of every group (n^n ordered draws per group of n)."""
    per_task = []
    for baseline, method in groups.values():
        draws = [
            [np.array(d) for d in itertools.product(g, repeat=len(g))] for g in (baseline, method)
        ]
        per_task.append([relative_gain(b, m) for b in draws[0] for m in draws[1]])
    return np.array([np.mean(c) for c in itertools.product(*per_task)])


def test_bootstrap_interval_matches_the_exact_resampling_distribution():
    groups = {
        "a": ([90.0, 100.0, 130.0], [95.0, 120.0, 160.0]),
        "b": ([-60.0, -50.0], [-45.0, -52.0]),
    }
    exact = _exact_distribution(groups)  # 27 * 27 * 4 * 4 = 11,664 values
    interval = bootstrap_over_tasks(relative_gain, groups, resamples=20_000, seed=1)
    assert interval.point == pytest.approx(mean_over_tasks(relative_gain, groups))
    # Each end sits where the exact CDF crosses 2.5 % / 97.5 % (within the Monte Carlo error).
    assert np.mean(exact < interval.low) <= 0.025 + 0.004
    assert np.mean(exact <= interval.low) >= 0.025 - 0.004
    assert np.mean(exact > interval.high) <= 0.025 + 0.004
    assert np.mean(exact >= interval.high) >= 0.025 - 0.004
    assert interval.low < interval.point < interval.high


def test_bad_confidence_and_empty_groups():
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_over_tasks(relative_gain, {"a": ([1.0], [2.0])}, confidence=1.0)
    interval = bootstrap_over_tasks(relative_gain, {"a": ([1.0], [])})
    assert all(math.isnan(v) for v in (interval.point, interval.low, interval.high))
