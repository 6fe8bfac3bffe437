"""VideoGPT hot paths: the prior's key/value cache when sampling, and the train steps of both stages against the
official code (wilson1yan/VideoGPT).

(a) Sampling tokens/s of vidgen's prior with the key/value cache (one new token per forward pass) against
    recomputing the whole prefix for every token (`sample(..., use_cache=False)`), at 1,024 and 4,096 tokens.
    Goal: >= 10x at 1,024 tokens.
(b) Stage-1 (VQ-VAE) and stage-2 (prior) train step, forward + backward + Adam step, vidgen against the official
    code at the same configuration, fp32 on both sides. Goal: <= 0.8x the official step time at <= its peak memory.
(c) A trained VQ-VAE's reconstructions (default runs/videogpt-tiny-vqvae: vidgen train videogpt-tiny-vqvae):
    PSNR, SSIM and FVD against the clips they reconstruct, and the codebook's usage. Needs the detectors
    (vidgen detectors install).

In (b) the two implementations of a stage are timed in one subprocess, their steps taking turns, so that other
load on a shared machine falls on both alike; their memory is measured in one subprocess each, so peaks do not
mix. The peak is the most bytes of tensors alive at once from just before the networks are built, so it counts
weights, gradients, Adam state and activations alike: torch.cuda.max_memory_allocated on CUDA, and on CPU the
running total of torch's CPU allocator in the profiler's memory events (`cpu_peak_bytes`). The process's resident
set size is not used: it also moves with pages the kernel reclaims or other processes share.

    python benchmarks/bench_videogpt.py --quick --official /tmp/videogpt-official       # ~2 min on 2 CPU cores
    python benchmarks/bench_videogpt.py --device cuda --official /tmp/videogpt-official # the paper's sizes

The official code is imported from --official, the root of a VideoGPT checkout, e.g.
    git clone https://github.com/wilson1yan/VideoGPT /tmp/videogpt-official
without installing it: its pytorch_lightning, scikit-video, requests and gdown imports are met by stand-ins
(see `install_stand_ins`), and its gpt.py needs tqdm (in vidgen's `bench` extra). Without --official the official
rows are skipped.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from benchmarks.measure import cpu_peak_bytes, describe, synchronize  # noqa: E402
from benchmarks.tables import table  # noqa: E402

from vidgen.core.device import resolve_device  # noqa: E402
from vidgen.errors import UserError  # noqa: E402
from vidgen.models.videogpt.gpt import PriorConfig, VideoGPTPrior, sample  # noqa: E402
from vidgen.models.videogpt.vqvae import VQVAE  # noqa: E402

GOAL_CACHE_SPEEDUP = 10.0
GOAL_TIME_RATIO = 0.8
GOAL_MEMORY_RATIO = 1.0
SAMPLE_GRIDS = ((4, 16, 16), (4, 32, 32))
"""(T', H', W') code grids of part (a): 1,024 and 4,096 tokens (4x32x32 is the paper's UCF-101 and BAIR grid)."""


@dataclass(frozen=True)
class Sizes:
    """One configuration of both stages, the same for vidgen and the official code."""

    frames: int
    resolution: int
    """Training clips are (3, frames, resolution, resolution)."""
    n_hiddens: int
    n_res_layers: int
    n_codes: int
    embedding_dim: int
    downsample: tuple[int, int, int]
    width: int
    heads: int
    layers: int
    """The prior; the official position embedding splits the width in three, so width % 3 == 0."""
    batch: int
    """Clips (stage 1) or code grids (stage 2) per train step."""

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return (self.frames // self.downsample[0], self.resolution // self.downsample[1],
                self.resolution // self.downsample[2])


SIZES = {
    # The paper (appendix A): VQ-VAE with 240 hidden channels, 4 attention residual blocks, a 2048x256 codebook,
    # 4x4x4 downsampling of 16x64x64 clips (codes 4x16x16); the prior 576 wide, 4 heads, 8 layers.
    "full": Sizes(frames=16, resolution=64, n_hiddens=240, n_res_layers=4, n_codes=2048, embedding_dim=256,
                  downsample=(4, 4, 4), width=576, heads=4, layers=8, batch=8),
    # Small enough that all of (a) and (b) finish in about two minutes on 2 CPU cores; codes 4x8x8.
    "quick": Sizes(frames=16, resolution=32, n_hiddens=96, n_res_layers=2, n_codes=1024, embedding_dim=128,
                   downsample=(4, 4, 4), width=192, heads=4, layers=4, batch=4),
}



# ----------------------------------------------------------------------------------------------------------
# (a) Sampling with and without the key/value cache


class StopSampling(Exception):
    """Raised from inside the sampler once enough tokens are timed."""


def seconds_per_token(prior: VideoGPTPrior, frames: int, batch: int, use_cache: bool, limit: int,
                      device: torch.device) -> float:
    """Seconds per sampling step of `sample` over its first `limit` steps.

    The whole sequence (limit >= its length) is timed end to end. Otherwise a forward hook on the output head,
    which runs once per sampled token on both paths, stamps each token and stops the sampler after `limit`; the
    cost is the mean interval between the first and the last stamp, so set-up and the first token are left out."""
    length = frames * prior.config.latent_shape[1] * prior.config.latent_shape[2]
    generators = [torch.Generator(device).manual_seed(i) for i in range(batch)]
    if limit >= length:
        synchronize(device)
        start = time.perf_counter()
        sample(prior, generators, frames, use_cache=use_cache)
        synchronize(device)
        return (time.perf_counter() - start) / length

    stamps: list[float] = []

    def stamp(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        synchronize(device)
        stamps.append(time.perf_counter())
        if len(stamps) == limit:
            raise StopSampling

    handle = prior.head.register_forward_hook(stamp)
    try:
        sample(prior, generators, frames, use_cache=use_cache)
    except StopSampling:
        pass
    finally:
        handle.remove()
    return (stamps[-1] - stamps[0]) / (len(stamps) - 1)


def bench_sampling(args: argparse.Namespace, sizes: Sizes, device: torch.device) -> None:
    """(a) tokens/s with the cache (the whole sequence) and recomputing (its first --recompute-tokens tokens)."""
    rows, speedups = [], {}
    for grid in SAMPLE_GRIDS:
        torch.manual_seed(0)
        config = PriorConfig(n_codes=sizes.n_codes, latent_shape=grid, width=sizes.width, heads=sizes.heads,
                             layers=sizes.layers)
        prior = VideoGPTPrior(config).to(device).eval()
        length = grid[0] * grid[1] * grid[2]
        for use_cache in (True, False):  # warm-up: kernels, allocator
            seconds_per_token(prior, grid[0], args.sample_batch, use_cache, 4, device)
        # Recomputing runs the full-length forward pass for every token, whatever its position, so the cost of
        # the first tokens is the cost of every token: a prefix gives the whole sequence's rate.
        timed = min(args.recompute_tokens or length, length)
        cached = recomputed = math.inf
        for _ in range(args.repeats):  # taking turns, best of each: other load on the machine only adds time
            cached = min(cached, seconds_per_token(prior, grid[0], args.sample_batch, True, length, device))
            recomputed = min(recomputed, seconds_per_token(prior, grid[0], args.sample_batch, False, timed, device))
        speedups[length] = recomputed / cached
        over = "all" if timed == length else f"first {timed} (extrapolated: {recomputed * length / 60:.1f} min total)"
        rows.append([f"{length:,}", "x".join(map(str, grid)), f"{args.sample_batch / cached:,.1f}",
                     f"{args.sample_batch / recomputed:,.2f}", f"{speedups[length]:,.1f}x", over])
        print(f"  {length} tokens done", flush=True)
    table(f"(a) Prior sampling, batch {args.sample_batch}, width {sizes.width}, {sizes.heads} heads, "
          f"{sizes.layers} layers, {sizes.n_codes} codes, on {describe(device)}; best of {args.repeats} runs each; "
          f"cache: the whole sequence timed",
          ["tokens", "grid", "cache tok/s", "recompute tok/s", "speed-up", "recompute tokens timed"], rows)
    print("tok/s counts every video of the batch. Recomputing feeds the whole grid at every step (later codes "
          "masked), so its per-token cost is the same at every position; the rate of a prefix (after its first "
          "token) is the rate of the whole sequence.")
    first = SAMPLE_GRIDS[0][0] * SAMPLE_GRIDS[0][1] * SAMPLE_GRIDS[0][2]
    met = speedups[first] >= GOAL_CACHE_SPEEDUP
    print(f"cache speed-up at {first:,} tokens: {speedups[first]:.1f}x (goal: >= {GOAL_CACHE_SPEEDUP:g}x: "
          f"{'met' if met else 'NOT met'})")


# ----------------------------------------------------------------------------------------------------------
# (b) Train steps: the official code


def install_stand_ins() -> None:
    """Stand-ins for imports of the official modules that vidgen does not depend on.

    pytorch_lightning: the official networks subclass LightningModule. The stand-in is nn.Module plus the two
    methods they call while they are built: `save_hyperparameters` (a no-op) and `load_from_checkpoint`, which
    VideoGPT.__init__ calls on the path of its frozen VQ-VAE. Here that path is a JSON file of the VQ-VAE's
    hyperparameters (`official_vqvae_args`) and the stand-in builds a randomly initialised VQ-VAE from it: a timing
    benchmark needs no trained weights, and nothing is loaded twice. Lightning's Trainer is not used: the step
    loop below is the same for both sides.
    skvideo (scikit-video): utils.py imports skvideo.io at module level for `save_video_grid` only, which writes
    an mp4 and is never called here; an empty module stands in.
    requests, gdown: VideoGPT.__init__ imports download.py, its downloader of pretrained checkpoints, before it
    finds that its VQ-VAE path exists; nothing there is called here, so empty modules stand in."""

    class LightningModule(nn.Module):
        def save_hyperparameters(self, *args, **kwargs) -> None:
            pass

        @classmethod
        def load_from_checkpoint(cls, path: str) -> nn.Module:
            return cls(argparse.Namespace(**json.loads(Path(path).read_text())))

    lightning = types.ModuleType("pytorch_lightning")
    lightning.LightningModule = LightningModule
    skvideo = types.ModuleType("skvideo")
    skvideo.io = types.ModuleType("skvideo.io")
    sys.modules.update({"pytorch_lightning": lightning, "skvideo": skvideo, "skvideo.io": skvideo.io,
                        "requests": types.ModuleType("requests"), "gdown": types.ModuleType("gdown")})


def check_official(path: Path) -> None:
    if not (path / "videogpt" / "vqvae.py").is_file() or not (path / "videogpt" / "gpt.py").is_file():
        raise UserError(f"--official {path}: no videogpt/vqvae.py and videogpt/gpt.py there; pass the root of a "
                        "VideoGPT checkout (git clone https://github.com/wilson1yan/VideoGPT)")


def import_official(path: Path) -> types.SimpleNamespace:
    """The official vqvae and gpt modules, imported from the checkout at `path`. The package is registered
    without running its __init__.py, which imports the data and download modules (h5py, torchvision, gdown)
    that the networks do not use."""
    install_stand_ins()
    package = types.ModuleType("videogpt")
    package.__path__ = [str(path / "videogpt")]
    sys.modules["videogpt"] = package
    return types.SimpleNamespace(vqvae=importlib.import_module("videogpt.vqvae"),
                                 gpt=importlib.import_module("videogpt.gpt"))


def official_vqvae_args(sizes: Sizes) -> dict:
    """The official VQVAE's constructor arguments (its argparse names) for `sizes`."""
    return dict(embedding_dim=sizes.embedding_dim, n_codes=sizes.n_codes, n_hiddens=sizes.n_hiddens,
                n_res_layers=sizes.n_res_layers, downsample=list(sizes.downsample), sequence_length=sizes.frames,
                resolution=sizes.resolution)


