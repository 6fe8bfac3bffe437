"""Training data: video sources, clip choice, and a deterministic, resumable loader.

A dataset is a list of videos, each able to read any set of its frames. Sources:
- a folder (searched recursively) of video files,
- a folder of frame folders (StyleGAN-V layout: one folder of .png/.jpg frames per video, sorted by name),
- a .zip of frame folders,
- `synthetic`: the procedural shapes of vidgen.core.synthetic, rendered on the fly.

A training item is addressed by a key (video index, clip seed), so it is a pure function of its key; the
sampler makes keys a pure function of (seed, sample number). Batches therefore do not depend on the number
of workers, and a resumed run continues with exactly the samples it would have seen.
"""

from __future__ import annotations

import os
import posixpath
import warnings
import zipfile
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

from vidgen.core.clips import ClipSampler, ContiguousClips
from vidgen.core.config import DataConfig
from vidgen.core.io import VideoInfo, VideoReadError, probe_video, read_image, read_video
from vidgen.core.synthetic import render_video, video_seed
from vidgen.errors import UserError

VIDEO_EXTENSIONS = (".mp4", ".webm", ".avi", ".mov", ".mkv", ".gif")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
_SOURCE_HINT = ("give a folder of videos, a folder of frame folders (one folder of .png/.jpg per video), "
                "a .zip of frame folders, or 'synthetic'")


# ----------------------------------------------------------------------------------------------------------
# Videos: anything that can read a set of its frames


class Video(Protocol):
    name: str
    """A path (or zip path / member folder) that identifies the video in messages."""
    num_frames: int
    fps: float | None
    """The rate the source states (None: it states none)."""

    def read(self, frames: np.ndarray) -> np.ndarray:
        """The frames at these (increasing) indices as uint8 [len(frames), H, W, 3]."""

    def size(self) -> tuple[int, int]:
        """(width, height) of its frames."""


@dataclass(frozen=True)
class VideoFile:
    info: VideoInfo

    @property
    def name(self) -> str:
        return str(self.info.path)

    @property
    def num_frames(self) -> int:
        return self.info.num_frames

    @property
    def fps(self) -> float | None:
        return self.info.fps

    def read(self, frames: np.ndarray) -> np.ndarray:
        steps = np.diff(frames)
        if len(frames) == 1 or (steps[0] > 0 and np.all(steps == steps[0])):
            stride = int(steps[0]) if len(steps) else 1
            return read_video(self.info.path, int(frames[0]), len(frames), stride)
        # Irregular indices: decode the span once, keep the frames asked for.
        span = read_video(self.info.path, int(frames[0]), int(frames[-1] - frames[0]) + 1)
        return span[frames - frames[0]]

    def size(self) -> tuple[int, int]:
        return self.info.width, self.info.height


@dataclass(frozen=True)
class FrameFolder:
    name: str
    paths: tuple[Path, ...]
    """One image per frame, in frame order."""
    fps: float | None = None  # image files state no rate

    @property
    def num_frames(self) -> int:
        return len(self.paths)

    def read(self, frames: np.ndarray) -> np.ndarray:
        return np.stack([read_image(self.paths[i]) for i in frames])

    def size(self) -> tuple[int, int]:
        height, width, _ = read_image(self.paths[0]).shape
        return width, height


