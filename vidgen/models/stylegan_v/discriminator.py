"""The StyleGAN-V discriminator: a StyleGAN2 ResNet D that sees k sparse frames of a clip and their time gaps.

Skorokhodov et al. 2022, Sec. 3.3, as released: every frame goes through the same ResNet blocks down to 16x16,
where the block producing 16x16 halves its width; the k feature maps are concatenated channel-wise
([B, k C/2, 16, 16]) and processed jointly to 4x4, then minibatch-std, conv and FC. The k - 1 time gaps are
embedded (a learned Embedding of the rounded gap + fixed sin/cos of the exact gap), mapped to a vector c, and
the logit is the projection <out, c> / sqrt(dim) (Miyato & Koyama 2018): D judges whether the frames are
consistent for those gaps.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vidgen.models.stylegan_v.config import StyleGANVConfig
from vidgen.models.stylegan_v.generator import channels_at
from vidgen.models.stylegan_v.layers import Conv2d, FullyConnected, MinibatchStd, normalize_2nd_moment

GAP_EMBEDDING_DIM = 256
"""Width of the learned embedding of each (rounded) time gap."""


def log_spaced_gap_frequencies(max_num_frames: int) -> torch.Tensor:
    """pi 2^j / R for j = 0 .. log2(R) - 1, R = 2^ceil(log2 max_num_frames): the slowest wave spans 2R frames,
    the fastest 4 frames (10 frequencies for 1024 frames)."""
    resolution = 2 ** math.ceil(math.log2(max_num_frames))
    count = max(int(math.log2(resolution)), 1)
    return math.pi * 2.0 ** torch.arange(count, dtype=torch.float32) / resolution


class TimeGapEncoder(nn.Module):
    """Frame times [B, k] -> gap features [B, (k - 1) (256 + 2 F)].

    Each gap gets Embedding(round(gap)) — fake clips may sit at fractional times, so the table is indexed by
    the rounded gap — concatenated with [sin, cos](f_j gap) of the exact (float) gap, as in the reference."""

    def __init__(self, num_frames: int, max_num_frames: int) -> None:
        super().__init__()
        self.num_frames, self.max_num_frames = num_frames, max_num_frames
        self.embedding = nn.Embedding(max_num_frames, GAP_EMBEDDING_DIM)
        self.register_buffer("freqs", log_spaced_gap_frequencies(max_num_frames), persistent=False)

    @property
    def dim(self) -> int:
        return (self.num_frames - 1) * (GAP_EMBEDDING_DIM + 2 * self.freqs.numel())

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        if t.ndim != 2 or t.shape[1] != self.num_frames:
            raise ValueError(f"expected frame times [B, {self.num_frames}], got {tuple(t.shape)}")
        gaps = (t[:, 1:] - t[:, :-1]).float()  # [B, k - 1], sorted times -> gaps >= 0
        index = gaps.round().long().clamp(0, self.max_num_frames - 1)
        arg = gaps.unsqueeze(2) * self.freqs  # [B, k - 1, F]
        feats = torch.cat([self.embedding(index), arg.sin(), arg.cos()], dim=2)  # [B, k - 1, 256 + 2F]
        return feats.reshape(t.shape[0], -1)


class ConditionMapping(nn.Module):
    """Gap features -> c (the projection vector): linear embedding, normalise, two FC + lrelu (lr mult 0.01) —
    the reference's label MappingNetwork with num_layers = 2."""

    def __init__(self, in_dim: int, out_dim: int, num_layers: int = 2, lr_mult: float = 0.01) -> None:
        super().__init__()
        self.embed = FullyConnected(in_dim, out_dim)
        self.layers = nn.Sequential(*[FullyConnected(out_dim, out_dim, activation="lrelu", lr_mult=lr_mult)
                                      for _ in range(num_layers)])

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        return self.layers(normalize_2nd_moment(self.embed(c)))


