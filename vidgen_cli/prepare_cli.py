"""`vidgen data prepare`: convert a folder of videos once into resized frames that load fast.

A plain function with Typer annotations; vidgen_cli/main.py registers it with `register(data_app, user_errors)`,
which wraps it in the one-line UserError handler. torch is imported inside the command body only.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

out = Console()
err = Console(stderr=True)
DEFAULT_WORKERS = min(8, os.cpu_count() or 1)
"""One process per core: decoding and PNG encoding are CPU-bound and a video is one task."""


def prepare_command(
    source: Annotated[Path, typer.Argument(metavar="SRC", help="Videos to convert: a folder of videos or frame "
                                           "folders, or a zip of frame folders.")],
    out_path: Annotated[Path, typer.Argument(metavar="OUT", help="The prepared dataset: a .zip (frames-zip) or a "
                                             "folder (shards).")],
    resolution: Annotated[Optional[int], typer.Option(
        help="Side of the square frames (short side resized, centre crop): the recipe's data.resolution. Not for "
             "tokens, whose clips are the VQ-VAE's.")] = None,
    fps: Annotated[Optional[float], typer.Option(help="Resample every video to this frame rate (default: keep "
                                                 "every frame).")] = None,
    layout: Annotated[Optional[str], typer.Option(
        "--format", help="frames-zip (a zip of PNG frame folders, StyleGAN-V's layout), shards (uint8 arrays, "
                         "memory-mapped; no decoding) or tokens (every clip encoded to codes by --vqvae, for "
                         "VideoGPT's prior). Default: frames-zip if OUT ends in .zip, else shards.")] = None,
    vqvae: Annotated[Optional[Path], typer.Option(
        help="--format tokens: the VQ-VAE run (directory or checkpoint) that encodes the clips.")] = None,
    labels: Annotated[bool, typer.Option(
        "--labels", help="--format tokens: store each clip's class (dataset.json or class sub-folders), for "
                         "class-conditional priors.")] = False,
    batch_size: Annotated[int, typer.Option(help="--format tokens: clips encoded at once.")] = 16,
    device: Annotated[str, typer.Option("--device", help="--format tokens: auto, cpu, cuda, cuda:N or mps.")] = "auto",
    workers: Annotated[int, typer.Option(
        help="Processes converting videos at once (0: in this process).")] = DEFAULT_WORKERS,
) -> None:
    """Resize every video once into a fast-to-read dataset, or encode it to tokens; rerun the same command to
    resume after a stop."""
    from vidgen.errors import ConfigError

    if layout == "tokens" or vqvae is not None:
        if layout != "tokens" or vqvae is None or resolution is not None or fps is not None:
            raise ConfigError("tokens are made with --format tokens --vqvae RUN, which sets the clips' frames and "
                              "resolution (no --resolution or --fps)")
        _prepare_tokens(source, out_path, vqvae, labels, batch_size, device)
        return
    if resolution is None:
        raise ConfigError("--resolution is required: the side of the square frames (the recipe's data.resolution)")
    from vidgen.prepare import PrepareConfig, layout_for, prepare_dataset  # imports torch

    cfg = PrepareConfig(resolution=resolution, layout=layout_for(out_path, layout), fps=fps)
    result = prepare_dataset(source, out_path, cfg, workers=workers, console=err)
    for path, reason in result.skipped:
        err.print(f"[yellow]skipped:[/yellow] {path} ({reason})", highlight=False, soft_wrap=True)
    videos = f"{result.videos} video{'s' if result.videos != 1 else ''}"
    if result.already_done:
        out.print(f"{result.out} is already prepared ({videos}, {cfg.describe()}); delete it to prepare it again",
                  highlight=False, soft_wrap=True)
        return
    skipped = f"; skipped {len(result.skipped)}" if result.skipped else ""
    out.print(f"prepared {videos} ({result.frames} frames, {cfg.describe()}) -> {result.out}{skipped}",
              highlight=False, soft_wrap=True)
    out.print(f"train on it with: --set data.source={result.out} --set data.resolution={cfg.resolution}",
              highlight=False, soft_wrap=True)


def _prepare_tokens(source: Path, out_path: Path, vqvae: Path, labels: bool, batch_size: int, device: str) -> None:
    from vidgen.prepare_tokens import prepare_tokens  # imports torch

    result = prepare_tokens(source, out_path, vqvae, labels=labels, batch_size=batch_size, device=device,
                            console=err)
    for path, reason in result.skipped:
        err.print(f"[yellow]skipped:[/yellow] {path} ({reason})", highlight=False, soft_wrap=True)
    grid = "x".join(str(size) for size in result.latent_shape)
    done = "already holds" if result.already_done else "encoded"
    out.print(f"{result.out} {done} {result.clips} clips of {result.videos} videos as {grid} code grids",
              highlight=False, soft_wrap=True)
    out.print(f"train the prior on it with: --set data.source={result.out}", highlight=False, soft_wrap=True)


def register(data_app: typer.Typer, user_errors: Callable) -> None:
    """Add `data prepare` to the `vidgen data` group, wrapped by `user_errors`."""
    data_app.command("prepare")(user_errors(prepare_command))
