"""The one tensor layout convention, converted in exactly one place.

- IO boundary (files, datasets, writers): uint8 video [T, H, W, C] (a batch: [B, T, H, W, C]).
- Inside models: float [B, C, T, H, W] in [-1, 1].
"""

from __future__ import annotations

from pathlib import Path

import torch

from vidgen.errors import UserError


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


def read_video_file(path: str | Path, device: torch.device, channels: int = 3) -> torch.Tensor:
    """A whole video file as a model of `channels` channels (its data.channels) sees it, e.g. a video to condition
    on: float [C, T, H, W] in [-1, 1]. With channels 1, the frames' luma (io.rgb_to_gray, as training data is
    converted); a file in colour is then a UserError rather than a silent conversion, since the model was trained
    on gray footage. A gray file for an RGB model is fine: it reads as gray RGB. A missing or damaged file is a
    one-line UserError."""
    from vidgen.core.io import is_colour, read_video, rgb_to_gray  # PyAV, only when a file is read

    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    frames = read_video(Path(path))  # [T, H, W, 3] uint8
    if channels == 1:
        if is_colour(frames):
            raise UserError(f"{path} is in colour but the model takes grayscale video (data.channels 1); convert it "
                            f"first, e.g. `ffmpeg -i {path} -vf format=gray gray.mp4`")
        frames = rgb_to_gray(frames)  # [T, H, W, 1]
    return to_model(torch.from_numpy(frames)[None].to(device))[0]