class LazyZip:
    """A zip archive opened on first use in each process.

    A ZipFile holds an OS file handle whose position forked DataLoader workers would share (and corrupt each
    other's reads through), so each process opens its own: the handle is dropped when pickled and reopened
    when the process id changes.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: zipfile.ZipFile | None = None
        self._pid: int | None = None

    def read(self, member: str) -> bytes:
        if self._file is None or self._pid != os.getpid():
            self._file, self._pid = zipfile.ZipFile(self.path), os.getpid()
        return self._file.read(member)

    def __getstate__(self) -> dict[str, object]:
        return {"path": self.path, "_file": None, "_pid": None}


@dataclass(frozen=True)
class ZipFrameFolder:
    archive: LazyZip
    folder: str
    members: tuple[str, ...]
    """Member names of its frames, in frame order."""
    fps: float | None = None

    @property
    def name(self) -> str:
        return f"{self.archive.path}/{self.folder}"

    @property
    def num_frames(self) -> int:
        return len(self.members)

    def read(self, frames: np.ndarray) -> np.ndarray:
        return np.stack([self._image(self.members[i]) for i in frames])

    def size(self) -> tuple[int, int]:
        height, width, _ = self._image(self.members[0]).shape
        return width, height

    def _image(self, member: str) -> np.ndarray:
        return read_image(self.archive.read(member), name=f"{self.archive.path}/{member}")


@dataclass(frozen=True)
class SyntheticVideo:
    seed: int
    num_frames: int
    fps: float
    resolution: int
    max_shapes: int

    @property
    def name(self) -> str:
        return f"synthetic:{self.seed}"

    def read(self, frames: np.ndarray) -> np.ndarray:
        # Rendered straight at the training resolution; frame indices become times at the dataset's rate,
        # so fractional indices (a future sparse sampler) render too.
        return render_video(self.seed, np.asarray(frames) / self.fps, self.resolution, self.max_shapes)

    def size(self) -> tuple[int, int]:
        return self.resolution, self.resolution


# ----------------------------------------------------------------------------------------------------------
# Finding videos


def find_videos(source: str | Path) -> tuple[list[Video], list[tuple[str, str]]]:
    """Index a folder or zip: the readable videos (probed, not decoded) and the (path, reason) of the rest."""
    path = Path(source).expanduser()
    if not path.exists():
        raise UserError(f"data source '{path}' does not exist; {_SOURCE_HINT}")
    if path.is_file():
        if path.suffix.lower() != ".zip":
            raise UserError(f"data source '{path}' is a file, not a folder or .zip; {_SOURCE_HINT}")
        return _zip_frame_folders(path), []
    video_paths, frame_folders = _walk(path)
    if not video_paths and not frame_folders:
        raise UserError(f"no videos in '{path}': found no {'/'.join(VIDEO_EXTENSIONS)} files and no folders "
                        f"of .png/.jpg frames; {_SOURCE_HINT}")
    videos: list[Video] = [FrameFolder(str(folder), paths) for folder, paths in frame_folders]
    skipped = []
    for video_path in video_paths:
        try:
            videos.append(VideoFile(probe_video(video_path)))
        except VideoReadError as exc:
            skipped.append((str(video_path), exc.reason))
    videos.sort(key=lambda video: video.name)
    return videos, skipped


def _walk(root: Path) -> tuple[list[Path], list[tuple[Path, tuple[Path, ...]]]]:
    """Video files, and folders that directly hold images (with their images sorted by name), under root."""
    video_paths, frame_folders = [], []
    for folder, dirs, files in os.walk(root, followlinks=True):
        # Hidden entries are never data: .git, macOS "._name.mp4" resource forks, our own atomic temp files.
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        files = sorted(f for f in files if not f.startswith("."))
        video_paths += [Path(folder, f) for f in files if f.lower().endswith(VIDEO_EXTENSIONS)]
        images = tuple(Path(folder, f) for f in files if f.lower().endswith(IMAGE_EXTENSIONS))
        if images:
            frame_folders.append((Path(folder), images))
    return video_paths, frame_folders


def _zip_frame_folders(path: Path) -> list[Video]:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise UserError(f"data source '{path}' is not a readable zip file ({exc}); re-create it") from None
    folders: dict[str, list[str]] = {}
    for name in names:
        base = posixpath.basename(name)
        if name.lower().endswith(IMAGE_EXTENSIONS) and not base.startswith(".") and "__MACOSX/" not in name:
            folders.setdefault(posixpath.dirname(name), []).append(name)
    if not folders:
        raise UserError(f"no frame folders in '{path}': the zip holds no .png/.jpg files; {_SOURCE_HINT}")
    archive = LazyZip(path)  # one handle per process, shared by all its folders
    return [ZipFrameFolder(archive, folder, tuple(sorted(members))) for folder, members in sorted(folders.items())]


def summarize_skipped(skipped: Sequence[tuple[str, str]], shown: int = 3) -> str:
    """One line: how many videos were skipped, and the first few with their reasons."""
    if not skipped:
        return "no videos skipped"
    listed = "; ".join(f"{path} ({reason})" for path, reason in skipped[:shown])
    more = f"; and {len(skipped) - shown} more" if len(skipped) > shown else ""
    return f"skipped {len(skipped)} video{'s' if len(skipped) != 1 else ''}: {listed}{more}"


# ----------------------------------------------------------------------------------------------------------
# Clips and the dataset


class VideoDataset(Dataset):
    """Clips of resolution x resolution, addressed by (video index, clip seed)."""

    def __init__(self, videos: Sequence[Video], clips: ClipSampler, resolution: int,
                 skipped: Sequence[tuple[str, str]] = ()) -> None:
        self.videos = list(videos)
        self.clips = clips
        self.resolution = resolution
        self.skipped = list(skipped)
        """(path, reason) of each video left out; build_dataset's caller reports them once."""

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor | int]:
        index, clip_seed = key
        # A file that probed fine can still fail to decode (damage past its header). Rather than end a long
        # run, take the next video instead: a deterministic choice, so resumed runs see the same batches.
        for attempt in range(len(self.videos)):
            video = self.videos[(index + attempt) % len(self.videos)]
            frames = self.clips.choose(video.num_frames, np.random.default_rng(clip_seed))
            try:
                pixels = video.read(frames)
            except VideoReadError as exc:
                warnings.warn(f"skipping a video that failed to decode: {exc}", stacklevel=2)
                continue
            return {
                "video": resize_center_crop(pixels, self.resolution),  # (F, R, R, 3) uint8
                "times": torch.from_numpy((frames - frames[0]).astype(np.float32)),  # (F,) in source frames
                "index": (index + attempt) % len(self.videos),
            }
        raise UserError(f"no video of the dataset could be decoded (the last: {video.name}); check the files")


