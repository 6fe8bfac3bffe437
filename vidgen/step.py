"""One training step, for every backend: the training state a checkpoint restores, and the function that advances
it by one optimizer step of each phase. The shared loop (vidgen/train.py) and the batch-size search
(vidgen/batch_search.py) both step through train_step, so the search measures the step that training runs.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vidgen.core import distributed, layout
from vidgen.core.checkpoint import load_weights
from vidgen.core.config import Recipe, TrainConfig
from vidgen.core.device import autocast, make_grad_scaler
from vidgen.core.distributed import SINGLE_PROCESS, DistInfo
from vidgen.core.ema import make_ema
from vidgen.errors import UserError
from vidgen.models.base import Backend, Batch, Phase


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

    @classmethod
    def create(cls, backend: Backend, precision: str, device: torch.device,
               generators: list[torch.Generator]) -> TrainState:
        """A fresh state: EMA copies of backend.ema_networks, the backend's optimizers (each group remembering
        its base lr, which the schedule scales) and a gradient scaler for `precision`."""
        optimizers = backend.make_optimizers()
        for opt in optimizers.values():
            for group in opt.param_groups:
                group.setdefault("base_lr", group["lr"])
        ema = torch.nn.ModuleDict({name: make_ema(backend.networks[name]) for name in backend.ema_networks})
        return cls(backend, ema, optimizers, make_grad_scaler(device, precision), generators)

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
            "upstream": self.backend.upstream.record if self.backend.upstream is not None else None,
        }

    def sampling_networks(self) -> dict[str, nn.Module]:
        """What sampling during training calls: the EMA copies of the networks that have one, the others as
        they are."""
        return {**self.backend.networks, **self.ema}

    def load_state_dict(self, state: dict[str, Any], first_stream: int = 0, num_streams: int = 1,
                        source: str | Path = "the checkpoint") -> bool:
        """Restore; each rank takes its own noise streams. False when the checkpoint was written by a job with
        another number of streams (ranks): they then restart from their seeds, and the run goes on, but no longer
        bit-identical to an uninterrupted one."""
        load_weights(self.backend.networks, state["networks"], source)
        load_weights(self.ema, state["ema"], source)
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


@dataclass(frozen=True)
class StepContext:
    """What each phase of each step needs to know about the job."""

    cfg: TrainConfig
    device: torch.device
    networks: Mapping[str, nn.Module]
    """What the losses call: the backend's networks, or their torch.compile wrappers (which share the
    parameters; state dicts are always taken from the plain modules)."""
    dist: DistInfo = SINGLE_PROCESS
    streams_per_rank: int = 1
    """Ranks this process plays (train()'s emulate_ranks)."""


def batch_to_device(batch: dict[str, torch.Tensor], device: torch.device) -> Batch:
    """A loader's batch on the device, in the model layout. A video crosses to the device as uint8 (4x less
    traffic than float), then becomes float [B, C, T, H, W] in [-1, 1] there; other entries (times, labels, a
    token dataset's codes) cross as they are."""
    return {key: layout.to_model(value.to(device, non_blocking=True)) if key == "video"
            else value.to(device, non_blocking=True) for key, value in batch.items() if key != "index"}


def lr_factor(cfg: TrainConfig, step: int) -> float:
    """The learning rate of optimizer step `step` (0-based) as a fraction of train.lr: linear warm-up over
    warmup_steps, then constant, or a cosine or linear decay that reaches 0 at max_steps."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
    if cfg.lr_decay == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if cfg.lr_decay == "linear":
        return 1.0 - progress
    return 1.0


def train_step(state: TrainState, micro_batches: list[Batch], ctx: StepContext) -> tuple[bool, dict[str, float]]:
    """One optimizer step of each phase due at state.step (Phase.every), on these micro-batches, at the learning
    rate of the schedule. Returns (applied, logged values): applied is False when a phase's loss was NaN or
    infinite on some rank, which ends the step on every rank: no step for it or the later phases. The caller
    advances state.step and the EMA."""
    lr_scale = lr_factor(ctx.cfg, state.step)
    logs: dict[str, float] = {}
    applied, stepped = True, False
    for phase in state.backend.phases():
        if state.step % phase.every:
            continue
        if not _run_phase(phase, micro_batches, state, ctx, lr_scale, logs):
            applied = False
            break
        stepped = True
    if stepped:  # (fp16) the scaler needs the inf check of at least one optimizer step
        state.scaler.update()
    return applied, logs


def _run_phase(phase: Phase, micro_batches: list[Batch], state: TrainState, ctx: StepContext, lr_scale: float,
               logs: dict[str, float]) -> bool:
    """One optimizer step of `phase`: gradients accumulated over the micro-batches (and emulated ranks' shards),
    averaged over the ranks, unscaled, clipped, applied. False, and no step, when a loss of the phase was NaN or
    infinite on some rank (decided alike on every rank, so they stay in step and in sync)."""
    opt = state.optimizers[phase.optimizer]
    params = [p for group in opt.param_groups for p in group["params"]]
    for group in opt.param_groups:
        group["lr"] = group["base_lr"] * lr_scale
    opt.zero_grad(set_to_none=True)
    shards_per_step = len(micro_batches) * ctx.streams_per_rank  # this rank's gradient is the mean over them
    finite = True
    # The losses call the plain networks: gradients are averaged over the ranks once per phase, after the last
    # micro-batch (distributed.average_gradients), rather than by DDP wrappers, whose per-backward hooks do not
    # fit phases that freeze a network (StyleGAN-V's D in G_main) or call a network's parts (its G_reg).
    for batch in micro_batches:
        for shard, generator in zip(_shards(batch, ctx.streams_per_rank), state.generators):
            with _compile_errors_explained(ctx.cfg.compile), autocast(ctx.device, ctx.cfg.precision):
                loss, values = state.backend.loss(phase.name, shard, ctx.networks, generator)
            if torch.isfinite(loss):
                state.scaler.scale(loss / shards_per_step).backward()
            else:
                finite = False  # its gradient would be no better; the phase is skipped below
            for key, value in values.items():
                logs[key] = logs.get(key, 0.0) + value / shards_per_step
    if distributed.any_rank(ctx.dist, not finite, ctx.device):
        opt.zero_grad(set_to_none=True)
        return False
    distributed.average_gradients(ctx.dist, params)
    state.scaler.unscale_(opt)
    if ctx.cfg.grad_clip is not None:
        grad_norm = torch.nn.utils.clip_grad_norm_(params, ctx.cfg.grad_clip)
        logs[f"grad_norm/{phase.name}"] = float(grad_norm)
    state.scaler.step(opt)  # (fp16) skips the step itself when the gradients overflowed
    return True


def _shards(batch: Batch, num: int) -> list[Batch]:
    """The shards of `num` emulated ranks: shard r holds samples r, r + num, ... of the micro-batch, just as a
    rank-sharded loader gives rank r samples k = r (mod world_size) of the global stream."""
    if num == 1:
        return [batch]
    return [{key: value[r::num] for key, value in batch.items()} for r in range(num)]


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
