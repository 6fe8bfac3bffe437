"""StyleGAN-V hot paths: generator cost of motion, training-step time/memory, long-video sampling.

(a) Generator time per frame, StyleGAN-V vs the same synthesis network with motion disabled (a plain StyleGAN2
    image generator of the same width): the paper's claim is "the price of StyleGAN2" (goal: <= +10%).
(b) One training step (G_main + D_main, and with the lazy R1 phase D_reg) — time and peak memory.
(c) Sampling frames/s and peak memory for long videos (motion noise once, frames rendered in chunks).

Each case runs in its own subprocess so memory peaks do not mix: on CUDA the peak is
torch.cuda.max_memory_allocated; on CPU it is the growth of the process's maximum resident set size.

    python benchmarks/bench_stylegan_v.py --device cuda                       # 256x256, the paper's widths
    python benchmarks/bench_stylegan_v.py --device cuda --fp16                # + fp16 in the top 4 resolutions
    python benchmarks/bench_stylegan_v.py --device cpu --resolution 64 --width tiny --frames 16 64
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from benchmarks.tables import table  # noqa: E402

from vidgen.core.config import DataConfig, Recipe, RunConfig, TrainConfig  # noqa: E402
from vidgen.core.device import configure_backends  # noqa: E402
from vidgen.models.stylegan_v.backend import StyleGANVBackend  # noqa: E402
from vidgen.models.stylegan_v.config import StyleGANVConfig, StyleGANVSampleConfig  # noqa: E402
from vidgen.models.stylegan_v.generator import Generator  # noqa: E402

WIDTHS = {
    "full": {},  # the paper's: 512-d latents, channel_base 16384, channel_max 512
    "tiny": dict(z_dim=32, w_dim=32, channel_base=1024, channel_max=32, motion_z_dim=32, motion_v_dim=32),
}


def make_recipe(args: argparse.Namespace) -> Recipe:
    extra = dict(fp16_resolutions=min(4, _log2(args.resolution) - 2), conv_clamp=256.0) if args.fp16 else {}
    model = StyleGANVConfig(**WIDTHS[args.width], **extra, render_chunk=args.render_chunk)
    return Recipe(run=RunConfig(name="bench"), data=DataConfig(resolution=args.resolution, frames=3, fps=25.0),
                  model=model, train=TrainConfig(batch_size=args.batch, lr=0.0025, betas=(0.0, 0.99),
                                                 grad_clip=None), sample=StyleGANVSampleConfig())


def _log2(n: int) -> int:
    return n.bit_length() - 1


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device, repeats: int, warmup: int = 2) -> float:
    """Median seconds of fn() over `repeats` runs after `warmup` runs."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _peak_mb(device: torch.device, rss_before_kb: int) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before_kb) / 1024


# ----------------------------------------------------------------------------------------------------------
# Cases (each in its own process)


def case_generator(args: argparse.Namespace, device: torch.device) -> dict:
    """ms per frame, with and without motion, for inference (no grad; grouped modulated conv) and training
    (forward + backward). Both generators live in one process and are timed in alternation, so a shared machine's
    load drifts affect both alike."""
    recipe = make_recipe(args)
    videos, frames = args.batch, 3  # a training batch: B videos x k frames
    t = torch.tensor([[0.0, 5.5, 16.25]], device=device).expand(videos, -1).contiguous() + 100.0
    z = torch.randn(videos, recipe.model.z_dim, device=device)
    runs, out = {}, {}
    for name, motion in (("plain", False), ("motion", True)):
        torch.manual_seed(0)
        G = Generator(recipe.model, args.resolution, use_motion=motion).to(device)
        motion_z = G.draw_motion_z(videos, float(t.max()), device=device) if motion else None

        def infer(G: Generator = G, motion_z: torch.Tensor | None = motion_z) -> None:
            G.eval()
            with torch.no_grad():
                G(z, t, motion_z=motion_z)

        def train(G: Generator = G, motion_z: torch.Tensor | None = motion_z) -> None:
            G.train()
            G(z, t, motion_z=motion_z).square().mean().backward()

        runs[name] = (infer, train)
        out[f"params_{name}"] = sum(p.numel() for p in G.parameters())
        G.eval()
        with FlopCounterMode(display=False) as counter:  # matmuls and convolutions of one forward pass
            G(z, t, motion_z=motion_z)
        out[f"gflop_per_frame_{name}"] = counter.get_total_flops() / 1e9 / (videos * frames)
    for mode, index in (("infer", 0), ("train", 1)):
        times: dict[str, list[float]] = {"plain": [], "motion": []}
        for name in runs:
            _timed(runs[name][index], device, repeats=1, warmup=1)
        for _ in range(args.repeats):
            for name in runs:
                times[name].append(_timed(runs[name][index], device, repeats=1, warmup=0))
        for name in runs:
            out[f"{mode}_ms_per_frame_{name}"] = 1e3 * statistics.median(times[name]) / (videos * frames)
    return out


