"""Reading datasets written by `vidgen data prepare` (vidgen.prepare): their metadata, and the shards layout.

Both layouts carry the same metadata, `vidgen-prepared.json`: a member of a frames zip, a file in a shards folder.
It records the resolution the frames were resized to, so that training at another resolution is one clear error
rather than a silent second resize (which would blur the frames, or upsample them).

The shards layout, for sequential reads:

    OUT/vidgen-prepared.json   metadata: resolution, fps, and per video its shard, first frame and frame count
    OUT/shard-00000.npy        uint8 [N, R, R, 3]: the frames of consecutive videos, one after another
    OUT/shard-00001.npy        ...

A video is a run of frames in one shard, so a clip is one contiguous slice of a memory-mapped array: no decoding,
no resizing. No torch here: `vidgen data info` and the metrics index datasets through this module too.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vidgen.core.files import LazyFile, file_fingerprint
from vidgen.errors import ConfigError, UserError

META_NAME = "vidgen-prepared.json"
FORMAT = "vidgen-prepared"
FORMAT_VERSION = 1
_PREPARE_HINT = "run `vidgen data prepare` again"


def read_metadata(path: Path) -> dict[str, Any] | None:
    """The metadata of a prepared dataset (a shards folder or a frames zip); None for any other source."""
    if path.is_dir():
        if not (path / META_NAME).is_file():
            return None
        text = (path / META_NAME).read_bytes()
    elif path.is_file() and path.suffix.lower() == ".zip":
        try:
            with zipfile.ZipFile(path) as archive:
                if META_NAME not in archive.namelist():
                    return None
                text = archive.read(META_NAME)
        except (zipfile.BadZipFile, OSError):
            return None  # not ours to judge: indexing the zip reports it in one line
    else:
        return None
    try:
        meta = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}/{META_NAME} is damaged ({exc}); {_PREPARE_HINT}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise UserError(f"{path}/{META_NAME} is not vidgen's dataset metadata; {_PREPARE_HINT}")
    if meta.get("version", 0) > FORMAT_VERSION:
        raise UserError(f"{path} was prepared by a newer vidgen (metadata version {meta.get('version')}); "
                        "upgrade vidgen to read it")
    if not (isinstance(meta.get("resolution"), int) and isinstance(meta.get("videos"), list)
            and meta.get("layout") in ("frames-zip", "shards")):
        raise UserError(f"{path}/{META_NAME} is damaged (no resolution, layout or video list); {_PREPARE_HINT}")
    return meta


def check_resolution(source: str | Path, resolution: int) -> None:
    """A ConfigError when `source` is a dataset prepared at another resolution than `resolution`."""
    meta = read_metadata(Path(source).expanduser())
    if meta is not None and meta["resolution"] != resolution:
        prepared = meta["resolution"]
        raise ConfigError(f"'{source}' was prepared at {prepared}x{prepared} but data.resolution is {resolution}; "
                          f"set data.resolution={prepared}, or prepare the videos again with --resolution "
                          f"{resolution}")


def is_shards_dir(path: Path) -> bool:
    """Whether `path` is a folder written by `vidgen data prepare --format shards`."""
    return path.is_dir() and (path / META_NAME).is_file()


# ----------------------------------------------------------------------------------------------------------
# Videos in shards


@dataclass(frozen=True)
class ShardVideo:
    shard: LazyFile[np.ndarray]
    """The shard, memory-mapped on first use in each process."""
    offset: int
    """Row of the video's first frame in its shard."""
    num_frames: int
    fps: float | None
    resolution: int
    stored_name: str
    """The video's name in the prepared dataset (its path relative to the source, without extension)."""

    @property
    def name(self) -> str:
        return f"{self.shard.path.parent}/{self.stored_name}"

    def read(self, frames: np.ndarray) -> np.ndarray:
        return np.asarray(self.shard.get()[self.offset + np.asarray(frames)])  # (F, R, R, 3) uint8

    def size(self) -> tuple[int, int]:
        return self.resolution, self.resolution

    def relative_name(self, root: Path) -> str:
        return self.stored_name

    def fingerprint(self) -> str:
        return file_fingerprint(self.shard.path, self.num_frames)

    @property
    def frame_names(self) -> tuple[str, ...]:
        return ()


def load_shards(path: Path) -> list[ShardVideo]:
    """The videos of a shards folder, sorted by name; a missing or damaged shard is a one-line UserError."""
    meta = read_metadata(path)
    if meta is None or meta.get("layout") != "shards":
        raise UserError(f"{path} is not a shards folder written by `vidgen data prepare`")
    resolution = int(meta["resolution"])
    shards: dict[str, tuple[LazyFile[np.ndarray], int]] = {}  # file name -> (shard, its number of frames)
    videos = []
    for entry in meta["videos"]:
        try:
            name, offset, frames = str(entry["shard"]), int(entry["offset"]), int(entry["frames"])
        except (KeyError, TypeError, ValueError):
            raise UserError(f"{path}/{META_NAME} is damaged (a video without its shard, offset or frame count); "
                            f"{_PREPARE_HINT}") from None
        if name not in shards:  # each file is checked once, at indexing, not at the first clip
            shards[name] = LazyFile(path / name, _open_shard), len(_open_shard(path / name, expect=resolution))
        shard, rows = shards[name]
        if offset + frames > rows:
            raise UserError(f"{shard.path} holds fewer frames than {META_NAME} lists; {_PREPARE_HINT}")
        videos.append(ShardVideo(shard, offset, frames, entry.get("fps"), resolution, str(entry.get("name"))))
    return sorted(videos, key=lambda video: video.name)


def _open_shard(path: Path, expect: int | None = None) -> np.ndarray:
    try:
        array = np.load(path, mmap_mode="r")  # reads the header only; pages come in as clips are read
    except (OSError, ValueError) as exc:
        reason = "missing" if not path.exists() else f"damaged ({exc})"
        raise UserError(f"shard {path} is {reason}; {_PREPARE_HINT}") from None
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[3] != 3 or (
            expect is not None and array.shape[1:3] != (expect, expect)):
        raise UserError(f"shard {path} holds {array.dtype} {array.shape}, not uint8 frames [N, {expect}, {expect}, 3]; "
                        f"{_PREPARE_HINT}")
    return array
