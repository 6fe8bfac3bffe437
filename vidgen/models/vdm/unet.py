"""The factorized space-time 3D U-Net of Video Diffusion Models (Ho et al. 2022, arXiv 2204.03458, §3).

It is the standard image diffusion U-Net (DDPM / ADM) made to see videos:
- every 3x3 convolution becomes a 1x3x3 Conv3d, so convolutions never mix frames;
- normalisation has per-frame statistics;
- each spatial self-attention (over the pixels of one frame) is followed by a temporal self-attention (over
  the frames at one pixel) with a relative position bias, so the network accepts any number of frames.
Frames therefore interact only through temporal attention; masking it (a boolean [T, T] `frame_mask`)
makes a frame independent of the others, which joint image-video training needs (paper §3.1).

The network is conditioned on the log-SNR λ of its input: λ is rescaled to [0, 1], embedded with sinusoids
and two dense+SiLU layers (as google-research/vdm does), and every residual block gets a scale and shift
from that embedding. A class-conditional network adds a learned label embedding to it (paper §4: class and
text conditioning enter through the same embedding), with one extra "no label" entry for classifier-free
guidance.

Shapes: videos are float (B, C, T, H, W); `logsnr` is float (B,); `label` is long (B,).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from vidgen.models.vdm.config import VDMConfig

POSITION_MLP_WIDTH = 32
"""Hidden width of the small MLP that maps a frame distance to a per-head attention bias."""


def spatial_conv(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv3d:
    """A 3x3 convolution within each frame: kernel 1x3x3, so frames never mix (paper §3)."""
    return nn.Conv3d(in_channels, out_channels, kernel_size=(1, 3, 3), stride=(1, stride, stride),
                     padding=(0, 1, 1))


def zero_init(module: nn.Module) -> nn.Module:
    """Zero a layer's weights and bias, so the residual branch that ends in it starts as the identity
    (standard for diffusion U-Nets: DDPM, ADM)."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def largest_divisor(n: int, at_most: int) -> int:
    """The largest divisor of n that is at most `at_most` (and at least 1): GroupNorm groups and attention
    heads must divide a layer's width, and tiny test models have narrow layers."""
    return max(d for d in range(1, max(1, min(at_most, n)) + 1) if n % d == 0)


def fold_frames(x: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W) -> (B·T, C, H, W): frames as a batch of images. A channels-last video (memory order
    B, T, H, W, C) folds without a copy into channels-last images."""
    B, C, T, H, W = x.shape
    return x.transpose(1, 2).reshape(B * T, C, H, W)


def unfold_frames(x: torch.Tensor, frames: int) -> torch.Tensor:
    """(B·T, C, H, W) -> (B, C, T, H, W), contiguous in the images' layout (Conv3d is slow on strided input):
    channels-last images give a channels-last video, without a copy."""
    BT, C, H, W = x.shape
    layout = torch.channels_last_3d if is_channels_last(x) else torch.contiguous_format
    return x.view(BT // frames, frames, C, H, W).transpose(1, 2).contiguous(memory_format=layout)


def is_channels_last(x: torch.Tensor) -> bool:
    """Channels-last (NHWC / NDHWC) and not also plainly contiguous (a tensor with one channel is both)."""
    layout = torch.channels_last if x.ndim == 4 else torch.channels_last_3d
    return x.is_contiguous(memory_format=layout) and not x.is_contiguous()


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm with statistics per frame. Why not over the whole clip: a frame's activations must not
    depend on the other frames except through temporal attention, or masking that attention (joint
    image-video training) would not make appended image frames independent."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return unfold_frames(super().forward(fold_frames(x)), x.shape[2])


# ----------------------------------------------------------------------------------------------------------
# Log-SNR conditioning


def sinusoidal_embedding(u: torch.Tensor, width: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Transformer-style sinusoids of u·1000 (u in [0, 1], as DDPM's integer time steps were in [0, 1000]):
    (B,) -> (B, width)."""
    half = width // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=u.device, dtype=torch.float32) / half)
    angles = 1000.0 * u.float()[:, None] * freqs[None, :]  # (B, half)
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)  # (B, width)


