"""Samplers for continuous-time diffusion in log-SNR form, as plain functions with one contract.

    sampler(denoise_fn, noise, logsnrs, generators, **method_options) -> videos

denoise_fn(z (B, ...), λ (B,)) -> x̂(z), the model's estimate of the clean data.
noise: the starting latent (B, ...), standard normal (z at the lowest log-SNR is almost pure noise).
logsnrs: increasing log-SNRs (steps + 1,), noisy to clean, e.g. the schedule at t = 1, 1 − 1/steps, ..., 0.
    The last one stands for the data itself: every sampler's last step returns x̂ at logsnrs[-2], the limit of
    its update as σ -> 0 (EDM Algorithm 1 likewise ends with an Euler step to σ = 0).
generators: one per video, the only source of randomness, so a video does not depend on its batch.
frame_correlation (keyword, every sampler): the correlation between frames of every fresh noise draw, which
    must be the one the model was trained with (vidgen.models.vdm.noise explains why the samplers' formulas
    stay exact); 0: independent noise. The starting noise is the caller's: draw it with the same correlation.

x̂ is clipped to the data range [-1, 1] in every sampler (DDPM's clipped prediction), so all four see the same
denoiser. Notation of Kingma et al. 2021 and Ho et al. 2022 (§2): z_t = α_t x + σ_t ε, α² + σ² = 1,
λ = log(α²/σ²). The samplers:

- `ancestral_sample`: ancestral sampling with the variance interpolation γ (Ho et al. 2022, §2).
- `pc_sample`: the same predictor plus Langevin corrector steps of size δ (Ho et al. 2022, §2; Song et al. 2021).
- `ddim_sample`: DDIM, deterministic at η = 0 (Song, Meng & Ermon 2021, eq. 12).
- `heun_sample`: Heun's second-order solver of the probability-flow ODE (Karras et al. 2022, "EDM", Algorithm 1).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from vidgen.models.vdm.config import SamplerName
from vidgen.models.vdm.diffusion import alpha_sigma
from vidgen.models.vdm.noise import frame_correlated_noise

DenoiseFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""denoise_fn(z (B, ...), λ (B,)) -> x̂ (B, ...)."""
HEUN_SIGMA_MAX = 80.0
"""The highest noise level the Heun sampler starts from (EDM's σ_max; σ = e^(−λ/2), so λ ≥ −8.76)."""


def per_video_noise(generators: Sequence[torch.Generator], shape: Sequence[int], device: torch.device,
                    dtype: torch.dtype = torch.float32, frame_correlation: float = 0.0) -> torch.Tensor:
    """Standard normal noise (len(generators), *shape), video i drawn from generators[i] alone, so a video
    does not depend on which other videos share its batch; with frame_correlation ρ > 0, shape is
    (C, T, H, W) and the frames of each video have noise correlation ρ."""
    return torch.stack([frame_correlated_noise(shape, g, frame_correlation, device=device, dtype=dtype)
                        for g in generators])


def _check_inputs(noise: torch.Tensor, logsnrs: torch.Tensor, generators: Sequence[torch.Generator]) -> None:
    if len(generators) != noise.shape[0]:
        raise ValueError(f"need one generator per video: {len(generators)} for a batch of {noise.shape[0]}")
    if len(logsnrs) < 2:
        raise ValueError(f"need at least two log-SNRs (one step), got {len(logsnrs)}")


def _clipped(denoise_fn: DenoiseFn, batch: int) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """x̂(z, λ) for a scalar λ, clipped to the data range [-1, 1] (DDPM's clipped prediction)."""

    def predict_clean(z: torch.Tensor, logsnr: torch.Tensor) -> torch.Tensor:
        return denoise_fn(z, logsnr.expand(batch)).clamp(-1.0, 1.0)

    return predict_clean


# ----------------------------------------------------------------------------------------------------------
# Ancestral sampling (Ho et al. 2022, §2)


@torch.no_grad()
def ancestral_sample(denoise_fn: DenoiseFn, noise: torch.Tensor, logsnrs: torch.Tensor,
                     generators: Sequence[torch.Generator], *, gamma: float,
                     frame_correlation: float = 0.0) -> torch.Tensor:
    """Draw x by walking z from λ = logsnrs[0] (noisy) to logsnrs[-1] (clean), one ancestral step per gap.

    gamma: variance interpolation (see `ancestral_step`). Returns the clean videos (B, ...), in [-1, 1]."""
    _check_inputs(noise, logsnrs, generators)
    predict_clean = _clipped(denoise_fn, noise.shape[0])
    z = noise
    for logsnr_t, logsnr_s in zip(logsnrs[:-2], logsnrs[1:-1]):
        z = ancestral_step(z, predict_clean(z, logsnr_t), logsnr_t, logsnr_s, gamma, generators, frame_correlation)
    # The last step, to logsnrs[-1], goes to the data itself: output x̂, the posterior mean's limit as σ_s -> 0.
    return predict_clean(z, logsnrs[-2])


