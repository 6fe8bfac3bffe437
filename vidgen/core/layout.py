"""The one tensor layout convention, converted in exactly one place.

- IO boundary (files, datasets, writers): uint8 video [T, H, W, C] (a batch: [B, T, H, W, C]).
- Inside models: float [B, C, T, H, W] in [-1, 1].
"""

from __future__ import annotations

from pathlib import Path

import torch


def to_model(videos: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 [B, T, H, W, C] -> float [B, C, T, H, W] in [-1, 1]."""
    if videos.dtype != torch.uint8 or videos.ndim != 5:
        raise ValueError(f"expected uint8 [B, T, H, W, C], got {videos.dtype} {tuple(videos.shape)}")
    return videos.permute(0, 4, 1, 2, 3).to(dtype) / 127.5 - 1.0


def to_uint8(videos: torch.Tensor) -> torch.Tensor:
    """float [B, C, T, H, W] in [-1, 1] -> uint8 [B, T, H, W, C] (clamped, rounded to nearest)."""
    if videos.ndim != 5:
        raise ValueError(f"expected float [B, C, T, H, W], got {tuple(videos.shape)}")
    pixels = ((videos.float().clamp(-1.0, 1.0) + 1.0) * 127.5).round()
    return pixels.to(torch.uint8).permute(0, 2, 3, 4, 1).contiguous()


def read_video_file(path: str | Path, device: torch.device) -> torch.Tensor:
    """A whole video file as a model sees it, e.g. a video to condition on: float [C, T, H, W] in [-1, 1]. A
    missing or damaged file is a one-line UserError."""
    from vidgen.core.io import read_video  # PyAV, only when a file is read

    frames = torch.from_numpy(read_video(Path(path)))  # [T, H, W, C] uint8
    return to_model(frames[None].to(device))[0]
