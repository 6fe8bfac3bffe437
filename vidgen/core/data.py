"""Training data: video sources, clip choice, and a deterministic, resumable loader.

A dataset is a list of videos, each able to read any set of its frames. Sources:
- a folder (searched recursively) of video files,
- a folder of frame folders (StyleGAN-V layout: one folder of .png/.jpg frames per video, sorted by name),
- a .zip of frame folders,
- `synthetic`: the procedural shapes of vidgen.core.synthetic, rendered on the fly.

A training item is addressed by a key (video index, clip seed), so it is a pure function of its key; the
sampler makes keys a pure function of (seed, sample number). Batches therefore do not depend on the number
of workers, and a resumed run continues with exactly the samples it would have seen.

Optionally an item carries a class label (data.labels) and, for joint image-video training, extra frames
appended to the clip, each from another random video or from a folder of still images (data.image_frames).
"""

from __future__ import annotations

import json
import os
import posixpath
import warnings
import zipfile
import zlib
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
from vidgen.core.shards import ShardVideo, check_resolution, is_shards_dir, load_shards
from vidgen.core.synthetic import SHAPE_KINDS, SceneStyle, make_scene, render_video, video_seed
from vidgen.errors import UserError

VIDEO_EXTENSIONS = (".mp4", ".webm", ".avi", ".mov", ".mkv", ".gif")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
_SOURCE_HINT = ("give a folder of videos, a folder of frame folders (one folder of .png/.jpg per video), "
                "a .zip of frame folders, or 'synthetic'")
LABELS_FILE = "dataset.json"
"""Class labels of a folder or zip: {"labels": [[video name relative to the root, class], ...]}."""


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
        name = f"{self.archive.path}/{member}"
        try:
            data = self.archive.read(member)
        except (zipfile.BadZipFile, zlib.error) as exc:  # a damaged member (bad CRC, bad deflate): skip the video
            raise VideoReadError(name, f"damaged zip member ({exc})") from None
        return read_image(data, name=name)


@dataclass(frozen=True)
class SyntheticVideo:
    seed: int
    num_frames: int
    fps: float
    resolution: int
    style: SceneStyle

    @property
    def name(self) -> str:
        return f"synthetic:{self.seed}"

    def read(self, frames: np.ndarray) -> np.ndarray:
        # Rendered straight at the training resolution; frame indices become times at the dataset's rate,
        # so fractional indices (a future sparse sampler) render too.
        return render_video(self.seed, np.asarray(frames) / self.fps, self.resolution, self.style)

    def size(self) -> tuple[int, int]:
        return self.resolution, self.resolution


# ----------------------------------------------------------------------------------------------------------
# Finding videos


def find_videos(source: str | Path) -> tuple[list[Video], list[tuple[str, str]]]:
    """Index a folder or zip: the readable videos (probed, not decoded) and the (path, reason) of the rest."""
    path = Path(source).expanduser()
    if not path.exists():
        raise UserError(f"data source '{path}' does not exist; {_SOURCE_HINT}")
    if is_shards_dir(path):  # written by `vidgen data prepare --format shards`
        return list(load_shards(path)), []
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
                 skipped: Sequence[tuple[str, str]] = (), labels: Sequence[int] | None = None,
                 image_frames: ImageFrames | None = None) -> None:
        self.videos = list(videos)
        self.clips = clips
        self.resolution = resolution
        self.skipped = list(skipped)
        """(path, reason) of each video left out; build_dataset's caller reports them once."""
        self.labels = None if labels is None else list(labels)
        """Class of each video (data.labels), or None."""
        self.image_frames = image_frames
        """Where the frames appended for joint image-video training come from (data.image_frames), or None."""

    def __len__(self) -> int:
        return len(self.videos)

    @property
    def num_classes(self) -> int:
        """1 + the largest label (0 without labels)."""
        return 1 + max(self.labels) if self.labels else 0

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor | int]:
        index, clip_seed = key
        # A file that probed fine can still fail to decode (damage past its header). Rather than end a long
        # run, take the next video instead: a deterministic choice, so resumed runs see the same batches.
        for attempt in range(len(self.videos)):
            used = (index + attempt) % len(self.videos)
            video = self.videos[used]
            frames = self.clips.choose(video.num_frames, np.random.default_rng(clip_seed))
            try:
                pixels = video.read(frames)
            except VideoReadError as exc:
                warnings.warn(f"skipping a video that failed to decode: {exc}", stacklevel=2)
                continue
            clip = resize_center_crop(pixels, self.resolution)  # (F, R, R, 3) uint8
            if self.image_frames is not None:  # (F + M, R, R, 3): M independent frames after the clip
                images = self.image_frames.draw(np.random.default_rng([clip_seed, 1]), exclude=used)
                clip = torch.cat([clip, images])
            item: dict[str, torch.Tensor | int] = {
                "video": clip,
                "times": torch.from_numpy((frames - frames[0]).astype(np.float32)),  # (F,) in source frames
                "index": used,
            }
            if self.labels is not None:
                item["label"] = self.labels[used]
            return item
        raise UserError(f"no video of the dataset could be decoded (the last: {video.name}); check the files")


