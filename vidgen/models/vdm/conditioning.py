"""Conditional sampling from an unconditional video model (Ho et al. 2022, §3.1): denoisers that wrap a model's
x̂(z, λ) so that any sampler of vidgen.models.vdm.sampler draws videos consistent with given data.

Both uses from the paper, on one idea: the known data x^a is an observation A(x) of the video x being sampled.
- Extension in time: x^a are the first frames of the window (A selects them); the model generates the rest.
- Super-resolution: x^a is a low-resolution video (A is a differentiable bilinear downsample).

Two methods:
- Replacement: the known frames' latents z^a are replaced with fresh draws of q(z_t^a | x^a) = N(α_t x^a, σ_t² I)
  before every model call, so the model sees the truth there and generates z^b alongside it.
- Reconstruction guidance (paper eq. 7), on top of replacement for extension:
      x̃^b = x̂^b − (w_r α_t / 2) ∇_{z^b} ‖x^a − A(x̂(z_t))‖²
  nudges the generated part until the model's own reconstruction of the known data agrees with it. The
  replacement method alone conditions z^b only through what the model infers from a noisy z^a, which the
  paper shows leaves extended windows inconsistent with their context (64-frame FVD 451.5 vs 136.2).
For super-resolution there is nothing to replace (every pixel is generated), so only guidance applies.

The gradient is summed over each video's own pixels; videos in a batch do not interact, so a video does not
depend on its batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from vidgen.models.vdm.config import CondMethod
from vidgen.models.vdm.diffusion import alpha_sigma, broadcast_to
from vidgen.models.vdm.sampler import DenoiseFn, per_video_noise


def extension_denoiser(denoise_fn: DenoiseFn, known: torch.Tensor, method: CondMethod, weight: float,
                       generators: Sequence[torch.Generator], frame_correlation: float = 0.0) -> DenoiseFn:
    """x̂ for windows (B, C, K + N, H, W) whose first K frames are `known` (B, C, K, H, W): the known frames
    come back exactly as given, the other N are generated consistently with them.

    weight: w_r of reconstruction guidance (unused by the replacement method).
    frame_correlation: the model's noise correlation between frames; the known frames' fresh draws have it
    among themselves (not with the generated frames' noise, which the sampler owns)."""
    k = known.shape[2]

    def denoise(z: torch.Tensor, logsnr: torch.Tensor) -> torch.Tensor:
        alpha, sigma = (broadcast_to(c, z) for c in alpha_sigma(logsnr))  # (B, 1, 1, 1, 1)
        # 1. Replacement: z^a <- a fresh draw of q(z_t^a | x^a), each video from its own generator.
        z_known = alpha * known + sigma * per_video_noise(generators, known.shape[1:], z.device, z.dtype,
                                                          frame_correlation)
        z_free = z[:, :, k:]
        if method == "replacement":
            x_hat = denoise_fn(torch.cat([z_known, z_free], dim=2), logsnr)
        else:
            # 2. Reconstruction guidance: the gradient of the known frames' reconstruction error w.r.t. z^b.
            x_hat, grad = _with_gradient(denoise_fn, z_free, logsnr,
                                         lambda zb: torch.cat([z_known, zb], dim=2),
                                         lambda x: (known - x[:, :, :k]).square().sum())
            x_hat = x_hat.clone()
            x_hat[:, :, k:] -= 0.5 * weight * alpha * grad
        # 3. The known frames are known.
        return torch.cat([known, x_hat[:, :, k:]], dim=2)

    return denoise


def upsampling_denoiser(denoise_fn: DenoiseFn, low_res: torch.Tensor, weight: float) -> DenoiseFn:
    """x̂ for videos (B, C, T, H, W) whose bilinear downsample to low_res's size (B, C, T, h, w) should be
    `low_res`: reconstruction guidance through a differentiable downsample of the model's prediction."""
    size = tuple(low_res.shape[-2:])

    def denoise(z: torch.Tensor, logsnr: torch.Tensor) -> torch.Tensor:
        alpha = broadcast_to(alpha_sigma(logsnr)[0], z)
        x_hat, grad = _with_gradient(denoise_fn, z, logsnr, lambda zz: zz,
                                     lambda x: (low_res - downsample(x, size)).square().sum())
        return x_hat - 0.5 * weight * alpha * grad

    return denoise


def downsample(video: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, C, T, H, W) -> (B, C, T, h, w): antialiased bilinear per frame, differentiable (the observation
    model of super-resolution; also how a high-resolution clip is reduced to make its low-resolution input)."""
    B, C, T, H, W = video.shape
    frames = video.transpose(1, 2).reshape(B * T, C, H, W)
    small = F.interpolate(frames, size=size, mode="bilinear", antialias=True, align_corners=False)
    return small.view(B, T, C, *size).transpose(1, 2)


def _with_gradient(denoise_fn: DenoiseFn, variable: torch.Tensor, logsnr: torch.Tensor,
                   to_input: Callable[[torch.Tensor], torch.Tensor],
                   error: Callable[[torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """x̂(to_input(variable)) and ∇_variable error(x̂), with gradients on even inside the samplers' no_grad or a
    caller's inference_mode (metrics sample under it: its tensors are cloned into ordinary ones)."""
    with torch.inference_mode(False), torch.enable_grad():
        variable = variable.clone().requires_grad_(True)
        x_hat = denoise_fn(to_input(variable), logsnr)
        (grad,) = torch.autograd.grad(error(x_hat), variable)
    return x_hat.detach(), grad
