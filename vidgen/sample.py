"""Sampling from a trained run: EMA weights -> mp4 files, a grid mp4 and a PNG contact sheet."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from torch import nn

from vidgen.core import layout
from vidgen.core.checkpoint import find_checkpoint, is_export, load_checkpoint, load_export
from vidgen.core.config import PredictionSampleConfig, Recipe, SampleConfig
from vidgen.core.device import resolve_device
from vidgen.core.progress import task_progress
from vidgen.core.run_dir import SAMPLES_MANIFEST, ensure_writable_dir, write_samples_manifest
from vidgen.errors import UserError
from vidgen.metrics.quality import psnr, ssim
from vidgen.models.base import Backend, Prediction
from vidgen.upstream import backend_from_checkpoint

PREVIEW_VIDEOS = 64
"""The grid mp4 and the contact sheet show at most this many videos."""
PREVIEW_DURING_TRAINING = 16
"""Videos in the grid that training writes every train.sample_every steps."""


REFERENCE_PREFIX = "real-"
"""The real clip that sample-N.mp4 should match (Backend.references) is written beside it as real-N.mp4."""


@dataclass(frozen=True)
class SampleResult:
    videos: list[Path]
    grid: Path
    contact_sheet: Path
    reference_quality: dict[str, float] | None = None
    """For a backend with references (a VQ-VAE, a predictor): mean per-frame PSNR (dB) and SSIM of the written
    samples against the written references, and the number of videos; else None."""


class _ReferenceQuality:
    """Running means of per-frame PSNR and SSIM (vidgen.metrics.quality), on the 8-bit frames that are written."""

    def __init__(self) -> None:
        self.psnr_sum = self.ssim_sum = 0.0
        self.frames = self.videos = 0

    def add(self, samples: torch.Tensor, references: torch.Tensor) -> None:
        """uint8 [B, T, H, W, C] each."""
        x, y = layout.to_model(samples).double(), layout.to_model(references).double()
        self.psnr_sum += psnr(x, y).sum().item()
        self.ssim_sum += ssim(x, y).sum().item()
        self.frames += x.shape[0] * x.shape[2]
        self.videos += x.shape[0]

    def summary(self) -> dict[str, float] | None:
        if not self.videos:
            return None
        return {"psnr": self.psnr_sum / self.frames, "ssim": self.ssim_sum / self.frames, "videos": self.videos}


def load_for_sampling(run_or_checkpoint: Path, device: torch.device) -> tuple[Recipe, Backend]:
    """Rebuild the backend from a checkpoint's own config, with its EMA weights, on `device` (or from an export
    directory: its config.yaml and model.safetensors)."""
    recipe, backend, _ = _load(find_checkpoint(run_or_checkpoint), device)
    return recipe, backend


def _load(path: Path, device: torch.device) -> tuple[Recipe, Backend, int]:
    state = load_export(path) if is_export(path) else load_checkpoint(path)
    recipe, backend = backend_from_checkpoint(state, str(path))
    backend.networks.to(device)
    return recipe, backend, state["step"]


def read_context(backend: Backend, options: PredictionSampleConfig, frames: int,
                 device: torch.device) -> torch.Tensor:
    """The first --context-frames frames of the --context video as the model sees them: float [1, C, c, H, W].
    A clip too short, at another size or in colour for a grayscale model is one line saying how to fix it."""
    data = backend.recipe.data
    count = options.context_frames or backend.context_frames()
    if frames <= count:
        raise UserError(f"--frames {frames} must exceed the {count} context frames: the output holds the context, "
                        "then the predicted frames")
    video = layout.read_video_file(options.context, device, channels=data.channels)  # (C, T, H, W)
    length, height, width = video.shape[1:]
    if length < count:
        raise UserError(f"--context {options.context} has {length} frames, fewer than the {count} context frames; "
                        f"give a longer clip or --context-frames {length}")
    if (height, width) != (data.resolution, data.resolution):
        res = data.resolution
        raise UserError(f"--context {options.context} is {width}x{height} but the model makes {res}x{res} frames; "
                        f"resize it first (e.g. ffmpeg -i IN -vf scale={res}:{res} OUT.mp4)")
    return video[None, :, :count]


def generate(backend: Backend, nets: Mapping[str, nn.Module], seeds: list[int], frames: int, device: torch.device,
             options: SampleConfig) -> Prediction:
    """The videos of these seeds: futures of the --context clip when one is given (Backend.predict), else the
    backend's own samples. Whether the family takes --context at all was checked with the options."""
    context = getattr(options, "context", None)
    if context is None:
        return Prediction(backend.sample(nets, seeds, frames, device, options))
    if not backend.predicts:  # a family that takes the option, in a configuration that cannot condition
        raise UserError(f"this '{backend.recipe.model.name}' model cannot continue given frames; --context "
                        "needs one that predicts")
    clip = read_context(backend, options, frames, device)
    return backend.predict(nets, clip.expand(len(seeds), -1, -1, -1, -1), seeds, frames, device, options)


def unprompted_videos(backend: Backend, nets: Mapping[str, nn.Module], seeds: list[int], frames: int,
                      device: torch.device) -> torch.Tensor:
    """What the model makes with nothing given, for previews: its samples, or for a model that only predicts
    (DVG), the futures of clip `seed` of its own training data."""
    if not backend.needs_context:
        return backend.sample(nets, seeds, frames, device)
    context = backend.dataset_clips(None, seeds, backend.context_frames(), device)
    return backend.predict(nets, context, seeds, frames, device).videos


