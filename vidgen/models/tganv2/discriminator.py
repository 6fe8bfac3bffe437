"""The TGANv2 discriminators: one 3-D ResNet per level of the pyramid (Saito et al., IJCV 2020, Sec. 3.3-4; as
released in pfnet-research/tgan2: tgan2/models/discriminators/multi_resnet_video_discriminator.py,
resnet_video_discriminator.py, and DisBlock / OptimizedDisBlock of tgan2/models/resblocks.py).

Each level's discriminator (the same architecture, its own weights) maps a video [B_l, 3, T_l, R_l, R_l] to one
logit per video:

    h = OptimizedBlock(x)        conv3-ReLU-conv3-avgpool(1,2,2)  +  conv1(avgpool(1,2,2)(x))
    h = Block_k(h), k = 2..      ReLU-conv3-ReLU-conv3-down       +  down(conv1(h))
    y = linear(sum_{t,h,w} ReLU(h))  (+ <embed(label), sum ReLU(h)> with classes: projection, Miyato & Koyama 2018)

`down` halves every axis longer than 1 (the reference's `_downsample`, see `downsample`). Pooling is a global *sum*.

How the levels combine (tgan2/updaters/dirac_updater.py): the reference concatenates the per-level logits along the
batch axis into one vector and takes means over it, L_D = mean softplus(-y_real) + mean softplus(y_fake) and
L_G = mean softplus(-y_fake) (each level weighted by its number of videos), with the zero-centred gradient penalty
lambda * sum over levels and videos of |d(sum y_real) / d x_real_l|^2 on the real pyramid (lambda 0.5 in the
UCF-101 run). `forward` returns the per-level logits; torch.cat of them is the reference's output.

Deviation from the reference: with batch subsampling and classes, the label of level l is subsampled like its videos
(the reference passes the full batch of labels to every level, which cannot work with batch_factors > 1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vidgen.models.tganv2.config import TGANv2Config
from vidgen.models.tganv2.generator import glorot_uniform_
from vidgen.models.tganv2.pyramid import level_labels


def downsample(x: torch.Tensor) -> torch.Tensor:
    """The reference's `_downsample` of [B, C, T, H, W], axis by axis: an even axis is average-pooled by 2; an odd
    axis longer than 1 is zero-padded by one in front, then pooled by 2 (Chainer's average_pooling_nd with pad 1
    counts the padding, and drops the window that would start in the back padding); an axis of length 1 is kept
    with a zero on each side (kernel 1 with pad 1: length 3). The last is a quirk of the reference (at 192 px it
    turns the single frame of levels 2 and 3 into [0, h, 0] before a 3-D convolution) which is kept, so that the
    architecture is the one that was trained."""
    pad, kernel = [], []
    for size in reversed(x.shape[2:]):  # F.pad lists the last axis first
        if size == 1:
            pad += [1, 1]
            kernel.append(1)
        else:
            pad += [size % 2, 0]
            kernel.append(2)
    if any(pad):
        x = F.pad(x, pad)
    return F.avg_pool3d(x, kernel_size=tuple(reversed(kernel)))


class OptimizedBlock(nn.Module):
    """The first block (the reference's OptimizedDisBlock): no activation before the first conv; halves H and W only."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(in_channels, out_channels, 3, padding=1)
        self.conv2 = nn.Conv3d(out_channels, out_channels, 3, padding=1)
        self.shortcut = nn.Conv3d(in_channels, out_channels, 1)
        glorot_uniform_(self.conv1, math.sqrt(2))
        glorot_uniform_(self.conv2, math.sqrt(2))
        glorot_uniform_(self.shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(F.relu(self.conv1(x)))
        h = F.avg_pool3d(h, (1, 2, 2))  # [B, out, T, H/2, W/2]
        return h + self.shortcut(F.avg_pool3d(x, (1, 2, 2)))


class DownBlock(nn.Module):
    """The reference's DisBlock(downsample=True): ReLU-conv3-ReLU-conv3-down + down(conv1); the hidden width is the
    input width (DisBlock's default), not the output's."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(in_channels, in_channels, 3, padding=1)
        self.conv2 = nn.Conv3d(in_channels, out_channels, 3, padding=1)
        self.shortcut = nn.Conv3d(in_channels, out_channels, 1)
        glorot_uniform_(self.conv1, math.sqrt(2))
        glorot_uniform_(self.conv2, math.sqrt(2))
        glorot_uniform_(self.shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(F.relu(self.conv1(F.relu(x))))
        return downsample(h) + downsample(self.shortcut(x))


class VideoDiscriminator(nn.Module):
    """One level's 3-D ResNet (the reference's ResNetVideoDiscriminator): [B, C, T, H, W] -> logits [B]."""

    def __init__(self, channels: Sequence[int], num_classes: int = 0, in_channels: int = 3) -> None:
        super().__init__()
        self.blocks = nn.Sequential(OptimizedBlock(in_channels, channels[0]),
                                    *[DownBlock(channels[i - 1], channels[i]) for i in range(1, len(channels))])
        self.linear = nn.Linear(channels[-1], 1)
        glorot_uniform_(self.linear)
        self.embed = None
        if num_classes:
            self.embed = nn.Embedding(num_classes, channels[-1])
            glorot_uniform_(self.embed)

    def forward(self, x: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        h = F.relu(self.blocks(x)).sum(dim=(2, 3, 4))  # [B, C]: global sum pooling
        y = self.linear(h).squeeze(1)  # [B]
        if self.embed is not None:
            y = y + (self.embed(label) * h).sum(dim=1)  # projection
        return y


class TGANv2Discriminator(nn.Module):
    """The pyramid [B_l, 3, T_l, R_l, R_l] (lowest resolution first) -> per-level logits [B_l]."""

    def __init__(self, cfg: TGANv2Config, in_channels: int = 3) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_classes = cfg.num_classes
        self.levels = nn.ModuleList([VideoDiscriminator(cfg.d_channels, cfg.num_classes, in_channels)
                                     for _ in range(cfg.levels)])

    def forward(self, videos: Sequence[torch.Tensor], label: torch.Tensor | None = None) -> list[torch.Tensor]:
        if len(videos) != len(self.levels):
            raise ValueError(f"expected {len(self.levels)} levels, got {len(videos)}")
        if bool(self.num_classes) != (label is not None):
            raise ValueError("give a label exactly when the discriminator is class-conditional "
                             f"(num_classes = {self.num_classes})")
        labels = level_labels(label, self.cfg.batch_factors)  # the batch subsampling, applied to the labels
        return [level(x, y) for level, x, y in zip(self.levels, videos, labels)]
