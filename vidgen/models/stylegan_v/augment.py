"""Differentiable discriminator augmentation, identical for every frame of a clip, with ADA's adaptive p.

Karras et al., "Training Generative Adversarial Networks with Limited Data" (NeurIPS 2020): every augmentation is
applied to real and fake inputs of D alike, each with probability p; ADA raises p while D overfits (the sign of
its real logits is too often positive) and lowers it otherwise. StyleGAN-V draws one set of parameters per clip
and applies it to all its frames ("video-consistent" augmentation: per-frame augmentation would show D motion
that is not there). This module implements the subset x-flip, integer translation, brightness, contrast and
saturation, with ADA's distributions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

XINT_MAX = 0.125
"""Largest integer translation, as a fraction of the image size."""
BRIGHTNESS_STD = 0.2
"""Brightness offset ~ N(0, 0.2^2) (images in [-1, 1])."""
CONTRAST_STD = 0.5
"""Contrast factor ~ 2^N(0, 0.5^2)."""
SATURATION_STD = 1.0
"""Saturation factor ~ 2^N(0, 1)."""


def _per_clip(values: torch.Tensor) -> torch.Tensor:
    return values.reshape(-1, 1, 1, 1, 1)  # broadcast one value per clip over [C, T, H, W]


def _reflect(index: torch.Tensor, size: int) -> torch.Tensor:
    """Map integer positions onto [0, size) by mirror reflection without repeating the edge (as pad 'reflect')."""
    if size == 1:
        return torch.zeros_like(index)
    period = 2 * (size - 1)
    index = torch.remainder(index, period)
    return torch.where(index >= size, period - index, index)


def translate_clips(video: torch.Tensor, shift_x: torch.Tensor, shift_y: torch.Tensor) -> torch.Tensor:
    """Shift each clip by whole pixels (shift_x, shift_y [B] long), filling with the mirror image."""
    batch, channels, frames, height, width = video.shape
    rows = _reflect(torch.arange(height, device=video.device) - shift_y[:, None], height)  # [B, H]
    cols = _reflect(torch.arange(width, device=video.device) - shift_x[:, None], width)  # [B, W]
    video = video.gather(3, rows[:, None, None, :, None].expand(-1, channels, frames, -1, width))
    return video.gather(4, cols[:, None, None, None, :].expand(-1, channels, frames, height, -1))


def augment_clips(video: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Augment float clips [B, C, T, H, W] in [-1, 1]; one parameter set per clip, shared by its T frames.

    Each augmentation is applied to a clip with probability p (x-flip: p/2, as ADA's random flip). The draws do
    not depend on p, so a run's random stream does not change as ADA moves p. Differentiable in `video`.
    """
    if p <= 0:
        return video
    batch = video.shape[0]
    dev = video.device

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator, device=dev)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, device=dev)

    def gate(values: torch.Tensor, neutral: float) -> torch.Tensor:  # keep a value with probability p
        return torch.where(rand(batch) < p, values, torch.full_like(values, neutral))

    # --- Geometric: x-flip, integer translation (reflect padding) ---
    flip = gate(torch.floor(rand(batch) * 2), 0.0) > 0
    video = torch.where(_per_clip(flip), video.flip(-1), video)
    shift = gate((rand(batch, 2) * 2 - 1).mul(XINT_MAX).transpose(0, 1), 0.0)  # [2, B] (x, y) fractions
    shift_x = torch.round(shift[0] * video.shape[4]).long()
    shift_y = torch.round(shift[1] * video.shape[3]).long()
    video = translate_clips(video, shift_x, shift_y)

    # --- Colour: brightness (add), contrast (scale), saturation (scale around the grey axis) ---
    brightness = gate(randn(batch) * BRIGHTNESS_STD, 0.0)
    contrast = gate(torch.exp2(randn(batch) * CONTRAST_STD), 1.0)
    saturation = gate(torch.exp2(randn(batch) * SATURATION_STD), 1.0)
    video = (video + _per_clip(brightness)) * _per_clip(contrast)
    grey = video.mean(dim=1, keepdim=True)  # projection onto the luma axis (1, 1, 1) / sqrt(3)
    return grey + (video - grey) * _per_clip(saturation)


@dataclass
class AdaptiveAugment:
    """ADA's controller: every `interval` updates, p += sign(E[sign D(real)] - target) * videos / speed_videos.

    p is clamped to [0, 1] (every augmentation here has multiplier 1, so p > 1 would change nothing)."""

    p: float
    target: float
    interval: int
    speed_videos: int
    _sign_sum: float = 0.0
    _videos: int = 0
    _updates: int = 0

    def accumulate(self, real_logits: torch.Tensor) -> None:
        """Record D's logits on (augmented) real clips of one D step."""
        self.update(float(real_logits.detach().sign().sum()), real_logits.numel())

    def update(self, sign_sum: float, videos: int) -> None:
        """Record one D step by its sum of sign(D(real)) over `videos` real clips. Under several ranks the sums
        cover every rank's clips (stylegan2-ada syncs these statistics too), so every rank moves p alike."""
        self._sign_sum += sign_sum
        self._videos += videos
        self._updates += 1
        if self._updates >= self.interval:
            r_t = self._sign_sum / max(self._videos, 1)  # the overfitting heuristic
            step = (1.0 if r_t > self.target else -1.0 if r_t < self.target else 0.0) * self._videos / self.speed_videos
            self.p = min(max(self.p + step, 0.0), 1.0)
            self._sign_sum, self._videos, self._updates = 0.0, 0, 0
