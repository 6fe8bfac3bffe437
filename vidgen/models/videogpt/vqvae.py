"""VideoGPT's stage-1 VQ-VAE (Yan et al. 2021, arXiv 2104.10157, §3.1, fig. 3, appendix A): strided 3D
convolutions and attention residual blocks compress a clip (B, C, T, H, W) into a grid of latent vectors
(B, D, T', H', W'), which an EMA codebook (`codebook.py`) turns into codes (B, T', H', W'); a mirrored decoder of
transposed 3D convolutions maps the code vectors back to a clip.

    encode:  x -> [Conv3d k4 s2 (ReLU)] x log2(max factor) -> Conv3d k3 -> n_res_layers x AttnResBlock -> norm, ReLU
               -> 1x1x1 conv to D -> nearest code
    decode:  code vectors -> 1x1x1 conv to n_hiddens -> n_res_layers x AttnResBlock -> norm, ReLU
               -> [ConvTranspose3d k4 s2 (ReLU between)] x log2(max factor)
    loss:    ||x - x̂||² / data_variance + β ||z - sg(e)||²   (VQ-VAE eq. 3; the codebook term is replaced by EMA)

Downsampling is per axis by powers of two, (t, h, w): 4x4x4 for UCF-101 16x128x128 and 4x2x2 for BAIR 16x64x64,
both giving 4x32x32 codes. Each strided layer halves every axis that still has a factor left (official layout).

Padding follows the official SamePadConv3d: a stride-s, kernel-k convolution pads k - s in total, the extra one on
the left when odd, so an input divisible by s gives exactly size / s.

Where this differs from the official code, and why:
- the codebook update is an explicit `Codebook.update` call, not a side effect of forward (see `codebook.py`);
- `norm="group"` offers GroupNorm instead of the paper's BatchNorm: BatchNorm's batch statistics make a loss
  depend on the micro-batch and rank split, and its running statistics are buffers moved by every training forward;
  the default stays "batch" (the paper);
- the encoder's last 3x3x3 conv takes n_hiddens channels (the official takes the loop's last `in_channels`, which
  is 3 when only one downsampling layer exists, and crashes there);
- symmetric padding is done by the convolution itself instead of a separate F.pad (same numbers, one copy less);
- with BatchNorm, the biases that only add a per-channel constant before a BatchNorm (the encoder's last conv,
  the post-codebook conv, the attention output projections, which add into a residual stream read only through
  BatchNorm) are left out: BatchNorm subtracts them again, so the function is the same, but their gradient is zero
  in exact arithmetic and Adam, which divides by its magnitude, turns the float noise in it into steps of size lr
  (noise that differs between a run on two GPUs and one process).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from vidgen.models.videogpt.axial import AxialAttention
from vidgen.models.videogpt.codebook import Codebook, CodebookStats

OFFICIAL_DATA_VARIANCE = 0.06
"""The official code divides the reconstruction MSE by 0.06, the variance of its videos scaled to [-0.5, 0.5]."""
DATA_VARIANCE = 4 * OFFICIAL_DATA_VARIANCE
"""The same videos in vidgen's [-1, 1] have four times that variance, so the loss weighs MSE and commitment alike."""


