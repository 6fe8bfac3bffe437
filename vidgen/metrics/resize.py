"""TF1-style bilinear resize, as the detectors' reference pipelines apply it.

tf.image.resize_bilinear (TF1, align_corners=False, half_pixel_centers=False) samples output pixel i at input
coordinate i · (in / out) — no half-pixel offset — and interpolates linearly between the two neighbouring
pixels, the upper one clamped to the last row/column. torch's interpolate(align_corners=False) samples at
(i + ½) · (in / out) − ½ instead, which shifts the image and changes FVD/FID.

The resize is separable, so it is written as two small matrices: out = R_h · x · R_wᵀ with R [out, in]
holding the interpolation weights (built in float64). This is exact, runs as matrix products on any device,
and downsampling by large factors costs no more than upsampling.
"""

from __future__ import annotations

import torch


def tf1_resize_matrix(size_in: int, size_out: int, dtype: torch.dtype = torch.float64,
                      device: torch.device | str | None = None) -> torch.Tensor:
    """R [size_out, size_in]: row i holds the weights of output pixel i over the input pixels."""
    source = torch.arange(size_out, dtype=torch.float64) * (size_in / size_out)  # i · (in / out)
    lower = source.floor().clamp(max=size_in - 1)
    upper = (lower + 1).clamp(max=size_in - 1)
    frac = source - lower
    rows = torch.arange(size_out)
    weights = torch.zeros(size_out, size_in, dtype=torch.float64)
    weights[rows, lower.long()] += 1.0 - frac
    weights[rows, upper.long()] += frac  # upper == lower at the last pixel: the weights still sum to 1
    return weights.to(dtype=dtype, device=device)


def tf1_resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize the last two dimensions [..., H, W] of a float tensor to `size` = (height, width)."""
    height, width = images.shape[-2:]
    if (height, width) == tuple(size):
        return images
    rows = tf1_resize_matrix(height, size[0], images.dtype, images.device)  # (h, H)
    cols = tf1_resize_matrix(width, size[1], images.dtype, images.device)  # (w, W)
    return rows @ (images @ cols.T)  # (..., h, w)
