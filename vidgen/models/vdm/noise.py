"""The diffusion noise prior: frame-correlated Gaussian noise (PYoCo's "mixed" prior, Ge et al. 2023, §3.2).

Each video's noise is ε = √ρ ξ_shared + √(1 − ρ) ξ_frame: one standard normal image ξ_shared (C, 1, H, W)
common to all frames of the clip plus an independent one per frame, so every ε is still N(0, 1) per value
but two frames' noise has correlation ρ. ρ = 0 is the paper's independent noise.

Why: a denoiser that has not yet learned to pool its frames decides each frame's scene from that frame's
own noise at the high noise levels, so frames with independent noise settle on unrelated scenes (flicker).
With shared noise they start from nearly the same latent and settle alike; motion is what the model adds.

Why every sampler stays exact: if all noise, the forward process's and each sampler's fresh draws, has one
covariance Σ, the process is the standard one in the whitened coordinates Σ^(−1/2) z, and every update the
samplers make is linear with scalar coefficients, which commute with Σ^(1/2). So a sampler only has to draw
its noise from the same prior; its formulas do not change.

Joint image-video training appends independent image frames after the clip: only the first `clip_frames`
frames share noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def frame_correlated_noise(shape: Sequence[int], generator: torch.Generator, correlation: float,
                           clip_frames: int | None = None, device: torch.device | None = None,
                           dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Noise shaped (..., C, T, H, W) whose first `clip_frames` frames (None: all) have pairwise correlation
    `correlation`; the others, and all values at correlation 0, are independent. Drawn from `generator` alone."""
    shape = tuple(shape)
    noise = torch.randn(shape, generator=generator, device=device, dtype=dtype)
    if correlation == 0.0:
        return noise
    clip = shape[-3] if clip_frames is None else clip_frames
    shared = torch.randn((*shape[:-3], 1, *shape[-2:]), generator=generator, device=device, dtype=dtype)
    mixed = math.sqrt(correlation) * shared + math.sqrt(1.0 - correlation) * noise[..., :clip, :, :]
    if clip == shape[-3]:  # no image frames: skip copying the whole draw once more
        return mixed
    return torch.cat([mixed, noise[..., clip:, :, :]], dim=-3)
