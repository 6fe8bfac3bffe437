"""Axial self-attention over a video's T, H and W axes separately (Ho et al. 2019, arXiv 1912.12180), as in
VideoGPT's attention residual blocks (Yan et al. 2021, arXiv 2104.10157, §3.1 and fig. 3).

Each axis has its own multi-head attention; a position attends only to the positions that share its other two
coordinates (a fibre along the axis). The three outputs are summed, as in the official AxialBlock (not applied one
after another). Cost: B·T·H·W·(T + H + W) instead of (B·T·H·W)² for full attention.

Shapes: videos are float (B, C, T, H, W).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

AXES = {"t": 1, "h": 2, "w": 3}
"""Where each axis lies in the channels-last layout (B, T, H, W, C)."""


class AxisAttention(nn.Module):
    """Multi-head self-attention along one axis of (B, T, H, W, C) tokens. q, k, v projections without bias and an
    output projection with bias (unless `out_bias` is False), initialised N(0, 1/C) as the official
    MultiHeadAttention (n_layer = 1)."""

    def __init__(self, channels: int, heads: int, axis: str, out_bias: bool = True) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"axial attention: {channels} channels are not divisible by {heads} heads")
        self.heads, self.axis = heads, AXES[axis]
        self.qkv = nn.Linear(channels, 3 * channels, bias=False)
        self.out = nn.Linear(channels, channels, bias=out_bias)
        nn.init.normal_(self.qkv.weight, std=1.0 / math.sqrt(channels))
        nn.init.normal_(self.out.weight, std=1.0 / math.sqrt(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, H, W, C) -> (B, T, H, W, C)."""
        C = x.shape[-1]
        x = x.movedim(self.axis, 3)  # (B, a, b, L, C): L the attended axis, a and b the two others
        B, a, b, L, _ = x.shape
        qkv = self.qkv(x).reshape(B * a * b, L, 3, self.heads, C // self.heads)  # (N, L, 3, h, d), N = B·a·b fibres
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # 3 x (N, h, L, d): 4-D, so the fused SDPA kernels apply on GPU
        h = F.scaled_dot_product_attention(q, k, v)  # (N, h, L, d), softmax(q·k / sqrt(d)) v along L
        h = self.out(h.transpose(1, 2).reshape(B, a, b, L, C))  # (B, a, b, L, C)
        return h.movedim(3, self.axis)  # (B, T, H, W, C)


class AxialAttention(nn.Module):
    """Sum of the self-attentions along T, H and W (official AxialBlock): (B, C, T, H, W) -> (B, C, T, H, W).
    No residual here: the attention residual block around it adds x."""

    def __init__(self, channels: int, heads: int = 2, out_bias: bool = True) -> None:
        super().__init__()
        self.attn_t = AxisAttention(channels, heads, "t", out_bias)
        self.attn_h = AxisAttention(channels, heads, "h", out_bias)
        self.attn_w = AxisAttention(channels, heads, "w", out_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.permute(0, 2, 3, 4, 1)  # (B, T, H, W, C)
        h = self.attn_t(tokens) + self.attn_h(tokens) + self.attn_w(tokens)  # (B, T, H, W, C)
        return h.permute(0, 4, 1, 2, 3)  # (B, C, T, H, W)