# ----------------------------------------------------------------------------------------------------------
# (b) Train steps: one step of each case


Step = Callable[[], None]


def vqvae_step(impl: str, sizes: Sizes, device: torch.device, official: types.SimpleNamespace | None
               ) -> tuple[Step, nn.Module]:
    """Stage 1: reconstruction + commitment loss, backward, Adam (the official lr and betas), EMA codebook."""
    clip = (sizes.batch, 3, sizes.frames, sizes.resolution, sizes.resolution)
    if impl == "vidgen":
        model = VQVAE(n_codes=sizes.n_codes, embedding_dim=sizes.embedding_dim, n_hiddens=sizes.n_hiddens,
                      n_res_layers=sizes.n_res_layers, downsample=sizes.downsample).to(device).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-4, betas=(0.9, 0.999))
        x = torch.rand(clip, device=device) * 2 - 1  # vidgen's [-1, 1]
        generator = torch.Generator(device).manual_seed(0)

        def step() -> None:
            _, logs, stats = model(x, generator)
            optimizer.zero_grad(set_to_none=True)
            logs["loss"].backward()
            optimizer.step()
            model.codebook.update(stats)  # vidgen's EMA update: explicit, once per optimizer step

        return step, model

    model = official.vqvae.VQVAE(argparse.Namespace(**official_vqvae_args(sizes))).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4, betas=(0.9, 0.999))  # its configure_optimizers
    x = torch.rand(clip, device=device) - 0.5  # the official [-0.5, 0.5]

    def official_step() -> None:
        recon_loss, _, vq_output = model(x)  # in training mode its forward also moves the EMA codebook
        loss = recon_loss + vq_output["commitment_loss"]  # its training_step
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return official_step, model