def case_train_step(args: argparse.Namespace, device: torch.device, r1: bool, rss_before: int) -> dict:
    recipe = make_recipe(args)
    backend = StyleGANVBackend(recipe)
    backend.networks.to(device).train()
    optimizers = backend.make_optimizers()
    generator = torch.Generator(device).manual_seed(0)
    batch = {"video": torch.rand(args.batch, 3, 3, args.resolution, args.resolution, device=device) * 2 - 1,
             "times": torch.tensor([[0.0, 3.0, 8.0]], device=device).expand(args.batch, -1).contiguous()}
    phases = ["G_main", "D_main"] + (["D_reg"] if r1 else [])

    def step() -> None:
        for phase in phases:
            optimizer = optimizers["G" if phase.startswith("G") else "D"]
            optimizer.zero_grad(set_to_none=True)
            loss, _ = backend.loss(phase, batch, backend.networks, generator)
            loss.backward()
            optimizer.step()

    if device.type == "cuda":
        step()
        torch.cuda.reset_peak_memory_stats(device)
    seconds = _timed(step, device, args.repeats, warmup=1)
    return {"ms_per_step": 1e3 * seconds, "peak_mb": _peak_mb(device, rss_before),
            "params_G": sum(p.numel() for p in backend.networks["G"].parameters()),
            "params_D": sum(p.numel() for p in backend.networks["D"].parameters())}


def case_sampling(args: argparse.Namespace, device: torch.device, frames: int, rss_before: int) -> dict:
    recipe = make_recipe(args)
    backend = StyleGANVBackend(recipe)
    backend.networks.to(device).eval()
    seeds = list(range(args.videos))
    if device.type == "cuda":
        backend.sample(backend.networks, seeds, min(frames, 16), device)  # warm-up
        torch.cuda.reset_peak_memory_stats(device)
    seconds = _timed(lambda: backend.sample(backend.networks, seeds, frames, device),
                     device, repeats=1, warmup=0)
    output_mb = len(seeds) * 3 * frames * args.resolution ** 2 * 4 / 2**20
    return {"frames_per_s": len(seeds) * frames / seconds, "peak_mb": _peak_mb(device, rss_before),
            "output_mb": output_mb}


