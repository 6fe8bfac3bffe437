"""The training dataset: clips of resolution x resolution, each a pure function of its key (video index, clip seed).

Optionally an item carries a class label (data.labels) and, for joint image-video training, extra frames
appended to the clip, each from another random video or from a folder of still images (data.image_frames). A
backend may add entries derived from each clip (its ClipTransform, e.g. a multi-level GAN's real pyramid), made here,
in the loader's workers.

Clips have data.channels channels: RGB, or (1) the luma of every frame, converted as the frames are read
(sources.with_channels; still images for image_frames likewise).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from vidgen.core.clips import ClipSampler, ContiguousClips
from vidgen.core.config import DataConfig
from vidgen.core.data.labels import read_labels, synthetic_label
from vidgen.core.data.tokens import TokenDataset, is_token_dir
from vidgen.core.data.sources import (IMAGE_EXTENSIONS, SyntheticVideo, Video, find_videos, summarize_skipped,
                                      with_channels)
from vidgen.core.io import VideoReadError, read_image, rgb_to_gray
from vidgen.core.shards import check_resolution
from vidgen.core.synthetic import video_seed
from vidgen.errors import UserError


class ClipTransform(Protocol):
    """Entries a backend derives from each training clip in the data layer (Backend.clip_transform)."""

    def __call__(self, clip: torch.Tensor, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """clip: uint8 [F, R, R, C] (C = data.channels); rng: this clip's own generator (the item stays a pure
        function of its key). Returns the entries to add to the clip's item; the loader stacks each into a batch."""


class VideoDataset(Dataset):
    """Clips of resolution x resolution, addressed by (video index, clip seed), with as many channels as the
    videos read (build_dataset: data.channels)."""

    def __init__(self, videos: Sequence[Video], clips: ClipSampler, resolution: int,
                 skipped: Sequence[tuple[str, str]] = (), labels: Sequence[int] | None = None,
                 image_frames: ImageFrames | None = None, transform: ClipTransform | None = None) -> None:
        self.videos = list(videos)
        self.clips = clips
        self.transform = transform
        """The backend's ClipTransform, or None."""
        self.resolution = resolution
        self.skipped = list(skipped)
        """(path, reason) of each video left out; build_dataset's caller reports them once."""
        self.labels = None if labels is None else list(labels)
        """Class of each video (data.labels), or None."""
        self.image_frames = image_frames
        """Where the frames appended for joint image-video training come from (data.image_frames), or None."""
        self._named: set[str] = set()
        """Videos that failed to decode, already named by this process."""

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
                _name_once(self._named, exc, "a video")
                continue
            clip = resize_center_crop(pixels, self.resolution)  # (F, R, R, C) uint8
            if self.image_frames is not None:  # (F + M, R, R, C): M independent frames after the clip
                images = self.image_frames.draw(np.random.default_rng([clip_seed, 1]), exclude=used)
                clip = torch.cat([clip, images])
            item: dict[str, torch.Tensor | int] = {
                "video": clip,
                "times": torch.from_numpy((frames - frames[0]).astype(np.float32)),  # (F,) in source frames
                "index": used,
                "video_frames": video.num_frames,  # the source video's length (StyleGAN-V draws fake times within it)
            }
            if self.labels is not None:
                item["label"] = self.labels[used]
            if self.transform is not None:
                item.update(self.transform(clip, np.random.default_rng([clip_seed, 2])))
            return item
        raise UserError(f"no video of the dataset could be decoded (the last: {video.name}); check the files")


class ImageFrames:
    """Single frames for joint image-video training (Ho et al. 2022 §3.1): from random other videos of the
    dataset (read as the clips are), or from a list of still images (converted to `channels`, as the clips)."""

    def __init__(self, count: int, resolution: int, videos: Sequence[Video] = (),
                 images: Sequence[Path] = (), channels: int = 3) -> None:
        if not videos and not images:
            raise ValueError("ImageFrames needs videos or images")
        self.count, self.resolution, self.channels = count, resolution, channels
        self.videos, self.images = list(videos), list(images)
        self._named: set[str] = set()
        """Files that failed to decode, already named by this process."""

    def draw(self, rng: np.random.Generator, exclude: int) -> torch.Tensor:
        """`count` frames as uint8 [count, R, R, C]; from videos, never from video `exclude` (the clip's own)
        unless it is the only one."""
        return torch.stack([self._one(rng, exclude) for _ in range(self.count)])

    def _one(self, rng: np.random.Generator, exclude: int) -> torch.Tensor:
        # Like a clip, a frame that fails to decode is replaced by another draw rather than ending the run.
        for _ in range(max(len(self.images), len(self.videos))):
            try:
                pixels = self._read_random(rng, exclude)  # (1, H, W, C)
            except VideoReadError as exc:
                _name_once(self._named, exc, "an image frame")
                continue
            return resize_center_crop(pixels, self.resolution)[0]
        raise UserError("no image frame could be decoded from the dataset or data.image_source; check the files")

    def _read_random(self, rng: np.random.Generator, exclude: int) -> np.ndarray:
        if self.images:
            image = read_image(self.images[int(rng.integers(len(self.images)))])[None]  # (1, H, W, 3)
            return rgb_to_gray(image) if self.channels == 1 else image
        others = len(self.videos) - 1
        index = int(rng.integers(others)) if others else 0
        index += int(others > 0 and index >= exclude)  # skip the clip's own video
        video = self.videos[index]
        return video.read(np.array([rng.integers(video.num_frames)]))


