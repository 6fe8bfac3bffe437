"""Ancestral sampling for continuous-time diffusion in log-SNR form (Ho et al. 2022, "Video Diffusion Models",
§2, after Kingma et al. 2021 and Nichol & Dhariwal 2021)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from vidgen.models.vdm.diffusion import alpha_sigma


def per_video_noise(generators: Sequence[torch.Generator], shape: Sequence[int], device: torch.device,
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard normal noise (len(generators), *shape), video i drawn from generators[i] alone, so a video
    does not depend on which other videos share its batch."""
    return torch.stack([torch.randn(tuple(shape), generator=g, device=device, dtype=dtype) for g in generators])


@torch.no_grad()
def ancestral_sample(denoise_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], noise: torch.Tensor,
                     logsnrs: torch.Tensor, generators: Sequence[torch.Generator], *, gamma: float) -> torch.Tensor:
    """Draw x from the model by walking z from λ = logsnrs[0] (noisy) to logsnrs[-1] (clean), one step per gap.

    denoise_fn(z (B, ...), λ (B,)) -> x̂(z), the model's estimate of the clean data.
    noise: the starting latent (B, ...), standard normal (z at the lowest log-SNR is almost pure noise).
    logsnrs: increasing log-SNRs (steps + 1,), e.g. the schedule at t = 1, 1 − 1/steps, ..., 0.
    generators: one per video, the source of the noise each step adds.
    gamma: variance interpolation (see `ancestral_step`).
    Returns the clean videos (B, ...), in [-1, 1].
    """
    if len(generators) != noise.shape[0]:
        raise ValueError(f"need one generator per video: {len(generators)} for a batch of {noise.shape[0]}")
    if len(logsnrs) < 2:
        raise ValueError(f"need at least two log-SNRs (one step), got {len(logsnrs)}")
    batch = noise.shape[0]

    def predict_clean(z: torch.Tensor, logsnr: torch.Tensor) -> torch.Tensor:
        # x̂, clipped to the data range [-1, 1] (DDPM's clipped prediction).
        return denoise_fn(z, logsnr.expand(batch)).clamp(-1.0, 1.0)

    z = noise
    for logsnr_t, logsnr_s in zip(logsnrs[:-2], logsnrs[1:-1]):
        z = ancestral_step(z, predict_clean(z, logsnr_t), logsnr_t, logsnr_s, gamma, generators)
    # The last step, to logsnrs[-1], goes to the data itself: output x̂, the posterior mean's limit as σ_s -> 0.
    return predict_clean(z, logsnrs[-2])


def ancestral_step(z: torch.Tensor, x_hat: torch.Tensor, logsnr_t: torch.Tensor, logsnr_s: torch.Tensor,
                   gamma: float, generators: Sequence[torch.Generator]) -> torch.Tensor:
    """z_s ~ N(μ̃_{s|t}(z_t, x̂), (σ̃²_{s|t})^(1−γ) (σ²_{t|s})^γ) for λ_s > λ_t (Ho et al. 2022, §2)."""
    alpha_t, sigma_t = alpha_sigma(logsnr_t)
    alpha_s, sigma_s = alpha_sigma(logsnr_s)
    snr_ratio = torch.exp(logsnr_t - logsnr_s)  # SNR(t) / SNR(s) ∈ (0, 1)
    one_minus_ratio = -torch.expm1(logsnr_t - logsnr_s)  # 1 − e^(λt−λs) without cancellation

    # 1. Posterior mean of q(z_s | z_t, x = x̂):  μ̃ = e^(λt−λs) (α_s/α_t) z_t + (1 − e^(λt−λs)) α_s x̂.
    mean = snr_ratio * (alpha_s / alpha_t) * z + one_minus_ratio * alpha_s * x_hat

    # 2. Variance, interpolated in log space between the posterior variance σ̃²_{s|t} = (1 − e^(λt−λs)) σ_s²
    #    (γ = 0, the least noise) and the forward-step variance σ²_{t|s} = (1 − e^(λt−λs)) σ_t² (γ = 1)
    #    (Nichol & Dhariwal 2021, eq. 15).
    variance = one_minus_ratio * sigma_s ** (2 * (1 - gamma)) * sigma_t ** (2 * gamma)

    # 3. Sample z_s, each video with its own generator.
    return mean + variance.sqrt() * per_video_noise(generators, z.shape[1:], z.device, z.dtype)
