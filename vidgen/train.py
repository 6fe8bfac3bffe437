"""The shared training loop, for every backend.

The loop owns data, device, mixed precision, gradient accumulation, optimizer steps, EMA, logging,
checkpoints and resume; the backend supplies phases, optimizers, losses and a sampler (vidgen/models/base.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import signal
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.markup import escape
from torch import nn

from vidgen.core import distributed, layout
from vidgen.core.checkpoint import (checkpoint_path, latest_checkpoint, list_checkpoints, load_checkpoint,
                                    prune_checkpoints, remove_stale_temp_files, save_checkpoint)
from vidgen.core.config import Recipe, TrainConfig, recipe_from_dict
from vidgen.core.data.dataset import build_dataset
from vidgen.core.data.loader import make_train_loader
from vidgen.core.data.sources import summarize_skipped
from vidgen.core.device import (autocast, check_precision, configure_backends, make_grad_scaler,
                                memory_allocated_mb, resolve_device)
from vidgen.core.distributed import DistInfo
from vidgen.core.ema import ema_decay, make_ema, update_ema
from vidgen.core.progress import training_progress
from vidgen.core.run_dir import MetricsLog, RunDir
from vidgen.errors import UserError
from vidgen.models.base import Backend, Batch, Phase
from vidgen.models.registry import build_backend


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    step: int
    checkpoint: Path | None
    interrupted: bool
    is_main: bool = True
    """False on the ranks other than 0 of a torchrun job, which should print nothing."""


@dataclass
class TrainState:
    """Everything a checkpoint restores, besides the recipe."""

    backend: Backend
    ema: torch.nn.ModuleDict
    optimizers: dict[str, torch.optim.Optimizer]
    scaler: torch.amp.GradScaler
    generators: list[torch.Generator]
    """This process's training-noise streams: one per rank it plays (one under torchrun; see train()'s
    `emulate_ranks`). Stream s (= rank x len(generators) + i) starts from seed run.seed + s, so ranks draw
    different noise, and stream 0 is a single-process run's generator."""
    step: int = 0
    samples_seen: int = 0
    """Training videos drawn so far by all ranks together: where the data stream resumes, and the EMA's clock.
    Counted, not step x global batch, so a run resumed with another number of ranks goes on where it stopped."""
    best_score: float | None = None
    """Lowest train.eval_metric so far (all our metrics are distances), for checkpoints/best.pt."""
    nonfinite_steps: int = 0
    """Steps skipped so far because a loss was NaN or infinite (logged as nonfinite_steps)."""

    def state_dict(self, recipe: Recipe, streams: list[torch.Tensor]) -> dict[str, Any]:
        """`streams`: the generator states of every noise stream of the job, in stream order."""
        return {
            "config": recipe.to_dict(),
            "step": self.step,
            "networks": self.backend.networks.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
            "scaler": self.scaler.state_dict(),
            "backend": self.backend.extra_state(),
            "data": {"samples_seen": self.samples_seen},
            "rng": {"torch": torch.get_rng_state(), "generator": streams[0], "streams": streams},
            "best_score": self.best_score,
            "nonfinite_steps": self.nonfinite_steps,
        }

    def load_state_dict(self, state: dict[str, Any], first_stream: int = 0, num_streams: int = 1) -> bool:
        """Restore; each rank takes its own noise streams. False when the checkpoint was written by a job with
        another number of streams (ranks): they then restart from their seeds, and the run goes on, but no longer
        bit-identical to an uninterrupted one."""
        self.backend.networks.load_state_dict(state["networks"])
        self.ema.load_state_dict(state["ema"])
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        self.scaler.load_state_dict(state["scaler"])
        self.backend.load_extra_state(state["backend"])
        torch.set_rng_state(state["rng"]["torch"])
        streams = state["rng"].get("streams", [state["rng"]["generator"]])
        same_streams = len(streams) == num_streams
        if same_streams:
            for generator, saved in zip(self.generators, streams[first_stream:]):
                generator.set_state(saved)
        self.step = state["step"]
        self.samples_seen = state["data"]["samples_seen"]
        self.best_score = state.get("best_score")
        self.nonfinite_steps = state.get("nonfinite_steps", 0)
        return same_streams


