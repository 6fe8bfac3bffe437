"""Where evaluation videos come from: a dataset folder or zip, the synthetic set, a folder of generated
videos, or a run (sampled on the fly); and the fingerprint that keys cached real statistics (taken from
file names, sizes and times, before deciding whether any video needs decoding).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vidgen.core.config import DataConfig, coerce
from vidgen.core.data.sources import (IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, SyntheticVideo, Video, find_videos,
                                      summarize_skipped, with_channels)
from vidgen.core.run_dir import manifest_videos
from vidgen.core.shards import META_NAME
from vidgen.core.synthetic import SceneStyle, check_colours, video_seed
from vidgen.errors import ConfigError, UserError

SYNTHETIC = "synthetic"


@dataclass(frozen=True)
class SyntheticSpec:
    """The built-in synthetic dataset as real data: `synthetic` or `synthetic:videos=2048,frames=64,...`;
    the unset keys come from a run's data config (or DataConfig's defaults, seed 0)."""

    videos: int
    """Number of videos (video i renders scene video_seed(seed, i), as training sees it)."""
    frames: int
    """Frames per video."""
    resolution: int
    fps: float
    max_shapes: int
    colours: int
    textured: bool
    seed: int
    """The run seed whose synthetic videos these are."""
    action_changes: bool = False
    """Every shape changes its action once (data.synthetic_action_changes)."""
    channels: int = 3
    """3: RGB; 1: the videos' luma, as a grayscale run (data.channels 1) trains on them."""

    @classmethod
    def from_data(cls, data: DataConfig, seed: int) -> SyntheticSpec:
        return cls(data.synthetic_videos, data.synthetic_frames, data.resolution, data.fps,
                   data.synthetic_max_shapes, data.synthetic_colours, data.synthetic_textures, seed,
                   data.synthetic_action_changes, data.channels)

    def with_settings(self, settings: str) -> SyntheticSpec:
        """Apply "key=value,key=value" settings; unknown keys and bad values are ConfigErrors."""
        fields = typing.get_type_hints(type(self))
        changes = {}
        for item in filter(None, (s.strip() for s in settings.split(","))):
            key, sep, value = item.partition("=")
            if not sep or key not in fields:
                raise ConfigError(f"bad synthetic setting '{item}'; use synthetic:key=value,... with keys "
                                  f"{', '.join(fields)}")
            changes[key] = coerce(value, fields[key], f"synthetic.{key}")
        spec = dataclasses.replace(self, **changes)
        if min(spec.videos, spec.frames, spec.resolution, spec.fps, spec.max_shapes) <= 0:
            raise ConfigError(f"synthetic settings must be > 0 (seed excepted): {settings}")
        check_colours(spec.colours, "synthetic.colours")
        if spec.channels not in (1, 3):
            raise ConfigError(f"synthetic.channels must be 1 (grayscale) or 3 (RGB), got {spec.channels}")
        return spec

    @property
    def style(self) -> SceneStyle:
        # As DataConfig.synthetic_style: the duration places the action changes.
        duration = self.frames / self.fps if self.action_changes else None
        return SceneStyle(self.max_shapes, self.colours, self.textured, self.action_changes, duration)

    def make_videos(self) -> list[Video]:
        return with_channels([SyntheticVideo(video_seed(self.seed, i), self.frames, self.fps, self.resolution,
                                             self.style) for i in range(self.videos)], self.channels)

    def fingerprint(self) -> str:
        # Settings at their defaults are left out: the sets that existed before them keep their cached statistics.
        settings = dataclasses.asdict(self)
        for field in dataclasses.fields(self):
            if field.default is not dataclasses.MISSING and settings[field.name] == field.default:
                del settings[field.name]
        return "synthetic:" + json.dumps(settings, sort_keys=True)


def parse_synthetic(text: str, defaults: SyntheticSpec) -> SyntheticSpec | None:
    """The spec if `text` names the synthetic set (`synthetic` or `synthetic:k=v,...`), else None."""
    name, _, settings = text.partition(":")
    if name != SYNTHETIC:
        return None
    return defaults.with_settings(settings)


def folder_fingerprint(path: Path, channels: int = 3) -> str:
    """sha256 over the resolved root and the relative path, size and mtime of every video, image or
    prepared-dataset metadata file under it (a zip: the file itself), and `channels` when 1 (the videos read in
    grayscale, index_videos). Cheap: nothing is opened; any added, removed, replaced or touched file changes it."""
    root = Path(path).expanduser().resolve()
    digest = hashlib.sha256(str(root).encode() + (b"\0gray" if channels == 1 else b""))
    if root.is_file():
        stat = root.stat()
        digest.update(f"\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
        return digest.hexdigest()
    extensions = VIDEO_EXTENSIONS + IMAGE_EXTENSIONS
    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # as vidgen.core.data.sources indexes them
        for name in sorted(files):
            # A prepared shards folder changes with its metadata file (rewritten by every `data prepare`).
            if name.startswith(".") or not (name.lower().endswith(extensions) or name == META_NAME):
                continue
            file = Path(folder, name)
            stat = file.stat()
            digest.update(f"\n{file.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def index_videos(path: Path, role: str, warn: Callable[[str], None] | None = None, channels: int = 3) -> list[Video]:
    """The readable videos of a folder or zip, sorted by name, read with `channels` channels (1: in grayscale, as
    a grayscale run's data is); none readable is a UserError naming `role`. A folder written by `vidgen sample`
    lists its samples in a manifest: only those count (not the grid). Unreadable videos are left out; `warn` gets
    one line with their count and the first few names."""
    videos, skipped = find_videos(path)
    listed = manifest_videos(path) if path.is_dir() else None
    if listed is not None:
        videos = [video for video in videos if Path(video.name).name in listed]
        skipped = [(name, reason) for name, reason in skipped if Path(name).name in listed]
    if not videos:
        raise UserError(f"no readable videos in {role} '{path}' ({summarize_skipped(skipped)})")
    if skipped and warn is not None:
        warn(f"{role} '{path}': {summarize_skipped(skipped)}")
    return with_channels(videos, channels)


def is_run(path: Path) -> bool:
    """A run directory (it has checkpoints/), a checkpoint file or an export (`vidgen export`), rather than a
    folder of videos."""
    from vidgen.core.checkpoint import is_export

    return ((path.is_dir() and (path / "checkpoints").is_dir()) or (path.is_file() and path.suffix == ".pt")
            or is_export(path))
