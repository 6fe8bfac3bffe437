"""The frame-correlated noise prior: its covariance, and every sampler drawing from it exactly."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from vidgen.models.vdm import diffusion
from vidgen.models.vdm.noise import frame_correlated_noise
from vidgen.models.vdm.sampler import SAMPLERS, per_video_noise

OPTIONS = {"ancestral": {"gamma": 0.3}, "pc": {"gamma": 0.3}, "ddim": {}, "heun": {}}


def frame_covariance(noise: torch.Tensor) -> torch.Tensor:
    """(..., C, T, H, W) -> (T, T): the empirical covariance between frames, in float64."""
    frames = noise.movedim(-3, 0).reshape(noise.shape[-3], -1).double()  # (T, values)
    return frames @ frames.T / frames.shape[1]


def test_noise_has_the_mixed_covariance_and_image_frames_stay_independent():
    rho, clip = 0.8, 5
    noise = frame_correlated_noise((16, 3, 7, 32, 32), torch.Generator().manual_seed(0), rho, clip_frames=clip)
    expected = torch.eye(7, dtype=torch.float64)
    expected[:clip, :clip] = (1 - rho) * torch.eye(clip) + rho  # (1 − ρ) I + ρ 11ᵀ on the clip frames
    torch.testing.assert_close(frame_covariance(noise), expected, rtol=0, atol=0.02)  # 49k values per entry


def test_no_correlation_is_the_plain_draw_bit_for_bit():
    # Runs without the option draw exactly what they drew before it existed (same losses, same samples).
    shape = (2, 3, 4, 8, 8)
    plain = torch.randn(shape, generator=torch.Generator().manual_seed(3))
    assert torch.equal(frame_correlated_noise(shape, torch.Generator().manual_seed(3), 0.0), plain)


def correlated_gaussian_denoiser(mean: float, std: float, rho: float):
    """E[x | z_t] for data x ~ N(mean, std²) independently per value, under noise of frame covariance
    Σ = (1 − ρ) I + ρ 11ᵀ: z − α·mean ~ N(0, α² std² I + σ² Σ), so per eigenvector of Σ (the frame mean,
    eigenvalue 1 − ρ + ρT; deviations from it, 1 − ρ) x̂ = mean + α std² (z − α mean) / (α² std² + σ² e)."""

    def denoise(z, logsnr):
        alpha, sigma = (diffusion.broadcast_to(c, z) for c in diffusion.alpha_sigma(logsnr))
        frames = z.shape[2]
        r = z - alpha * mean
        r_mean = r.mean(dim=2, keepdim=True)
        gain = lambda eig: alpha * std**2 / (alpha**2 * std**2 + sigma**2 * eig)  # noqa: E731
        return mean + gain(1 - rho + rho * frames) * r_mean + gain(1 - rho) * (r - r_mean)

    return denoise


@pytest.mark.parametrize("name", SAMPLERS)
def test_every_sampler_draws_independent_frames_from_correlated_noise(name):
    # The data's frames are independent N(0.1, 0.3²); the noise is 0.9-correlated across frames. A sampler
    # whose fresh draws (or starting noise) ignored the correlation would leave correlated or shrunken frames.
    mean, std, rho, steps = 0.1, 0.3, 0.9, 128 if name != "heun" else 32
    generators = [torch.Generator().manual_seed(s) for s in range(4)]
    shape = (1, 4, 64, 64)  # (C, T, H, W): 4 videos x 16384 values per frame
    noise = per_video_noise(generators, shape, torch.device("cpu"), torch.float64, frame_correlation=rho)
    logsnrs = diffusion.logsnr_schedule_cosine(torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64), -20, 20)
    out = SAMPLERS[name](correlated_gaussian_denoiser(mean, std, rho), noise, logsnrs, generators,
                         frame_correlation=rho, **OPTIONS[name])
    covariance = frame_covariance(out - mean) / std**2
    off_diagonal = covariance[~torch.eye(4, dtype=torch.bool)]
    assert off_diagonal.abs().max() < 0.05, covariance  # independent frames (sampling error ~0.01)
    assert (covariance.diagonal() - 1).abs().max() < 0.1, covariance  # the data's variance
    assert abs(out.mean().item() - mean) < 0.02


def test_the_option_reaches_training_and_sampling(tiny_recipe):
    from vidgen.models.vdm.backend import VDMBackend

    recipe = dataclasses.replace(tiny_recipe, model=dataclasses.replace(tiny_recipe.model, noise_correlation=0.9))
    backend = VDMBackend(recipe)
    unet = backend.networks["unet"]
    seen = []  # the latents the network is called on
    unet.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    video = torch.zeros(4, 3, 4, 16, 16)
    backend.loss("main", {"video": video, "label": torch.zeros(4, dtype=torch.long)}, {"unet": unet},
                 torch.Generator().manual_seed(0))
    backend.sample({"unet": unet}, [0, 1, 2, 3], 4, torch.device("cpu"), recipe.sample_options(steps=2))
    for z in (seen[0], seen[1]):  # the training latent, and the sampler's starting latent (λ = −20: noise)
        z = z - z.mean()  # training: x = 0; the frames of each latent share most of their noise
        correlation = frame_covariance(z)[0, 1] / frame_covariance(z)[0, 0]
        assert 0.8 < correlation < 1.0, correlation