def resolve_run(recipe_or_run: str, out: Path | None, overrides: list[str]) -> tuple[Recipe, Path]:
    """RECIPE is a built-in name, a YAML path, or an existing run directory (then resume it)."""
    from vidgen.core.config import load_recipe

    as_dir = Path(recipe_or_run)
    if as_dir.is_dir() and RunDir(as_dir).config.is_file():
        recipe = load_recipe(RunDir(as_dir).config, overrides)
        return recipe, out or as_dir
    recipe = load_recipe(recipe_or_run, overrides)
    return recipe, out or Path("runs") / recipe.run.name


def train(recipe: Recipe, run_dir: Path, device: str = "auto", fresh: bool = False, overwrite: bool = False,
          console: Console | None = None, emulate_ranks: int = 1) -> TrainResult:
    """Train (or resume) the run in `run_dir`. Under torchrun (RANK / WORLD_SIZE set), every rank calls this: it
    joins the process group, trains on its shard of each global batch, and only rank 0 writes or prints.

    train.batch_size is the batch of one rank; a step sees batch_size x grad_accum x ranks videos. A checkpoint
    resumes with any number of ranks (the data stream goes on from the videos seen so far).
    `emulate_ranks` = N plays N ranks in this one process, one after another: each micro-batch holds the union
    of N ranks' shards and each shard gets that rank's noise stream, so the weights equal those of an N-rank job
    (tests/test_distributed.py checks it). Not a speed feature: it exists to make that equality testable.
    """
    if emulate_ranks < 1:
        raise ValueError(f"emulate_ranks must be >= 1, got {emulate_ranks}")
    info = distributed.info_from_env()
    dev = resolve_device(distributed.device_for(info, device))
    with distributed.process_group(info, dev) as info:
        return _train(recipe, run_dir, dev, info, emulate_ranks, fresh, overwrite,
                      console or Console(stderr=True))


