"""The multi-level pyramid of TGANv2 (Saito et al., IJCV 2020, Sec. 3: subsampling layers and the multiple
discriminators): which frames, which videos and which resolution each level has. The generator (between its levels)
and the real clips (RealPyramid, the data layer's clip transform, as the reference's MultiLevelDataset in
tgan2/datasets/multi_level.py, with the batch striding of tgan2/updaters/dirac_updater.py) both go through the
functions below, so a real and a generated level always agree.

The rule, for L = len(frame_factors) + 1 levels, level 0 the lowest resolution:

    frames:      level 0 keeps every frame; level l + 1 keeps level l's frames phase_l, phase_l + f_l, ...
                 (f_l = frame_factors[l], 0 <= phase_l < f_l; random in training, as the reference's
                 numpy.random.randint(f_l): for the generator one phase per level for the whole batch, for
                 real clips one per level and clip)
    videos:      level l + 1 keeps level l's videos 0, b_l, 2 b_l, ... (b_l = batch_factors[l]; the reference's
                 subsample_batch: h[::b_l] in the generator, a[::cumprod(b)] for the real levels)
    resolution:  the top level has the clip's resolution R; each level below halves it: R / 2^(L - 1 - l).
                 Real clips are resized by box averaging over 2^(L-1-l) x 2^(L-1-l) pixel blocks (the reference's
                 `pooling`, a reshape-mean), generated levels come out of the generator's rendering heads.

Shapes for the default UCF-101 192x192 setting (16 frames, 4 levels, frame_factors (2, 2, 2), batch B; with
batch_factors (2, 2, 2) the batch column reads B, B/2, B/4, B/8 instead):

    level   [B_l, C, T_l, H_l, W_l]     frames kept (phases (p0, p1, p2))
    0       [B, 3, 16,  24,  24]        0, 1, ..., 15
    1       [B, 3,  8,  48,  48]        p0 + 2k
    2       [B, 3,  4,  96,  96]        p0 + 2 p1 + 4k
    3       [B, 3,  2, 192, 192]        p0 + 2 p1 + 4 p2 + 8k

A real clip's phases come from its own generator in the data layer (seeded by the clip's key), the generator's from
the step's noise stream, so a run is reproducible from its seed. Each level's frames are uniformly distributed in
time for real and generated videos alike, which is what the discriminators compare.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from vidgen.core import layout
from vidgen.models.tganv2.config import TGANv2Config


@dataclass(frozen=True)
class PyramidSpec:
    """What the pyramid rule needs: the factors between levels and the top level's resolution."""

    frame_factors: tuple[int, ...]
    batch_factors: tuple[int, ...]
    resolution: int
    """Side of the top level's frames (the real clips' resolution)."""

    @classmethod
    def from_config(cls, cfg: TGANv2Config) -> PyramidSpec:
        return cls(tuple(cfg.frame_factors), tuple(cfg.batch_factors), cfg.resolution)

    @property
    def levels(self) -> int:
        return len(self.frame_factors) + 1

    @property
    def resolutions(self) -> tuple[int, ...]:
        return level_resolutions(self.resolution, self.levels)


# ----------------------------------------------------------------------------------------------------------
# The rule


def subsample_frames(x: torch.Tensor, factor: int, phase: int, dim: int = 2) -> torch.Tensor:
    """Keep frames phase, phase + factor, phase + 2 factor, ... along `dim` (2 in [B, C, T, H, W], -3 in a clip
    [C, T, H, W] or a batch; the generator calls it on its [B, T, C, H, W] features with dim 1). A view, no copy."""
    if not 0 <= phase < factor:
        raise ValueError(f"phase must lie in [0, {factor}), got {phase}")
    index = [slice(None)] * x.ndim
    index[dim] = slice(phase, None, factor)
    return x[tuple(index)]