class DiscriminatorBlock(nn.Module):
    """ResNet block: conv 3x3, conv 3x3 with 2x down; plus a 1x1 down skip; both branches scaled by sqrt(1/2)."""

    def __init__(self, in_channels: int, tmp_channels: int, out_channels: int, use_fp16: bool = False,
                 conv_clamp: float | None = None) -> None:
        super().__init__()
        self.use_fp16 = use_fp16
        self.conv0 = Conv2d(in_channels, tmp_channels, 3, activation="lrelu", conv_clamp=conv_clamp)
        self.conv1 = Conv2d(tmp_channels, out_channels, 3, activation="lrelu", down=2, conv_clamp=conv_clamp)
        self.skip = Conv2d(in_channels, out_channels, 1, bias=False, down=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(_block_dtype(self.use_fp16, x.device))
        y = self.skip(x, gain=math.sqrt(0.5))
        return y + self.conv1(self.conv0(x), gain=math.sqrt(0.5))


class Epilogue(nn.Module):
    """4x4 head: minibatch-std, conv 3x3, FC, FC to the projection width; logit = <out, c> / sqrt(dim)."""

    def __init__(self, in_channels: int, channels: int, cmap_dim: int, mbstd_group: int,
                 conv_clamp: float | None = None) -> None:
        super().__init__()
        self.cmap_dim = cmap_dim
        self.mbstd = MinibatchStd(mbstd_group, num_channels=1)
        self.conv = Conv2d(in_channels + 1, channels, 3, activation="lrelu", conv_clamp=conv_clamp)
        self.fc = FullyConnected(channels * 16, channels, activation="lrelu")
        self.out = FullyConnected(channels, cmap_dim)

    def forward(self, x: torch.Tensor, cmap: torch.Tensor) -> torch.Tensor:
        x = self.conv(self.mbstd(x.float()))  # [B, C, 4, 4]
        x = self.out(self.fc(x.flatten(1)))  # [B, cmap_dim]
        return (x * cmap).sum(dim=1) / math.sqrt(self.cmap_dim)  # [B]


class Discriminator(nn.Module):
    """video [B, C, k, H, W] in [-1, 1] + frame times [B, k] -> logits [B]."""

    def __init__(self, cfg: StyleGANVConfig, resolution: int, img_channels: int = 3) -> None:
        super().__init__()
        self.k = cfg.num_frames_per_clip
        log2 = int(math.log2(resolution))
        fp16_from = max(2 ** (log2 + 1 - cfg.fp16_resolutions), 8)
        self.concat_resolution = min(cfg.d_concat_resolution, resolution)

        def ch(res: int) -> int:
            return channels_at(res, cfg.channel_base, cfg.channel_max)

        def fp16(res: int) -> bool:
            return cfg.fp16_resolutions > 0 and res >= fp16_from

        # Channels of one frame's features at the concatenation resolution: half the usual width.
        frame_ch = max(ch(self.concat_resolution) // 2, 1)
        self.fromrgb_fp16 = fp16(resolution)
        self.fromrgb = Conv2d(img_channels, ch(resolution) if resolution > self.concat_resolution else frame_ch, 1,
                              activation="lrelu", conv_clamp=cfg.conv_clamp)
        frame_blocks, joint_blocks = [], []
        res = resolution
        while res > self.concat_resolution:  # per frame, down to the concatenation resolution
            out = frame_ch if res // 2 == self.concat_resolution else ch(res // 2)
            frame_blocks.append(DiscriminatorBlock(ch(res), ch(res), out, fp16(res), cfg.conv_clamp))
            res //= 2
        joint_ch = self.k * frame_ch  # the k frames' features side by side
        while res > 4:  # jointly, down to 4x4
            joint_blocks.append(DiscriminatorBlock(joint_ch, ch(res), ch(res // 2), fp16(res), cfg.conv_clamp))
            joint_ch, res = ch(res // 2), res // 2
        self.frame_blocks = nn.ModuleList(frame_blocks)
        self.joint_blocks = nn.ModuleList(joint_blocks)

        cmap_dim = ch(4)
        self.time_encoder = TimeGapEncoder(self.k, cfg.max_num_frames)
        self.mapping = ConditionMapping(self.time_encoder.dim, cmap_dim, lr_mult=cfg.mapping_lr_mult)
        self.epilogue = Epilogue(joint_ch, ch(4), cmap_dim, cfg.mbstd_group, conv_clamp=cfg.conv_clamp)

    def forward(self, video: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        batch, channels, k, height, width = video.shape
        if k != self.k:
            raise ValueError(f"D was built for clips of {self.k} frames, got {k}")
        x = video.transpose(1, 2).reshape(batch * k, channels, height, width)  # frames as batch, [B k, C, H, W]
        x = self.fromrgb(x.to(_block_dtype(self.fromrgb_fp16, x.device)))
        for block in self.frame_blocks:
            x = block(x)  # [B k, C', h, w]
        x = x.reshape(batch, k * x.shape[1], *x.shape[2:])  # frames side by side, [B, k C', h, w]
        for block in self.joint_blocks:
            x = block(x)
        cmap = self.mapping(self.time_encoder(times))  # [B, cmap_dim]
        return self.epilogue(x, cmap)  # [B]


def _block_dtype(use_fp16: bool, device: torch.device) -> torch.dtype:
    return torch.float16 if use_fp16 and device.type == "cuda" else torch.float32