def ancestral_step(z: torch.Tensor, x_hat: torch.Tensor, logsnr_t: torch.Tensor, logsnr_s: torch.Tensor,
                   gamma: float, generators: Sequence[torch.Generator],
                   frame_correlation: float = 0.0) -> torch.Tensor:
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
    return mean + variance.sqrt() * per_video_noise(generators, z.shape[1:], z.device, z.dtype, frame_correlation)


# ----------------------------------------------------------------------------------------------------------
# Predictor-corrector: ancestral predictor + Langevin corrector (Ho et al. 2022, §2; Song et al. 2021, Alg. 2)


@torch.no_grad()
def pc_sample(denoise_fn: DenoiseFn, noise: torch.Tensor, logsnrs: torch.Tensor,
              generators: Sequence[torch.Generator], *, gamma: float, delta: float = 0.1,
              corrector_steps: int = 1, frame_correlation: float = 0.0) -> torch.Tensor:
    """Ancestral sampling with `corrector_steps` Langevin steps after each predictor step.

    gamma: the predictor's variance interpolation (see `ancestral_step`).
    delta: the Langevin step size relative to σ_s² (the paper fixes δ = 0.1).
    Each predictor step costs one evaluation of denoise_fn, each corrector step one more."""
    _check_inputs(noise, logsnrs, generators)
    if delta <= 0 or corrector_steps < 0:
        raise ValueError(f"need delta > 0 and corrector_steps >= 0, got {delta} and {corrector_steps}")
    predict_clean = _clipped(denoise_fn, noise.shape[0])
    z = noise
    for logsnr_t, logsnr_s in zip(logsnrs[:-2], logsnrs[1:-1]):
        # 1. Predictor: one ancestral step z_t -> z_s.
        z = ancestral_step(z, predict_clean(z, logsnr_t), logsnr_t, logsnr_s, gamma, generators, frame_correlation)
        alpha_s, sigma_s = alpha_sigma(logsnr_s)
        for _ in range(corrector_steps):
            # 2. The model's noise estimate at z_s: ε̂ = (z_s − α_s x̂(z_s)) / σ_s, so the score is −ε̂ / σ_s.
            eps_hat = (z - alpha_s * predict_clean(z, logsnr_s)) / sigma_s
            # 3. Langevin step with step size δ σ_s² (Ho et al. 2022, §2):
            #    z_s <- z_s − ½ δ σ_s ε̂ + √δ σ_s ε',  ε' from each video's generator. With correlated noise
            #    (covariance Σ) this is Langevin preconditioned by Σ, whose stationary law is the same.
            fresh = per_video_noise(generators, z.shape[1:], z.device, z.dtype, frame_correlation)
            z = z - 0.5 * delta * sigma_s * eps_hat + math.sqrt(delta) * sigma_s * fresh
    # The last step goes to the data itself, as in `ancestral_sample`.
    return predict_clean(z, logsnrs[-2])


# ----------------------------------------------------------------------------------------------------------
# DDIM (Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models")


@torch.no_grad()
def ddim_sample(denoise_fn: DenoiseFn, noise: torch.Tensor, logsnrs: torch.Tensor,
                generators: Sequence[torch.Generator], *, eta: float = 0.0,
                frame_correlation: float = 0.0) -> torch.Tensor:
    """DDIM: deterministic for eta = 0 (the default); eta = 1 has the ancestral sampler's posterior variance.

    In the paper's notation ᾱ = α², 1 − ᾱ = σ²; every step costs one evaluation of denoise_fn."""
    _check_inputs(noise, logsnrs, generators)
    if eta < 0:
        raise ValueError(f"need eta >= 0, got {eta}")
    predict_clean = _clipped(denoise_fn, noise.shape[0])
    z = noise
    for logsnr_t, logsnr_s in zip(logsnrs[:-2], logsnrs[1:-1]):
        alpha_t, sigma_t = alpha_sigma(logsnr_t)
        alpha_s, sigma_s = alpha_sigma(logsnr_s)
        # 1. "Predicted x_0" and the noise it implies (eq. 9 solved for ε): ε̂ = (z_t − α_t x̂) / σ_t.
        x_hat = predict_clean(z, logsnr_t)
        eps_hat = (z - alpha_t * x_hat) / sigma_t
        # 2. The fresh-noise standard deviation σ_t(η) (eq. 16) = η × the posterior standard deviation
        #    σ̃_{s|t} = sqrt((1 − e^(λt−λs)) σ_s²).
        c = eta * (-torch.expm1(logsnr_t - logsnr_s)).sqrt() * sigma_s
        # 3. z_s = α_s x̂ + sqrt(σ_s² − c²) ε̂ + c ε'  (eq. 12), ε' only drawn when η > 0.
        z = alpha_s * x_hat + (sigma_s**2 - c**2).sqrt() * eps_hat
        if eta > 0:
            z = z + c * per_video_noise(generators, z.shape[1:], z.device, z.dtype, frame_correlation)
    # The last step goes to the data itself: σ_s = 0 and α_s = 1 in eq. 12 leave x̂.
    return predict_clean(z, logsnrs[-2])