def same_padding(kernel: tuple[int, ...], stride: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """(left, right) padding per axis for "same" strided convolution: k - s in total, the odd one on the left
    (official SamePadConv3d)."""
    return tuple(((k - s) // 2 + (k - s) % 2, (k - s) // 2) for k, s in zip(kernel, stride))


def as_triple(v: int | tuple[int, int, int]) -> tuple[int, int, int]:
    return (v, v, v) if isinstance(v, int) else tuple(v)


class SamePadConv3d(nn.Module):
    """Conv3d whose output is input size / stride (for sizes divisible by stride)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int | tuple[int, int, int],
                 stride: int | tuple[int, int, int] = 1, bias: bool = True) -> None:
        super().__init__()
        kernel, stride = as_triple(kernel), as_triple(stride)
        pads = same_padding(kernel, stride)
        symmetric = all(left == right for left, right in pads)
        # F.pad takes the last axis first: (w_left, w_right, h_left, h_right, t_left, t_right).
        self.pad = None if symmetric else tuple(p for pair in reversed(pads) for p in pair)
        self.conv = nn.Conv3d(in_channels, out_channels, kernel, stride,
                              padding=tuple(left for left, _ in pads) if symmetric else 0, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x if self.pad is None else F.pad(x, self.pad))


class SamePadConvTranspose3d(nn.Module):
    """ConvTranspose3d whose output is input size · stride: the input is padded as SamePadConv3d pads it, then the
    transposed convolution crops k - 1 from each side of its full output (the official construction)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int | tuple[int, int, int],
                 stride: int | tuple[int, int, int] = 1, bias: bool = True) -> None:
        super().__init__()
        kernel, stride = as_triple(kernel), as_triple(stride)
        self.pad = tuple(p for pair in reversed(same_padding(kernel, stride)) for p in pair)
        self.convt = nn.ConvTranspose3d(in_channels, out_channels, kernel, stride,
                                        padding=tuple(k - 1 for k in kernel), bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convt(F.pad(x, self.pad))


def norm_layer(kind: Literal["batch", "group"], channels: int) -> nn.Module:
    """BatchNorm3d (the paper) or GroupNorm with up to 32 groups (independent of the batch split)."""
    if kind == "batch":
        return nn.BatchNorm3d(channels)
    groups = max(g for g in range(1, min(32, channels) + 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels)


def stride_schedule(factors: tuple[int, int, int]) -> list[tuple[int, int, int]]:
    """Per-layer strides for a (t, h, w) down/upsampling by powers of two: layer i strides 2 along every axis with
    more than i halvings to go, e.g. (4, 2, 2) -> [(2, 2, 2), (2, 1, 1)] (official order, used by both halves)."""
    halvings = []
    for f in factors:
        if f < 1 or f & (f - 1):
            raise ValueError(f"downsample factors must be powers of two, got {factors}")
        halvings.append(int(math.log2(f)))
    return [tuple(2 if n > i else 1 for n in halvings) for i in range(max(halvings))]


def removes_constants(norm: Literal["batch", "group"]) -> bool:
    """Whether the norm subtracts any per-channel constant (BatchNorm does; GroupNorm over several channels
    does not), so a bias just before it is dead (see the module docstring)."""
    return norm == "batch"


class AttentionResidualBlock(nn.Module):
    """x + [norm, ReLU, conv3 to C/2, norm, ReLU, conv1 to C, norm, ReLU, axial attention](x) (paper fig. 3)."""

    def __init__(self, channels: int, heads: int, norm: Literal["batch", "group"]) -> None:
        super().__init__()
        self.block = nn.Sequential(
            norm_layer(norm, channels), nn.ReLU(),
            SamePadConv3d(channels, channels // 2, 3, bias=False),
            norm_layer(norm, channels // 2), nn.ReLU(),
            SamePadConv3d(channels // 2, channels, 1, bias=False),
            norm_layer(norm, channels), nn.ReLU(),
            AxialAttention(channels, heads, out_bias=not removes_constants(norm)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


def residual_stack(channels: int, n_res_layers: int, heads: int, norm: Literal["batch", "group"]) -> nn.Sequential:
    """n_res_layers attention residual blocks, then a norm and ReLU (official res_stack)."""
    blocks = [AttentionResidualBlock(channels, heads, norm) for _ in range(n_res_layers)]
    return nn.Sequential(*blocks, norm_layer(norm, channels), nn.ReLU())


class Encoder(nn.Module):
    """(B, C, T, H, W) -> (B, n_hiddens, T/t, H/h, W/w)."""

    def __init__(self, in_channels: int, n_hiddens: int, n_res_layers: int, downsample: tuple[int, int, int],
                 heads: int, norm: Literal["batch", "group"]) -> None:
        super().__init__()
        strides = stride_schedule(downsample)
        self.convs = nn.ModuleList(SamePadConv3d(in_channels if i == 0 else n_hiddens, n_hiddens, 4, stride)
                                   for i, stride in enumerate(strides))
        self.conv_last = SamePadConv3d(n_hiddens if strides else in_channels, n_hiddens, 3,
                                       bias=not removes_constants(norm))
        self.res_stack = residual_stack(n_hiddens, n_res_layers, heads, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for conv in self.convs:
            h = F.relu(conv(h))  # each halves the axes with a factor left
        return self.res_stack(self.conv_last(h))  # (B, n_hiddens, T', H', W')


class Decoder(nn.Module):
    """(B, n_hiddens, T', H', W') -> (B, C, T'·t, H'·h, W'·w)."""

    def __init__(self, out_channels: int, n_hiddens: int, n_res_layers: int, upsample: tuple[int, int, int],
                 heads: int, norm: Literal["batch", "group"]) -> None:
        super().__init__()
        strides = stride_schedule(upsample)
        self.res_stack = residual_stack(n_hiddens, n_res_layers, heads, norm)
        self.convts = nn.ModuleList(
            SamePadConvTranspose3d(n_hiddens, out_channels if i == len(strides) - 1 else n_hiddens, 4, stride)
            for i, stride in enumerate(strides))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = self.res_stack(h)
        for i, convt in enumerate(self.convts):
            h = convt(h)  # each doubles the axes with a factor left
            if i < len(self.convts) - 1:
                h = F.relu(h)  # no activation on the output: x̂ is unbounded, like x's MSE target
        return h


class VQVAE(nn.Module):
    """Encoder, pre-codebook 1x1x1 conv, EMA codebook, post-codebook 1x1x1 conv, decoder (paper §3.1).

    Defaults are the paper's (appendix A): 2048 codes of width 256, 240 hidden channels, 4 residual blocks,
    2 attention heads, 4x4x4 downsampling, β = 0.25.
    """

    def __init__(self, channels: int = 3, n_codes: int = 2048, embedding_dim: int = 256, n_hiddens: int = 240,
                 n_res_layers: int = 4, downsample: tuple[int, int, int] = (4, 4, 4), heads: int = 2,
                 norm: Literal["batch", "group"] = "batch", commitment_beta: float = 0.25, ema_decay: float = 0.99,
                 restart_threshold: float = 1.0, data_variance: float = DATA_VARIANCE) -> None:
        super().__init__()
        self.downsample = tuple(downsample)
        self.commitment_beta, self.data_variance = commitment_beta, data_variance
        self.encoder = Encoder(channels, n_hiddens, n_res_layers, self.downsample, heads, norm)
        self.pre_vq_conv = SamePadConv3d(n_hiddens, embedding_dim, 1)
        self.codebook = Codebook(n_codes, embedding_dim, decay=ema_decay, restart_threshold=restart_threshold)
        self.post_vq_conv = SamePadConv3d(embedding_dim, n_hiddens, 1, bias=not removes_constants(norm))
        self.decoder = Decoder(channels, n_hiddens, n_res_layers, self.downsample, heads, norm)

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        """(T', H', W') of the code grid of a (frames, height, width) clip."""
        sizes = (frames, height, width)
        for size, factor, name in zip(sizes, self.downsample, ("frames", "height", "width")):
            if size % factor:
                raise ValueError(f"clip {name} {size} is not divisible by the downsampling factor {factor}")
        return tuple(s // f for s, f in zip(sizes, self.downsample))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> pre-codebook vectors z (B, D, T', H', W')."""
        self.latent_shape(*x.shape[2:])  # a clear error for sizes the strides cannot divide
        return self.pre_vq_conv(self.encoder(x))

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) in [-1, 1] -> codes (B, T', H', W') long."""
        z = self.embed(x)  # (B, D, T', H', W')
        B, D, T, H, W = z.shape
        return self.codebook.nearest(z.permute(0, 2, 3, 4, 1).reshape(-1, D)).view(B, T, H, W)

    def decode_embeddings(self, e: torch.Tensor) -> torch.Tensor:
        """Code vectors (B, D, T', H', W') -> x̂ (B, C, T, H, W)."""
        return self.decoder(self.post_vq_conv(e))

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, T', H', W') long -> x̂ (B, C, T, H, W)."""
        return self.decode_embeddings(self.codebook.lookup(codes))

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor], CodebookStats]:
        """Reconstruct x (B, C, T, H, W). Returns x̂, the losses and log values, and the codebook statistics for
        `self.codebook.update` (which the caller applies once per optimizer step). `generator` draws the
        codebook's restart candidates.

        losses: "loss" = recon_mse / data_variance + β · commitment (what to minimise), "recon_mse",
        "commitment" (unweighted), "perplexity", "codes_used".
        """
        q = self.codebook(self.embed(x), generator)
        x_hat = self.decode_embeddings(q.embeddings)  # (B, C, T, H, W)
        recon_mse = F.mse_loss(x_hat.float(), x.float())
        loss = recon_mse / self.data_variance + self.commitment_beta * q.commitment
        logs = {"loss": loss, "recon_mse": recon_mse, "commitment": q.commitment, "perplexity": q.perplexity,
                "codes_used": q.codes_used}
        return x_hat, logs, q.stats
