"""rllib_hatrpo.core.advantages: GAE and masked moments."""

from __future__ import annotations

import math

import pytest
import torch

from rllib_hatrpo.core.advantages import (
    generalized_advantage_estimate,
    masked_mean,
    masked_standardize,
)


def _assert_close(actual, expected, *, atol=1e-6, rtol=1e-5):
    """Shape, dtype and value check (torch.testing.assert_close costs ~1 s on its first call)."""
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    assert torch.allclose(actual, expected, atol=atol, rtol=rtol), (actual, expected)


# --------------------------------------------------------------------------------------------
# GAE
# --------------------------------------------------------------------------------------------


def _reference_gae(rewards, values, next_values, terminateds, segment_ends, gamma, lambda_):
    """Independent formulation: A_t = Σ_k (γλ)^k δ_{t+k}, summed up to the end of t's chunk."""
    n = len(rewards)
    deltas = []
    for t in range(n):
        bootstrap = 0.0 if terminateds[t] else gamma * next_values[t]
        deltas.append(rewards[t] + bootstrap - values[t])
    advantages = []
    for t in range(n):
        total = 0.0
        k = 0
        while True:
            total += (gamma * lambda_) ** k * deltas[t + k]
            if terminateds[t + k] or segment_ends[t + k] or t + k == n - 1:
                break
            k += 1
        advantages.append(total)
    return advantages


