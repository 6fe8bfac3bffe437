"""TGANv2's memory claim, measured: "train sparsely, generate densely" (Saito et al., IJCV 2020).

One training step of the shared loop (vidgen.step.train_step: every phase, forward, loss, backward, Adam step, on a
batch of the recipe's own data loader), for three models at each output resolution and the same batch:

    tganv2 sparse   the tganv2-tiny networks, levels subsampled as the recipe says (frame_factors 2, 2, 2: the
                    top level renders and is scored on 1 frame in 8)
    tganv2 dense    the same networks (same parameters) with frame_factors 1, 1, 1: every level at every frame
    stylegan-v      the stylegan-v-tiny networks at the same resolution and batch (3 sparse frames per video)

The TGANv2 generator's t_size is set so that its top level has the resolution asked (t_size x 2^len(g_channels)).
Goal (the paper's claim, checked here rather than assumed): sparse peak <= 0.5x the dense peak at the highest
resolution measured.

Memory: the peak of tensor bytes alive at once from just before the networks are built through two steps (weights,
gradients, EMA and Adam state, activations, the double-backward graph of the gradient penalty):
torch.cuda.max_memory_allocated on CUDA, torch's CPU allocator total on the CPU (benchmarks/measure.py). "state"
is what a run holds between steps (weights, EMA copies, Adam moments), counted from the tensors; "step" = peak -
state, what the step itself adds. Each case runs in its own process, so peaks do not mix. Time: the median of
--steps steps after the two measured ones.

    python benchmarks/bench_tganv2.py                             # 32 and 64 px, ~3 min on 2 CPU cores
    python benchmarks/bench_tganv2.py --device cuda --resolutions 64 128 256 --batch 16
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from benchmarks.measure import cpu_peak_bytes, describe, synchronize  # noqa: E402
from benchmarks.tables import table  # noqa: E402

from vidgen.core.config import Recipe  # noqa: E402
from vidgen.core.data.loader import make_train_loader  # noqa: E402
from vidgen.core.device import resolve_device  # noqa: E402
from vidgen.errors import UserError  # noqa: E402
from vidgen.models.registry import build_backend  # noqa: E402
from vidgen.recipe import load_recipe  # noqa: E402
from vidgen.step import StepContext, TrainState, batch_to_device, train_step  # noqa: E402

GOAL_MEMORY_RATIO = 0.5
VARIANTS = ("sparse", "dense", "stylegan-v")
WARMUP_STEPS = 2
"""Steps inside the memory measurement: the second is the first with Adam's moments already allocated."""


def make_recipe(variant: str, resolution: int, batch: int) -> Recipe:
    """The recipe of one case: tganv2-tiny (sparse or dense) or stylegan-v-tiny, at `resolution` and `batch`."""
    common = [f"data.resolution={resolution}", f"train.batch_size={batch}", "train.precision=fp32"]
    if variant == "stylegan-v":
        return load_recipe("stylegan-v-tiny", common)
    tiny = load_recipe("tganv2-tiny")
    blocks = 2 ** len(tiny.model.g_channels)
    if resolution % blocks:
        raise UserError(f"--resolutions {resolution}: TGANv2's top level is t_size x {blocks}; use a multiple of "
                        f"{blocks}")
    overrides = [*common, f"model.t_size={resolution // blocks}"]
    if variant == "dense":
        overrides.append(f"model.frame_factors={[1] * len(tiny.model.frame_factors)}")
    return load_recipe("tganv2-tiny", overrides)


def state_bytes(state: TrainState) -> int:
    """Bytes a run holds between steps: the networks' parameters and buffers, the EMA copies, the optimizers'
    state tensors."""
    tensors = [*state.backend.networks.state_dict().values(), *state.ema.state_dict().values()]
    for optimizer in state.optimizers.values():
        tensors += [v for per_param in optimizer.state.values() for v in per_param.values()
                    if isinstance(v, torch.Tensor)]
    return sum(t.numel() * t.element_size() for t in tensors)



