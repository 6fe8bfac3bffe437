"""Fixtures for the metrics tests.

Tests of the real pipeline need the real detector files. `make test` runs `vidgen detectors install` first;
when the files are missing or altered, those tests FAIL with the install hint (they never skip, and never
fall back to a random network).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vidgen.core.io import write_mp4
from vidgen.core.synthetic import render_video
from vidgen.evaluate import EvalResult, evaluate
from vidgen.metrics.detectors import DETECTORS, Detector, DetectorError, default_detector_dir, load_detector, locate


@pytest.fixture(scope="session")
def detector_dir() -> Path:
    """$VIDGEN_HOME/detectors (default ~/.cache/vidgen/detectors), checked file by file."""
    folder = default_detector_dir()
    for name in DETECTORS:
        try:
            locate(name, folder)
        except DetectorError as exc:
            pytest.fail(f"{exc} (the metrics tests need the real detectors)", pytrace=False)
    return folder


@pytest.fixture(scope="session")
def i3d(detector_dir: Path) -> Detector:
    return load_detector("i3d", torch.device("cpu"), detector_dir)


@pytest.fixture(scope="session")
def inception(detector_dir: Path) -> Detector:
    return load_detector("inception", torch.device("cpu"), detector_dir)


def write_videos(folder: Path, num: int, frames: int, size: int = 32, seed: int = 0) -> list[Path]:
    """`num` synthetic mp4s of `frames` frames (scene seeds seed, seed + 1, ...)."""
    paths = []
    for i in range(num):
        path = folder / f"{i:03d}.mp4"
        write_mp4(path, render_video(seed + i, np.arange(frames) / 8.0, size), fps=8)
        paths.append(path)
    return paths


@pytest.fixture(scope="session")
def evaluated(tmp_path_factory, detector_dir) -> tuple[Path, EvalResult]:
    """Three 16-frame videos (root/videos) scored against themselves with fvd2048_16f and kvd2048_16f
    (allow_fewer); the real statistics are cached under root/home/stats (VIDGEN_HOME=root/home) and saved
    to root/real.npz. Shared by the library and CLI tests, since I3D on a CPU takes seconds per clip."""
    root = tmp_path_factory.mktemp("eval")
    write_videos(root / "videos", num=3, frames=16)
    result = evaluate(root / "videos", root / "videos", ["fvd2048_16f", "kvd2048_16f"], device="cpu",
                      allow_fewer=True, detector_dir=detector_dir, cache_dir=root / "home" / "stats",
                      save_stats=root / "real.npz", workers=1, batch_size=2)
    return root, result
