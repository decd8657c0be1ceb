"""rllib_hatrpo.core.value_loss: the Huber penalty and the clipped value loss."""

from __future__ import annotations

import pytest
import torch

from rllib_hatrpo.core.value_loss import clipped_value_loss, huber_loss


def _assert_close(actual, expected, *, atol=1e-6, rtol=1e-5):
    """Shape, dtype and value check (torch.testing.assert_close costs ~1 s on its first call)."""
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    assert torch.allclose(actual, expected, atol=atol, rtol=rtol), (actual, expected)


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
