"""Streaming feature extraction: uint8 clips in, detector features out to accumulators, batch by batch.

Real and fake folders are decoded by DataLoader workers; a generator run is sampled on the device and never
written to disk. Only one batch of clips and its features are alive at a time, so memory does not grow with
the number of videos (the accumulators decide what they keep: moments for FVD, rows for KVD).

Clips have 3 channels, or 1 (a grayscale run's samples, or videos read in grayscale): the detectors (I3D,
Inception) take RGB, so a gray clip reaches them as gray RGB, its channel repeated, as write_mp4 would store it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Protocol as TypingProtocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from vidgen.core import layout
from vidgen.core.data.sources import Video
from vidgen.metrics.detectors import Detector


class FeatureSink(TypingProtocol):
    def update(self, features: np.ndarray) -> None: ...


class ClipDataset(Dataset):
    """Clip i: frames starts[i], starts[i] + stride, ... of videos[i], as uint8 [T, H, W, C] (C: as the videos
    read, 3 or 1)."""

    def __init__(self, videos: Sequence[Video], starts: Sequence[int], frames: int, stride: int) -> None:
        if len(videos) != len(starts):
            raise ValueError(f"{len(videos)} videos but {len(starts)} starts")
        self.videos, self.starts, self.frames, self.stride = list(videos), list(starts), frames, stride

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int) -> torch.Tensor:
        frames = self.starts[index] + self.stride * np.arange(self.frames)
        return torch.from_numpy(np.ascontiguousarray(self.videos[index].read(frames)))  # (T, H, W, C)


def _as_list(items: list[torch.Tensor]) -> list[torch.Tensor]:
    return items  # clips may differ in size: the extractor stacks runs of equal shape


def clip_batches(dataset: ClipDataset, batch_size: int, workers: int,
                 pin_memory: bool = False) -> Iterator[list[torch.Tensor]]:
    """Batches of clips decoded by `workers` DataLoader processes (0: in this process), in order."""
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=_as_list,
                        pin_memory=pin_memory, shuffle=False)
    yield from loader


def generated_batches(sample: Callable[[list[int]], torch.Tensor], seeds: Sequence[int], batch_size: int,
                      stride: int = 1) -> Iterator[torch.Tensor]:
    """Generate one video per seed, `batch_size` at a time, as uint8 [B, T, H, W, C] on the sampler's device.

    `sample(seeds)` returns float [B, C, T', H, W] in [-1, 1] (frames 0, 1, ...); every `stride`-th frame is
    kept, and pixels are quantised exactly as a written sample's are (layout.to_uint8).
    """
    for start in range(0, len(seeds), batch_size):
        videos = sample(list(seeds[start:start + batch_size]))  # (B, C, T', H, W)
        yield layout.to_uint8(videos[:, :, ::stride])  # (B, T, H, W, C)


def extract_features(batches: Iterable[torch.Tensor | Sequence[torch.Tensor]], detector: Detector,
                     device: torch.device, sinks: Sequence[FeatureSink],
                     advance: Callable[[int], None] | None = None) -> int:
    """Run the detector over every batch (a uint8 tensor [B, T, H, W, C] or a list of [T, H, W, C] clips, C = 3
    or 1: gray, fed as gray RGB) and hand each batch's features, float64 [N, dim], to every sink. Returns the number
    of clips seen."""
    seen = 0
    with torch.inference_mode():
        for batch in batches:
            for videos in _equal_shape_stacks(batch):
                videos = as_rgb(videos.to(device, non_blocking=True))  # (B, T, H, W, 3)
                features = detector.module(videos).double().cpu().numpy()  # (B, dim) or (B·T, dim)
                for sink in sinks:
                    sink.update(features)
                seen += len(videos)
                if advance is not None:
                    advance(len(videos))
    return seen


def as_rgb(videos: torch.Tensor) -> torch.Tensor:
    """uint8 [..., C] -> [..., 3]: RGB as it is, gray (C = 1) with its channel repeated (a view, no copy)."""
    if videos.shape[-1] == 3:
        return videos
    if videos.shape[-1] != 1:
        raise ValueError(f"expected RGB or gray videos [..., 3 | 1], got {tuple(videos.shape)}")
    return videos.expand(*videos.shape[:-1], 3)


def _equal_shape_stacks(batch: torch.Tensor | Sequence[torch.Tensor]) -> Iterator[torch.Tensor]:
    """A tensor batch as it is; a list of clips as stacks of consecutive clips with equal shapes."""
    if isinstance(batch, torch.Tensor):
        yield batch
        return
    run: list[torch.Tensor] = []
    for clip in batch:
        if run and clip.shape != run[0].shape:
            yield torch.stack(run)
            run = []
        run.append(clip)
    if run:
        yield torch.stack(run)