def _train(recipe: Recipe, run_dir: Path, dev: torch.device, dist: DistInfo, emulate_ranks: int, fresh: bool,
           overwrite: bool, console: Console) -> TrainResult:
    if not dist.is_main:
        console = Console(quiet=True)
    run = RunDir(run_dir)
    cfg = recipe.train

    # --- Device and run directory (rank 0 decides whether to resume, so a --fresh deletion cannot race) ---
    check_precision(cfg.precision, dev)
    configure_backends(dev)
    resume_from = _choose_resume(run, fresh, overwrite) if dist.is_main else None
    if dist.is_main:
        run.create()
        for stale in remove_stale_temp_files(run.checkpoints):  # no save runs yet: these are a dead one's
            console.print(f"[yellow]Removed {stale.name}, left by a checkpoint save that did not finish[/yellow]")
    resume_from = distributed.broadcast_object(dist, resume_from)

    # --- Model, EMA, optimizers (initialised from the seed; a resume then overwrites them) ---
    torch.manual_seed(recipe.run.seed)
    backend = build_backend(recipe)
    backend.networks.to(dev)
    streams_per_rank = emulate_ranks
    num_streams = dist.world_size * streams_per_rank
    first_stream = dist.rank * streams_per_rank
    state = TrainState(
        backend=backend,
        ema=torch.nn.ModuleDict({name: make_ema(backend.networks[name]) for name in backend.ema_networks}),
        optimizers=backend.make_optimizers(),
        scaler=make_grad_scaler(dev, cfg.precision),
        generators=[torch.Generator(dev).manual_seed(recipe.run.seed + first_stream + i)
                    for i in range(streams_per_rank)],
    )
    for opt in state.optimizers.values():
        for group in opt.param_groups:
            group.setdefault("base_lr", group["lr"])
    if resume_from is not None:  # every rank loads the same checkpoint
        saved = load_checkpoint(resume_from, expected_model=recipe.model.name)
        _check_same_model(recipe, saved, resume_from)
        same_streams = state.load_state_dict(saved, first_stream, num_streams)
        console.print(f"Resuming {run.root} from step {state.step} ({resume_from.name})")
        if not same_streams:
            console.print("[yellow]The checkpoint was written with another number of ranks: the training noise "
                          "restarts from its seeds (the run goes on, not bit-identical to an unbroken one)[/yellow]")
    distributed.broadcast_module(dist, backend.networks)  # a guard: the ranks start from identical weights

    # --- Data: rank r takes samples k = r (mod world_size) of the global stream ---
    dataset = build_dataset(recipe.data, seed=recipe.run.seed, clips=backend.training_clips())
    backend.check_dataset(dataset)
    if dataset.skipped:
        console.print(f"[yellow]{escape(summarize_skipped(dataset.skipped))}[/yellow]")
    micro_batches_per_step = cfg.grad_accum
    videos_per_step = cfg.batch_size * cfg.grad_accum * num_streams  # the global batch
    loader = make_train_loader(dataset, batch_size=cfg.batch_size * streams_per_rank, seed=recipe.run.seed,
                               start_sample=state.samples_seen, workers=recipe.data.workers,
                               pin_memory=dev.type == "cuda", rank=dist.rank, world_size=dist.world_size)
    batches = iter(loader)
    backend.bind_loop(videos_per_step, functools.partial(distributed.sum_over_ranks, dist, device=dev))

    log = None
    if dist.is_main:
        run.config.write_text(recipe.to_yaml())
        log = MetricsLog(run.metrics, resume_step=state.step if resume_from else None)
    ranks = f" x {num_streams} ranks" if num_streams > 1 else ""
    console.print(f"Training {recipe.model.name} '{recipe.run.name}' on {dev}{ranks} ({cfg.precision}), "
                  f"{_count_params(backend):,} parameters, {len(dataset)} videos, {videos_per_step} videos per "
                  f"step -> {run.root}")

    last_checkpoint = latest_checkpoint(run.checkpoints)
    start_step = state.step
    # This rank's gradient is the mean over its micro-batches and emulated ranks' shards.
    networks = ({name: torch.compile(net) for name, net in backend.networks.items()} if cfg.compile
                else backend.networks)
    loop = _Loop(cfg, dist, dev, streams_per_rank, shards_per_step=micro_batches_per_step * streams_per_rank,
                 networks=networks)
    nonfinite_in_a_row = 0
    interrupted = False
    with _stop_on_signals(under_torchrun=dist.active) as stop, \
            training_progress(console, total=cfg.max_steps, completed=state.step) as progress:
        timer = time.perf_counter()
        while state.step < cfg.max_steps:
            if distributed.any_rank(dist, stop.requested, dev):  # all ranks stop at the same step
                interrupted = True
                break

            # --- Fetch this step's micro-batches (uint8 -> model layout, on the device) ---
            micro_batches = [_to_device(next(batches), dev) for _ in range(micro_batches_per_step)]

            # --- Phases, each one optimizer step (_run_phase). The first phase whose loss is not finite on some
            #     rank ends the step on every rank: no step for it or the later phases, no EMA update ---
            lr_scale = lr_factor(cfg, state.step)
            logs: dict[str, float] = {}
            applied, stepped = True, False
            for phase in backend.phases():
                if state.step % phase.every:
                    continue
                if not _run_phase(phase, micro_batches, state, loop, lr_scale, logs):
                    applied = False
                    break
                stepped = True
            if stepped:  # (fp16) the scaler needs the inf check of at least one optimizer step
                state.scaler.update()
            state.step += 1
            state.samples_seen += videos_per_step  # the data was drawn, even for a skipped step
            backend.end_step(applied)

            # --- EMA (half-life in videos), or count the skipped step ---
            if applied:
                decay = ema_decay(cfg.ema_halflife_videos, videos_per_step, state.samples_seen, cfg.ema_rampup)
                for name in backend.ema_networks:
                    update_ema(state.ema[name], backend.networks[name], decay)
                nonfinite_in_a_row = 0
            else:
                state.nonfinite_steps += 1
                nonfinite_in_a_row += 1
                console.print(f"[yellow]step {state.step}: a loss is NaN or infinite; the step is skipped "
                              f"({nonfinite_in_a_row} in a row)[/yellow]", highlight=False)

            # --- Log (every skipped step too), checkpoint, sample (rank 0; the others wait at the next
            #     collective) ---
            is_log_step = state.step % cfg.log_every == 0 or state.step == cfg.max_steps or not applied
            if is_log_step:
                logs = distributed.mean_of_logs(dist, logs, dev)
            if dist.is_main:
                progress.advance(logs.get("loss"))
            if is_log_step and dist.is_main:
                elapsed = time.perf_counter() - timer
                steps_done = cfg.log_every if state.step % cfg.log_every == 0 else state.step % cfg.log_every
                record = {"step": state.step, **logs,
                          "nonfinite_steps": state.nonfinite_steps,
                          "lr": cfg.lr * lr_scale,
                          "videos_per_sec": steps_done * videos_per_step / elapsed,
                          "sec_per_step": elapsed / steps_done,
                          "peak_mem_mb": memory_allocated_mb(dev)}
                log.write(record)
                progress.log_record(record)
            if is_log_step:
                timer = time.perf_counter()
            if nonfinite_in_a_row >= cfg.max_nonfinite_steps:
                raise UserError(_nonfinite_message(state.step, nonfinite_in_a_row, last_checkpoint))
            if state.step % cfg.checkpoint_every == 0:
                last_checkpoint = _save(state, recipe, run, dist)
            if cfg.sample_every and state.step % cfg.sample_every == 0 and dist.is_main:
                _write_training_samples(backend, state, recipe, run, dev)
            if cfg.eval_every and state.step % cfg.eval_every == 0:
                best = False
                scored = _score_ema(backend, state, recipe, dev, console, dist)  # every rank: its share of videos
                if scored is not None:  # rank 0
                    label, score = scored
                    log.write({"step": state.step, f"eval/{cfg.eval_metric}": score})
                    console.print(f"step {state.step}  {label} {score:.4g}", highlight=False)
                    if state.best_score is None or score < state.best_score:
                        state.best_score, best = score, True
                if distributed.broadcast_object(dist, best):  # saving gathers every rank's noise streams
                    _save(state, recipe, run, dist, path=run.checkpoints / "best.pt")

    if state.step > start_step or last_checkpoint is None:
        if last_checkpoint is None or _step_of(last_checkpoint) != state.step:
            last_checkpoint = _save(state, recipe, run, dist)
    distributed.barrier(dist)  # no rank leaves (and tears down the group) while rank 0 still writes
    if interrupted:
        console.print(f"Interrupted: saved step {state.step} to {last_checkpoint}; run the same command "
                      "again to resume.")
    return TrainResult(run.root, state.step, last_checkpoint, interrupted, dist.is_main)


