"""Data-path throughput: clips/s from raw mp4 decoding vs the prepared forms (`vidgen data prepare`), and whether
it keeps up with a training step of the tiny recipes.

For each tiny recipe (its clip sampler, batch size and resolution) and each source:
    - raw mp4: decode each clip's frames from the video files, resize them (what training on videos does);
    - frames-zip: read each frame's PNG from the prepared zip (already at the recipe's resolution);
    - shards: slice the clip from a memory-mapped uint8 shard (no decoding at all);
the training DataLoader is timed with 0, 2 and 4 workers, after its first batch (worker start-up excluded).

The step time is that of `vidgen train <recipe>` itself (its metrics.jsonl sec_per_step over steps 3-4), on the
prepared shards, so it is the model's compute with almost no data time in it. The ratio data/step is the data
time of one batch over the step time: with 0 workers it adds to every step; with workers it overlaps the step,
and the step never waits while it stays below 1. The loader is timed alone: during training, workers on a
2-core machine share the cores with the step, so for workers >= 2 the ratio is a lower bound.

    python benchmarks/bench_data.py                      # about 2 minutes on 2 idle CPU cores
    python benchmarks/bench_data.py --videos 64 --size 256 --workers 0 4 8
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from vidgen.core.config import Recipe  # noqa: E402
from vidgen.recipe import load_recipe  # noqa: E402
from vidgen.core.data.dataset import build_dataset  # noqa: E402
from vidgen.core.data.loader import make_train_loader  # noqa: E402
from vidgen.prepare import PrepareConfig, prepare_dataset  # noqa: E402
from vidgen.core.synthetic import write_synthetic_dataset  # noqa: E402
from vidgen.models.registry import build_backend  # noqa: E402

RECIPES = ("vdm-tiny", "stylegan-v-tiny")


def clips_per_second(recipe: Recipe, source: Path, workers: int, seconds: float) -> float:
    """Steady-state clips/s of the training loader of `recipe` on `source` with `workers` processes."""
    data = dataclasses.replace(recipe.data, source=str(source), workers=workers)
    clips = build_backend(recipe).training_clips()  # StyleGAN-V reads sparse clips, VDM contiguous ones
    dataset = build_dataset(data, seed=0, clips=clips)
    batch = recipe.train.batch_size
    batches = iter(make_train_loader(dataset, batch_size=batch, seed=0, start_sample=0, workers=workers))
    next(batches)  # worker start-up and the first reads are not the steady state
    count, start = 0, time.perf_counter()
    while count < 3 or time.perf_counter() - start < seconds:
        next(batches)
        count += 1
    elapsed = time.perf_counter() - start
    del batches  # stops the workers
    return count * batch / elapsed


def step_seconds(recipe_name: str, source: Path, resolution: int, work: Path) -> float:
    """sec_per_step of steps 3-4 of `vidgen train recipe` on `source` (steps 1-2 include warm-up)."""
    run = work / f"run-{recipe_name}"
    settings = [f"data.source={source}", f"data.resolution={resolution}", "data.workers=0", "train.log_every=2",
                "train.checkpoint_every=1000"]
    command = [sys.executable, "-m", "vidgen_cli", "train", recipe_name, "--out", str(run), "--max-steps", "4",
               "--device", "cpu", *[arg for item in settings for arg in ("--set", item)]]
    subprocess.run(command, check=True, capture_output=True, text=True)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return next(r["sec_per_step"] for r in records if r.get("step") == 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=16, help="raw mp4 videos")
    parser.add_argument("--frames", type=int, default=64, help="frames per raw video")
    parser.add_argument("--size", type=int, default=128, help="side of the raw videos (resized to the recipe's)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2, 4])
    parser.add_argument("--seconds", type=float, default=1.0, help="timing per measurement (after warm-up)")
    args = parser.parse_args()
    # More workers than cores is the point of the 4-worker rows, not a mistake to warn about.
    warnings.filterwarnings("ignore", message="This DataLoader will create")

    recipes = {name: load_recipe(name) for name in RECIPES}
    resolution = recipes[RECIPES[0]].data.resolution
    assert all(r.data.resolution == resolution for r in recipes.values()), "one prepared set serves every recipe"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        # --- The sources: raw mp4s, and both prepared forms of them ---
        raw = work / "raw"
        write_synthetic_dataset(raw, num=args.videos, frames=args.frames, size=args.size, fps=8.0, seed=0)
        sources = {"raw mp4": raw}
        convert = {}
        for layout, path in (("frames-zip", work / "data.zip"), ("shards", work / "shards")):
            start = time.perf_counter()
            prepare_dataset(raw, path, PrepareConfig(resolution, layout), workers=2)
            convert[layout] = time.perf_counter() - start
            sources[layout] = path

        # --- Step times, then every (recipe, source, workers) loader ---
        steps = {name: step_seconds(name, sources["shards"], resolution, work) for name in RECIPES}
        rows = []
        for name, recipe in recipes.items():
            for label, source in sources.items():
                for workers in args.workers:
                    rate = clips_per_second(recipe, source, workers, args.seconds)
                    data_time = recipe.train.batch_size / rate
                    rows.append((name, label, workers, rate, data_time, data_time / steps[name]))

    print(f"\n{args.videos} raw mp4 videos of {args.frames} frames at {args.size}x{args.size}, prepared at "
          f"{resolution}x{resolution} with 2 workers: frames-zip in {convert['frames-zip']:.1f} s, shards in "
          f"{convert['shards']:.1f} s. {os.cpu_count()} CPU cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads.")
    for name, recipe in recipes.items():
        print(f"step time of {name} (batch {recipe.train.batch_size}): {steps[name]:.3f} s")
    header = f"{'recipe':<16} {'source':<11} {'workers':>7} {'clips/s':>9} {'data s/batch':>13} {'data/step':>10}"
    print("\n" + header + "\n" + "-" * len(header))
    for name, label, workers, rate, data_time, ratio in rows:
        print(f"{name:<16} {label:<11} {workers:>7} {rate:>9.1f} {data_time:>13.3f} {ratio:>10.2f}")


if __name__ == "__main__":
    main()