def _gae_inputs(n, ends, terms, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    rewards = torch.randn(n, generator=g, dtype=dtype)
    values = torch.randn(n, generator=g, dtype=dtype)
    next_values = torch.randn(n, generator=g, dtype=dtype)
    terminateds = torch.zeros(n, dtype=torch.bool)
    segment_ends = torch.zeros(n, dtype=torch.bool)
    terminateds[list(terms)] = True
    segment_ends[list(ends)] = True
    return rewards, values, next_values, terminateds, segment_ends


def test_gae_matches_hand_written_double_loop():
    # Chunks [0..6] terminated, [7..11] truncated, [12..19] terminated (its end row not marked
    # as a segment end: termination alone must stop the propagation), [20..29] truncated by
    # the end of the batch (last row not marked either).
    n = 30
    inputs = _gae_inputs(n, ends=[6, 11], terms=[6, 19])
    gamma, lambda_ = 0.97, 0.9
    advantages, targets = generalized_advantage_estimate(*inputs, gamma=gamma, lambda_=lambda_)
    expected = _reference_gae(*(t.tolist() for t in inputs), gamma, lambda_)
    _assert_close(advantages, torch.tensor(expected, dtype=torch.float64))
    _assert_close(targets, advantages + inputs[1])
    assert advantages.shape == (n,) and advantages.dtype == torch.float64


def test_gae_keeps_float32_dtype_and_handles_lambda_extremes():
    inputs = _gae_inputs(12, ends=[3, 7], terms=[7], dtype=torch.float32, seed=1)
    for lambda_ in (0.0, 1.0):
        advantages, targets = generalized_advantage_estimate(*inputs, gamma=0.9, lambda_=lambda_)
        assert advantages.dtype == torch.float32 and targets.dtype == torch.float32
        expected = _reference_gae(*(t.tolist() for t in inputs), 0.9, lambda_)
        _assert_close(advantages, torch.tensor(expected, dtype=torch.float32))


def test_gae_constant_reward_with_true_value_gives_zero_advantage():
    """r ≡ 1, V ≡ 1/(1−γ) = 100 is the exact value: every δ_t = 1 + 99 − 100 = 0."""
    gamma, n = 0.99, 500
    v = 1.0 / (1.0 - gamma)
    rewards = torch.ones(n)
    values = torch.full((n,), v)
    no = torch.zeros(n, dtype=torch.bool)
    ends = no.clone()
    ends[-1] = True  # one long chunk, truncated (bootstraps from V = 100)
    advantages, targets = generalized_advantage_estimate(
        rewards, values, values.clone(), no, ends, gamma=gamma, lambda_=0.95
    )
    _assert_close(advantages, torch.zeros(n), atol=1e-4, rtol=0)
    _assert_close(targets, torch.full((n,), v), atol=1e-4, rtol=0)


@pytest.mark.parametrize("horizon", [1, 10, 2000])
def test_gae_constant_reward_zero_value_is_discounted_sum(horizon):
    """V ≡ 0, λ = 1: A_0 = Σ_{k<T} γ^k = (1 − γ^T)/(1 − γ) → 1/(1−γ) = 100 for long T."""
    gamma = 0.99
    zeros = torch.zeros(horizon, dtype=torch.float64)
    no = torch.zeros(horizon, dtype=torch.bool)
    ends = no.clone()
    ends[-1] = True
    advantages, _ = generalized_advantage_estimate(
        torch.ones(horizon, dtype=torch.float64), zeros, zeros, no, ends, gamma=gamma, lambda_=1.0
    )
    expected = (1.0 - gamma**horizon) / (1.0 - gamma)
    assert advantages[0].item() == pytest.approx(expected, rel=1e-10)
    if horizon == 2000:
        assert advantages[0].item() == pytest.approx(1.0 / (1.0 - gamma), rel=1e-8)


def test_gae_termination_in_the_middle_does_not_bootstrap():
    """Terminated row t: A_t = r_t − V(s_t) exactly, whatever next_values and later rows hold."""
    n, t_term = 10, 4
    rewards, values, next_values, terms, ends = _gae_inputs(n, ends=[9], terms=[t_term])
    next_values[t_term] = float("nan")  # never read at a terminated row
    advantages, targets = generalized_advantage_estimate(
        rewards, values, next_values, terms, ends, gamma=0.99, lambda_=0.95
    )
    assert advantages[t_term].item() == rewards[t_term].item() - values[t_term].item()
    assert targets[t_term].item() == pytest.approx(rewards[t_term].item())
    assert torch.isfinite(advantages).all()


def test_gae_empty_batch():
    empty = torch.zeros(0)
    flags = torch.zeros(0, dtype=torch.bool)
    advantages, targets = generalized_advantage_estimate(
        empty, empty, empty, flags, flags, gamma=0.99, lambda_=0.95
    )
    assert advantages.shape == (0,) and targets.shape == (0,)


def test_gae_rejects_shape_mismatch_and_bad_hyperparameters():
    r, v, nv, term, end = _gae_inputs(5, ends=[4], terms=[])
    with pytest.raises(ValueError, match=r"\(4,\)"):
        generalized_advantage_estimate(r, v, nv[:4], term, end, gamma=0.99, lambda_=0.95)
    with pytest.raises(ValueError, match="shape"):
        generalized_advantage_estimate(
            r[None], v[None], nv[None], term[None], end[None], gamma=0.99, lambda_=0.95
        )
    for gamma in (0.0, -0.5, 1.5, math.nan):
        with pytest.raises(ValueError, match="gamma"):
            generalized_advantage_estimate(r, v, nv, term, end, gamma=gamma, lambda_=0.95)
    for lambda_ in (-0.1, 1.1):
        with pytest.raises(ValueError, match="lambda_"):
            generalized_advantage_estimate(r, v, nv, term, end, gamma=0.99, lambda_=lambda_)


# --------------------------------------------------------------------------------------------
# Masked moments
# --------------------------------------------------------------------------------------------


def _two_worker_reduce(other_stats):
    """Simulate a second learner: add its statistics to ours, as an all-reduce sum would."""
    return lambda local: local + other_stats


def test_masked_standardize_uses_only_valid_rows():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(40, generator=g, dtype=torch.float64) * 3.0 + 5.0
    mask = torch.rand(40, generator=g) < 0.6
    out = masked_standardize(x, mask)
    assert out[mask].mean().item() == pytest.approx(0.0, abs=1e-12)
    assert out[mask].std(correction=0).item() == pytest.approx(1.0, abs=1e-6)
    # Garbage (even NaN) in masked-out rows changes nothing on valid rows.
    for garbage in (1e6, float("nan")):
        x_garbage = x.clone()
        x_garbage[~mask] = garbage
        _assert_close(masked_standardize(x_garbage, mask)[mask], out[mask])
        assert masked_mean(x_garbage, mask).item() == pytest.approx(x[mask].mean().item())


def test_masked_moments_with_simulated_second_worker_equal_union_batch():
    g = torch.Generator().manual_seed(4)
    x_a, x_b = torch.randn(25, generator=g), torch.randn(17, generator=g) + 2.0
    m_a, m_b = torch.rand(25, generator=g) < 0.7, torch.rand(17, generator=g) < 0.7
    union_x, union_m = torch.cat([x_a, x_b]), torch.cat([m_a, m_b])

    # The second worker's local statistics, captured by running it with a recording reduce_fn.
    captured = {}

    def record(local):
        captured[local.numel()] = local.clone()
        return local

    masked_standardize(x_b, m_b, reduce_fn=record)
    masked_mean(x_b, m_b, reduce_fn=record)

    out_a = masked_standardize(x_a, m_a, reduce_fn=_two_worker_reduce(captured[3]))
    expected = masked_standardize(union_x, union_m)
    _assert_close(out_a, expected[:25])
    mean_a = masked_mean(x_a, m_a, reduce_fn=_two_worker_reduce(captured[2]))
    _assert_close(mean_a, masked_mean(union_x, union_m))
    _assert_close(mean_a, union_x[union_m].mean())


def test_masked_moments_reject_empty_mask_and_shape_mismatch():
    x = torch.randn(6)
    none = torch.zeros(6, dtype=torch.bool)
    with pytest.raises(ValueError, match="no True rows"):
        masked_mean(x, none)
    with pytest.raises(ValueError, match="no True rows"):
        masked_standardize(x, none)
    # An empty local shard is fine when another worker has valid rows.
    other = torch.tensor([2.0, 4.0, 1.0], dtype=torch.float64)  # [sum, sum_sq, count]
    assert masked_mean(x, none, reduce_fn=lambda s: s + other[[0, 2]]).item() == 2.0
    with pytest.raises(ValueError, match=r"\(6,\).*\(5,\)"):
        masked_standardize(x, none[:5])
    with pytest.raises(ValueError, match="reduce_fn"):
        masked_mean(x, ~none, reduce_fn=lambda s: s[:1])
