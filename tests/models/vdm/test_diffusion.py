from __future__ import annotations

import math

import pytest
import torch

from vidgen.models.vdm import diffusion


def cosine_logsnr_closed_form(t: float, logsnr_min: float, logsnr_max: float) -> float:
    """λ(t) = −2 log tan(π u / 2), u = u_min + t (u_max − u_min), u from inverting λ at the clip values."""
    u_min = 2 / math.pi * math.atan(math.exp(-logsnr_max / 2))
    u_max = 2 / math.pi * math.atan(math.exp(-logsnr_min / 2))
    return -2 * math.log(math.tan(math.pi / 2 * (u_min + t * (u_max - u_min))))


@pytest.mark.parametrize("logsnr_min, logsnr_max", [(-20.0, 20.0), (-10.0, 5.0)])
def test_cosine_schedule_matches_closed_form_in_float64(logsnr_min, logsnr_max):
    t = torch.linspace(0.0, 1.0, 101, dtype=torch.float64)
    got = diffusion.logsnr_schedule_cosine(t, logsnr_min, logsnr_max)
    expected = torch.tensor([cosine_logsnr_closed_form(float(ti), logsnr_min, logsnr_max) for ti in t],
                            dtype=torch.float64)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    # The ends are the clip values (tan near π/2 magnifies float64 rounding to ~1e-12).
    assert abs(got[0].item() - logsnr_max) < 1e-10 and abs(got[-1].item() - logsnr_min) < 1e-10
    assert (got[1:] < got[:-1]).all()  # strictly decreasing: noisier with t


def test_cosine_schedule_is_the_unshifted_cosine_away_from_the_ends():
    t = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    unshifted = -2 * torch.log(torch.tan(math.pi * t / 2))
    torch.testing.assert_close(diffusion.logsnr_schedule_cosine(t, -20.0, 20.0), unshifted, rtol=1e-4, atol=1e-3)


def test_alpha_sigma_are_variance_preserving_and_give_back_logsnr():
    logsnr = torch.linspace(-20, 20, 81, dtype=torch.float64)
    alpha, sigma = diffusion.alpha_sigma(logsnr)
    torch.testing.assert_close(alpha**2 + sigma**2, torch.ones_like(logsnr), rtol=0, atol=1e-15)
    torch.testing.assert_close(torch.log(alpha**2 / sigma**2), logsnr, rtol=0, atol=1e-9)


def random_triplet(logsnr_range: float) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 2, 4, 4, generator=generator, dtype=torch.float64) * 2 - 1
    eps = torch.randn(x.shape, generator=generator, dtype=torch.float64)
    logsnr = torch.linspace(-logsnr_range, logsnr_range, 6, dtype=torch.float64)
    alpha, sigma = (diffusion.broadcast_to(c, x) for c in diffusion.alpha_sigma(logsnr))
    return x, eps, alpha, sigma


def test_v_conversions_round_trip_in_float64():
    x, eps, alpha, sigma = random_triplet(logsnr_range=20.0)
    z = diffusion.diffuse(x, eps, alpha, sigma)
    v = diffusion.v_from_x_eps(x, eps, alpha, sigma)
    torch.testing.assert_close(diffusion.x_from_z_v(z, v, alpha, sigma), x, rtol=0, atol=1e-12)
    torch.testing.assert_close(diffusion.eps_from_z_v(z, v, alpha, sigma), eps, rtol=0, atol=1e-12)


def test_eps_conversions_round_trip_in_float64():
    # Dividing by α (or σ) amplifies rounding by up to e^(|λ|/2), so stay within |λ| <= 10 for 1e-12.
    x, eps, alpha, sigma = random_triplet(logsnr_range=10.0)
    z = diffusion.diffuse(x, eps, alpha, sigma)
    torch.testing.assert_close(diffusion.x_from_z_eps(z, eps, alpha, sigma), x, rtol=0, atol=1e-12)
    torch.testing.assert_close(diffusion.eps_from_z_x(z, x, alpha, sigma), eps, rtol=0, atol=1e-12)


@pytest.mark.parametrize("prediction", ["v", "eps"])
def test_loss_is_zero_for_the_exact_denoiser_of_a_single_video(prediction):
    # For data = one video x0 the target is a known function of (z_t, λ): a perfect network scores 0.
    x0 = torch.rand(1, 3, 2, 4, 4, dtype=torch.float64) * 2 - 1

    def exact_network(z, logsnr):
        alpha, sigma = (diffusion.broadcast_to(c, z) for c in diffusion.alpha_sigma(logsnr))
        eps = diffusion.eps_from_z_x(z, x0, alpha, sigma)
        return diffusion.v_from_x_eps(x0, eps, alpha, sigma) if prediction == "v" else eps

    generator = torch.Generator().manual_seed(0)
    loss = diffusion.diffusion_loss(exact_network, x0.expand(8, -1, -1, -1, -1), generator,
                                    prediction=prediction, logsnr_min=-20.0, logsnr_max=20.0)
    assert loss.item() < 1e-12


def test_loss_noise_comes_from_the_generator():
    x = torch.zeros(4, 3, 2, 4, 4)
    network = lambda z, logsnr: z  # noqa: E731 - any function of its inputs
    losses = [diffusion.diffusion_loss(network, x, torch.Generator().manual_seed(seed), prediction="v",
                                       logsnr_min=-20.0, logsnr_max=20.0).item() for seed in (1, 1, 2)]
    assert losses[0] == losses[1] != losses[2]


@pytest.mark.parametrize("prediction", ["v", "eps"])
def test_min_snr_loss_weights_the_data_error_by_min_snr_gamma(prediction):
    # Whatever the network predicts, its x̂ error enters with weight min(SNR, γ), for either target: recompute the
    # draws, turn the output into x̂ and weight ‖x − x̂‖² in float64, independently of the loss's own algebra.
    x = torch.rand(64, 3, 2, 4, 4, dtype=torch.float64) * 2 - 1
    network = lambda z, logsnr: 0.3 * z + 0.1  # noqa: E731 - an arbitrary imperfect prediction
    loss = diffusion.diffusion_loss(network, x, torch.Generator().manual_seed(0), prediction=prediction,
                                    logsnr_min=-10.0, logsnr_max=10.0, min_snr_gamma=5.0)

    generator = torch.Generator().manual_seed(0)
    t = torch.rand(64, generator=generator).double()  # drawn in float32, as the loss draws it
    eps = torch.randn(x.shape, generator=generator, dtype=torch.float64)
    expected = 0.0
    for i in range(64):
        logsnr = cosine_logsnr_closed_form(t[i].item(), -10.0, 10.0)
        alpha, sigma = math.sqrt(1 / (1 + math.exp(-logsnr))), math.sqrt(1 / (1 + math.exp(logsnr)))
        z = alpha * x[i] + sigma * eps[i]
        out = 0.3 * z + 0.1
        x_hat = alpha * z - sigma * out if prediction == "v" else (z - sigma * out) / alpha
        expected += min(math.exp(logsnr), 5.0) * (x[i] - x_hat).square().mean().item() / 64
    assert loss.item() == pytest.approx(expected, rel=1e-5)
