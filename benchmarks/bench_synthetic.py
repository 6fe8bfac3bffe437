"""Synthetic-scene rendering speed: milliseconds per video and per frame of vidgen.core.synthetic.render_video.

The synthetic set is rendered on the fly wherever it is the real data (`vidgen eval --real synthetic:...`, 2048
videos for an FVD-2048) and written by `vidgen data synth`, so its cost per video bounds those commands. Each row
renders --videos different seeds after a warm-up render and reports the best and the median.

    python benchmarks/bench_synthetic.py                       # a few seconds
    python benchmarks/bench_synthetic.py --sizes 64 256 --frames 16 128
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from vidgen.core.synthetic import SceneStyle, render_video  # noqa: E402

STYLES = {"default": SceneStyle(), "1 shape, 1 colour, solid": SceneStyle(max_shapes=1, colours=1, textured=False)}


def render_seconds(size: int, frames: int, style: SceneStyle, videos: int, fps: float = 8.0) -> list[float]:
    """Seconds to render each of `videos` seeds at `frames` frames of size x size, after a warm-up render."""
    times = np.arange(frames) / fps
    render_video(0, times, size, style)  # warm-up
    seconds = []
    for seed in range(1, videos + 1):
        start = time.perf_counter()
        render_video(seed, times, size, style)
        seconds.append(time.perf_counter() - start)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--frames", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--videos", type=int, default=5, help="timed videos (seeds) per row")
    args = parser.parse_args()

    print(f"\nrender_video, {args.videos} seeds per row after a warm-up, {os.cpu_count()} CPU cores, "
          f"numpy {np.__version__}")
    header = f"{'style':<26} {'size':>5} {'frames':>7} {'best ms/video':>14} {'median ms/video':>16} {'ms/frame':>9}"
    print(header + "\n" + "-" * len(header))
    for name, style in STYLES.items():
        for size in args.sizes:
            for frames in args.frames:
                seconds = render_seconds(size, frames, style, args.videos)
                best, median = 1000 * min(seconds), 1000 * statistics.median(seconds)
                print(f"{name:<26} {size:>5} {frames:>7} {best:>14.1f} {median:>16.1f} {best / frames:>9.2f}")


if __name__ == "__main__":
    main()
