"""The summary `vidgen data info` prints: count, sizes, rates and lengths of a dataset's videos. No torch here."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vidgen.core.data.sources import find_videos
from vidgen.core.io import VideoReadError


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
    """(path, reason) of each video that could not be read or has a damaged frame."""

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
    # How deep to look: every frame image is read in full and checked without decoding (zip CRC-32s, PNG chunk
    # CRCs, JPEG end markers), which finds damage anywhere at about the speed of reading the files. Measured on
    # 300 PNG frames of 256 x 256 (42 MB, warm cache): about 0.1 s, against 0.06 s for the listing and first
    # frames alone and 1.2-1.8 s for decoding every frame. Video files are probed: their headers, and the box
    # sizes that show a cut mp4 (20 us a file); damage inside a video's frames shows only when they are decoded.
    videos, unreadable = find_videos(path, check_frames=True)
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
