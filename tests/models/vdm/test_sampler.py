from __future__ import annotations

import pytest
import torch

from vidgen.models.vdm import diffusion
from vidgen.models.vdm.sampler import ancestral_sample, per_video_noise


def schedule(steps: int) -> torch.Tensor:
    return diffusion.logsnr_schedule_cosine(torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64), -20.0, 20.0)


def generators(seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


def start_noise(seeds, shape):
    return per_video_noise(generators(seeds), shape, torch.device("cpu"), torch.float64)


def sample(denoise, noise, logsnrs, seeds):
    return ancestral_sample(denoise, noise, logsnrs, generators(seeds), gamma=0.3)


def test_reaches_the_single_data_point():
    # Data = one video x0: the optimal v-network is known in closed form, and x̂ from it is x0 at every step.
    x0 = torch.rand(3, 4, 8, 8, dtype=torch.float64) * 1.8 - 0.9

    def denoise(z, logsnr):
        alpha, sigma = (diffusion.broadcast_to(c, z) for c in diffusion.alpha_sigma(logsnr))
        v = diffusion.v_from_x_eps(x0, diffusion.eps_from_z_x(z, x0, alpha, sigma), alpha, sigma)
        return diffusion.x_from_z_v(z, v, alpha, sigma)

    seeds = [0, 1]
    out = sample(denoise, start_noise(seeds, x0.shape), schedule(16), seeds)
    torch.testing.assert_close(out, x0.expand_as(out), rtol=0, atol=1e-6)


def gaussian_denoiser(mean: float, std: float):
    """E[x | z_t] for x ~ N(mean, std²) per pixel: mean + α std² (z − α mean) / (α² std² + σ²)."""

    def denoise(z, logsnr):
        alpha, sigma = (diffusion.broadcast_to(c, z) for c in diffusion.alpha_sigma(logsnr))
        return mean + alpha * std**2 * (z - alpha * mean) / (alpha**2 * std**2 + sigma**2)

    return denoise


def test_samples_a_gaussian_with_the_right_moments():
    # With the exact denoiser the sampler is exact as steps -> infinity; few steps lose some variance.
    mean, std = 0.1, 0.2
    seeds = range(4)
    out = sample(gaussian_denoiser(mean, std), start_noise(seeds, (1, 16, 32, 32)), schedule(256), seeds)
    assert abs(out.mean().item() - mean) < 0.005
    assert abs(out.std().item() / std - 1) < 0.03


def test_a_video_does_not_depend_on_its_batch():
    seeds = [7, 8, 9]
    denoise = gaussian_denoiser(0.0, 0.5)
    together = sample(denoise, start_noise(seeds, (3, 2, 4, 4)), schedule(8), seeds)
    alone = sample(denoise, start_noise([8], (3, 2, 4, 4)), schedule(8), [8])
    torch.testing.assert_close(together[1:2], alone, rtol=0, atol=1e-12)


def test_needs_one_generator_per_video():
    with pytest.raises(ValueError, match="one generator per video"):
        sample(gaussian_denoiser(0.0, 1.0), torch.zeros(2, 1), schedule(4), [0])
