"""Video diffusion sampling: quality per network evaluation for each sampler, and speed against
lucidrains/video-diffusion-pytorch 0.7.0's sampler at an equal network size.

(a) Quality per step. A trained run (vdm-tiny by default: trained here first if --run does not exist) samples
    the same seeds with each sampler; FVD (real I3D, fvd2048_16f's clips with --videos per side) against the
    run's own synthetic data. Goal: DDIM-50 within 10% of ancestral-256 (γ = 0, the default) at 5x fewer
    network evaluations; DDIM-50 at η = 0 (deterministic), 0.5 and 1, ancestral-256 also at γ = 0.3.
    Beside FVD, the mean change between consecutive frames of the samples against that of real clips: frames
    that each show another scene (flicker) read far above the real value, which FVD alone does not make plain.
(b) Training memory with and without gradient checkpointing: see bench_vdm_train_step.py (vidgen-checkpointed).
(c) Speed. Videos per second of one batch of --speed-batch videos, both implementations at the parameter
    count of bench_vdm_train_step.py's preset: lucidrains' ancestral sampler over its discrete schedule
    (GaussianDiffusion(timesteps=K)) against vidgen's samplers.

    python benchmarks/bench_vdm_sampling.py                          # trains vdm-tiny into runs/bench-vdm-tiny
    python benchmarks/bench_vdm_sampling.py --run runs/tiny --videos 256 --device cuda

Needs the detectors (`vidgen detectors install`) and, for (c), the reference package (see
bench_vdm_train_step.py; `make bench` installs it).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_vdm_train_step import PRESETS, build_lucidrains  # noqa: E402

SAMPLER_CONFIGS = (("ancestral", 256, {"sampler_gamma": 0.0}), ("ancestral", 256, {"sampler_gamma": 0.3}),
                   ("ddim", 25, {"ddim_eta": 0.0}), ("ddim", 50, {"ddim_eta": 0.0}), ("ddim", 50, {"ddim_eta": 0.5}),
                   ("ddim", 50, {"ddim_eta": 1.0}), ("heun", 18, {}), ("ancestral", 50, {"sampler_gamma": 0.3}))
"""(sampler, steps, model config overrides) for part (a); the first is the reference. Every row names its noise, so
a run trained with other defaults measures the same samplers. DDIM at η = 1 is the ancestral sampler at γ = 0
(tests/models/vdm/test_samplers.py), the DDIM rows' noisy end."""


class QualityRow(NamedTuple):
    sampler: str
    steps: int
    noise: str
    evals: int
    fvd: float
    frame_change: float
    seconds: float


def noise_label(sampler: str, config) -> str:
    """The sampler's noise setting as the table shows it: γ for ancestral and pc, η for DDIM, none for Heun."""
    return {"ancestral": f"γ={config.sampler_gamma:g}", "pc": f"γ={config.sampler_gamma:g}",
            "ddim": f"η={config.ddim_eta:g}"}.get(sampler, "-")


def network_evaluations(sampler: str, steps: int) -> int:
    """Denoiser calls per video: one per step; Heun two per step but the last; predictor-corrector two."""
    return {"heun": 2 * steps - 1, "pc": 2 * steps}.get(sampler, steps)


# ----------------------------------------------------------------------------------------------------------
# (a) Quality per step


def mean_frame_change(videos: torch.Tensor) -> float:
    """Mean |frame t+1 − frame t| of videos (N, C, T, H, W) in [-1, 1]."""
    return (videos[:, :, 1:] - videos[:, :, :-1]).abs().mean().item()


def real_frame_change(recipe, frames: int, count: int) -> float:
    """mean_frame_change of `count` training clips of `frames` frames, as the data loader cuts them."""
    from vidgen.core import layout
    from vidgen.core.data.dataset import build_dataset

    dataset = build_dataset(dataclasses.replace(recipe.data, frames=frames), seed=recipe.run.seed)
    count = min(count, len(dataset.videos))
    clips = torch.stack([torch.as_tensor(dataset[(i, i)]["video"]) for i in range(count)])  # (N, T, H, W, C)
    return mean_frame_change(layout.to_model(clips))


CONVERGE_OVERRIDES = ("train.lr_decay=cosine", "train.ema_halflife_videos=4000", "train.checkpoint_every=500")
"""vdm-tiny trained for the comparison: to convergence rather than the demo's 400 steps, so the lr decays to 0
and the average spans ~500 steps (the demo's 60-step half-life suits a short run)."""