class ImageFrames:
    """Single frames for joint image-video training (Ho et al. 2022 §3.1): from random other videos of the
    dataset, or from a list of still images."""

    def __init__(self, count: int, resolution: int, videos: Sequence[Video] = (),
                 images: Sequence[Path] = ()) -> None:
        if not videos and not images:
            raise ValueError("ImageFrames needs videos or images")
        self.count, self.resolution = count, resolution
        self.videos, self.images = list(videos), list(images)

    def draw(self, rng: np.random.Generator, exclude: int) -> torch.Tensor:
        """`count` frames as uint8 [count, R, R, 3]; from videos, never from video `exclude` (the clip's own)
        unless it is the only one."""
        return torch.stack([self._one(rng, exclude) for _ in range(self.count)])

    def _one(self, rng: np.random.Generator, exclude: int) -> torch.Tensor:
        # Like a clip, a frame that fails to decode is replaced by another draw rather than ending the run.
        for _ in range(max(len(self.images), len(self.videos))):
            try:
                pixels = self._read_random(rng, exclude)  # (1, H, W, 3)
            except VideoReadError as exc:
                warnings.warn(f"skipping an image frame that failed to decode: {exc}", stacklevel=2)
                continue
            return resize_center_crop(pixels, self.resolution)[0]
        raise UserError("no image frame could be decoded from the dataset or data.image_source; check the files")

    def _read_random(self, rng: np.random.Generator, exclude: int) -> np.ndarray:
        if self.images:
            return read_image(self.images[int(rng.integers(len(self.images)))])[None]
        others = len(self.videos) - 1
        index = int(rng.integers(others)) if others else 0
        index += int(others > 0 and index >= exclude)  # skip the clip's own video
        video = self.videos[index]
        return video.read(np.array([rng.integers(video.num_frames)]))


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
        videos: list[Video] = [SyntheticVideo(video_seed(seed, i), cfg.synthetic_frames, cfg.fps, cfg.resolution,
                                              cfg.synthetic_style) for i in range(cfg.synthetic_videos)]
        labels = [synthetic_label(video) for video in videos] if cfg.labels else None
        return VideoDataset(videos, clips, cfg.resolution, labels=labels,
                            image_frames=_image_frames(cfg, videos))

    check_resolution(cfg.source, cfg.resolution)  # a prepared dataset is at one resolution: no silent re-resize
    found, skipped = find_videos(cfg.source)
    usable = [video for video in found if video.num_frames >= clips.span]
    skipped += [(video.name, f"{video.num_frames} frames, shorter than one clip of {clips.span}")
                for video in found if video.num_frames < clips.span]
    if not usable:
        raise UserError(f"no usable videos in '{cfg.source}' ({summarize_skipped(skipped)}); a clip needs "
                        f"{clips.span} frames: {clips.too_short_hint}, or fix the files")
    labels = read_labels(Path(cfg.source).expanduser(), usable) if cfg.labels else None
    return VideoDataset(usable, clips, cfg.resolution, skipped, labels=labels,
                        image_frames=_image_frames(cfg, usable))


def _image_frames(cfg: DataConfig, videos: Sequence[Video]) -> ImageFrames | None:
    if not cfg.image_frames:
        return None
    if cfg.image_source is None:
        return ImageFrames(cfg.image_frames, cfg.resolution, videos=videos)
    root = Path(cfg.image_source).expanduser()
    if not root.is_dir():
        raise UserError(f"data.image_source '{root}' is not a folder; give a folder of .png/.jpg images")
    images = sorted(path for path in root.rglob("*") if path.suffix.lower() in IMAGE_EXTENSIONS
                    and not path.name.startswith("."))
    if not images:
        raise UserError(f"data.image_source '{root}' holds no .png/.jpg images")
    return ImageFrames(cfg.image_frames, cfg.resolution, images=images)


# ----------------------------------------------------------------------------------------------------------
# Class labels


def synthetic_label(video: SyntheticVideo) -> int:
    """The class of a synthetic video: the kind of its first shape (circle, square, triangle, ring)."""
    return SHAPE_KINDS.index(make_scene(video.seed, video.style).shapes[0].kind)


def read_labels(root: Path, videos: Sequence[Video]) -> list[int]:
    """The class of each video: from dataset.json in the root (folder or zip) when there is one, else from
    the first sub-folder of each video's path under the root (class names sorted -> 0, 1, ...)."""
    names = [relative_name(root, video) for video in videos]
    table = labels_file(root)
    if table is not None:
        missing = [name for name in names if name not in table]
        if missing:
            raise UserError(f"{root}/{LABELS_FILE} gives no label for {len(missing)} video(s), e.g. "
                            f"'{missing[0]}'; list every video (its path relative to the root)")
        return [table[name] for name in names]
    if any("/" not in name for name in names):
        flat = next(name for name in names if "/" not in name)
        raise UserError(f"data.labels is true but '{root}' has no {LABELS_FILE} and '{flat}' is not in a class "
                        f"sub-folder; add {LABELS_FILE} or put each video under a folder named after its class")
    classes = sorted({name.split("/")[0] for name in names})
    return [classes.index(name.split("/")[0]) for name in names]


def relative_name(root: Path, video: Video) -> str:
    """A video's name relative to its dataset's root, as dataset.json names it."""
    if isinstance(video, ZipFrameFolder):
        return video.folder
    if isinstance(video, ShardVideo):
        return video.relative_name
    return Path(video.name).relative_to(root).as_posix()


def labels_file(root: Path) -> dict[str, int] | None:
    """The labels of dataset.json in a folder or zip, by video name; None when there is no such file."""
    try:
        if root.is_file():
            with zipfile.ZipFile(root) as archive:
                if LABELS_FILE not in archive.namelist():
                    return None
                text = archive.read(LABELS_FILE).decode()
        elif (root / LABELS_FILE).is_file():
            text = (root / LABELS_FILE).read_text()
        else:
            return None
        entries = json.loads(text)["labels"]
        return {str(name): int(label) for name, label in entries}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"cannot read the labels in {root}/{LABELS_FILE} ({exc}); it should hold "
                        '{"labels": [["video name", class], ...]}') from None


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
    """Endless batches {"video": uint8 [B, F (+ M image frames), R, R, 3], "times": float32 [B, F],
    "index": long [B], with data.labels "label": long [B]}, beginning at sample `start_sample`; identical for
    any number of workers."""
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