@contextlib.contextmanager
def _compile_errors_explained(compiling: bool) -> Iterator[None]:
    """torch.compile builds its kernels on the first calls; when its toolchain fails (e.g. the C++ compiler of
    inductor on CPU), say so in one line instead of pages of compiler output."""
    if not compiling:
        yield
        return
    from torch._dynamo.exc import BackendCompilerFailed  # inductor's errors derive from it

    try:
        yield
    except BackendCompilerFailed as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
        reason = " ".join(lines[:2]) if lines[0].endswith("raised:") else lines[0]  # "backend=... raised:" + why
        raise UserError(f"torch.compile failed ({reason}); train without it (--set train.compile=false) or fix "
                        f"the compiler it uses") from None


def _shards(batch: Batch, num: int) -> list[Batch]:
    """The shards of `num` emulated ranks: shard r holds samples r, r + num, ... of the micro-batch, just as a
    rank-sharded loader gives rank r samples k = r (mod world_size) of the global stream."""
    if num == 1:
        return [batch]
    return [{key: value[r::num] for key, value in batch.items()} for r in range(num)]


@dataclass(frozen=True)
class _Loop:
    """What each phase of each step needs to know about the job."""

    cfg: TrainConfig
    dist: DistInfo
    device: torch.device
    streams_per_rank: int
    """Ranks this process plays (train()'s emulate_ranks)."""
    shards_per_step: int
    """Micro-batches x emulated ranks: this process's gradient is the mean over them."""
    networks: Mapping[str, nn.Module]
    """What the losses call: the backend's networks, or their torch.compile wrappers (which share the
    parameters; state dicts are always taken from the plain modules)."""