def prior_step(impl: str, sizes: Sizes, device: torch.device, official: types.SimpleNamespace | None
               ) -> tuple[Step, nn.Module]:
    """Stage 2: cross-entropy of the codes, backward, Adam, on a fixed batch of code grids. Encoding clips with the
    frozen VQ-VAE is left out of the step on both sides; the VQ-VAE is still built and resident, as in a
    stage-2 run (the official VideoGPT owns one), so both memory peaks hold it."""
    codes = torch.randint(0, sizes.n_codes, (sizes.batch, *sizes.latent_shape), device=device)  # (B, T', H', W')
    if impl in ("vidgen", "vidgen-checkpointed"):
        VQVAE(n_codes=sizes.n_codes, embedding_dim=sizes.embedding_dim, n_hiddens=sizes.n_hiddens,
              n_res_layers=sizes.n_res_layers, downsample=sizes.downsample).to(device).eval().requires_grad_(False)
        config = PriorConfig(n_codes=sizes.n_codes, latent_shape=sizes.latent_shape, width=sizes.width,
                             heads=sizes.heads, layers=sizes.layers)  # dropout 0.2, attention dropout 0.3
        prior = VideoGPTPrior(config).to(device).train()
        prior.grad_checkpointing = impl == "vidgen-checkpointed"  # train.grad_checkpointing, as the official does
        optimizer = torch.optim.Adam(prior.parameters(), lr=3e-4, betas=(0.9, 0.999))

        def step() -> None:
            loss = prior.loss(codes)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        return step, prior

    with tempfile.TemporaryDirectory() as tmp:
        hparams = Path(tmp) / "vqvae.json"  # what the stand-in's load_from_checkpoint reads
        hparams.write_text(json.dumps(official_vqvae_args(sizes)))
        gpt = official.gpt.VideoGPT(argparse.Namespace(
            vqvae=str(hparams), n_cond_frames=0, class_cond=False, class_cond_dim=None, resolution=sizes.resolution,
            hidden_dim=sizes.width, heads=sizes.heads, layers=sizes.layers, dropout=0.2, attn_type="full",
            attn_dropout=0.3)).to(device)
    gpt.train()
    gpt.vqvae.eval()  # as its training_step
    # Its configure_optimizers (the cosine schedule is left out: a scalar per step, not part of the step's cost).
    optimizer = torch.optim.Adam(gpt.parameters(), lr=3e-4, betas=(0.9, 0.999))

    def official_step() -> None:
        with torch.no_grad():  # what its training_step's vqvae.encode(include_embeddings=True) gives for these codes
            embeddings = F.embedding(codes, gpt.vqvae.codebook.embeddings)  # (B, T', H', W', D)
        loss, _ = gpt(embeddings, codes, {})
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return official_step, gpt


