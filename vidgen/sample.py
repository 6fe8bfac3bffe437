"""Sampling from a trained run: EMA weights -> mp4 files, a grid mp4 and a PNG contact sheet."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console

from vidgen.core import layout
from vidgen.core.checkpoint import latest_checkpoint, load_checkpoint
from vidgen.core.config import Recipe, recipe_from_dict
from vidgen.core.device import resolve_device
from vidgen.core.progress import task_progress
from vidgen.core.run_dir import RunDir, ensure_writable_dir, write_samples_manifest
from vidgen.errors import UserError
from vidgen.models.base import Backend
from vidgen.models.registry import build_backend

PREVIEW_VIDEOS = 64
"""The grid mp4 and the contact sheet show at most this many videos."""
VIDEO_INPUTS = ("extend", "upsample")
"""Sampling options whose value is a video file, read here and handed to the backend as a tensor."""


@dataclass(frozen=True)
class SampleResult:
    videos: list[Path]
    grid: Path
    contact_sheet: Path


def find_checkpoint(run_or_checkpoint: Path) -> Path:
    """A checkpoint file, or the latest checkpoint of a run directory."""
    if run_or_checkpoint.is_file():
        return run_or_checkpoint
    if run_or_checkpoint.is_dir():
        latest = latest_checkpoint(RunDir(run_or_checkpoint).checkpoints)
        if latest is None:
            raise UserError(f"{run_or_checkpoint} holds no checkpoints; train it first (vidgen train ...)")
        return latest
    raise UserError(f"{run_or_checkpoint} is neither a run directory nor a checkpoint file")


def load_for_sampling(run_or_checkpoint: Path, device: torch.device) -> tuple[Recipe, Backend]:
    """Rebuild the backend from a checkpoint's own config and load its EMA weights into the networks."""
    recipe, backend, _ = _load(find_checkpoint(run_or_checkpoint), device)
    return recipe, backend


def _load(path: Path, device: torch.device) -> tuple[Recipe, Backend, int]:
    state = load_checkpoint(path)
    recipe = recipe_from_dict(state["config"], source=str(path))
    backend = build_backend(recipe)
    weights = dict(state["networks"])
    weights.update(state["ema"])  # EMA copies replace the raw weights of the networks that have one
    backend.networks.load_state_dict(weights)
    backend.load_extra_state(state["backend"])
    backend.networks.to(device).eval()
    return recipe, backend, state["step"]


def sample(run_or_checkpoint: Path, out_dir: Path, num: int | None = None, frames: int | None = None,
           fps: float | None = None, seed: int | None = None, batch_size: int | None = None,
           steps: int | None = None, device: str = "auto", console: Console | None = None,
           **options: float | str) -> SampleResult:
    """Write `num` videos (video i from seed + i) as mp4 files, plus a grid mp4 and a contact sheet.

    `options` are backend-specific sampling options (Backend.sample_options), e.g. StyleGAN-V's truncation;
    those in VIDEO_INPUTS are paths of videos to condition on (diffusion: --extend, --upsample)."""
    from vidgen.core.io import make_grid, write_contact_sheet, write_mp4

    console = console or Console(stderr=True)
    dev = resolve_device(device)
    checkpoint = find_checkpoint(run_or_checkpoint)
    recipe, backend, step = _load(checkpoint, dev)
    unsupported = sorted(set(options) - set(backend.sample_options))
    if unsupported:
        flag = {"label": "--class"}.get(unsupported[0], "--" + unsupported[0].replace("_", "-"))
        raise UserError(f"{flag} does not apply to a '{recipe.model.name}' model")
    ensure_writable_dir(out_dir)
    backend_options: dict[str, object] = dict(options)
    for name in VIDEO_INPUTS:
        if name in options:
            backend_options[name] = read_input_video(Path(str(options[name])), dev)
    if "upsample" in backend_options:  # super-resolution keeps the input's length
        frames = frames or backend_options["upsample"].shape[1]
    cfg = recipe.sample
    num = num or cfg.num
    frames = frames or cfg.frames or recipe.data.frames
    fps = fps or cfg.fps or recipe.data.fps
    seed = cfg.seed if seed is None else seed
    batch_size = batch_size or cfg.batch_size
    seeds = list(range(seed, seed + num))

    videos: list[Path] = []
    previews = []  # only the first PREVIEW_VIDEOS are kept in memory, for the grid and the contact sheet
    with torch.no_grad(), task_progress(console, "sample", total=num) as advance:
        for start in range(0, num, batch_size):
            batch_seeds = seeds[start:start + batch_size]
            generated = backend.sample(backend.networks, batch_seeds, frames=frames, fps=fps, device=dev,
                                       steps=steps, **backend_options)
            for video_seed, video in zip(batch_seeds, layout.to_uint8(generated.cpu()).numpy()):
                path = out_dir / f"sample-{video_seed:06d}.mp4"
                write_mp4(path, video, fps=fps)
                videos.append(path)
                if len(previews) < PREVIEW_VIDEOS:
                    previews.append(video)
            advance(len(batch_seeds))
    grid = out_dir / "grid.mp4"
    write_mp4(grid, make_grid(previews), fps=fps)
    sheet = out_dir / "contact_sheet.png"
    write_contact_sheet(sheet, previews)
    write_samples_manifest(out_dir, videos, checkpoint=str(checkpoint), step=step, model=recipe.model.name,
                           seeds=seeds, frames=frames, fps=fps, steps=steps, options=options)
    return SampleResult(videos, grid, sheet)


def read_input_video(path: Path, device: torch.device) -> torch.Tensor:
    """A whole video file as the model sees it: float (C, T, H, W) in [-1, 1]."""
    from vidgen.core.io import read_video

    frames = torch.from_numpy(read_video(path))  # (T, H, W, 3) uint8; a bad file is a one-line error
    return layout.to_model(frames[None].to(device))[0]