def resize_center_crop(frames: np.ndarray, resolution: int) -> torch.Tensor:
    """uint8 [F, H, W, 3] -> uint8 [F, R, R, 3]: short side to R (antialiased), centre crop.

    Cropping the centred square first and then resizing it equals resizing then cropping (up to the
    sub-pixel rounding of the crop), and resizes fewer pixels.
    """
    video = torch.from_numpy(np.ascontiguousarray(frames))  # (F, H, W, 3)
    height, width = video.shape[1:3]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    video = video[:, top:top + side, left:left + side]  # (F, S, S, 3)
    if side == resolution:
        return video.contiguous()
    pixels = video.permute(0, 3, 1, 2).float()  # (F, 3, S, S)
    pixels = F.interpolate(pixels, size=(resolution, resolution), mode="bilinear", antialias=True,
                           align_corners=False)
    return pixels.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()  # (F, R, R, 3)


def build_dataset(cfg: DataConfig, seed: int, clips: ClipSampler | None = None) -> VideoDataset:
    """Index `cfg.source` once. Unreadable videos and videos shorter than one clip are left out and listed in
    `dataset.skipped`; no usable video at all is a UserError. `clips` defaults to contiguous clips of
    data.frames at data.frame_stride (a backend may ask for another kind: Backend.training_clips)."""
    clips = clips or ContiguousClips(cfg.frames, cfg.frame_stride)
    if cfg.source == "synthetic":
        if cfg.synthetic_frames < clips.span:
            raise UserError(f"data.synthetic_frames ({cfg.synthetic_frames}) is shorter than one clip of "
                            f"{clips.span} frames; raise data.synthetic_frames or {clips.too_short_hint}")
        videos = [SyntheticVideo(video_seed(seed, i), cfg.synthetic_frames, cfg.fps, cfg.resolution,
                                 cfg.synthetic_max_shapes) for i in range(cfg.synthetic_videos)]
        return VideoDataset(videos, clips, cfg.resolution)

    found, skipped = find_videos(cfg.source)
    usable = [video for video in found if video.num_frames >= clips.span]
    skipped += [(video.name, f"{video.num_frames} frames, shorter than one clip of {clips.span}")
                for video in found if video.num_frames < clips.span]
    if not usable:
        raise UserError(f"no usable videos in '{cfg.source}' ({summarize_skipped(skipped)}); a clip needs "
                        f"{clips.span} frames: {clips.too_short_hint}, or fix the files")
    return VideoDataset(usable, clips, cfg.resolution, skipped)


