"""Video sources: the kinds of video a dataset is made of, and finding them in a folder or zip.

- a folder (searched recursively) of video files,
- a folder of frame folders (StyleGAN-V layout: one folder of .png/.jpg frames per video, sorted by name),
- a .zip of frame folders,
- a folder of shards written by `vidgen data prepare` (vidgen.core.shards),
- `synthetic`: the procedural shapes of vidgen.core.synthetic, rendered on the fly.

Every kind reads RGB; a grayscale dataset (data.channels 1) reads each through GrayVideo (`with_channels`), which
converts the frames to luma as they are read, whatever their kind.

Each kind answers its own questions (its name under the dataset's root, its fingerprint, its frame files), so
callers never ask which kind a video is. No torch here: `vidgen data info` and the metrics index datasets with it.
"""

from __future__ import annotations

import os
import posixpath
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from vidgen.core.files import LazyFile, file_fingerprint
from vidgen.core.io import (VideoInfo, VideoReadError, check_image, probe_video, read_image, read_video,
                            rgb_to_gray)
from vidgen.core.shards import is_shards_dir, load_shards
from vidgen.core.synthetic import SceneStyle, render_video
from vidgen.errors import UserError

VIDEO_EXTENSIONS = (".mp4", ".webm", ".avi", ".mov", ".mkv", ".gif")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
_SOURCE_HINT = ("give a folder of videos, a folder of frame folders (one folder of .png/.jpg per video), "
                "a .zip of frame folders, or 'synthetic'")


class Video(Protocol):
    """Anything that can read a set of its frames."""

    name: str
    """A path (or zip path / member folder) that identifies the video in messages."""
    num_frames: int
    fps: float | None
    """The rate the source states (None: it states none)."""

    def read(self, frames: np.ndarray) -> np.ndarray:
        """The frames at these (increasing) indices as uint8 [len(frames), H, W, C]: RGB (C = 3), or gray (C = 1)
        for a GrayVideo."""

    def size(self) -> tuple[int, int]:
        """(width, height) of its frames."""


class StoredVideo(Video, Protocol):
    """A video of a dataset on disk (what find_videos returns)."""

    def relative_name(self, root: Path) -> str:
        """Its name relative to the dataset's root (a folder or zip), as dataset.json names it."""

    def fingerprint(self) -> str:
        """Changes when the file it is read from changes (then `vidgen data prepare` converts it again)."""

    @property
    def frame_names(self) -> tuple[str, ...]:
        """The names (without extension) of its frame images, in frame order; empty when it is not stored as
        images."""


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

    def relative_name(self, root: Path) -> str:
        return self.info.path.relative_to(root).as_posix()

    def fingerprint(self) -> str:
        return file_fingerprint(self.info.path, self.num_frames)

    @property
    def frame_names(self) -> tuple[str, ...]:
        return ()


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

    def check_frames(self) -> None:
        """Read every frame's file in full (check_image: no decoding); a damaged one is a VideoReadError."""
        _check_frames(self, [path.name for path in self.paths], lambda i: _file_bytes(self.paths[i]))

    def relative_name(self, root: Path) -> str:
        return Path(self.name).relative_to(root).as_posix()

    def fingerprint(self) -> str:
        return file_fingerprint(self.paths[-1], self.num_frames)

    @property
    def frame_names(self) -> tuple[str, ...]:
        return tuple(path.stem for path in self.paths)


@dataclass(frozen=True)
class ZipFrameFolder:
    archive: LazyFile[zipfile.ZipFile]
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

    def check_frames(self) -> None:
        """Read every frame's member in full (which checks its CRC-32) and check_image it; a damaged one is a
        VideoReadError."""
        _check_frames(self, [posixpath.basename(member) for member in self.members],
                      lambda i: self._member(self.members[i]))

    def relative_name(self, root: Path) -> str:
        return self.folder

    def fingerprint(self) -> str:
        return file_fingerprint(self.archive.path, self.num_frames)

    @property
    def frame_names(self) -> tuple[str, ...]:
        return tuple(Path(member).stem for member in self.members)

    def _image(self, member: str) -> np.ndarray:
        return read_image(self._member(member), name=f"{self.archive.path}/{member}")

    def _member(self, member: str) -> bytes:
        try:
            return self.archive.get().read(member)
        except (zipfile.BadZipFile, zlib.error) as exc:  # a damaged member (bad CRC, bad deflate): skip the video
            raise VideoReadError(f"{self.archive.path}/{member}", f"damaged zip member ({exc})") from None


