"""Evaluation protocols as data, named by their budget (as stylegan2-ada's metric registry is).

A protocol fixes everything that moves the number: the detector, the statistic, how many videos, how many
frames at which stride, which real clips (one per video, at a random offset drawn from the seed), which
fake clips (each generated video from t = 0), and the detector's input convention (TF1 bilinear resize to
224 for I3D or 299 for Inception, no crop; pixels quantised to uint8 first — generated videos with
vidgen.core.layout.to_uint8, round((x + 1) · 127.5), the same pixels a written sample holds before its codec).

No torch import here: `vidgen --help` lists these names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from vidgen.errors import ConfigError

DETECTOR_INPUT = {
    "i3d": "uint8 -> float, TF1 bilinear resize to 224x224 (no crop), x/127.5 - 1; 400 logits averaged over time",
    "inception": "uint8 -> float, TF1 bilinear resize to 299x299 (no crop), (x - 128)/128; 2048-d pool features "
                 "per frame",
}


@dataclass(frozen=True)
class Protocol:
    name: str
    detector: Literal["i3d", "inception"]
    statistic: Literal["frechet", "kernel"]
    """frechet: Fréchet distance of Gaussians fitted to the features (FVD, FID); kernel: unbiased MMD² with
    the cubic polynomial kernel (KVD, KID)."""
    num_videos: int
    """Clips on each side: real, one per video; fake, one per generated video."""
    frames: int
    """Frames per clip given to the detector (the per-frame detector sees num_videos x frames images)."""
    stride: int = 1
    """Source frames between consecutive clip frames (subsample8f: every 8th frame)."""
    resolution: int = 224
    """Side of the square the detector's input is resized to (I3D 224, Inception 299)."""
    num_subsets: int | None = None
    """Kernel statistic only: average over this many random subsets (None: one estimate on all samples)."""
    subset_size: int | None = None
    """Kernel statistic only: samples per side in each subset."""
    description: str = ""

    def __post_init__(self) -> None:
        if min(self.num_videos, self.frames, self.stride, self.resolution) < 1:
            raise ValueError(f"protocol {self.name}: num_videos, frames, stride and resolution must be >= 1")
        if self.statistic == "frechet" and (self.num_subsets or self.subset_size):
            raise ValueError(f"protocol {self.name}: subsets apply to the kernel statistic only")

    @property
    def span(self) -> int:
        """Source frames one clip covers: (frames − 1) · stride + 1."""
        return (self.frames - 1) * self.stride + 1

    @property
    def clip_key(self) -> tuple[str, int, int, int, int]:
        """Protocols with equal keys see the same clips and the same features (fvd2048_16f, kvd2048_16f)."""
        return self.detector, self.num_videos, self.frames, self.stride, self.resolution

    def label(self, count: int) -> str:
        """The name, with the sample count when fewer than the protocol asks for were used."""
        return self.name if count >= self.num_videos else f"{self.name} (n={count})"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "span": self.span, "input": DETECTOR_INPUT[self.detector],
                "real_clips": "one per video, offset uniform over the valid starts from the seed",
                "fake_clips": "one per generated video, from t = 0"}


PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (
    Protocol("fvd2048_16f", "i3d", "frechet", 2048, 16,
             description="FVD, 2048 clips of 16 consecutive frames (the common protocol)"),
    Protocol("fvd2048_128f", "i3d", "frechet", 2048, 128,
             description="FVD, 2048 clips of 128 consecutive frames (long videos)"),
    Protocol("fvd2048_128f_subsample8f", "i3d", "frechet", 2048, 16, stride=8,
             description="FVD, 2048 clips spanning 128 frames, every 8th frame given to I3D (16 frames)"),
    Protocol("kvd2048_16f", "i3d", "kernel", 2048, 16,
             description="KVD, unbiased MMD² on the I3D logits of 2048 16-frame clips, no subsets (as DIGAN)"),
    Protocol("fid50k", "inception", "frechet", 3125, 16, resolution=299,
             description="FID on frames: 3125 clips x 16 frames = 50,000 frames per side"),
)}


def get_protocols(names: str | Sequence[str | Protocol]) -> list[Protocol]:
    """Protocols by name ("a,b" or a list; Protocol objects pass through). Unknown names list the known ones."""
    items = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
    protocols = []
    for item in items:
        if isinstance(item, Protocol):
            protocols.append(item)
        elif item not in PROTOCOLS:
            raise ConfigError(f"unknown metric '{item}'; known metrics: {', '.join(PROTOCOLS)}")
        else:
            protocols.append(PROTOCOLS[item])
    if not protocols:
        raise ConfigError(f"no metric given; known metrics: {', '.join(PROTOCOLS)}")
    if len({p.name for p in protocols}) != len(protocols):
        raise ConfigError(f"a metric is named twice in {', '.join(p.name for p in protocols)}")
    return protocols


# ----------------------------------------------------------------------------------------------------------
# Clip selection


@dataclass(frozen=True)
class ClipSelection:
    videos: tuple[int, ...]
    """Indices of the chosen videos, increasing."""
    starts: tuple[int, ...]
    """First frame of each chosen video's clip."""
    too_short: tuple[int, ...]
    """Indices of the videos shorter than one clip (never chosen)."""


def select_real_clips(num_frames: Sequence[int], protocol: Protocol, seed: int) -> ClipSelection:
    """One clip per video. With more usable videos than the protocol needs, a random subset (from the seed);
    each clip's start is uniform over the starts where it fits, drawn from (seed, video index) alone, so it
    does not depend on the other videos or on the number of workers."""
    span = protocol.span
    usable = [i for i, n in enumerate(num_frames) if n >= span]
    too_short = tuple(i for i, n in enumerate(num_frames) if n < span)
    if len(usable) > protocol.num_videos:
        chosen = np.random.default_rng([seed, 0]).choice(usable, size=protocol.num_videos, replace=False)
        usable = sorted(int(i) for i in chosen)
    starts = tuple(int(np.random.default_rng([seed, 1, i]).integers(0, num_frames[i] - span + 1)) for i in usable)
    return ClipSelection(tuple(usable), starts, too_short)


def select_fake_clips(num_frames: Sequence[int], protocol: Protocol) -> ClipSelection:
    """The first `num_videos` videos (in the given, sorted order) long enough for a clip, each from frame 0."""
    span = protocol.span
    usable = [i for i, n in enumerate(num_frames) if n >= span][:protocol.num_videos]
    too_short = tuple(i for i, n in enumerate(num_frames) if n < span)
    return ClipSelection(tuple(usable), (0,) * len(usable), too_short)
