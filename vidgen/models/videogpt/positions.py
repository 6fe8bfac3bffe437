"""Spatio-temporal position embeddings for the VideoGPT prior that are defined for any number of latent frames.

VideoGPT (Yan et al. 2021, arXiv 2104.10157, §3.2) gives each token of the flattened (T', H', W') code grid an
axial position embedding: one learned table per axis, broadcast over the other axes (the official
`AddBroadcastPosEmbed` concatenates three tables of width D/3). The tables are sized for the training grid, so
the official prior cannot sample a longer video (its users' issue #22).

Here every axis has its own embedding e_a(p) = W_a · s(p), where s(p) are fixed transformer sinusoids of the
integer position p and W_a is a learned linear map; a token at (t, h, w) gets e_t(t) + e_h(h) + e_w(w).
Why this choice:
- it is as expressive as a learned table on the training grid (the sinusoid features of distinct positions are
  linearly independent, so W_a can give any table), so nothing is lost on the trained length;
- it is a function of p, so it is defined for every t: a grid with more frames than trained gets bounded
  embeddings (|s| <= 1) and the first T' frames keep exactly the embeddings they had (tested);
- beyond the trained length the high-frequency features repeat values the model has seen, and
  s(p + k) is a fixed rotation of s(p) (Vaswani et al. 2017, §3.5), so extrapolation is smooth rather than a
  table lookup out of range; how well a longer sample looks is still an empirical question.
One code path serves the code grid and the context-frame grid (whose size depends on the frame resolution).
"""

from __future__ import annotations

import math

import torch
from torch import nn

MAX_PERIOD = 10_000.0
"""The longest sinusoid period, in positions (Vaswani et al. 2017): far above any grid length, so positions
never alias."""


def sinusoidal_features(positions: torch.Tensor, features: int, max_period: float = MAX_PERIOD) -> torch.Tensor:
    """Transformer sinusoids (Vaswani et al. 2017, §3.5) of integer positions: (N,) -> (N, features), the first
    half sines and the second half cosines of p·ω_k, with ω_k = max_period^(-k / (features/2))."""
    half = features // 2
    k = torch.arange(half, device=positions.device, dtype=torch.float64)
    freqs = torch.exp(-math.log(max_period) * k / half)  # (half,)
    angles = positions.double()[:, None] * freqs[None, :]  # (N, half), float64 so large p stay exact
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)  # (N, features)


class AxialPositionEmbedding(nn.Module):
    """Sum over axes of a learned linear map of each axis's sinusoids: grid shape (n_0, n_1, ...) ->
    (n_0·n_1·..., width), in raster order (last axis fastest), the order the prior flattens the code grid in.

    `init_std` is the standard deviation of each output entry at initialisation (the official tables start at
    0.01), so positions start as a small perturbation of the token embeddings."""

    def __init__(self, width: int, axes: int = 3, init_std: float = 0.01) -> None:
        super().__init__()
        self.features = 2 * (width // 2)
        self.axes = nn.ModuleList(nn.Linear(self.features, width, bias=False) for _ in range(axes))
        for proj in self.axes:
            # Each sinusoid feature has mean square 1/2, so an output entry has std init_std·sqrt(features/2)·w.
            nn.init.normal_(proj.weight, std=init_std / math.sqrt(self.features / 2))

    def forward(self, shape: tuple[int, ...]) -> torch.Tensor:
        if len(shape) != len(self.axes):
            raise ValueError(f"grid shape {tuple(shape)} has {len(shape)} axes, the embedding was built for "
                             f"{len(self.axes)}")
        weight = self.axes[0].weight
        total = torch.zeros((), device=weight.device, dtype=weight.dtype)
        for i, (n, proj) in enumerate(zip(shape, self.axes)):
            s = sinusoidal_features(torch.arange(n, device=weight.device), self.features).to(weight.dtype)
            e = proj(s)  # (n, width)
            # Broadcast axis i over the others: (1, ..., n, ..., 1, width).
            total = total + e.view(*(1,) * i, n, *(1,) * (len(shape) - i - 1), -1)
        return total.reshape(-1, total.shape[-1])  # (prod(shape), width)