class LogSNREmbedding(nn.Module):
    """λ -> conditioning vector: rescale λ from [logsnr_min, logsnr_max] to [0, 1], sinusoids, then two
    dense+SiLU layers (google-research/vdm's ScoreUNet)."""

    def __init__(self, channels: int, width: int, logsnr_min: float, logsnr_max: float) -> None:
        super().__init__()
        self.sinusoid_width = 2 * (channels // 2)  # sin and cos pairs
        self.logsnr_min, self.logsnr_max = logsnr_min, logsnr_max
        self.mlp = nn.Sequential(nn.Linear(self.sinusoid_width, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU())

    def forward(self, logsnr: torch.Tensor) -> torch.Tensor:
        u = (logsnr - self.logsnr_min) / (self.logsnr_max - self.logsnr_min)  # (B,) in [0, 1]
        return self.mlp(sinusoidal_embedding(u, self.sinusoid_width))  # (B, width)


# ----------------------------------------------------------------------------------------------------------
# Building blocks


class ResBlock(nn.Module):
    """Norm, SiLU, conv; norm with scale/shift from the λ embedding (ADM's "scale-shift norm"), SiLU, dropout,
    zero-initialised conv; plus a skip (1x1x1 conv when the width changes)."""

    def __init__(self, in_channels: int, out_channels: int, emb_width: int, dropout: float, groups: int) -> None:
        super().__init__()
        self.norm1 = FrameGroupNorm(largest_divisor(in_channels, groups), in_channels)
        self.conv1 = spatial_conv(in_channels, out_channels)
        self.emb_proj = nn.Linear(emb_width, 2 * out_channels)
        self.norm2 = FrameGroupNorm(largest_divisor(out_channels, groups), out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = zero_init(spatial_conv(out_channels, out_channels))
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv3d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (B, C_out, T, H, W)
        scale, shift = self.emb_proj(emb)[:, :, None, None, None].chunk(2, dim=1)  # 2 x (B, C_out, 1, 1, 1)
        h = F.silu(self.norm2(h) * (1 + scale) + shift)
        h = self.conv2(self.dropout(h))
        return h + self.skip(x)  # h first: a sum takes its first operand's memory layout


def split_heads(qkv: torch.Tensor, heads: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(N, L, 3·C) -> q, k, v each (N, heads, L, C / heads)."""
    N, L, _ = qkv.shape
    q, k, v = qkv.view(N, L, 3, heads, -1).permute(2, 0, 3, 1, 4)
    return q, k, v


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(N, heads, L, d) -> (N, L, heads·d)."""
    N, heads, L, d = x.shape
    return x.transpose(1, 2).reshape(N, L, heads * d)


class SpatialAttention(nn.Module):
    """Self-attention over the H·W pixels of each frame (frames folded into the batch), residual."""

    def __init__(self, channels: int, heads: int, groups: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(largest_divisor(channels, groups), channels)  # applied per frame
        self.qkv = nn.Linear(channels, 3 * channels)
        self.out = zero_init(nn.Linear(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, T, H, W = x.shape
        frames = self.norm(fold_frames(x))  # (B·T, C, H, W)
        tokens = frames.flatten(2).transpose(1, 2)  # (B·T, H·W, C)
        q, k, v = split_heads(self.qkv(tokens), self.heads)  # (B·T, heads, H·W, d)
        h = self.out(merge_heads(F.scaled_dot_product_attention(q, k, v)))  # (B·T, H·W, C)
        h = h.transpose(1, 2).reshape(B * T, C, H, W)
        return x + unfold_frames(h, T)  # (B, C, T, H, W)


class RelativePositionBias(nn.Module):
    """Attention bias per head as a function of the frame distance j - i, from a small MLP on
    sign(d)·log(1 + |d|) (a continuous bias like Swin-v2's): defined for every distance, so there is no table
    tied to the training length and the network runs on any number of frames."""

    def __init__(self, heads: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(1, POSITION_MLP_WIDTH), nn.SiLU(), nn.Linear(POSITION_MLP_WIDTH, heads))

    def forward(self, frames: int, device: torch.device) -> torch.Tensor:
        pos = torch.arange(frames, device=device, dtype=torch.float32)
        distance = pos[None, :] - pos[:, None]  # (T, T): key frame j minus query frame i
        feature = torch.sign(distance) * torch.log1p(distance.abs())
        return self.mlp(feature[..., None]).permute(2, 0, 1)  # (heads, T, T)


class TemporalAttention(nn.Module):
    """Self-attention over the T frames at each pixel (pixels folded into the batch), with a relative
    position bias; residual. `frame_mask` (bool [T, T], True where query frame i may attend to key frame j)
    restricts which frames see each other."""

    def __init__(self, channels: int, heads: int, groups: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(largest_divisor(channels, groups), channels)  # applied per frame
        self.position_bias = RelativePositionBias(heads)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.out = zero_init(nn.Linear(channels, channels))

    def forward(self, x: torch.Tensor, frame_mask: torch.Tensor | None = None) -> torch.Tensor:
        B, C, T, H, W = x.shape
        frames = self.norm(fold_frames(x))  # (B·T, C, H, W)
        tokens = frames.view(B, T, C, H, W).permute(0, 3, 4, 1, 2).reshape(B * H * W, T, C)  # (B·H·W, T, C)
        q, k, v = split_heads(self.qkv(tokens), self.heads)  # (B·H·W, heads, T, d)
        bias = self.position_bias(T, x.device).to(q.dtype)  # (heads, T, T)
        if frame_mask is not None:
            bias = bias.masked_fill(~frame_mask, float("-inf"))
        h = self.out(merge_heads(F.scaled_dot_product_attention(q, k, v, attn_mask=bias)))  # (B·H·W, T, C)
        h = h.view(B, H, W, T, C).permute(0, 4, 3, 1, 2)  # (B, C, T, H, W)
        return x + h


class UNetBlock(nn.Module):
    """One U-Net stage at one resolution: a ResBlock, then spatial attention and temporal attention where the
    config asks for them at this resolution."""

    def __init__(self, in_channels: int, out_channels: int, emb_width: int, config: VDMConfig,
                 spatial_attention: bool, temporal_attention: bool) -> None:
        super().__init__()
        heads = largest_divisor(out_channels, out_channels // config.head_channels)
        groups = config.norm_groups
        self.res = ResBlock(in_channels, out_channels, emb_width, config.dropout, groups)
        self.spatial_attention = SpatialAttention(out_channels, heads, groups) if spatial_attention else None
        self.temporal_attention = TemporalAttention(out_channels, heads, groups) if temporal_attention else None

    def forward(self, x: torch.Tensor, emb: torch.Tensor, frame_mask: torch.Tensor | None) -> torch.Tensor:
        x = self.res(x, emb)
        if self.spatial_attention is not None:
            x = self.spatial_attention(x)
        if self.temporal_attention is not None:
            x = self.temporal_attention(x, frame_mask)
        return x


class Downsample(nn.Module):
    """Halve H and W with a stride-(1, 2, 2) 1x3x3 conv; T is kept."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = spatial_conv(channels, channels, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)  # (B, C, T, H/2, W/2)


class Upsample(nn.Module):
    """Double H and W (nearest neighbour), then a 1x3x3 conv; T is kept."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = spatial_conv(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=(1.0, 2.0, 2.0), mode="nearest"))  # (B, C, T, 2H, 2W)


# ----------------------------------------------------------------------------------------------------------
# The U-Net


class UNet3D(nn.Module):
    """Factorized space-time U-Net: (z_t (B, C, T, H, W), λ (B,)) -> prediction (B, C, T, H, W).

    DDPM layout: per level `blocks_per_level` blocks down and one more up (each up block takes the skip of
    one down stage); the middle is ResBlock, attention, ResBlock. `resolution` is the frame size the network
    is built for: a level gets attention when its feature-map size is in `config.attention_resolutions`.
    """

    def __init__(self, config: VDMConfig, video_channels: int, resolution: int) -> None:
        super().__init__()
        self.downsample_factor = config.downsample_factor
        self.channels_last = config.channels_last
        self.grad_checkpointing = False
        """Recompute each block's activations in the backward pass instead of keeping them (less memory,
        about one more forward pass of compute); set from train.grad_checkpointing."""
        ch = config.channels
        emb_width = 4 * ch
        widths = [ch * m for m in config.channel_mults]
        levels = len(widths)

        temporal_resolutions = config.temporal_attention_resolutions
        if temporal_resolutions is None:
            temporal_resolutions = config.attention_resolutions

        def attends(level: int) -> tuple[bool, bool]:
            """(spatial, temporal) attention at this level; no temporal attention at all if switched off."""
            size = resolution // 2**level
            return size in config.attention_resolutions, config.temporal_attention and size in temporal_resolutions

        self.logsnr_embedding = LogSNREmbedding(ch, emb_width, config.logsnr_min, config.logsnr_max)
        self.num_classes = config.num_classes
        # Entry num_classes is "no label": the unconditional model of classifier-free guidance.
        self.label_embedding = nn.Embedding(config.num_classes + 1, emb_width) if config.num_classes else None
        self.input_conv = spatial_conv(video_channels, ch)

        # Down path: every stage's output is kept as a skip connection for the up path.
        self.down = nn.ModuleList()
        skip_widths = [ch]
        width = ch
        for level, level_width in enumerate(widths):
            for _ in range(config.blocks_per_level):
                self.down.append(UNetBlock(width, level_width, emb_width, config, *attends(level)))
                width = level_width
                skip_widths.append(width)
            if level < levels - 1:
                self.down.append(Downsample(width))
                skip_widths.append(width)

        # Middle, at the lowest resolution: ResBlock, attention, ResBlock (always with attention, as in DDPM).
        self.middle = nn.ModuleList([
            UNetBlock(width, width, emb_width, config, spatial_attention=True,
                      temporal_attention=config.temporal_attention),
            UNetBlock(width, width, emb_width, config, spatial_attention=False, temporal_attention=False)])

        # Up path: each block consumes one skip (concatenated on channels).
        self.up = nn.ModuleList()
        for level in reversed(range(levels)):
            for _ in range(config.blocks_per_level + 1):
                self.up.append(UNetBlock(width + skip_widths.pop(), widths[level], emb_width, config,
                                         *attends(level)))
                width = widths[level]
            if level > 0:
                self.up.append(Upsample(width))

        self.output_norm = FrameGroupNorm(largest_divisor(width, config.norm_groups), width)
        self.output_conv = zero_init(spatial_conv(width, video_channels))
        if self.channels_last:
            self.to(memory_format=torch.channels_last_3d)  # the Conv3d weights; activations follow them

    def forward(self, z: torch.Tensor, logsnr: torch.Tensor, *, label: torch.Tensor | None = None,
                frame_mask: torch.Tensor | None = None) -> torch.Tensor:
        """label: class per video (B,), `num_classes` meaning "no label"; None: no label for all (a
        class-conditional network), ignored by an unconditional one. frame_mask: bool (T, T), True where
        frame i may attend to frame j (None: all frames see each other)."""
        B, C, T, H, W = z.shape
        if H % self.downsample_factor or W % self.downsample_factor:
            raise ValueError(f"frame size {H}x{W} is not divisible by {self.downsample_factor}, the U-Net's "
                             f"downsampling factor; use a height and width that are multiples of it")
        emb = self.logsnr_embedding(logsnr)  # (B, 4·ch)
        if self.label_embedding is not None:
            if label is None:
                label = torch.full((B,), self.num_classes, dtype=torch.long, device=z.device)
            emb = emb + self.label_embedding(label)

        if self.channels_last:
            z = z.contiguous(memory_format=torch.channels_last_3d)
        x = self.input_conv(z)  # (B, ch, T, H, W)
        skips = [x]
        for layer in self.down:
            x = self._block(layer, x, emb, frame_mask) if isinstance(layer, UNetBlock) else layer(x)
            skips.append(x)

        for layer in self.middle:
            x = self._block(layer, x, emb, frame_mask)  # (B, C_max, T, H / f, W / f)

        for layer in self.up:
            if isinstance(layer, UNetBlock):
                x = self._block(layer, torch.cat([x, skips.pop()], dim=1), emb, frame_mask)
            else:
                x = layer(x)

        return self.output_conv(F.silu(self.output_norm(x)))  # (B, C, T, H, W)

    def _block(self, block: UNetBlock, x: torch.Tensor, emb: torch.Tensor,
               frame_mask: torch.Tensor | None) -> torch.Tensor:
        if self.grad_checkpointing and torch.is_grad_enabled():
            # Non-reentrant checkpointing: works with autocast, keeps the RNG state so dropout replays.
            return checkpoint(block, x, emb, frame_mask, use_reentrant=False)
        return block(x, emb, frame_mask)
