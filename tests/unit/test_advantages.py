"""rllib_hatrpo.core.advantages: GAE, masked moments, value normalisation, value loss."""

from __future__ import annotations

import math

import pytest
import torch

from rllib_hatrpo.core.advantages import (
    clipped_value_loss,
    denormalize,
    generalized_advantage_estimate,
    huber_loss,
    masked_mean,
    masked_standardize,
    normalize,
    update_running_moments,
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


# --------------------------------------------------------------------------------------------
# Value normalisation
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Value loss
# --------------------------------------------------------------------------------------------


def test_huber_loss_closed_form_both_sides_of_delta():
    delta = 2.0
    error = torch.tensor([-5.0, -2.0, -0.5, 0.0, 1.5, 2.0, 3.0])
    expected = torch.tensor([2.0 * (5.0 - 1.0), 2.0, 0.125, 0.0, 1.125, 2.0, 2.0 * (3.0 - 1.0)])
    _assert_close(huber_loss(error, delta), expected)
    with pytest.raises(ValueError, match="delta"):
        huber_loss(error, 0.0)


def test_clipped_value_loss_hand_computed():
    """Worked numbers, c = 0.2, squared error (huber_delta None).

    Row 0: V_old 0, V 1, target 2: v_clip 0.2; unclipped 0.5·1² = 0.5, clipped 0.5·1.8² = 1.62
        → the max is the clipped one (clipping active): 1.62, no gradient to V.
    Row 1: V_old 0, V 0.1, target 1: inside the clip range, v_clip = V: 0.5·0.9² = 0.405.
    Row 2: V_old 0, V −1, target −2: v_clip −0.2; unclipped 0.5, clipped 1.62 → 1.62.
    Row 3: masked out (NaN target): ignored.
    """
    values = torch.tensor([1.0, 0.1, -1.0, 7.0], requires_grad=True)
    old = torch.tensor([0.0, 0.0, 0.0, 0.0])
    targets = torch.tensor([2.0, 1.0, -2.0, float("nan")])
    mask = torch.tensor([True, True, True, False])
    loss = clipped_value_loss(values, old, targets, mask, clip_param=0.2, huber_delta=None)
    assert loss.shape == ()
    assert loss.item() == pytest.approx((1.62 + 0.405 + 1.62) / 3)
    loss.backward()
    _assert_close(values.grad, torch.tensor([0.0, -0.9 / 3, 0.0, 0.0]))

    # No clipping: only the unclipped term, 0.5·(1 + 0.81 + 1)/3.
    no_clip = clipped_value_loss(values, old, targets, mask, clip_param=None, huber_delta=None)
    assert no_clip.item() == pytest.approx(0.5 * (1.0 + 0.81 + 1.0) / 3)

    # Huber δ = 1 on row 0: clipped error 1.8 > δ → 1·(1.8 − 0.5) = 1.3 (unclipped: 0.5).
    huber = clipped_value_loss(values[:1], old[:1], targets[:1], mask[:1], 0.2, huber_delta=1.0)
    assert huber.item() == pytest.approx(1.3)


def test_clipped_value_loss_respects_mask_and_validates():
    g = torch.Generator().manual_seed(6)
    values, old, targets = (torch.randn(12, generator=g) for _ in range(3))
    mask = torch.rand(12, generator=g) < 0.5
    mask[0] = True
    full = clipped_value_loss(values, old, targets, mask)
    sub = clipped_value_loss(values[mask], old[mask], targets[mask], torch.ones(int(mask.sum())))
    _assert_close(full, sub)
    assert clipped_value_loss(values, old, targets, torch.zeros(12, dtype=torch.bool)).item() == 0
    with pytest.raises(ValueError, match=r"\(12,\).*\(11,\)"):
        clipped_value_loss(values, old, targets[:11], mask)
    with pytest.raises(ValueError, match="clip_param"):
        clipped_value_loss(values, old, targets, mask, clip_param=-0.1)