def subsample_batch(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Keep videos 0, factor, 2 factor, ... (dim 0; also for a batch of labels). A view, no copy."""
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    return x[::factor]


def draw_phases(frame_factors: Sequence[int], generator: torch.Generator | None = None) -> tuple[int, ...]:
    """One frame phase per level transition: uniform in [0, f_l) from `generator` (training, as the reference's
    random offset), or all 0 without one (a fixed, reproducible pyramid)."""
    if generator is None:
        return tuple(0 for _ in frame_factors)
    return tuple(int(torch.randint(f, (), generator=generator, device=generator.device)) for f in frame_factors)


def check_phases(frame_factors: Sequence[int], phases: Sequence[int] | None) -> tuple[int, ...]:
    """`phases` as a tuple after checking it has one valid phase per level transition (None: all 0)."""
    if phases is None:
        return draw_phases(frame_factors)
    phases = tuple(int(p) for p in phases)
    if len(phases) != len(frame_factors) or not all(0 <= p < f for p, f in zip(phases, frame_factors)):
        raise ValueError(f"phases {list(phases)} must give one phase in [0, f) per frame factor f of "
                         f"{list(frame_factors)}")
    return phases


def level_frame_indices(frames: int, frame_factors: Sequence[int],
                        phases: Sequence[int] | None = None) -> list[list[int]]:
    """The clip frames each level keeps: level 0 all of them, level l + 1 every f_l-th of level l's from phase_l."""
    phases = check_phases(frame_factors, phases)
    indices = [list(range(frames))]
    for factor, phase in zip(frame_factors, phases):
        indices.append(indices[-1][phase::factor])
    return indices


def level_frame_counts(frames: int, frame_factors: Sequence[int]) -> tuple[int, ...]:
    """Frames per level: T, T / f_0, T / (f_0 f_1), ... (T must be divisible by the product of the factors)."""
    if frames % math.prod(frame_factors):
        raise ValueError(f"{frames} frames are not divisible by the frame factors {list(frame_factors)}")
    counts = [frames]
    for factor in frame_factors:
        counts.append(counts[-1] // factor)
    return tuple(counts)


def level_batch_strides(batch_factors: Sequence[int]) -> tuple[int, ...]:
    """Level l keeps videos 0, s_l, 2 s_l, ... of the batch: s = (1, b_0, b_0 b_1, ...)."""
    strides = [1]
    for factor in batch_factors:
        strides.append(strides[-1] * factor)
    return tuple(strides)


def level_resolutions(resolution: int, levels: int) -> tuple[int, ...]:
    """Side of each level's frames, lowest first: the top level's `resolution` halved once per level below it."""
    if resolution % 2 ** (levels - 1):
        raise ValueError(f"resolution {resolution} cannot be halved {levels - 1} times")
    return tuple(resolution // 2 ** (levels - 1 - level) for level in range(levels))


def box_resize(x: torch.Tensor, resolution: int) -> torch.Tensor:
    """[B, C, T, H, W] (or one clip [C, T, H, W]) -> [..., resolution, resolution] by averaging k x k pixel
    blocks, k = H / resolution (the reference's `pooling`: x.reshape(C, T, H/k, k, W/k, k).mean(axis=(3, 5)))."""
    height, width = x.shape[-2:]
    if height != width or height % resolution:
        raise ValueError(f"cannot box-resize {height}x{width} frames to {resolution}x{resolution}")
    k = height // resolution
    return x if k == 1 else F.avg_pool3d(x, kernel_size=(1, k, k))


# ----------------------------------------------------------------------------------------------------------
# Real clips


def level_clips(clip: torch.Tensor, spec: PyramidSpec, phases: Sequence[int] | None = None) -> list[torch.Tensor]:
    """Real clips [..., C, T, R, R] (R = spec.resolution; one clip or a batch) -> the frames and resolution of
    every level, [..., C, T_l, R_l, R_l] lowest resolution first, with the frames of `phases` (None: all 0)."""
    height, width = clip.shape[-2:]
    if height != spec.resolution or width != spec.resolution:
        raise ValueError(f"real clips must be {spec.resolution}x{spec.resolution}, got {height}x{width}")
    level_frame_counts(clip.shape[-3], spec.frame_factors)  # raises on a length the levels cannot split
    phases = check_phases(spec.frame_factors, phases)
    x = clip
    levels = [box_resize(x, spec.resolutions[0])]  # level 0: every frame
    for level in range(1, spec.levels):
        x = subsample_frames(x, spec.frame_factors[level - 1], phases[level - 1], dim=-3)
        levels.append(box_resize(x, spec.resolutions[level]))
    return levels


def batch_levels(levels: Sequence[torch.Tensor], batch_factors: Sequence[int]) -> list[torch.Tensor]:
    """A batch's levels [B, ...] -> the videos each level keeps: level l every s_l-th (level_batch_strides)."""
    return [subsample_batch(x, stride) for x, stride in zip(levels, level_batch_strides(batch_factors))]


def level_key(level: int) -> str:
    """The batch entry of a real clip's level (RealPyramid)."""
    return f"real_level{level}"


@dataclass(frozen=True)
class RealPyramid:
    """TGANv2's clip transform (Backend.clip_transform): in the data layer, each training clip becomes its levels,
    with one random phase per level transition drawn for that clip (the reference's MultiLevelDataset). Entries
    level_key(l): float [C, T_l, R_l, R_l] in [-1, 1] (float keeps the box averages exact; all levels together hold
    about as many bytes as the uint8 clip at the default factors). Batch subsampling is the loss's (batch_levels)."""

    spec: PyramidSpec

    def __call__(self, clip: torch.Tensor, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        phases = tuple(int(phase) for phase in rng.integers(self.spec.frame_factors))  # one per transition
        video = layout.to_model(clip[None])[0]  # uint8 [T, R, R, C] -> float [C, T, R, R]
        return {level_key(level): x.contiguous() for level, x in enumerate(level_clips(video, self.spec, phases))}


def level_labels(label: torch.Tensor | None, batch_factors: Sequence[int]) -> list[torch.Tensor | None]:
    """The labels of each level's videos (the batch subsampling applied to the labels)."""
    if label is None:
        return [None] * (len(batch_factors) + 1)
    return batch_levels([label] * (len(batch_factors) + 1), batch_factors)
