"""Train-step time and peak memory: vidgen's VDM U-Net vs lucidrains/video-diffusion-pytorch 0.7.0, and vidgen
with gradient checkpointing (train.grad_checkpointing) and with channels-last activations (model.channels_last).

One train step = forward + diffusion loss + backward + AdamW step, same frames, resolution and batch, at matched
parameter counts (within 10%). Each implementation runs in its own subprocess so memory peaks do not mix:
on CUDA the peak is torch.cuda.max_memory_allocated; on CPU it is the growth of the process's maximum
resident set size (getrusage) from just before the model is built.

    python benchmarks/bench_vdm_train_step.py                      # the ANCHORS CPU setting
    python benchmarks/bench_vdm_train_step.py --device cuda --preset gpu --steps 20

Needs the reference package and its imports, without their dependency pins:
    pip install --no-deps video-diffusion-pytorch==0.7.0 einops einops-exts rotary-embedding-torch tqdm pillow
torchvision is replaced by a stand-in module (see `install_torchvision_stand_in`).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import types
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing


@dataclass(frozen=True)
class Preset:
    frames: int
    resolution: int
    batch: int
    # lucidrains Unet3D(dim, dim_mults): per-frame linear attention at every level, full attention in the middle.
    lucidrains_dim: int
    lucidrains_mults: tuple[int, ...]
    # vidgen UNet3D widths, chosen to match the parameter count of the lucidrains model.
    channels: int
    channel_mults: tuple[int, ...]
    blocks_per_level: int
    attention_resolutions: tuple[int, ...]
    head_channels: int


PRESETS = {
    # ANCHORS' CPU measurement: lucidrains dim 32, mults (1, 2, 4), 8 frames at 32x32, batch 4. vidgen uses the
    # same widths per level; one ResBlock per level down (two up) lands within 10% of its parameter count.
    # Softmax attention over 32x32 = 1024 pixels would dominate, so attention starts at 16x16 (lucidrains uses
    # linear attention there and full attention only in the middle).
    "cpu": Preset(frames=8, resolution=32, batch=4, lucidrains_dim=32, lucidrains_mults=(1, 2, 4),
                  channels=32, channel_mults=(1, 2, 4), blocks_per_level=1, attention_resolutions=(16, 8),
                  head_channels=32),
    # The README size of lucidrains (dim 64, mults (1, 2, 4, 8), 35.7 M parameters) at 16 frames of 64x64.
    "gpu": Preset(frames=16, resolution=64, batch=4, lucidrains_dim=64, lucidrains_mults=(1, 2, 4, 8),
                  channels=56, channel_mults=(1, 2, 4, 8), blocks_per_level=1, attention_resolutions=(16, 8),
                  head_channels=56),
}

IMPLEMENTATIONS = ("lucidrains", "vidgen", "vidgen-checkpointed", "vidgen-channels-last")
GOAL_SPEEDUP = 1.5
GOAL_MEMORY_RATIO = 0.8


# ----------------------------------------------------------------------------------------------------------
# Building each implementation's train step


def install_torchvision_stand_in() -> None:
    """video_diffusion_pytorch imports torchvision at module level, only for its GIF dataset and Trainer,
    which this benchmark does not use; PyPI's torchvision does not load beside every local torch build.
    This empty stand-in (with the one attribute evaluated at import time, a default argument T.ToTensor())
    lets the module import, so that only its Unet3D and GaussianDiffusion are measured."""
    torchvision = types.ModuleType("torchvision")
    torchvision.transforms = types.ModuleType("torchvision.transforms")
    torchvision.utils = types.ModuleType("torchvision.utils")
    torchvision.transforms.ToTensor = lambda: None
    sys.modules.update({"torchvision": torchvision, "torchvision.transforms": torchvision.transforms,
                        "torchvision.utils": torchvision.utils})


def build_lucidrains(preset: Preset, args: argparse.Namespace, device: torch.device):
    install_torchvision_stand_in()
    from video_diffusion_pytorch import GaussianDiffusion, Unet3D

    unet = Unet3D(dim=preset.lucidrains_dim, dim_mults=preset.lucidrains_mults)
    model = GaussianDiffusion(unet, image_size=args.resolution, num_frames=args.frames).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    videos = torch.rand(args.batch, 3, args.frames, args.resolution, args.resolution, device=device)  # [0, 1]

    def loss() -> torch.Tensor:
        return model(videos)  # its own default: discrete 1000-step cosine schedule, ε-prediction, L1 loss

    return unet, optimizer, loss


def build_vidgen(preset: Preset, args: argparse.Namespace, device: torch.device, checkpointing: bool = False,
                 channels_last: bool = False):
    from vidgen.core.config import DataConfig, Recipe, RunConfig, TrainConfig
    from vidgen.models.vdm.backend import VDMBackend
    from vidgen.models.vdm.config import VDMConfig

    model = VDMConfig(channels=preset.channels, channel_mults=preset.channel_mults,
                      blocks_per_level=preset.blocks_per_level, attention_resolutions=preset.attention_resolutions,
                      head_channels=preset.head_channels, channels_last=channels_last)
    recipe = Recipe(run=RunConfig(name="bench"), data=DataConfig(resolution=args.resolution, frames=args.frames),
                    model=model, train=TrainConfig(lr=1e-4, grad_checkpointing=checkpointing))
    backend = VDMBackend(recipe)
    backend.networks.to(device)
    optimizer = backend.make_optimizers()["main"]
    generator = torch.Generator(device).manual_seed(0)
    batch = {"video": torch.rand(args.batch, 3, args.frames, args.resolution, args.resolution, device=device) * 2 - 1}

    def loss() -> torch.Tensor:
        return backend.loss("main", batch, backend.networks, generator)[0]

    return backend.networks["unet"], optimizer, loss


# ----------------------------------------------------------------------------------------------------------
# One implementation, measured in its own process


def max_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(implementation: str, args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    preset = PRESETS[args.preset]
    torch.manual_seed(0)
    rss_before = max_rss_bytes()
    if implementation == "lucidrains":
        network, optimizer, loss_fn = build_lucidrains(preset, args, device)
    else:
        network, optimizer, loss_fn = build_vidgen(preset, args, device,
                                                   checkpointing=implementation == "vidgen-checkpointed",
                                                   channels_last=implementation == "vidgen-channels-last")

    step_ms = []
    for step in range(args.warmup + args.steps):
        synchronize(device)
        start = time.perf_counter()
        loss = loss_fn()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        synchronize(device)
        if step >= args.warmup:
            step_ms.append(1000 * (time.perf_counter() - start))

    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
    else:
        peak = max_rss_bytes() - rss_before
    return {"params": sum(p.numel() for p in network.parameters()), "ms_per_step": statistics.median(step_ms),
            "peak_bytes": peak}


def run_in_subprocess(implementation: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--worker", implementation, "--device", args.device, "--preset",
               args.preset, "--frames", str(args.frames), "--resolution", str(args.resolution), "--batch",
               str(args.batch), "--steps", str(args.steps), "--warmup", str(args.warmup)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{implementation} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------------------------
# Report


def print_table(results: dict[str, dict], args: argparse.Namespace) -> None:
    preset = PRESETS[args.preset]
    base = results["lucidrains"]
    print(f"VDM train step on {args.device} ({torch.get_num_threads()} threads): batch {args.batch}, "
          f"{args.frames} frames, {args.resolution}x{args.resolution}, median of {args.steps} steps after "
          f"{args.warmup} warm-up")
    if args.device == "cpu":  # other processes on the cores slow multi-threaded steps a lot: say if there were any
        print(f"  CPU load average over the last minute: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"  lucidrains: Unet3D(dim={preset.lucidrains_dim}, dim_mults={preset.lucidrains_mults}), linear "
          f"attention per frame at every level, full attention in the middle; L1 ε-loss")
    print(f"  vidgen:     channels={preset.channels}, channel_mults={preset.channel_mults}, blocks_per_level="
          f"{preset.blocks_per_level}, attention_resolutions={preset.attention_resolutions} + middle; v-loss; "
          f"-checkpointed: activations recomputed per U-Net block in the backward pass; -channels-last: "
          f"weights and activations NDHWC")
    header = f"{'implementation':<22}{'params':>12}{'ms/step':>12}{'peak memory':>14}{'time ratio':>12}" \
             f"{'memory ratio':>14}"
    print(header)
    print("-" * len(header))
    for name, r in results.items():
        print(f"{name:<22}{r['params'] / 1e6:>11.2f}M{r['ms_per_step']:>12.1f}{r['peak_bytes'] / 2**20:>11.0f} MiB"
              f"{r['ms_per_step'] / base['ms_per_step']:>12.2f}{r['peak_bytes'] / base['peak_bytes']:>14.2f}")
    ours = results["vidgen"]
    speedup = base["ms_per_step"] / ours["ms_per_step"]
    memory = ours["peak_bytes"] / base["peak_bytes"]
    params = ours["params"] / base["params"]
    print(f"vidgen: {speedup:.2f}x faster per step at {memory:.2f}x peak memory, {params:.2f}x parameters "
          f"(goal: >= {GOAL_SPEEDUP}x faster at <= {GOAL_MEMORY_RATIO}x memory: "
          f"{'met' if speedup >= GOAL_SPEEDUP and memory <= GOAL_MEMORY_RATIO else 'NOT met'})")
    checkpointed = results["vidgen-checkpointed"]
    print(f"gradient checkpointing: {checkpointed['peak_bytes'] / ours['peak_bytes']:.2f}x vidgen's peak memory at "
          f"{checkpointed['ms_per_step'] / ours['ms_per_step']:.2f}x its step time")
    channels_last = results["vidgen-channels-last"]
    print(f"channels-last: {ours['ms_per_step'] / channels_last['ms_per_step']:.2f}x vidgen's steps per second at "
          f"{channels_last['peak_bytes'] / ours['peak_bytes']:.2f}x its peak memory")
    if abs(params - 1) > 0.1:
        print(f"warning: parameter counts differ by more than 10% ({params:.2f}x)")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu",
                        help="model sizes (and default frames/resolution/batch)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--frames", type=int, help="frames per video (default: the preset's)")
    parser.add_argument("--resolution", type=int, help="frame height and width (default: the preset's)")
    parser.add_argument("--batch", type=int, help="videos per step (default: the preset's)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--worker", choices=IMPLEMENTATIONS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    preset = PRESETS[args.preset]
    for name in ("frames", "resolution", "batch"):
        if getattr(args, name) is None:
            setattr(args, name, getattr(preset, name))
    return args


def main() -> None:
    args = parse_args()
    if args.worker:
        print(json.dumps(measure(args.worker, args)))
        return
    results = {name: run_in_subprocess(name, args) for name in IMPLEMENTATIONS}
    print_table(results, args)


if __name__ == "__main__":
    main()
