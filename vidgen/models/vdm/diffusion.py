"""Continuous-time Gaussian diffusion in log-SNR form: pure functions, no modules.

Notation of Kingma et al. 2021 ("Variational Diffusion Models") and Ho et al. 2022 ("Video Diffusion
Models", §2): data x, noise ε ~ N(0, I), time t ∈ [0, 1], latent z_t = α_t x + σ_t ε with the
variance-preserving α_t² + σ_t² = 1, and log signal-to-noise ratio λ_t = log(α_t² / σ_t²).
Coefficients (α, σ) passed to the conversions must broadcast against the tensors (see `broadcast_to`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F

from vidgen.models.vdm.noise import frame_correlated_noise

Prediction = Literal["v", "eps"]


def logsnr_schedule_cosine(t: torch.Tensor, logsnr_min: float, logsnr_max: float) -> torch.Tensor:
    """Cosine schedule λ(t) = −2 log tan(π u / 2) (Nichol & Dhariwal 2021 in log-SNR form; Ho et al. 2022 §2)
    with u an affine map of t chosen so that λ(0) = logsnr_max and λ(1) = logsnr_min exactly.

    Inverting λ = −2 log tan(π u / 2) gives u = (2/π) atan(exp(−λ/2)), hence u_min = (2/π) atan(exp(−λmax/2)),
    u_max = (2/π) atan(exp(−λmin/2)) and u = u_min + t (u_max − u_min). This "shifted" construction keeps
    the schedule smooth where plain clipping would make it flat near t = 0 and t = 1.
    """
    t_min = math.atan(math.exp(-0.5 * logsnr_max))  # = π u_min / 2
    t_max = math.atan(math.exp(-0.5 * logsnr_min))  # = π u_max / 2
    return -2.0 * torch.log(torch.tan(t_min + t * (t_max - t_min)))


def alpha_sigma(logsnr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """α = sqrt(sigmoid(λ)), σ = sqrt(sigmoid(−λ)): from λ = log(α²/σ²) and α² + σ² = 1."""
    return torch.sigmoid(logsnr).sqrt(), torch.sigmoid(-logsnr).sqrt()


def broadcast_to(coef: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-video coefficients (B,) -> (B, 1, 1, ...) to multiply a batch shaped like x."""
    return coef.view(-1, *([1] * (x.ndim - 1)))


# ----------------------------------------------------------------------------------------------------------
# Conversions between x, ε, v and z_t (Salimans & Ho 2022, "Progressive Distillation", §4 and App. D)


def diffuse(x: torch.Tensor, eps: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """z_t = α x + σ ε (the forward process q(z_t | x))."""
    return alpha * x + sigma * eps


def v_from_x_eps(x: torch.Tensor, eps: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """v = α ε − σ x."""
    return alpha * eps - sigma * x


def x_from_z_v(z: torch.Tensor, v: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """x = α z − σ v."""
    return alpha * z - sigma * v


def eps_from_z_v(z: torch.Tensor, v: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """ε = σ z + α v."""
    return sigma * z + alpha * v


def x_from_z_eps(z: torch.Tensor, eps: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """x = (z − σ ε) / α (ill-conditioned as α -> 0, one reason to prefer v-prediction)."""
    return (z - sigma * eps) / alpha


def eps_from_z_x(z: torch.Tensor, x: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """ε = (z − α x) / σ."""
    return (z - alpha * x) / sigma


def x_from_prediction(z: torch.Tensor, prediction: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor,
                      kind: Prediction) -> torch.Tensor:
    """The denoised estimate x̂ from the network's output, whichever target it was trained on."""
    if kind == "v":
        return x_from_z_v(z, prediction, alpha, sigma)
    return x_from_z_eps(z, prediction, alpha, sigma)


# ----------------------------------------------------------------------------------------------------------
# Training loss


Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""network(z_t (B, C, T, H, W), λ_t (B,)) -> prediction of v or ε, shaped like z_t."""


def diffusion_loss(network: Denoiser, x: torch.Tensor, generator: torch.Generator, *, prediction: Prediction,
                   logsnr_min: float, logsnr_max: float, min_snr_gamma: float | None = None,
                   noise_correlation: float = 0.0, clip_frames: int | None = None) -> torch.Tensor:
    """The "simple" loss of DDPM (Ho et al. 2020, eq. 14) in continuous time: t ~ U(0, 1) per video,
    ε ~ N(0, I), z_t = α_t x + σ_t ε; mean squared error between the network output and its target
    (v = α ε − σ x, or ε). All randomness is drawn from `generator`.

    noise_correlation, clip_frames: ε of the first `clip_frames` frames (None: all) of a video (B, C, T, H, W)
    has this correlation between frames (vidgen.models.vdm.noise); 0: independent noise.
    min_snr_gamma: weight each video's error so that its weight on ‖x − x̂‖² is min(SNR, γ) (Min-SNR-γ,
    Hang et al. 2023): the v loss alone weights it by SNR + 1, so nearly clean videos, whose denoising is
    easy, dominate the gradient."""
    t = torch.rand(x.shape[0], generator=generator, device=x.device)  # (B,)
    eps = frame_correlated_noise(x.shape, generator, noise_correlation, clip_frames,
                                 x.device, x.dtype)  # (B, C, T, H, W)
    logsnr = logsnr_schedule_cosine(t, logsnr_min, logsnr_max)  # (B,)
    alpha, sigma = (broadcast_to(c, x) for c in alpha_sigma(logsnr))
    z = diffuse(x, eps, alpha, sigma)
    target = v_from_x_eps(x, eps, alpha, sigma) if prediction == "v" else eps
    if min_snr_gamma is None:
        return F.mse_loss(network(z, logsnr).float(), target.float())
    error = (network(z, logsnr).float() - target.float()).square().flatten(1).mean(dim=1)  # (B,)
    snr = logsnr.float().exp()
    # ‖v − v̂‖² = (SNR + 1) ‖x − x̂‖² and ‖ε − ε̂‖² = SNR ‖x − x̂‖²: divide that factor out, weight by min(SNR, γ).
    weight = snr.clamp(max=min_snr_gamma) / (snr + 1 if prediction == "v" else snr)
    return (weight * error).mean()