def run_case(variant: str, resolution: int, args: argparse.Namespace, device: torch.device) -> dict:
    """Build one case, measure its peak over the first steps, then time further steps."""
    recipe = make_recipe(variant, resolution, args.batch)
    dataset = build_backend(recipe).training_dataset()  # built before the measurement
    loader = make_train_loader(dataset, batch_size=args.batch, seed=recipe.run.seed, start_sample=0, workers=0)
    batch = batch_to_device(next(iter(loader)), device)
    torch.manual_seed(0)

    def build_and_step() -> tuple[TrainState, StepContext]:
        backend = build_backend(recipe)
        backend.networks.to(device).train()
        state = TrainState.create(backend, "fp32", device, [torch.Generator(device).manual_seed(0)])
        context = StepContext(recipe.train, device, backend.networks)
        for _ in range(WARMUP_STEPS):
            train_step(state, [batch], context)
        synchronize(device)
        return state, context

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)  # the batch
        state, context = build_and_step()
        peak = torch.cuda.max_memory_allocated(device) - base
    else:
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            state, context = build_and_step()
        peak = cpu_peak_bytes(prof)
    ms = []
    for _ in range(args.steps):
        synchronize(device)
        start = time.perf_counter()
        train_step(state, [batch], context)
        synchronize(device)
        ms.append(1e3 * (time.perf_counter() - start))
    params = {name: sum(p.numel() for p in net.parameters()) for name, net in state.backend.networks.items()}
    return {"peak_mib": peak / 2**20, "state_mib": state_bytes(state) / 2**20, "ms": ms, "params": params,
            "frames": recipe.data.frames}


def spawn(args: argparse.Namespace, variant: str, resolution: int) -> dict:
    done = subprocess.run([sys.executable, __file__, *args.argv, "--case", f"{variant}@{resolution}"],
                          capture_output=True, text=True)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        return {"error": lines[-1] if lines else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])



def bench(args: argparse.Namespace) -> None:
    rows, ratios, frames = [], {}, {}
    for resolution in args.resolutions:
        results = {variant: spawn(args, variant, resolution) for variant in VARIANTS}
        dense = results["dense"]
        for variant, res in results.items():
            if "error" in res:
                rows.append([f"{resolution}", variant, res["error"], "", "", "", "", "", ""])
                continue
            frames[variant] = res["frames"]
            relative = "-"
            if variant != "dense" and "error" not in dense:
                relative = f"{res['peak_mib'] / dense['peak_mib']:.2f}x"
            if variant == "sparse" and "error" not in dense:
                ratios[resolution] = res["peak_mib"] / dense["peak_mib"]
            params = " + ".join(f"{name} {n / 1e6:.2f}M" for name, n in res["params"].items())
            rows.append([f"{resolution}", variant, params, f"{statistics.median(res['ms']):,.0f}",
                         f"{min(res['ms']):,.0f}-{max(res['ms']):,.0f}", f"{res['peak_mib']:,.1f}",
                         f"{res['state_mib']:,.1f}", f"{res['peak_mib'] - res['state_mib']:,.1f}", relative])
    clips = ", ".join(f"{variant} {n} frames" for variant, n in frames.items())
    table(f"Train step (every phase, fp32), batch {args.batch}; frames per training clip: {clips}",
          ["px", "model", "params", "ms/step", "range", "peak MiB", "state MiB", "step MiB", "peak vs dense"], rows)
    top = max(args.resolutions)
    if top in ratios:
        verdict = "met" if ratios[top] <= GOAL_MEMORY_RATIO else "NOT met"
        print(f"\nGoal sparse peak <= {GOAL_MEMORY_RATIO}x dense at {top} px: {ratios[top]:.2f}x, {verdict}")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--resolutions", type=int, nargs="+", default=[32, 64],
                        help="output resolutions (TGANv2: multiples of 16; default: 32 64)")
    parser.add_argument("--batch", type=int, default=8, help="videos per step (default: 8, the tiny recipes')")
    parser.add_argument("--steps", type=int, default=3, help="timed steps after the measured ones")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.argv = list(argv)  # forwarded to the case subprocesses
    if args.batch < 1 or args.steps < 1:
        parser.error("--batch and --steps must be >= 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        device = resolve_device(args.device)
        for resolution in args.resolutions:
            make_recipe("sparse", resolution, args.batch)
    except UserError as error:
        sys.exit(f"error: {error}")
    if device.type == "cpu" and args.threads:
        torch.set_num_threads(args.threads)
    if args.case:
        variant, resolution = args.case.split("@")
        print(json.dumps(run_case(variant, int(resolution), args, device)))
        return
    print(f"TGANv2 benchmark on {describe(device)}, torch {torch.__version__}")
    bench(args)


if __name__ == "__main__":
    main()
