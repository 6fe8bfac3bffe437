"""FVD-16f throughput: vidgen's streaming extraction vs a naive loop, and the real-side cache speed-up.

(a) Videos/s of FVD-16f feature extraction with the real I3D:
    - naive: decode one video in the main process, run it through I3D alone, next video;
    - streaming: DataLoader workers decode while the detector runs batches (what `vidgen eval` does).
(b) A whole `evaluate` twice against the same real data: the first computes the real statistics, the
    second reads them from the cache, so only the fake side is left.

The videos are synthetic mp4s (or your own with --videos). The detector files must be installed
(`vidgen detectors install`).

    python benchmarks/bench_metrics.py                                  # CPU, 8 videos
    python benchmarks/bench_metrics.py --device cuda --num 256 --batch 16 --workers 8
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from vidgen.core.data.sources import find_videos  # noqa: E402
from vidgen.core.device import resolve_device  # noqa: E402
from vidgen.core.io import read_video  # noqa: E402
from vidgen.core.synthetic import write_synthetic_dataset  # noqa: E402
from vidgen.evaluate import evaluate  # noqa: E402
from vidgen.metrics.detectors import Detector, load_detector  # noqa: E402
from vidgen.metrics.features import ClipDataset, clip_batches, extract_features  # noqa: E402
from vidgen.metrics.protocols import Protocol  # noqa: E402
from vidgen.metrics.stats import MomentAccumulator  # noqa: E402

FRAMES = 16


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def naive(paths: list[Path], detector: Detector, device: torch.device) -> tuple[float, np.ndarray]:
    """Decode one, run one: the loop most FVD scripts use."""
    start = time.perf_counter()
    features = []
    with torch.inference_mode():
        for path in paths:
            video = torch.from_numpy(read_video(path, 0, FRAMES))[None].to(device)  # (1, T, H, W, 3)
            features.append(detector.module(video).double().cpu().numpy())
    _sync(device)
    return time.perf_counter() - start, np.concatenate(features)


def streaming(folder: Path, detector: Detector, device: torch.device, batch: int,
              workers: int) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    videos, _ = find_videos(folder)
    clips = ClipDataset(videos, [0] * len(videos), FRAMES, 1)
    moments = MomentAccumulator(detector.dim)
    extract_features(clip_batches(clips, batch, workers, device.type == "cuda"), detector, device, [moments])
    _sync(device)
    return time.perf_counter() - start, moments.mean


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--num", type=int, default=8, help="videos (synthetic unless --videos)")
    parser.add_argument("--size", type=int, default=64, help="synthetic video size in pixels")
    parser.add_argument("--videos", type=Path, help="a folder of your own videos (>= 16 frames each)")
    parser.add_argument("--batch", type=int, default=4, help="clips per detector batch (streaming)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader decoding processes (streaming)")
    parser.add_argument("--repeats", type=int, default=2, help="best of this many runs per row (shared machines)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as tmp:
        root = Path(tmp)
        if args.videos is None:
            args.videos = root / "real"
            write_synthetic_dataset(args.videos, num=args.num, frames=FRAMES, size=args.size, fps=8, seed=0)
            write_synthetic_dataset(root / "fake", num=args.num, frames=FRAMES, size=args.size, fps=8, seed=1)
            fake = root / "fake"
        else:
            fake = args.videos
        paths = sorted(p for p in args.videos.rglob("*.mp4"))[:args.num]
        detector = load_detector("i3d", device)

        # Warm-up (allocator, cuDNN autotuning) so neither side pays it.
        naive(paths[:1], detector, device)

        t_naive, t_stream, t_first, t_second = (float("inf"),) * 4
        protocol = Protocol(f"fvd{len(paths)}_16f", "i3d", "frechet", len(paths), FRAMES)
        kwargs = dict(device=str(device), allow_fewer=True, cache_dir=root / "stats", batch_size=args.batch,
                      workers=args.workers)
        for _ in range(args.repeats):
            seconds, f_naive = naive(paths, detector, device)
            t_naive = min(t_naive, seconds)
            seconds, mean_stream = streaming(args.videos, detector, device, args.batch, args.workers)
            t_stream = min(t_stream, seconds)
            assert np.allclose(f_naive.mean(0), mean_stream, rtol=1e-3, atol=1e-3), "the two paths disagree"

            shutil.rmtree(root / "stats", ignore_errors=True)  # the first evaluate computes the real side
            start = time.perf_counter()
            first = evaluate(args.videos, fake, [protocol], **kwargs)
            t_first = min(t_first, time.perf_counter() - start)
            start = time.perf_counter()
            second = evaluate(args.videos, fake, [protocol], **kwargs)
            t_second = min(t_second, time.perf_counter() - start)
            assert second[protocol.name].real_stats == "cache"
            assert second[protocol.name].value == first[protocol.name].value

    n = len(paths)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"\nFVD-16f with the real I3D, {n} videos x {FRAMES} frames, device {device} ({name}), "
          f"{torch.get_num_threads()} threads, best of {args.repeats}")
    print(f"{'':44s} {'seconds':>9s} {'videos/s':>9s}")
    print(f"{'naive loop (decode 1, run 1)':44s} {t_naive:9.2f} {n / t_naive:9.2f}")
    label = f"streaming ({args.workers} workers, batch {args.batch})"
    print(f"{label:44s} {t_stream:9.2f} {n / t_stream:9.2f}   x{t_naive / t_stream:.2f}")
    print(f"{'evaluate, real side computed (real + fake)':44s} {t_first:9.2f}")
    print(f"{'evaluate, real side from the cache (fake)':44s} {t_second:9.2f} {'':9s}   x{t_first / t_second:.2f}")


if __name__ == "__main__":
    main()