def sample(run_or_checkpoint: Path, out_dir: Path, options: Mapping[str, Any] | None = None,
           device: str = "auto", console: Console | None = None) -> SampleResult:
    """Write sample.num videos (video i from sample.seed + i) as mp4 files, plus a grid mp4 and a contact sheet.

    `options` replace values of the run's sample section, by name (the backend's sample config: num, frames,
    fps, seed, batch_size, and its own, such as a diffusion sampler's steps or StyleGAN-V's truncation); they
    are checked as the recipe's are, and one the backend does not take is a one-line error."""
    from vidgen.core.io import make_grid, write_contact_sheet, write_mp4

    console = console or Console(stderr=True)
    dev = resolve_device(device)
    checkpoint = find_checkpoint(run_or_checkpoint)
    recipe, backend, step = _load(checkpoint, dev)
    cfg = recipe.sample_options(**(options or {}))
    ensure_writable_dir(out_dir)
    frames = recipe.output_frames(cfg)
    fps = recipe.output_fps(cfg)
    stop = cfg.seed + cfg.num

    videos: list[Path] = []
    previews = []  # only the first PREVIEW_VIDEOS are kept in memory, for the grid and the contact sheet
    quality = _ReferenceQuality()
    details: list[dict[str, Any]] = []  # per video, from a predicting backend (DVG: its trigger decisions)
    with torch.no_grad(), task_progress(console, "sample", total=cfg.num) as advance:
        for start in range(cfg.seed, stop, cfg.batch_size):
            # Seeds batch by batch: a list of every seed would cost memory in proportion to --num up front.
            batch_seeds = list(range(start, min(start + cfg.batch_size, stop)))
            prediction = generate(backend, backend.networks, batch_seeds, frames, dev, cfg)
            generated = layout.to_uint8(prediction.videos.cpu())
            if prediction.details is not None:
                details.extend(prediction.details)
            references = backend.references(batch_seeds, frames, dev, cfg)
            if references is not None:  # the real clips the samples should match (a VQ-VAE's inputs ...)
                references = layout.to_uint8(references.cpu())
                quality.add(generated, references)
                for video_seed, video in zip(batch_seeds, references.numpy()):
                    path = out_dir / f"{REFERENCE_PREFIX}{video_seed:06d}.mp4"
                    with _writing(path, len(videos), cfg.num, out_dir):
                        write_mp4(path, video, fps=fps)
            for video_seed, video in zip(batch_seeds, generated.numpy()):
                path = out_dir / f"sample-{video_seed:06d}.mp4"
                with _writing(path, len(videos), cfg.num, out_dir):
                    write_mp4(path, video, fps=fps)
                videos.append(path)
                if len(previews) < PREVIEW_VIDEOS:
                    previews.append(video)
            advance(len(batch_seeds))
    grid = out_dir / "grid.mp4"
    with _writing(grid, len(videos), cfg.num, out_dir):
        write_mp4(grid, make_grid(previews), fps=fps)
    sheet = out_dir / "contact_sheet.png"
    with _writing(sheet, len(videos), cfg.num, out_dir):
        write_contact_sheet(sheet, previews)
    # Provenance: every sampling option in force (the run's defaults and the given ones); the frame count
    # written (super-resolution keeps its input's). The seeds, a range, as its start and count (a list would
    # grow with --num).
    with _writing(out_dir / SAMPLES_MANIFEST, len(videos), cfg.num, out_dir):
        write_samples_manifest(out_dir, videos, checkpoint=str(checkpoint), step=step, model=recipe.model.name,
                               seeds={"start": cfg.seed, "count": cfg.num}, frames=previews[0].shape[0], fps=fps,
                               options=dataclasses.asdict(cfg), reference_quality=quality.summary(),
                               **({"predictions": details} if details else {}))
    return SampleResult(videos, grid, sheet, quality.summary())


@contextlib.contextmanager
def _writing(path: Path, written: int, num: int, out_dir: Path) -> Iterator[None]:
    """An IO error writing `path` (a full disk, a read-only mount) as one line that says how far sampling got."""
    try:
        yield
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}; {written} of {num} videos were written to "
                        f"{out_dir}; free some space or choose another --out, then sample again") from None


def write_preview(backend: Backend, nets: Mapping[str, nn.Module], recipe: Recipe, path: Path,
                  device: torch.device) -> np.ndarray:
    """A grid mp4 of the first PREVIEW_DURING_TRAINING videos of the recipe's sample section, from `nets` (the
    training loop's EMA copies); returns the grid, uint8 [T, H, W, 3], for the training viewers."""
    from vidgen.core.io import make_grid, write_mp4

    cfg = recipe.sample
    seeds = list(range(cfg.seed, cfg.seed + min(cfg.num, PREVIEW_DURING_TRAINING)))
    with torch.no_grad():
        videos = unprompted_videos(backend, nets, seeds, recipe.output_frames(), device)
    frames = layout.to_uint8(videos.cpu()).numpy()
    grid = make_grid(list(frames))
    write_mp4(path, grid, fps=recipe.output_fps())
    return grid
