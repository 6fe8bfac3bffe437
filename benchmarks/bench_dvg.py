"""DVG prediction speed: frames/s of long rollouts (5 context frames -> 100 predicted, the paper's test setting)
with and without the Gaussian-process trigger, and what the GP layer costs per frame.

Rows, all from one build of the recipe's networks (untrained: speed does not depend on the weights; how often the
gp rule fires does, so its row counts evaluating the GP at every frame, and a draw wherever the rule fires):
- none     the LSTM alone; the GP is never evaluated (the released code's "LSTM only" rollout);
- every:10 a GP draw every 10th predicted frame (the released code's fixed-interval rollouts use 15);
- gp       the variance rule: the GP's predictive variance at every frame, a draw where it fires.
"GP ms/frame" times the GP layer alone (the predictive mean and variance of a batch of latents, GPyTorch) per
call, and its share of a gp-rule frame. The released code cannot run beside it: it is written for GPyTorch 0.x
(AbstractVariationalGP, `batch_size=` keyword arguments), which current torch and GPyTorch no longer have.

    python benchmarks/bench_dvg.py                          # dvg-kth-64 at full size, 8 videos, ~2 min on 2 cores
    python benchmarks/bench_dvg.py --quick                  # 2 videos x 25 frames (what the test runs)
    python benchmarks/bench_dvg.py --device cuda --batch 64
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from benchmarks.measure import describe, synchronize  # noqa: E402
from benchmarks.tables import table  # noqa: E402

from vidgen.core.device import resolve_device  # noqa: E402
from vidgen.models.registry import build_backend  # noqa: E402
from vidgen.recipe import load_recipe  # noqa: E402

TRIGGERS = ("none", "every:10", "gp")


def time_rollout(backend, context: torch.Tensor, frames: int, trigger: str, device: torch.device,
                 repeats: int) -> tuple[list[float], float]:
    """Seconds of each predict() call (after one warm-up), and the share of frames where the trigger fired."""
    options = dataclasses.replace(backend.recipe.sample, trigger=trigger)
    seeds = list(range(context.shape[0]))
    times, fired = [], 0.0
    for attempt in range(repeats + 1):
        synchronize(device)
        start = time.perf_counter()
        prediction = backend.predict(backend.networks, context, seeds, frames, device, options)
        synchronize(device)
        if attempt:  # the first call warms the allocator and the kernels up
            times.append(time.perf_counter() - start)
        decisions = [f["fired"] for video in prediction.details for f in video["frames"]]
        fired = sum(decisions) / len(decisions)
    return times, fired


def time_gp(backend, batch: int, device: torch.device, calls: int = 50) -> float:
    """Milliseconds of one GP predictive call (mean and variance of the next latent) for `batch` latents."""
    gp = backend.networks["gp"].eval()
    h = torch.rand(batch, backend.config.g_dim, device=device) * 2 - 1
    with torch.no_grad():
        gp.predictive(h)  # warm-up
        synchronize(device)
        start = time.perf_counter()
        for _ in range(calls):
            gp.predictive(h)
        synchronize(device)
    return (time.perf_counter() - start) / calls * 1e3


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="dvg-kth-64", help="the networks to time (built, not trained)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch", type=int, default=8, help="videos predicted at once")
    parser.add_argument("--predicted", type=int, default=100, help="frames predicted after the context")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="2 videos, 20 predicted frames, 1 repeat")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.predicted, args.repeats = 2, 20, 1

    device = resolve_device(args.device)
    backend = build_backend(load_recipe(args.recipe))
    backend.networks.to(device)
    recipe, config = backend.recipe, backend.config
    c = config.context_frames
    frames = c + args.predicted
    size = recipe.data.resolution
    generator = torch.Generator().manual_seed(0)
    context = (torch.rand(args.batch, recipe.data.channels, c, size, size, generator=generator) * 2 - 1).to(device)
    gp_ms = time_gp(backend, args.batch, device)

    rows = []
    for trigger in TRIGGERS:
        times, fired = time_rollout(backend, context, frames, trigger, device, args.repeats)
        best = min(times)
        per_frame = best / args.predicted * 1e3  # one step of the whole batch
        gp_share = f"{gp_ms / per_frame:.0%}" if trigger == "gp" else "-"
        rows.append([trigger, f"{args.batch * args.predicted / best:,.1f}", f"{per_frame:.2f}",
                     f"{min(times):.2f}-{max(times):.2f}", f"{fired:.1%}", gp_share])
    params = sum(p.numel() for p in backend.networks.parameters()) / 1e6
    table(f"DVG rollouts on {describe(device)}: {args.recipe} ({params:.2f}M parameters, {recipe.data.channels}x"
          f"{size}x{size}), {args.batch} videos x ({c} context + {args.predicted} predicted) frames; best of "
          f"{args.repeats}",
          ["trigger", "frames/s", "ms per frame step", "s per rollout", "fired", "GP share of a step"], rows)
    print(f"\nGP layer alone (predictive mean and variance, {config.g_dim} GPs x {config.inducing_points} inducing "
          f"points, {args.batch} latents): {gp_ms:.2f} ms per frame step")
    none_fps = float(rows[0][1].replace(",", ""))
    gp_fps = float(rows[-1][1].replace(",", ""))
    print(f"The gp rule runs at {gp_fps / none_fps:.2f}x the frames/s of the LSTM alone")


if __name__ == "__main__":
    main()