def ensure_trained_run(run: Path, max_steps: int) -> None:
    if (run / "checkpoints").is_dir() and any((run / "checkpoints").glob("ckpt-*.pt")):
        return
    print(f"training vdm-tiny for {max_steps} steps into {run} (pass --run to use a trained run)", flush=True)
    overrides = [arg for item in CONVERGE_OVERRIDES for arg in ("--set", item)]
    subprocess.run([sys.executable, "-m", "vidgen_cli", "train", "vdm-tiny", "--out", str(run), "--max-steps",
                    str(max_steps), *overrides], check=True, cwd=ROOT)


def quality_table(args: argparse.Namespace) -> None:
    from rich.console import Console

    from vidgen.evaluate import GeneratorSource, evaluate
    from vidgen.metrics.protocols import get_protocols
    from vidgen.metrics.sources import SyntheticSpec
    from vidgen.sample import load_for_sampling

    device = torch.device(args.device)
    ensure_trained_run(args.run, args.train_steps)
    recipe, backend = load_for_sampling(args.run, device)
    # FVD needs 16-frame clips; the tiny model trains on 8. Every sampler denoises all 16 frames at once (the
    # temporal attention takes any length), so the comparison is between samplers, not extension methods.
    backend.config = dataclasses.replace(backend.config, long_videos="joint")
    protocol = dataclasses.replace(get_protocols("fvd2048_16f")[0], num_videos=args.videos)
    synthetic = SyntheticSpec.from_data(recipe.data, recipe.run.seed)
    quiet = Console(stderr=True, quiet=True)

    trained_config = backend.config
    rows = []
    for sampler, steps, overrides in SAMPLER_CONFIGS:
        backend.config = dataclasses.replace(trained_config, **overrides)
        noise = noise_label(sampler, backend.config)
        changes = []  # (mean_frame_change, videos) of each sampled batch

        def sample(seeds: list[int], frames: int, sampler: str = sampler, steps: int = steps,
                   changes: list = changes) -> torch.Tensor:
            videos = backend.sample(backend.networks, seeds, frames, device,
                                    recipe.sample_options(steps=steps, sampler=sampler))
            changes.append((mean_frame_change(videos), len(seeds)))
            return videos

        start = time.perf_counter()
        result = evaluate("synthetic", GeneratorSource(sample, args.batch, synthetic), [protocol], device=args.device,
                          allow_fewer=True, console=quiet)
        seconds = time.perf_counter() - start
        change = sum(value * count for value, count in changes) / sum(count for _, count in changes)
        rows.append(QualityRow(sampler, steps, noise, network_evaluations(sampler, steps), result.metrics[0].value,
                               change, seconds))
        print(f"  {sampler}-{steps} {noise}: FVD {result.metrics[0].value:.1f}, frame change {change:.3f} "
              f"({seconds:.0f} s)", flush=True)

    reference = rows[0]
    print(f"\n(a) Quality per step: {recipe.run.name} at step {checkpoint_step(args.run)}, {args.videos} videos per "
          f"side, 16 frames at {recipe.data.resolution}x{recipe.data.resolution}, FVD on the real I3D "
          f"(fvd2048_16f clips, n={args.videos}), on {args.device}")
    reference_name = f"{reference.sampler}-{reference.steps} {reference.noise}"
    header = (f"{'sampler':<12}{'steps':>7}{'noise':>8}{'net evals':>11}{'FVD':>9}{'FVD vs ref':>12}"
              f"{'evals vs ref':>14}{'frame change':>14}{'time (s)':>10}")
    print(header)
    print("-" * len(header))
    for row in rows:
        print(f"{row.sampler:<12}{row.steps:>7}{row.noise:>8}{row.evals:>11}{row.fvd:>9.1f}"
              f"{row.fvd / reference.fvd:>11.2f}x{row.evals / reference.evals:>13.2f}x{row.frame_change:>14.3f}"
              f"{row.seconds:>10.0f}")
    real = real_frame_change(recipe, protocol.frames, args.videos)
    print(f"ref: {reference_name}; frame change: mean |frame t+1 - frame t| in [-1, 1], real clips of the same "
          f"length: {real:.3f}")
    for ddim50 in (row for row in rows if (row.sampler, row.steps) == ("ddim", 50)):
        ratio = ddim50.fvd / reference.fvd
        print(f"DDIM-50 {ddim50.noise}: FVD {ratio:.2f}x {reference_name}'s at {reference.evals / ddim50.evals:.1f}x "
              f"fewer evaluations (goal: within 10%: {'met' if ratio <= 1.10 else 'NOT met'})")


