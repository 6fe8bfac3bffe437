"""The order of training samples, and the deterministic, resumable loader that draws them.

A training item is addressed by a key (video index, clip seed), so it is a pure function of its key; the
sampler makes keys a pure function of (seed, sample number). Batches therefore do not depend on the number
of workers, and a resumed run continues with exactly the samples it would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import DataLoader, Sampler

from vidgen.core.data.dataset import VideoDataset


def epoch_order(seed: int, epoch: int, num_videos: int) -> np.ndarray:
    """The order in which epoch `epoch` visits the videos."""
    return np.random.default_rng([seed, 0, epoch]).permutation(num_videos)  # 0, 1: separate streams


def clip_seed(seed: int, sample: int) -> int:
    """The seed that picks sample `sample`'s clip."""
    return int(np.random.SeedSequence([seed, 1, sample]).generate_state(1, np.uint64)[0])


def sample_key(seed: int, num_videos: int, sample: int) -> tuple[int, int]:
    """(video index, clip seed) of sample number `sample`: a pure function, so any sample can be recreated."""
    epoch, position = divmod(sample, num_videos)
    return int(epoch_order(seed, epoch, num_videos)[position]), clip_seed(seed, sample)


class TrainSampler(Sampler[tuple[int, int]]):
    """Endless keys sample_key(seed, N, k) for k = start, start + 1, ...; rank r of world_size takes the
    k with k % world_size == r. `start` counts samples drawn by all ranks together (steps x global batch)."""

    def __init__(self, num_videos: int, seed: int, start: int = 0, rank: int = 0, world_size: int = 1) -> None:
        if num_videos < 1 or not 0 <= rank < world_size or start < 0:
            raise ValueError(f"bad sampler: num_videos={num_videos}, rank={rank}, world_size={world_size}, "
                             f"start={start}")
        self.num_videos, self.seed, self.start = num_videos, seed, start
        self.rank, self.world_size = rank, world_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        sample = self.start + (self.rank - self.start) % self.world_size  # first k >= start on this rank
        epoch, order = -1, np.empty(0, np.int64)
        while True:
            if sample // self.num_videos != epoch:  # one permutation per epoch, not per sample
                epoch = sample // self.num_videos
                order = epoch_order(self.seed, epoch, self.num_videos)
            yield int(order[sample % self.num_videos]), clip_seed(self.seed, sample)
            sample += self.world_size


def make_train_loader(dataset: VideoDataset, batch_size: int, seed: int, start_sample: int, workers: int,
                      pin_memory: bool = False, rank: int = 0, world_size: int = 1) -> DataLoader:
    """Endless batches {"video": uint8 [B, F (+ M image frames), R, R, C] (C = data.channels), "times": float32
    [B, F], "index": long [B], "video_frames": long [B] (each source video's length), with data.labels "label": long
    [B]}, beginning at sample `start_sample`; identical for any number of workers."""
    sampler = TrainSampler(len(dataset), seed, start_sample, rank, world_size)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      persistent_workers=workers > 0, pin_memory=pin_memory)
