"""Which frames of a video make one training clip. Pure numpy, so configs can name them without torch.

A clip sampler picks frame indices for a video of `num_frames` frames from a numpy generator; `span` is the
shortest video it can use (shorter ones are skipped when a dataset is indexed), and `too_short_hint` names the
settings that set the span, for the message when no video is long enough.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


class ClipSampler(Protocol):
    frames: int

    @property
    def span(self) -> int:
        """Source frames the longest clip covers: the shortest usable video."""

    @property
    def too_short_hint(self) -> str:
        """What to change when every video is shorter than `span`."""

    def choose(self, num_frames: int, rng: np.random.Generator) -> np.ndarray:
        """Increasing frame indices (frames,) of one clip of a video with num_frames frames."""


@dataclass(frozen=True)
class ContiguousClips:
    """Clips of `frames` frames, `stride` source frames apart, starting anywhere they fit (diffusion)."""

    frames: int
    stride: int = 1

    @property
    def span(self) -> int:
        return (self.frames - 1) * self.stride + 1

    @property
    def too_short_hint(self) -> str:
        return "lower data.frames or data.frame_stride"

    def choose(self, num_frames: int, rng: np.random.Generator) -> np.ndarray:
        """Frame indices of a clip whose start is uniform over the valid starts."""
        if num_frames < self.span:
            raise ValueError(f"a video of {num_frames} frames is shorter than a clip ({self.span} frames)")
        start = int(rng.integers(0, num_frames - self.span + 1))
        return start + self.stride * np.arange(self.frames)


@dataclass(frozen=True)
class SparseClips:
    """k frames at irregular times, StyleGAN-V's real clips (Skorokhodov et al. 2022, Sec. 3.3; the released
    code's random_frame_sampling):

    1. the first-to-last distance d is uniform over `distances` that fit the video (d <= num_frames - 1);
    2. the first frame is uniform over [0, num_frames - d - 1];
    3. the k - 2 middle frames sit at distinct integer offsets in [1, d - 1], uniformly.
    """

    frames: int
    distances: tuple[int, ...]
    """Allowed first-to-last distances (StyleGAN-V: the powers of two in [k - 1, max_frame_distance])."""

    def __post_init__(self) -> None:
        if self.frames < 2 or not self.distances or min(self.distances) < self.frames - 1:
            raise ValueError(f"bad sparse clips: {self.frames} frames with distances {self.distances}")

    @property
    def span(self) -> int:
        # Videos shorter than the longest distance would never show the slowest motions D is trained on.
        return max(self.distances) + 1

    @property
    def too_short_hint(self) -> str:
        return "lower model.max_frame_distance"

    def choose(self, num_frames: int, rng: np.random.Generator) -> np.ndarray:
        fitting = [d for d in self.distances if d <= num_frames - 1]
        if not fitting:
            raise ValueError(f"a video of {num_frames} frames is shorter than a clip ({min(self.distances) + 1})")
        d = int(rng.choice(fitting))
        start = int(rng.integers(0, num_frames - d))
        middle = rng.choice(np.arange(1, d), size=self.frames - 2, replace=False)
        return start + np.sort(np.concatenate([[0], middle, [d]]))