# ----------------------------------------------------------------------------------------------------------
# (b) Train steps: time in one process, memory in one process per implementation


STAGE_IMPLS = {"vqvae": ("vidgen", "official"), "prior": ("vidgen", "vidgen-checkpointed", "official")}
"""The official prior recomputes its attention and MLP activations in the backward pass (gradient checkpointing);
vidgen's does with train.grad_checkpointing, so stage 2 is timed both ways."""
CASES = tuple(f"{kind}/{stage}" for stage, impls in STAGE_IMPLS.items()
              for kind in ("time", *(f"memory-{i}" for i in impls)))
"""time/<stage>: both implementations in one process, their steps alternating, so that a load coming and going on
a shared machine falls on both alike; memory-<impl>/<stage>: one implementation alone, for its peak."""

STEP_BUILDERS = {"vqvae": vqvae_step, "prior": prior_step}


def timed_step(step: Step, device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    step()
    synchronize(device)
    return 1000 * (time.perf_counter() - start)


def measure_time(stage: str, impls: list[str], args: argparse.Namespace, sizes: Sizes, device: torch.device,
                 official: types.SimpleNamespace | None) -> dict:
    """ms of each timed step per implementation, the implementations taking turns (and turns at going first)."""
    steps = {}
    for impl in impls:
        torch.manual_seed(0)
        steps[impl] = STEP_BUILDERS[stage](impl, sizes, device, official)[0]
    for _ in range(args.warmup):
        for step in steps.values():
            step()
    ms: dict[str, list[float]] = {impl: [] for impl in impls}
    for i in range(args.steps):
        for impl in (impls if i % 2 == 0 else impls[::-1]):
            ms[impl].append(timed_step(steps[impl], device))
    return {"ms": ms}


def measure_memory(stage: str, impl: str, args: argparse.Namespace, sizes: Sizes, device: torch.device,
                   official: types.SimpleNamespace | None) -> dict:
    """Peak memory from the build through the first steps (the second holds the Adam state, gradients and
    activations at once) and the trainable parameters of one implementation, alone in its process."""
    torch.manual_seed(0)

    def build_and_step() -> nn.Module:
        step, network = STEP_BUILDERS[stage](impl, sizes, device, official)
        for _ in range(max(2, args.warmup)):
            step()
        synchronize(device)
        return network

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        network = build_and_step()
        peak = torch.cuda.max_memory_allocated(device)
    else:
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            network = build_and_step()
        peak = cpu_peak_bytes(prof)
    return {"peak_mib": peak / 2**20, "params": sum(p.numel() for p in network.parameters() if p.requires_grad)}


def run_case(case: str, args: argparse.Namespace, sizes: Sizes, device: torch.device) -> dict:
    kind, stage = case.split("/")
    impls = [kind.removeprefix("memory-")] if kind != "time" else [i for i in STAGE_IMPLS[stage]
                                                                   if i != "official" or args.official is not None]
    official = import_official(args.official) if "official" in impls else None
    if kind == "time":
        return measure_time(stage, impls, args, sizes, device, official)
    return measure_memory(stage, impls[0], args, sizes, device, official)


def spawn(args: argparse.Namespace, case: str) -> dict:
    done = subprocess.run([sys.executable, __file__, *args.argv, "--case", case], capture_output=True, text=True)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        return {"error": lines[-1] if lines else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def stage_rows(stage: str, timing: dict, memory: dict[str, dict]) -> tuple[list[list[str]], dict[str, tuple]]:
    """Table rows of one stage and, per vidgen implementation, (time ratio, memory ratio) to the official code,
    if both ran."""
    rows, ratios = [], {}
    official_ok = "official" in memory and "error" not in memory["official"] and "error" not in timing
    for impl in memory:
        if official_ok and impl != "official" and "error" not in memory[impl]:
            pairs = zip(timing["ms"][impl], timing["ms"]["official"])
            ratios[impl] = (statistics.median(ours / theirs for ours, theirs in pairs),
                            memory[impl]["peak_mib"] / memory["official"]["peak_mib"])
    for impl, mem in memory.items():
        error = timing.get("error") or mem.get("error")
        if error:
            rows.append([stage, impl, error, "", "", "", "", ""])
            continue
        ms = timing["ms"][impl]
        compare = [f"{ratios[impl][0]:.2f}x", f"{ratios[impl][1]:.2f}x"] if impl in ratios else ["-", "-"]
        rows.append([stage, impl, f"{mem['params'] / 1e6:.2f}M", f"{statistics.median(ms):,.1f}",
                     f"{min(ms):,.0f}-{max(ms):,.0f}", f"{mem['peak_mib']:,.0f}", *compare])
    return rows, ratios


def bench_train_steps(args: argparse.Namespace, sizes: Sizes, device: torch.device) -> None:
    """(b) vidgen against the official code, stage by stage."""
    rows, goals = [], {}
    for stage, impls in STAGE_IMPLS.items():
        impls = [i for i in impls if i != "official" or args.official is not None]
        timing = spawn(args, f"time/{stage}")
        memory = {impl: spawn(args, f"memory-{impl}/{stage}") for impl in impls}
        stage_table, goals[stage] = stage_rows(stage, timing, memory)
        rows += stage_table
        print(f"  {stage} done", flush=True)

    peak = ("torch.cuda.max_memory_allocated" if device.type == "cuda" else
            "most bytes alive at once in torch's CPU allocator (profiler memory events)")
    table(f"(b) Train step (forward + backward + Adam), fp32, on {describe(device)}; ms/step: median of "
          f"{args.steps} steps after {args.warmup} warm-up, both implementations in one process taking turns; "
          f"time vs official: median of the per-turn ratios; peak MiB = {peak} from just before the networks are "
          f"built, each implementation alone in a process",
          ["stage", "impl", "params", "ms/step", "ms/step range", "peak MiB", "time vs official",
           "memory vs official"], rows)
    print(f"stage 1: batch {sizes.batch} clips of {sizes.frames}x{sizes.resolution}x{sizes.resolution}, "
          f"n_hiddens {sizes.n_hiddens}, {sizes.n_res_layers} residual blocks, codebook "
          f"{sizes.n_codes}x{sizes.embedding_dim}, downsample {sizes.downsample}; the EMA codebook update is in "
          f"the step on both sides")
    print(f"stage 2: batch {sizes.batch} code grids of {'x'.join(map(str, sizes.latent_shape))}, width {sizes.width}, "
          f"{sizes.heads} heads, {sizes.layers} layers, dropout 0.2 / attention 0.3; the frozen VQ-VAE is resident "
          f"on both sides but not run; the official prior checkpoints its attention and MLP in training "
          f"(recomputed in the backward pass), vidgen's with train.grad_checkpointing (vidgen-checkpointed)")
    if args.official is None:
        print("official rows skipped: pass --official PATH (the root of a VideoGPT checkout)")
        return
    for stage, per_impl in goals.items():
        for impl, ratios in per_impl.items():
            met = ratios[0] <= GOAL_TIME_RATIO and ratios[1] <= GOAL_MEMORY_RATIO
            print(f"{stage}: {impl} at {ratios[0]:.2f}x the official step time and {ratios[1]:.2f}x its peak memory "
                  f"(goal: <= {GOAL_TIME_RATIO}x time at <= {GOAL_MEMORY_RATIO:g}x memory: "
                  f"{'met' if met else 'NOT met'})")


# ----------------------------------------------------------------------------------------------------------
# (c) Reconstructions of a trained VQ-VAE


def bench_reconstruction(args: argparse.Namespace, device: torch.device) -> None:
    """PSNR and SSIM of a VQ-VAE run's reconstructions of --recon-num clips of its own data, at its training clip
    length and at the FVD protocol's 16 frames; FVD of the 16-frame reconstructions against the same clips (the
    reconstruction FVD of the paper's tables; with few clips FVD is biased upwards, so compare runs at one count
    only); and how much of the codebook the clips use."""
    from vidgen.core.checkpoint import find_checkpoint
    from vidgen.sample import load_for_sampling

    run = args.vqvae_run
    if not run.exists():
        print(f"\n(c) skipped: {run} does not exist; train it first (vidgen train videogpt-tiny-vqvae) or pass "
              "--vqvae-run RUN")
        return
    recipe, backend = load_for_sampling(run, device)
    data = recipe.data
    rows = [reconstruction_row(run, frames, args.recon_num, device, score_fvd=frames == FVD_FRAMES)
            for frames in sorted({data.frames, FVD_FRAMES})]

    seeds = list(range(args.recon_num))  # codebook usage on training-length clips
    with torch.no_grad():
        codes = torch.cat([backend.encode_tokens(backend.references(seeds[i:i + 16], data.frames, device))
                           for i in range(0, len(seeds), 16)]).flatten().cpu()
    codebook = backend.networks["vqvae"].codebook
    counts = torch.bincount(codes, minlength=codebook.n_codes).double()
    probs = counts[counts > 0] / counts.sum()
    perplexity = torch.exp(-(probs * probs.log()).sum()).item()
    alive = int((codebook.N >= codebook.restart_threshold).sum())
    table(f"(c) {run} ({find_checkpoint(run).name}, trained on {data.frames}x{data.resolution}x{data.resolution} "
          f"clips): reconstructions of {args.recon_num} clips of its data, on {describe(device)}",
          ["clip frames", "PSNR (dB)", "SSIM", "FVD vs the originals"], rows)
    print(f"codebook: {int((counts > 0).sum())} of {codebook.n_codes} codes used by those clips (perplexity "
          f"{perplexity:.1f}); {alive} of {codebook.n_codes} alive (EMA count >= {codebook.restart_threshold:g})")
    print("PSNR and SSIM per frame on the 8-bit frames, mean over frames and clips")


FVD_FRAMES = 16
"""fvd2048_16f scores 16-frame clips: the VQ-VAE reconstructs any multiple of its temporal stride."""


def reconstruction_row(run: Path, frames: int, num: int, device: torch.device, score_fvd: bool) -> list[str]:
    from rich.console import Console

    from vidgen.evaluate import evaluate
    from vidgen.sample import REFERENCE_PREFIX, sample

    quiet = Console(quiet=True)
    with tempfile.TemporaryDirectory() as tmp:
        fake, real = Path(tmp) / "reconstructions", Path(tmp) / "originals"
        quality = sample(run, fake, {"num": num, "frames": frames, "batch_size": 16}, device=str(device),
                         console=quiet).reference_quality
        fvd = "-"
        if score_fvd:
            real.mkdir()
            for original in fake.glob(f"{REFERENCE_PREFIX}*.mp4"):  # the originals, as a dataset of their own
                original.rename(real / original.name)
            metric = evaluate(real, fake, ["fvd2048_16f"], device=str(device), allow_fewer=True, use_cache=False,
                              console=quiet).metrics[0]
            fvd = f"{metric.value:.1f} ({metric.label})"
    return [str(frames), f"{quality['psnr']:.2f}", f"{quality['ssim']:.4f}", fvd]


# ----------------------------------------------------------------------------------------------------------
# Driver



def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--official", type=Path, help="root of a VideoGPT checkout (else its rows are skipped)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--quick", action="store_true", help="small networks and clips: ~2 min on 2 CPU cores")
    parser.add_argument("--only", choices=("a", "b", "c"), help="run one part")
    parser.add_argument("--vqvae-run", type=Path, default=Path("runs/videogpt-tiny-vqvae"),
                        help="(c): the trained VQ-VAE run whose reconstructions are scored")
    parser.add_argument("--recon-num", type=int, default=64, help="(c): clips reconstructed")
    parser.add_argument("--width", type=int, help="prior width (default: 576, --quick 192)")
    parser.add_argument("--heads", type=int, help="prior heads (default: 4)")
    parser.add_argument("--layers", type=int, help="prior layers (default: 8, --quick 4)")
    parser.add_argument("--batch", type=int, help="train batch of (b) (default: 8, --quick 4)")
    parser.add_argument("--sample-batch", type=int, default=1, help="videos sampled at once in (a)")
    parser.add_argument("--recompute-tokens", type=int, default=16,
                        help="tokens of the recompute path timed in (a) (0: the whole sequence)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each sampling measurement in (a); the "
                        "fastest counts")
    parser.add_argument("--steps", type=int, default=5, help="timed train steps in (b)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed train steps first in (b)")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads (0: torch's default). On a CPU that other processes also use, 1 keeps (a) "
                        "honest: a decoding step is many small parallel regions, each waiting for any preempted thread")
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.argv = list(argv)  # forwarded to the case subprocesses
    if args.recompute_tokens == 1:
        parser.error("--recompute-tokens must be 0 (all) or at least 2 (the rate is taken between tokens)")
    return args


def resolve_sizes(args: argparse.Namespace) -> Sizes:
    sizes = SIZES["quick" if args.quick else "full"]
    overrides = {name: getattr(args, name) for name in ("width", "heads", "layers", "batch")
                 if getattr(args, name) is not None}
    return dataclasses.replace(sizes, **overrides)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        device = resolve_device(args.device)
        if args.official is not None:
            check_official(args.official)
        sizes = resolve_sizes(args)
        PriorConfig(n_codes=sizes.n_codes, latent_shape=sizes.latent_shape, width=sizes.width, heads=sizes.heads)
        if args.official is not None and sizes.width % 3:
            raise UserError(f"--width {sizes.width}: the official position embedding needs a multiple of 3")
    except (UserError, ValueError) as error:
        sys.exit(f"error: {error}")
    if device.type == "cpu" and args.threads:
        torch.set_num_threads(args.threads)
    if args.case:
        print(json.dumps(run_case(args.case, args, sizes, device)))
        return

    print(f"VideoGPT benchmark ({'quick' if args.quick else 'full'} sizes) on {describe(device)}, "
          f"torch {torch.__version__}")
    if args.only in (None, "a"):
        bench_sampling(args, sizes, device)
    if args.only in (None, "b"):
        bench_train_steps(args, sizes, device)
    if args.only in (None, "c"):
        bench_reconstruction(args, device)


if __name__ == "__main__":
    main()