def run_case(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    configure_backends(device)  # as the training loop: TF32 convolutions and matmuls on CUDA
    if device.type == "cpu" and args.threads:
        torch.set_num_threads(args.threads)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kind, _, value = args.case.partition(":")
    if kind == "generator":
        return case_generator(args, device)
    if kind == "train":
        return case_train_step(args, device, r1=value == "r1", rss_before=rss_before)
    if kind == "sample":
        return case_sampling(args, device, int(value), rss_before)
    raise ValueError(args.case)


# ----------------------------------------------------------------------------------------------------------
# Driver: one subprocess per case, then the tables


def spawn(args: argparse.Namespace, case: str) -> dict:
    forwarded = [a for a in sys.argv[1:]]
    out = subprocess.run([sys.executable, __file__, *forwarded, "--case", case], capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--width", choices=sorted(WIDTHS), default="full")
    parser.add_argument("--fp16", action="store_true", help="fp16 in the top 4 resolutions, conv_clamp 256 (CUDA)")
    parser.add_argument("--batch", type=int, default=16, help="videos per training batch (k = 3 frames each)")
    parser.add_argument("--frames", type=int, nargs="+", default=[16, 256, 1024], help="sampled video lengths")
    parser.add_argument("--videos", type=int, default=1, help="videos per sampling call")
    parser.add_argument("--render-chunk", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    parser.add_argument("--tables", nargs="+", choices=["a", "b", "c"], default=["a", "b", "c"],
                        help="which tables to measure")
    parser.add_argument("--case", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case is not None:
        print(json.dumps(run_case(args)))
        return

    device = torch.device(args.device)
    threads = args.threads or torch.get_num_threads()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({threads} threads)"
    print(f"StyleGAN-V benchmark on {name}: {args.resolution}x{args.resolution}, width '{args.width}', "
          f"{'fp16 top-4 resolutions' if args.fp16 else 'fp32'}, batch {args.batch} videos x 3 frames, "
          f"torch {torch.__version__}")

    if "a" in args.tables:
        generator_table(args)
    if "b" in args.tables:
        train_table(args)
    if "c" in args.tables:
        sampling_table(args)


def generator_table(args: argparse.Namespace) -> None:
    """(a) Generator per frame: motion vs no motion."""
    res = spawn(args, "generator")
    if "error" in res:
        rows = [["both", res["error"], "", "", "", ""]]
    else:
        rows = [[label, f"{res[f'params_{name}'] / 1e6:.2f} M", f"{res[f'gflop_per_frame_{name}']:.3f}",
                 f"{res[f'infer_ms_per_frame_{name}']:.3f}", f"{res[f'train_ms_per_frame_{name}']:.3f}", ""]
                for label, name in (("StyleGAN2 (no motion)", "plain"), ("StyleGAN-V", "motion"))]
        over = [100 * (res[f"{key}_motion"] / res[f"{key}_plain"] - 1)
                for key in ("gflop_per_frame", "infer_ms_per_frame", "train_ms_per_frame")]
        rows[1][5] = f"{over[0]:+.1f}% / {over[1]:+.1f}% / {over[2]:+.1f}%"
    table("(a) Generator time per frame (goal: motion adds <= 10%)",
          ["generator", "params", "GFLOP/frame", "inference ms/frame", "train fwd+bwd ms/frame",
           "overhead (flop / inf / train)"], rows)



def train_table(args: argparse.Namespace) -> None:
    """(b) Training step, with and without the R1 phase."""
    rows = []
    results = {}
    for label, case in (("G_main + D_main", "train:plain"), ("G_main + D_main + D_reg (R1)", "train:r1")):
        res = results[case] = spawn(args, case)
        rows.append([label, res.get("error", f"{res['ms_per_step']:.1f}"),
                     "" if "error" in res else f"{res['peak_mb']:.0f}"])
    if all("error" not in r for r in results.values()):
        plain_ms, r1_ms = results["train:plain"]["ms_per_step"], results["train:r1"]["ms_per_step"]
        rows.append(["amortised (R1 every 16 steps)", f"{plain_ms + (r1_ms - plain_ms) / 16:.1f}", ""])
    table(f"(b) One training step, batch {args.batch} videos x 3 frames",
          ["phases", "ms/step", "peak MB"], rows)
    if "error" not in results["train:plain"]:
        counts = results["train:plain"]
        print(f"parameters: G {counts['params_G']:,}  D {counts['params_D']:,}")



def sampling_table(args: argparse.Namespace) -> None:
    """(c) Sampling long videos."""
    rows = []
    for frames in args.frames:
        res = spawn(args, f"sample:{frames}")
        if "error" in res:
            rows.append([str(frames), res["error"], "", ""])
        else:
            rows.append([str(frames), f"{res['frames_per_s']:.1f}", f"{res['peak_mb']:.0f}", f"{res['output_mb']:.1f}"])
    table(f"(c) Sampling {args.videos} video(s), render_chunk {args.render_chunk}",
          ["frames", "frames/s", "peak MB", "of which output MB"], rows)


if __name__ == "__main__":
    main()