def checkpoint_step(run: Path) -> int:
    from vidgen.core.checkpoint import latest_checkpoint
    from vidgen.core.run_dir import RunDir

    latest = latest_checkpoint(RunDir(run).checkpoints)
    return int(latest.stem.split("-")[-1]) if latest else 0


# ----------------------------------------------------------------------------------------------------------
# (c) Speed against the reference sampler


def timed(fn, device: torch.device, repeats: int) -> float:
    """Median seconds of fn() over `repeats` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def speed_table(args: argparse.Namespace) -> None:
    from vidgen.core.config import DataConfig, Recipe, RunConfig
    from vidgen.models.vdm.backend import VDMBackend
    from vidgen.models.vdm.config import VDMConfig, VDMSampleConfig

    device = torch.device(args.device)
    preset = PRESETS[args.preset]
    shape = argparse.Namespace(frames=preset.frames, resolution=preset.resolution, batch=1)
    torch.manual_seed(0)
    lucidrains_unet, _, _ = build_lucidrains(preset, shape, device)
    from video_diffusion_pytorch import GaussianDiffusion

    model = VDMConfig(channels=preset.channels, channel_mults=preset.channel_mults,
                      blocks_per_level=preset.blocks_per_level, attention_resolutions=preset.attention_resolutions,
                      head_channels=preset.head_channels)
    recipe = Recipe(run=RunConfig(name="bench"), data=DataConfig(resolution=preset.resolution, frames=preset.frames),
                    model=model, sample=VDMSampleConfig())
    backend = VDMBackend(recipe)
    backend.networks.to(device).eval()
    seeds = list(range(args.speed_batch))

    rows = []
    for steps in args.speed_steps:
        reference = GaussianDiffusion(lucidrains_unet, image_size=preset.resolution, num_frames=preset.frames,
                                      timesteps=steps).to(device).eval()
        with torch.no_grad():
            seconds = timed(lambda: reference.sample(batch_size=args.speed_batch), device, args.repeats)
        rows.append(("lucidrains ancestral", steps, steps, seconds))
    for sampler, steps in [("ancestral", s) for s in args.speed_steps] + [("ddim", 50), ("heun", 18)]:
        with torch.no_grad():
            options = recipe.sample_options(steps=steps, sampler=sampler)
            seconds = timed(lambda: backend.sample(backend.networks, seeds, preset.frames, device, options),
                            device, args.repeats)
        rows.append((f"vidgen {sampler}", steps, network_evaluations(sampler, steps), seconds))

    lucidrains_params = sum(p.numel() for p in lucidrains_unet.parameters())
    vidgen_params = sum(p.numel() for p in backend.networks.parameters())
    print(f"\n(c) Sampling speed on {args.device} ({torch.get_num_threads()} threads): batch {args.speed_batch}, "
          f"{preset.frames} frames at {preset.resolution}x{preset.resolution}; "
          f"lucidrains {lucidrains_params / 1e6:.2f}M "
          f"parameters, vidgen {vidgen_params / 1e6:.2f}M; median of {args.repeats} after a warm-up")
    if args.device == "cpu":
        print(f"  CPU load average over the last minute: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    header = f"{'sampler':<24}{'steps':>7}{'net evals':>11}{'s/batch':>10}{'videos/s':>10}{'ms/eval':>10}"
    print(header)
    print("-" * len(header))
    for name, steps, evals, seconds in rows:
        print(f"{name:<24}{steps:>7}{evals:>11}{seconds:>10.2f}{args.speed_batch / seconds:>10.2f}"
              f"{1000 * seconds / evals:>10.1f}")
    for steps in args.speed_steps:
        ours = next(r for r in rows if r[:2] == ("vidgen ancestral", steps))[3]
        theirs = next(r for r in rows if r[:2] == ("lucidrains ancestral", steps))[3]
        print(f"ancestral, {steps} steps: vidgen {theirs / ours:.2f}x the reference's videos/s")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=ROOT / "runs" / "bench-vdm-tiny", help="trained vdm run")
    parser.add_argument("--train-steps", type=int, default=4000, help="steps to train --run for if it is missing")
    parser.add_argument("--videos", type=int, default=128, help="videos per side for FVD")
    parser.add_argument("--batch", type=int, default=16, help="videos sampled at once for FVD")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu", help="network size for (c)")
    parser.add_argument("--speed-batch", type=int, default=4)
    parser.add_argument("--speed-steps", type=int, nargs="+", default=[64])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=("quality", "speed"), help="run one part")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.only != "speed":
        quality_table(args)
    if args.only != "quality":
        speed_table(args)


if __name__ == "__main__":
    main()