def _check_frames(video: Video, names: Sequence[str], data: Callable[[int], bytes]) -> None:
    """Raise one VideoReadError for `video` naming its first damaged frame and how many there are."""
    damaged = []
    for index, name in enumerate(names):
        try:
            check_image(data(index), name)
        except VideoReadError as exc:
            damaged.append(f"{name}: {exc.reason}")
    if damaged:
        more = len(damaged) - 1
        also = f"; and {more} more damaged frame{'s' if more > 1 else ''}" if more else ""
        raise VideoReadError(video.name, f"frame {damaged[0]}{also}")


def _file_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise VideoReadError(path, f"cannot be read ({exc.strerror or exc})") from None


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


@dataclass(frozen=True)
class GrayVideo:
    """A video read in grayscale: the luma of its frames (ITU-R BT.601, io.rgb_to_gray), uint8 [F, H, W, 1]."""

    video: Video

    @property
    def name(self) -> str:
        return self.video.name

    @property
    def num_frames(self) -> int:
        return self.video.num_frames

    @property
    def fps(self) -> float | None:
        return self.video.fps

    def read(self, frames: np.ndarray) -> np.ndarray:
        return rgb_to_gray(self.video.read(frames))  # (F, H, W, 1)

    def size(self) -> tuple[int, int]:
        return self.video.size()


def with_channels(videos: Sequence[Video], channels: int) -> list[Video]:
    """The videos as a model of `channels` channels (data.channels) sees them: as they are (3), or each read
    in grayscale (1)."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    return [GrayVideo(video) for video in videos] if channels == 1 else list(videos)


# ----------------------------------------------------------------------------------------------------------
# Finding videos


def find_videos(source: str | Path, check_frames: bool = False) -> tuple[list[StoredVideo], list[tuple[str, str]]]:
    """Index a folder or zip: the readable videos (probed, not decoded) and the (path, reason) of the rest.

    With `check_frames`, every image of a frame folder (or zip of them) is read in full and checked, and a folder
    with a damaged one is left out: that reads the whole dataset once (what `vidgen data info` does to report
    them). Without it, only the file listing is read, and a damaged frame is found when a clip decodes it.
    """
    path = Path(source).expanduser()
    if not path.exists():
        raise UserError(f"data source '{path}' does not exist; {_SOURCE_HINT}")
    if is_shards_dir(path):  # written by `vidgen data prepare --format shards`
        return list(load_shards(path)), []
    if path.is_file():
        if path.suffix.lower() != ".zip":
            raise UserError(f"data source '{path}' is a file, not a folder or .zip; {_SOURCE_HINT}")
        return _whole(_zip_frame_folders(path), check_frames)
    video_paths, frame_folders = _walk(path)
    if not video_paths and not frame_folders:
        raise UserError(f"no videos in '{path}': found no {'/'.join(VIDEO_EXTENSIONS)} files and no folders "
                        f"of .png/.jpg frames; {_SOURCE_HINT}")
    videos, skipped = _whole([FrameFolder(str(folder), paths) for folder, paths in frame_folders], check_frames)
    for video_path in video_paths:
        try:
            videos.append(VideoFile(probe_video(video_path)))
        except VideoReadError as exc:
            skipped.append((str(video_path), exc.reason))
    videos.sort(key=lambda video: video.name)
    return videos, skipped


def summarize_skipped(skipped: Sequence[tuple[str, str]], shown: int = 3) -> str:
    """One line: how many videos were skipped, and the first few with their reasons."""
    if not skipped:
        return "no videos skipped"
    listed = "; ".join(f"{path} ({reason})" for path, reason in skipped[:shown])
    more = f"; and {len(skipped) - shown} more" if len(skipped) > shown else ""
    return f"skipped {len(skipped)} video{'s' if len(skipped) != 1 else ''}: {listed}{more}"


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


def _whole(folders: Sequence[FrameFolder | ZipFrameFolder],
           check: bool) -> tuple[list[StoredVideo], list[tuple[str, str]]]:
    """The folders (with `check`: those whose frames all check out), and the (name, reason) of the rest."""
    if not check:
        return list(folders), []
    whole: list[StoredVideo] = []
    damaged = []
    for folder in folders:
        try:
            folder.check_frames()
            whole.append(folder)
        except VideoReadError as exc:
            damaged.append((folder.name, exc.reason))
    return whole, damaged


def _zip_frame_folders(path: Path) -> list[ZipFrameFolder]:
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
    archive = LazyFile(path, zipfile.ZipFile)  # one handle per process, shared by all its folders
    return [ZipFrameFolder(archive, folder, tuple(sorted(members))) for folder, members in sorted(folders.items())]
