"""Frame encoder and decoder of SVG (Denton & Fergus, "Stochastic Video Generation with a Learned Prior", ICML
2018; edenton/svg models/dcgan_64.py and models/vgg_64.py), which DVG uses unchanged.

The encoder maps one frame in [0, 1] to a latent h in (-1, 1)^g_dim (a tanh) and returns the output of each of
its levels as skip connections; the decoder maps a latent and the skips of some frame back to a frame in (0, 1)
(a sigmoid). Both are 2-D: frames go through them one at a time (batched over videos).

Generalised from SVG's 64 px to any resolution R = 2^k >= 8: k - 2 levels, level i with width x 2^i channels
(at most 8 x width), the last one ending at 4 x 4, from where a 4 x 4 convolution gives the latent. At 64 px and
width 64 that is SVG's layout exactly.

- dcgan: each level a stride-2 4x4 convolution + BatchNorm + LeakyReLU(0.2) (R -> R/2, ..., 8 -> 4); the decoder
  mirrors it with stride-2 4x4 transposed convolutions, each taking [its input, the level's skip] (2x channels).
- vgg: each level 2 (levels 0, 1) or 3 (later levels) 3x3 convolution blocks, max-pooling between levels and
  before the latent convolution; the decoder upsamples (nearest, x2) and runs VGG blocks on [upsampled, skip].

One departure from SVG's code, not from its function: a convolution followed by a BatchNorm has no bias. SVG's
start at zero and BatchNorm subtracts them again (its batch mean in training, its running mean in eval), so their
gradient is zero in exact arithmetic, and Adam, which divides by its magnitude, would turn the float noise in it
into steps of size lr, noise that differs between two ranks and one process.
"""

from __future__ import annotations

import torch
from torch import nn

from vidgen.models.dvg.config import Architecture

LEAK = 0.2
"""LeakyReLU slope of every SVG block."""


def levels_for(resolution: int) -> int:
    """Encoder levels from `resolution` down to 4 x 4 (k - 2 for R = 2^k): 4 at SVG's 64 px."""
    if resolution < 8 or resolution & (resolution - 1):
        raise ValueError(f"resolution must be a power of two >= 8, got {resolution}")
    return resolution.bit_length() - 3


def level_widths(width: int, levels: int) -> list[int]:
    """Channels of each level: width x 1, 2, 4, 8, 8, ... (SVG: nf, 2nf, 4nf, 8nf at 64 px)."""
    return [width * min(2 ** i, 8) for i in range(levels)]


def vgg_convs(level: int) -> int:
    """3x3 convolutions of VGG level `level` (SVG: 2, 2, 3, 3)."""
    return 2 if level < 2 else 3


@torch.no_grad()
def init_weights(module: nn.Module) -> None:
    """SVG's utils.init_weights (applied with Module.apply): convolution and linear weights ~ N(0, 0.02), biases
    0; BatchNorm gains ~ N(1, 0.02), biases 0. Draws from the global generator: call it under a seeded
    torch.random.fork_rng."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        module.weight.normal_(0.0, 0.02)
        if module.bias is not None:
            module.bias.zero_()
    elif isinstance(module, nn.BatchNorm2d):
        module.weight.normal_(1.0, 0.02)
        module.bias.zero_()


def _block(conv: nn.Module, channels: int) -> nn.Sequential:
    """conv (without bias: the BatchNorm removes it) + BatchNorm + LeakyReLU(0.2), SVG's dcgan_conv / dcgan_upconv /
    vgg_layer."""
    return nn.Sequential(conv, nn.BatchNorm2d(channels), nn.LeakyReLU(LEAK))


def _vgg(nin: int, nout: int) -> nn.Sequential:
    return _block(nn.Conv2d(nin, nout, 3, 1, 1, bias=False), nout)


class Encoder(nn.Module):
    """Frame [B, C, R, R] in [0, 1] -> (latent [B, g_dim] in (-1, 1), skips: the output of every level, level 0
    first). dcgan skips: [B, w_i, R / 2^(i+1), ...]; vgg skips: [B, w_i, R / 2^i, ...]."""

    def __init__(self, architecture: Architecture, channels: int, g_dim: int, width: int, resolution: int) -> None:
        super().__init__()
        self.architecture = architecture
        widths = level_widths(width, levels_for(resolution))
        ins = [channels, *widths[:-1]]
        if architecture == "dcgan":
            self.levels = nn.ModuleList(_block(nn.Conv2d(i, o, 4, 2, 1, bias=False), o) for i, o in zip(ins, widths))
        else:
            self.levels = nn.ModuleList(
                nn.Sequential(_vgg(i, o), *(_vgg(o, o) for _ in range(vgg_convs(level) - 1)))
                for level, (i, o) in enumerate(zip(ins, widths)))
        self.pool = nn.MaxPool2d(2) if architecture == "vgg" else nn.Identity()
        # 4 x 4 -> 1 x 1: the latent
        self.to_latent = nn.Sequential(nn.Conv2d(widths[-1], g_dim, 4, 1, 0, bias=False), nn.BatchNorm2d(g_dim),
                                       nn.Tanh())

    def forward(self, frame: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        skips = []
        x = frame
        for index, level in enumerate(self.levels):
            x = level(self.pool(x) if index else x)  # vgg pools between levels; dcgan's stride does it
            skips.append(x)
        h = self.to_latent(self.pool(x))  # [B, g_dim, 1, 1]
        return h.flatten(1), skips


class Decoder(nn.Module):
    """(latent [B, g_dim], skips of Encoder) -> frame [B, C, R, R] in (0, 1)."""

    def __init__(self, architecture: Architecture, channels: int, g_dim: int, width: int, resolution: int) -> None:
        super().__init__()
        self.architecture = architecture
        widths = level_widths(width, levels_for(resolution))
        top = widths[-1]
        # 1 x 1 -> 4 x 4
        self.from_latent = _block(nn.ConvTranspose2d(g_dim, top, 4, 1, 0, bias=False), top)
        ups = []
        if architecture == "dcgan":
            # Level i (deepest first) takes [d, skip_i] (2 w_i channels) and doubles the size to level i - 1's.
            for level in range(len(widths) - 1, 0, -1):
                ups.append(_block(nn.ConvTranspose2d(2 * widths[level], widths[level - 1], 4, 2, 1, bias=False),
                                  widths[level - 1]))
            self.to_frame = nn.Sequential(nn.ConvTranspose2d(2 * widths[0], channels, 4, 2, 1), nn.Sigmoid())
        else:
            # Level i (deepest first) runs VGG blocks on [upsampled d, skip_i], ending at level i - 1's width.
            for level in range(len(widths) - 1, 0, -1):
                w = widths[level]
                ups.append(nn.Sequential(_vgg(2 * w, w), *(_vgg(w, w) for _ in range(vgg_convs(level) - 2)),
                                         _vgg(w, widths[level - 1])))
            self.to_frame = nn.Sequential(_vgg(2 * widths[0], widths[0]),
                                          nn.ConvTranspose2d(widths[0], channels, 3, 1, 1), nn.Sigmoid())
        self.ups = nn.ModuleList(ups)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest") if architecture == "vgg" else nn.Identity()

    def forward(self, h: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        d = self.from_latent(h[:, :, None, None])  # [B, w_top, 4, 4]
        for up, skip in zip(self.ups, reversed(skips[1:])):
            d = up(torch.cat([self.upsample(d), skip], dim=1))
        return self.to_frame(torch.cat([self.upsample(d), skips[0]], dim=1))  # [B, C, R, R]
