"""The shared GAN objective (vidgen/models/gan.py) against closed forms, in float64."""

from __future__ import annotations

import math

import torch

from vidgen.models import gan


def test_losses_are_the_logistic_gan_losses():
    real, fake = torch.tensor([2.0, -1.0], dtype=torch.float64), torch.tensor([0.5, -3.0], dtype=torch.float64)
    sigmoid = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    expected_d = (-math.log(1 - sigmoid(0.5)) - math.log(1 - sigmoid(-3.0))) / 2 + \
        (-math.log(sigmoid(2.0)) - math.log(sigmoid(-1.0))) / 2
    expected_g = (-math.log(sigmoid(0.5)) - math.log(sigmoid(-3.0))) / 2
    assert math.isclose(gan.discriminator_loss(real, fake).item(), expected_d, rel_tol=1e-12)
    assert math.isclose(gan.generator_loss(fake).item(), expected_g, rel_tol=1e-12)


def test_gradient_penalty_and_its_double_backward_on_a_closed_form_discriminator():
    """D(x_1, x_2) = a·Σ x_1² + b·Σ x_2 over a batch of videos at two levels: dD/dx_1 = 2a x_1 and dD/dx_2 = b, so
    the per-frame squared norms are 4a²·Σ_{c,h,w} x_1² and b²·C·H·W, and their derivatives with respect to the
    discriminator's parameters are 8a·Σ x_1² and 2b·C·H·W (the double backward a penalty trains D with)."""
    generator = torch.Generator().manual_seed(0)
    x1 = torch.randn(2, 3, 4, 5, 5, generator=generator, dtype=torch.float64, requires_grad=True)
    x2 = torch.randn(1, 3, 2, 10, 10, generator=generator, dtype=torch.float64, requires_grad=True)
    a = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(-1.3, dtype=torch.float64, requires_grad=True)
    logits = torch.cat([a * x1.square().sum(dim=[1, 2, 3, 4]), b * x2.sum(dim=[1, 2, 3, 4])])  # [B1 + B2]
    norms1, norms2 = gan.per_frame_gradient_norms(logits, [x1, x2])
    frame_sq = x1.detach().square().sum(dim=[1, 3, 4])  # [2, 4]
    torch.testing.assert_close(norms1, 4 * 0.7**2 * frame_sq, rtol=1e-12, atol=0)
    torch.testing.assert_close(norms2, torch.full((1, 2), 1.3**2 * 3 * 10 * 10, dtype=torch.float64), rtol=1e-12,
                               atol=0)
    (norms1.sum() + norms2.sum()).backward()
    assert math.isclose(a.grad.item(), 8 * 0.7 * frame_sq.sum().item(), rel_tol=1e-12)
    assert math.isclose(b.grad.item(), 2 * -1.3 * 3 * 10 * 10 * 2, rel_tol=1e-12)


def test_low_precision_gradients_are_squared_in_float32():
    x = torch.randn(1, 1, 1, 2, 2, dtype=torch.bfloat16, requires_grad=True)
    (norms,) = gan.per_frame_gradient_norms((x * 3).sum().reshape(1), [x])
    assert norms.dtype == torch.float32 and torch.allclose(norms, torch.tensor([[36.0]]))
