"""The shared training loop, for every backend.

The loop owns data, device, mixed precision, gradient accumulation, optimizer steps, EMA, logging,
checkpoints and resume; the backend supplies phases, optimizers, losses and a sampler (vidgen/models/base.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.markup import escape

from vidgen.core import distributed
from vidgen.core.checkpoint import (DamagedCheckpoint, checkpoint_path, list_checkpoints,
                                    load_checkpoint, prune_checkpoints, remove_stale_temp_files, save_checkpoint,
                                    verify_checkpoint)
from vidgen.core.config import Recipe
from vidgen.core.data.loader import make_train_loader
from vidgen.core.data.sources import summarize_skipped
from vidgen.core.data.tokens import TokenDataset
from vidgen.core.device import check_precision, configure_backends, memory_allocated_mb, resolve_device
from vidgen.core.distributed import DistInfo
from vidgen.core.ema import ema_decay, update_ema
from vidgen.core.loggers import log_image, log_scalars, make_loggers, preview_still
from vidgen.core.progress import training_progress
from vidgen.core.run_dir import MetricsLog, RunDir
from vidgen.errors import ConfigError, UserError
from vidgen.evaluate import score_during_training
from vidgen.models.base import Backend, TrainingJob
from vidgen.models.registry import build_backend
from vidgen.recipe import apply_override, load_recipe, read_yaml, recipe_from_dict
from vidgen.sample import write_preview
from vidgen.step import StepContext, TrainState, batch_to_device, lr_factor, train_step
from vidgen.upstream import load_upstream


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    step: int
    checkpoint: Path | None
    interrupted: bool
    is_main: bool = True
    """False on the ranks other than 0 of a torchrun job, which should print nothing."""


def resolve_run(recipe_or_run: str, out: Path | None, overrides: list[str],
                console: Console | None = None) -> tuple[Recipe, Path]:
    """RECIPE is a built-in name, a YAML path, or an existing run directory (then resume it with its config)."""
    run = RunDir(Path(recipe_or_run))
    if run.root.is_dir() and (run.config.exists() or list_checkpoints(run.checkpoints)):
        quiet = not distributed.info_from_env().is_main  # under torchrun every rank resolves; rank 0 speaks
        raw = _saved_config(run, console or Console(stderr=True, quiet=quiet))
        for override in overrides:
            apply_override(raw, override)
        return recipe_from_dict(raw, source=str(run.config), saved=True), out or run.root
    recipe = load_recipe(recipe_or_run, overrides)
    return recipe, out or Path("runs") / recipe.run.name


def _saved_config(run: RunDir, console: Console) -> dict[str, Any]:
    """The run's config.yaml as a mapping; when it is missing or damaged, the config stored in its newest intact
    checkpoint, with a notice (config.yaml is rewritten when the run starts)."""
    try:
        raw = read_yaml(run.config)
        recipe_from_dict(raw, source=str(run.config), saved=True)  # the file itself must be a recipe
        return raw
    except ConfigError as exc:
        problem = str(exc)
    for path in reversed(list_checkpoints(run.checkpoints)):
        try:
            state = load_checkpoint(path)
        except UserError:
            continue
        console.print(f"[yellow]{escape(problem)}; resuming with the config stored in {path.name}[/yellow]",
                      highlight=False, soft_wrap=True)
        return state["config"]
    raise UserError(f"{problem}, and {run.root} has no intact checkpoint to recover it from; start the run again "
                    f"with vidgen train RECIPE --out {run.root} --fresh --overwrite")


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
        # One writer per run directory: rank 0 holds it for the whole job (the other ranks write nothing).
        with RunDir(run_dir).lock() if info.is_main else contextlib.nullcontext():
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
    resume_from = _choose_resume(run, fresh, overwrite, console) if dist.is_main else None
    if dist.is_main:
        run.create()
        for stale in remove_stale_temp_files(run.checkpoints):  # no save runs yet: these are a dead one's
            console.print(f"[yellow]Removed {stale.name}, left by a checkpoint save that did not finish[/yellow]")
    resume_from = distributed.broadcast_object(dist, resume_from)

    # --- Model, EMA, optimizers (initialised from the seed; a resume then overwrites them) ---
    saved = load_checkpoint(resume_from, expected_model=recipe.model.name) if resume_from is not None else None
    if saved is not None:
        _check_same_model(recipe, saved, resume_from)
    torch.manual_seed(recipe.run.seed)
    backend = build_backend(recipe, load_upstream(recipe, saved, str(resume_from)))
    backend.networks.to(dev)
    streams_per_rank = emulate_ranks
    num_streams = dist.world_size * streams_per_rank
    first_stream = dist.rank * streams_per_rank
    state = TrainState.create(backend, cfg.precision, dev,
                              [torch.Generator(dev).manual_seed(recipe.run.seed + first_stream + i)
                               for i in range(streams_per_rank)])
    if saved is not None:  # every rank loads the same checkpoint
        same_streams = state.load_state_dict(saved, first_stream, num_streams, resume_from)
        console.print(f"Resuming {run.root} from step {state.step} ({resume_from.name})")
        if not same_streams:
            console.print("[yellow]The checkpoint was written with another number of ranks: the training noise "
                          "restarts from its seeds (the run goes on, not bit-identical to an unbroken one)[/yellow]")
    distributed.broadcast_module(dist, backend.networks)  # a guard: the ranks start from identical weights

    # --- Data: rank r takes samples k = r (mod world_size) of the global stream ---
    dataset = backend.training_dataset()
    if isinstance(dataset, TokenDataset) and not backend.trains_on_tokens:
        raise UserError(f"data.source '{recipe.data.source}' holds encoded tokens, which only a prior over them "
                        f"trains on; a '{recipe.model.name}' model trains on videos: point data.source at them")
    backend.check_dataset(dataset)
    if dataset.skipped:
        console.print(f"[yellow]{escape(summarize_skipped(dataset.skipped))}[/yellow]", soft_wrap=True)
    micro_batches_per_step = cfg.grad_accum
    videos_per_step = cfg.batch_size * cfg.grad_accum * num_streams  # the global batch
    loader = make_train_loader(dataset, batch_size=cfg.batch_size * streams_per_rank, seed=recipe.run.seed,
                               start_sample=state.samples_seen, workers=recipe.data.workers,
                               pin_memory=dev.type == "cuda", rank=dist.rank, world_size=dist.world_size)
    batches = iter(loader)
    backend.bind_loop(TrainingJob(videos_per_step, functools.partial(distributed.sum_over_ranks, dist, device=dev),
                                  functools.partial(distributed.sum_tensor_over_ranks, dist), dist.is_main))

    log = None
    if dist.is_main:
        run.write_config(recipe.to_yaml())
        log = MetricsLog(run.metrics, resume_step=state.step if resume_from else None)
    ranks = f" x {num_streams} ranks" if num_streams > 1 else ""
    console.print(f"Training {recipe.model.name} '{recipe.run.name}' on {dev}{ranks} ({cfg.precision}), "
                  f"{_count_params(backend):,} parameters, {len(dataset)} videos, {videos_per_step} videos per "
                  f"step -> {run.root}")

    last_checkpoint = resume_from  # the newest intact checkpoint (a damaged newer one is not)
    start_step = state.step
    networks = ({name: torch.compile(net) for name, net in backend.networks.items()} if cfg.compile
                else backend.networks)
    step_context = StepContext(cfg, dev, networks, dist, streams_per_rank)
    nonfinite_in_a_row = 0
    interrupted = False
    # The viewers of train.loggers beside metrics.jsonl (rank 0), closed however training ends.
    with make_loggers(cfg.loggers, run.root, recipe, dist.is_main, functools.partial(_warn, console),
                      resume_step=state.step if resume_from else None) as loggers, \
            _stop_on_signals(under_torchrun=dist.active) as stop, \
            training_progress(console, total=cfg.max_steps, completed=state.step) as progress:
        timer = time.perf_counter()
        while state.step < cfg.max_steps:
            if distributed.any_rank(dist, stop.requested, dev):  # all ranks stop at the same step
                interrupted = True
                break

            # --- Fetch this step's micro-batches (uint8 -> model layout, on the device) ---
            micro_batches = [batch_to_device(next(batches), dev) for _ in range(micro_batches_per_step)]

            # --- Phases, each one optimizer step. The first phase whose loss is not finite on some rank ends the
            #     step on every rank: no step for it or the later phases, no EMA update ---
            lr = cfg.lr * lr_factor(cfg, state.step)
            applied, logs = train_step(state, micro_batches, step_context)
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
                          "lr": lr,
                          "videos_per_sec": steps_done * videos_per_step / elapsed,
                          "sec_per_step": elapsed / steps_done,
                          "peak_mem_mb": memory_allocated_mb(dev)}
                log.write(record)
                log_scalars(loggers, record)
                progress.log_record(record)
            if is_log_step:
                timer = time.perf_counter()
            if nonfinite_in_a_row >= cfg.max_nonfinite_steps:
                raise UserError(_nonfinite_message(state.step, nonfinite_in_a_row, last_checkpoint))
            if state.step % cfg.checkpoint_every == 0:
                last_checkpoint = _save(state, recipe, run, dist)
            if cfg.sample_every and state.step % cfg.sample_every == 0 and dist.is_main:
                preview = run.samples / f"step-{state.step:08d}.mp4"
                grid = write_preview(backend, state.sampling_networks(), recipe, preview, dev)
                if loggers:  # the viewers show images: the grid's first, middle and last frame
                    log_image(loggers, state.step, "samples/preview", preview_still(grid))
            if cfg.eval_every and state.step % cfg.eval_every == 0:
                best = False
                scored = score_during_training(backend, state.sampling_networks(), recipe, dev, console, dist)  # every rank
                if scored is not None:  # rank 0
                    label, score = scored
                    record = {"step": state.step, f"eval/{cfg.eval_metric}": score}
                    log.write(record)
                    log_scalars(loggers, record)
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


def _warn(console: Console, message: str) -> None:
    console.print(f"[yellow]{escape(message)}[/yellow]", highlight=False, soft_wrap=True)


def _nonfinite_message(step: int, in_a_row: int, last_checkpoint: Path | None) -> str:
    kept = f"{last_checkpoint} holds the last saved weights" if last_checkpoint else "no checkpoint was saved"
    return (f"stopped at step {step}: the loss was NaN or infinite in {in_a_row} steps in a row "
            f"(train.max_nonfinite_steps); {kept}. Resume from it with a lower train.lr or train.precision=fp32 "
            "(e.g. the same command with --set train.lr=...)")


# ----------------------------------------------------------------------------------------------------------


def _choose_resume(run: RunDir, fresh: bool, overwrite: bool, console: Console) -> Path | None:
    """The checkpoint to resume from: the newest that verifies (a damaged one is passed over, with a notice)."""
    checkpoints = list_checkpoints(run.checkpoints)
    if not checkpoints:
        return None
    if fresh:
        if not overwrite:
            raise UserError(f"{run.root} already holds a run (up to {checkpoints[-1].name}); --fresh would discard "
                            "it: add --overwrite to do so, or choose another --out")
        for path in checkpoints:
            path.unlink()
        return None
    damaged: list[DamagedCheckpoint] = []
    for path in reversed(checkpoints):
        try:
            verify_checkpoint(path)
        except DamagedCheckpoint as exc:
            damaged.append(exc)
            continue
        for exc in damaged:
            console.print(f"[yellow]{escape(str(exc.path))} is damaged ({escape(exc.reason)}); resuming from "
                          f"{path.name}[/yellow]", highlight=False, soft_wrap=True)
        return path
    raise UserError(f"no checkpoint in {run.checkpoints} is intact (all {len(checkpoints)} fail their checks); "
                    f"start the run again with --fresh --overwrite, or restore a checkpoint from a backup")


def _check_same_model(recipe: Recipe, saved: dict[str, Any], path: Path) -> None:
    saved_model = recipe_from_dict(saved["config"], source=str(path), saved=True).model
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


def _count_params(backend: Backend) -> int:
    """Trained parameters (a frozen first stage is not counted)."""
    return sum(p.numel() for p in backend.networks.parameters() if p.requires_grad)


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