# ----------------------------------------------------------------------------------------------------------
# Heun's second-order ODE solver (Karras et al. 2022, "Elucidating the Design Space...", Algorithm 1)


@torch.no_grad()
def heun_sample(denoise_fn: DenoiseFn, noise: torch.Tensor, logsnrs: torch.Tensor,
                generators: Sequence[torch.Generator], *, frame_correlation: float = 0.0) -> torch.Tensor:
    """EDM's deterministic sampler (Algorithm 1, S_churn = 0) on the log-SNR steps.

    EDM works with the variance-exploding variable x_σ = x + σ ε; ours is z = α (x + σ ε) with σ = e^(−λ/2)
    (σ² = 1/SNR), so x_σ = z / α and the denoiser is D(x; σ) = x̂(z = α x, λ). The probability-flow ODE is
    dx/dσ = (x − D(x; σ)) / σ (EDM eq. 3 with σ(t) = t, s(t) = 1). Heun steps everywhere except the last,
    an Euler step to σ = 0. 2·steps − 1 evaluations of denoise_fn. `generators` and `frame_correlation` are
    unused: no noise is drawn after the start."""
    del frame_correlation
    _check_inputs(noise, logsnrs, generators)
    predict_clean = _clipped(denoise_fn, noise.shape[0])
    # EDM starts at σ_max = 80: from the schedule's σ_0 = e^10 (λ = −20) the first step would jump by a factor
    # of ~2000 in σ, where Heun's correction term, (σ_1 − σ_0)/2 · (D_0 − D_1)/σ_1, amplifies any disagreement
    # between the two denoiser calls a thousandfold. The starting latent is pure noise at either level (α < 0.013).
    logsnrs = logsnrs.clamp(min=-2.0 * math.log(HEUN_SIGMA_MAX))
    alphas, _ = alpha_sigma(logsnrs)
    sigmas = torch.exp(-0.5 * logsnrs)  # σ_i = e^(−λ_i/2), decreasing; σ_N, for the data, is taken as 0
    last = len(logsnrs) - 2  # index of the last σ > 0

    def denoiser(x: torch.Tensor, i: int) -> torch.Tensor:
        # D(x; σ_i) = x̂(α_i x, λ_i).
        return predict_clean(alphas[i] * x, logsnrs[i])

    # 1. x_0 = z / α_0: the starting latent in the variance-exploding variable (EDM: x_0 ~ N(0, σ_0² I)).
    x = noise / alphas[0]
    for i in range(last):
        # 2. Evaluate dx/dσ at σ_i:  d_i = (x_i − D(x_i; σ_i)) / σ_i.
        d = (x - denoiser(x, i)) / sigmas[i]
        # 3. Euler step from σ_i to σ_{i+1}.
        x_next = x + (sigmas[i + 1] - sigmas[i]) * d
        # 4. Heun's second-order correction (σ_{i+1} ≠ 0 here): average the slopes at both ends.
        d_next = (x_next - denoiser(x_next, i + 1)) / sigmas[i + 1]
        x = x + (sigmas[i + 1] - sigmas[i]) * (0.5 * d + 0.5 * d_next)
    # 5. The last step, an Euler step to σ_N = 0: x_N = x + (0 − σ) (x − D(x; σ)) / σ = D(x; σ), written exactly
    #    (so it stays in the data range). At σ = 0, α = 1 and x is the data.
    return denoiser(x, last)


# ----------------------------------------------------------------------------------------------------------
# Registry


Sampler = Callable[..., torch.Tensor]

SAMPLERS: dict[SamplerName, Sampler] = {
    "ancestral": ancestral_sample,
    "pc": pc_sample,
    "ddim": ddim_sample,
    "heun": heun_sample,
}
"""Sampler name (sample.sampler, the CLI's --sampler, checked by its Literal type) -> function with the contract
in the module docstring."""