# ----------------------------------------------------------------------------------------------------------
# Sampling order and the loader


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
    """Endless batches {"video": uint8 [B, F, R, R, 3], "times": float32 [B, F], "index": long [B]},
    beginning at sample `start_sample`; identical for any number of workers."""
    sampler = TrainSampler(len(dataset), seed, start_sample, rank, world_size)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      persistent_workers=workers > 0, pin_memory=pin_memory)


# ----------------------------------------------------------------------------------------------------------
# Summary for `vidgen data info`


@dataclass(frozen=True)
class DatasetInfo:
    path: str
    frame_counts: tuple[int, ...]
    """Frames of each readable video, sorted."""
    resolutions: dict[tuple[int, int], int]
    """(width, height) -> number of videos."""
    fps: dict[float | None, int]
    """Frame rate -> number of videos (sources that state no rate count under fps_default)."""
    unreadable: list[tuple[str, str]]
    """(path, reason) of each video that could not be read."""

    @property
    def num_videos(self) -> int:
        return len(self.frame_counts)

    @property
    def frames_min(self) -> int | None:
        return self.frame_counts[0] if self.frame_counts else None

    @property
    def frames_median(self) -> float | None:
        return float(np.median(self.frame_counts)) if self.frame_counts else None

    @property
    def frames_max(self) -> int | None:
        return self.frame_counts[-1] if self.frame_counts else None

    def rows(self) -> list[tuple[str, str]]:
        """(property, value) lines for a table."""
        def tally(counts: dict, show: object) -> str:
            return ", ".join(f"{show(key)} ({n})" for key, n in sorted(counts.items(), key=lambda kv: -kv[1]))

        frames = (f"{self.frames_min} / {self.frames_median:g} / {self.frames_max}" if self.frame_counts
                  else "-")
        return [
            ("videos", str(self.num_videos)),
            ("resolutions (w x h)", tally(self.resolutions, lambda size: f"{size[0]}x{size[1]}") or "-"),
            ("fps", tally(self.fps, lambda fps: "not stated" if fps is None else f"{fps:g}") or "-"),
            ("frames min / median / max", frames),
            ("unreadable", str(len(self.unreadable))),
        ]


def dataset_info(path: str | Path, fps_default: float | None = None) -> DatasetInfo:
    """Count, sizes, rates and lengths of the videos under `path` (a folder or zip), and the unreadable ones.

    Sources that state no frame rate (frame folders) count under `fps_default` (None: "not stated").
    """
    videos, unreadable = find_videos(path)
    counts: list[int] = []
    sizes: Counter[tuple[int, int]] = Counter()
    rates: Counter[float | None] = Counter()
    for video in videos:
        try:
            size = video.size()  # frame folders: decodes their first image
        except VideoReadError as exc:
            unreadable.append((video.name, exc.reason))
            continue
        counts.append(video.num_frames)
        sizes[size] += 1
        rates[video.fps or fps_default] += 1
    return DatasetInfo(str(path), tuple(sorted(counts)), dict(sizes), dict(rates), unreadable)