def lr_factor(cfg: TrainConfig, step: int) -> float:
    """The learning rate of optimizer step `step` (0-based) as a fraction of train.lr: linear warm-up over
    warmup_steps, then constant or a cosine decay that reaches 0 at max_steps."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.lr_decay == "cosine":
        progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return 1.0


def _run_phase(phase: Phase, micro_batches: list[Batch], state: TrainState, loop: _Loop, lr_scale: float,
               logs: dict[str, float]) -> bool:
    """One optimizer step of `phase`: gradients accumulated over the micro-batches (and emulated ranks' shards),
    averaged over the ranks, unscaled, clipped, applied. False, and no step, when a loss of the phase was NaN or
    infinite on some rank (decided alike on every rank, so they stay in step and in sync)."""
    opt = state.optimizers[phase.optimizer]
    params = [p for group in opt.param_groups for p in group["params"]]
    for group in opt.param_groups:
        group["lr"] = group["base_lr"] * lr_scale
    opt.zero_grad(set_to_none=True)
    finite = True
    # The losses call the plain networks: gradients are averaged over the ranks once per phase, after the last
    # micro-batch (distributed.average_gradients), rather than by DDP wrappers, whose per-backward hooks do not
    # fit phases that freeze a network (StyleGAN-V's D in G_main) or call a network's parts (its G_reg).
    for batch in micro_batches:
        for shard, generator in zip(_shards(batch, loop.streams_per_rank), state.generators):
            with _compile_errors_explained(loop.cfg.compile):
                with autocast(loop.device, loop.cfg.precision):
                    loss, values = state.backend.loss(phase.name, shard, loop.networks, generator)
                if torch.isfinite(loss):
                    state.scaler.scale(loss / loop.shards_per_step).backward()
                else:
                    finite = False  # its gradient would be no better; the phase is skipped below
            for key, value in values.items():
                logs[key] = logs.get(key, 0.0) + value / loop.shards_per_step
    if distributed.any_rank(loop.dist, not finite, loop.device):
        opt.zero_grad(set_to_none=True)
        return False
    distributed.average_gradients(loop.dist, params)
    state.scaler.unscale_(opt)
    if loop.cfg.grad_clip is not None:
        grad_norm = torch.nn.utils.clip_grad_norm_(params, loop.cfg.grad_clip)
        logs[f"grad_norm/{phase.name}"] = float(grad_norm)
    state.scaler.step(opt)  # (fp16) skips the step itself when the gradients overflowed
    return True


def _nonfinite_message(step: int, in_a_row: int, last_checkpoint: Path | None) -> str:
    kept = f"{last_checkpoint} holds the last saved weights" if last_checkpoint else "no checkpoint was saved"
    return (f"stopped at step {step}: the loss was NaN or infinite in {in_a_row} steps in a row "
            f"(train.max_nonfinite_steps); {kept}. Resume from it with a lower train.lr or train.precision=fp32 "
            "(e.g. the same command with --set train.lr=...)")


# ----------------------------------------------------------------------------------------------------------


def _choose_resume(run: RunDir, fresh: bool, overwrite: bool) -> Path | None:
    latest = latest_checkpoint(run.checkpoints)
    if latest is None:
        return None
    if not fresh:
        return latest
    if not overwrite:
        raise UserError(f"{run.root} already holds a run (up to {latest.name}); --fresh would discard it: "
                        "add --overwrite to do so, or choose another --out")
    for path in list_checkpoints(run.checkpoints):
        path.unlink()
    return None


def _check_same_model(recipe: Recipe, saved: dict[str, Any], path: Path) -> None:
    saved_model = recipe_from_dict(saved["config"], source=str(path)).model
    if dataclasses.asdict(saved_model) != dataclasses.asdict(recipe.model):
        changed = [k for k, v in dataclasses.asdict(recipe.model).items()
                   if dataclasses.asdict(saved_model).get(k) != v]
        raise UserError(f"the run in {path.parent.parent} was trained with a different model config "
                        f"(model.{changed[0]} differs); resume with the same recipe, or use --fresh --overwrite "
                        "or another --out")


def _save(state: TrainState, recipe: Recipe, run: RunDir, dist: DistInfo, path: Path | None = None) -> Path:
    """Save a checkpoint (by default the step's, then prune old ones; `path`: a named one such as best.pt).
    Every rank calls it (each contributes its noise streams); rank 0 writes."""
    named = path is not None
    path = path or checkpoint_path(run.checkpoints, state.step)
    streams = [s for rank_streams in distributed.all_gather_objects(dist, [g.get_state() for g in state.generators])
               for s in rank_streams]
    if not dist.is_main:
        return path
    try:
        save_checkpoint(state.state_dict(recipe, streams=streams), path)
    except OSError as exc:
        raise UserError(f"could not write checkpoint {path}: {exc.strerror}; the previous checkpoint is kept") \
            from None
    if not named:
        prune_checkpoints(run.checkpoints, recipe.train.keep_checkpoints)
    return path


def _score_ema(backend: Backend, state: TrainState, recipe: Recipe, dev: torch.device, console: Console,
               dist: DistInfo) -> tuple[str, float] | None:
    """train.eval_metric of the EMA model against the real data (whose statistics the cache keeps): (label, score)
    on rank 0, None on the others. Every rank generates and featurises its block of the fake videos' seeds;
    rank 0 gathers their statistics, so the score is the one a single process gets for the same seeds."""
    from vidgen.evaluate import GeneratorSource, RankShare, contribute_generated_statistics, evaluate
    from vidgen.metrics.protocols import PROTOCOLS
    from vidgen.metrics.sources import SyntheticSpec

    cfg = recipe.train
    protocol = PROTOCOLS[cfg.eval_metric]
    if cfg.eval_videos is not None:
        protocol = dataclasses.replace(protocol, num_videos=cfg.eval_videos)
    fps = recipe.sample.fps or recipe.data.fps

    def generate(seeds: list[int], frames: int) -> torch.Tensor:
        return backend.sample(state.ema, seeds, frames=frames, fps=fps, device=dev)

    ranks = (RankShare(dist.rank, dist.world_size, functools.partial(distributed.all_gather_objects, dist))
             if dist.active else None)
    source = GeneratorSource(generate, recipe.sample.batch_size,
                             SyntheticSpec.from_data(recipe.data, recipe.run.seed), ranks)
    with torch.no_grad():
        if not dist.is_main:  # rank 0 computes the real side meanwhile, then joins the gather
            contribute_generated_statistics(source, [protocol], seed=recipe.run.seed, device=dev)
            return None
        # allow_fewer: a small dataset must not end a long run; the label then carries the count used.
        result = evaluate(cfg.eval_real or recipe.data.source, source, [protocol], seed=recipe.run.seed,
                          device=str(dev), allow_fewer=True, console=console)
    return result.metrics[0].label, result.metrics[0].value


def _write_training_samples(backend: Backend, state: TrainState, recipe: Recipe, run: RunDir,
                            dev: torch.device) -> None:
    from vidgen.core.io import make_grid, write_mp4

    num = min(recipe.sample.num, 16)
    with torch.no_grad():
        videos = backend.sample(state.ema, seeds=list(range(recipe.sample.seed, recipe.sample.seed + num)),
                                frames=recipe.sample.frames or recipe.data.frames,
                                fps=recipe.sample.fps or recipe.data.fps, device=dev)
    frames = layout.to_uint8(videos.cpu()).numpy()
    write_mp4(run.samples / f"step-{state.step:08d}.mp4", make_grid(list(frames)),
              fps=recipe.sample.fps or recipe.data.fps)


def _to_device(batch: dict[str, torch.Tensor], dev: torch.device) -> Batch:
    # uint8 crosses to the device (4x less traffic than float), then becomes the model layout there.
    out = {"video": layout.to_model(batch["video"].to(dev, non_blocking=True)),
           "times": batch["times"].to(dev, non_blocking=True)}
    if "label" in batch:
        out["label"] = batch["label"].to(dev)
    return out


def _count_params(backend: Backend) -> int:
    return sum(p.numel() for p in backend.networks.parameters())


def _step_of(path: Path) -> int:
    return int(path.stem.split("-")[1])


class _StopFlag:
    """Set by the first Ctrl-C (or SIGTERM): the loop stops after the current step and checkpoints."""

    requested = False


@contextlib.contextmanager
def _stop_on_signals(under_torchrun: bool = False) -> Iterator[_StopFlag]:
    """Under torchrun a second signal does not abort: one stop can reach a rank twice (a scheduler such as SLURM
    signals every process of the job, and torchrun forwards what it receives), and torchrun itself sends SIGKILL
    after its --shutdown-timeout (30 s) if the ranks have not finished their step and checkpoint by then."""
    flag = _StopFlag()

    def handle(signum: int, frame: Any) -> None:
        if flag.requested and not under_torchrun:  # a second Ctrl-C aborts at once
            raise KeyboardInterrupt
        flag.requested = True

    try:
        previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: leave signal handling alone
        yield flag
        return
    try:
        yield flag
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