def resize_center_crop(frames: np.ndarray, resolution: int) -> torch.Tensor:
    """uint8 [F, H, W, C] -> uint8 [F, R, R, C]: short side to R (antialiased), centre crop.

    Cropping the centred square first and then resizing it equals resizing then cropping (up to the
    sub-pixel rounding of the crop), and resizes fewer pixels.
    """
    video = torch.from_numpy(np.ascontiguousarray(frames))  # (F, H, W, C)
    height, width = video.shape[1:3]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    video = video[:, top:top + side, left:left + side]  # (F, S, S, C)
    if side == resolution:
        return video.contiguous()
    pixels = video.permute(0, 3, 1, 2).float()  # (F, C, S, S)
    pixels = F.interpolate(pixels, size=(resolution, resolution), mode="bilinear", antialias=True,
                           align_corners=False)
    return pixels.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()  # (F, R, R, C)


def build_dataset(cfg: DataConfig, seed: int, clips: ClipSampler | None = None,
                  transform: ClipTransform | None = None) -> VideoDataset | TokenDataset:
    """Index `cfg.source` once. Unreadable videos and videos shorter than one clip are left out and listed in
    `dataset.skipped`; no usable video at all is a UserError. `clips` defaults to contiguous clips of
    data.frames at data.frame_stride (a backend may ask for another kind: Backend.training_clips), and
    `transform` adds a backend's entries to each item (Backend.clip_transform). Videos are read with
    data.channels channels (with_channels: 1 converts every frame to luma as it is read). A token dataset
    (`vidgen data prepare --format tokens`) gives its encoded clips instead."""
    if cfg.source != "synthetic" and is_token_dir(cfg.source):
        return TokenDataset.open(cfg)
    clips = clips or ContiguousClips(cfg.frames, cfg.frame_stride)
    if cfg.source == "synthetic":
        if cfg.synthetic_frames < clips.span:
            raise UserError(f"data.synthetic_frames ({cfg.synthetic_frames}) is shorter than one clip of "
                            f"{clips.span} frames; raise data.synthetic_frames or {clips.too_short_hint}")
        scenes = [SyntheticVideo(video_seed(seed, i), cfg.synthetic_frames, cfg.fps, cfg.resolution,
                                 cfg.synthetic_style) for i in range(cfg.synthetic_videos)]
        labels = [synthetic_label(video) for video in scenes] if cfg.labels else None
        videos = with_channels(scenes, cfg.channels)
        return VideoDataset(videos, clips, cfg.resolution, labels=labels,
                            image_frames=_image_frames(cfg, videos), transform=transform)

    check_resolution(cfg.source, cfg.resolution)  # a prepared dataset is at one resolution: no silent re-resize
    found, skipped = find_videos(cfg.source)
    usable = [video for video in found if video.num_frames >= clips.span]
    skipped += [(video.name, f"{video.num_frames} frames, shorter than one clip of {clips.span}")
                for video in found if video.num_frames < clips.span]
    if not usable:
        raise UserError(f"no usable videos in '{cfg.source}' ({summarize_skipped(skipped)}); a clip needs "
                        f"{clips.span} frames: {clips.too_short_hint}, or fix the files")
    labels = read_labels(Path(cfg.source).expanduser(), usable) if cfg.labels else None
    videos = with_channels(usable, cfg.channels)
    return VideoDataset(videos, clips, cfg.resolution, skipped, labels=labels,
                        image_frames=_image_frames(cfg, videos), transform=transform)


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
    return ImageFrames(cfg.image_frames, cfg.resolution, images=images, channels=cfg.channels)


def _name_once(named: set[str], exc: VideoReadError, what: str) -> None:
    """One vidgen line on stderr the first time this process meets a file that fails to decode past its header,
    not a Python warning for every clip that reaches the damage. (Each DataLoader worker is its own process, so a
    file is named at most once per worker.)"""
    if exc.path in named:
        return
    named.add(exc.path)
    print(f"warning: skipping {what} that failed to decode: {exc}; the clips that need it come from other videos",
          file=sys.stderr, flush=True)
