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
    resolution: Annotated[int, typer.Option(help="Side of the square frames (short side resized, centre crop): "
                                            "the recipe's data.resolution.")],
    fps: Annotated[Optional[float], typer.Option(help="Resample every video to this frame rate (default: keep "
                                                 "every frame).")] = None,
    layout: Annotated[Optional[str], typer.Option(
        "--format", help="frames-zip (a zip of PNG frame folders, StyleGAN-V's layout) or shards (uint8 arrays, "
                         "memory-mapped; no decoding). Default: frames-zip if OUT ends in .zip, else shards.")] = None,
    workers: Annotated[int, typer.Option(
        help="Processes converting videos at once (0: in this process).")] = DEFAULT_WORKERS,
) -> None:
    """Resize every video once into a fast-to-read dataset; rerun the same command to resume after a stop."""
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


def register(data_app: typer.Typer, user_errors: Callable) -> None:
    """Add `data prepare` to the `vidgen data` group, wrapped by `user_errors`."""
    data_app.command("prepare")(user_errors(prepare_command))
