"""The `vidgen` command line: a thin Typer app over the library entry points in vidgen/.

Each command parses options and forwards to an ordinary function. torch is imported inside command bodies only,
so `vidgen --help` stays fast. A UserError becomes one red line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import functools
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from vidgen import __version__
from vidgen.errors import UserError

app = typer.Typer(name="vidgen", help="Train, sample and evaluate video generators (StyleGAN-V, Video Diffusion, VideoGPT, TGANv2).",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
data_app = typer.Typer(help="Datasets: write the built-in synthetic set, inspect a dataset.", no_args_is_help=True)
app.add_typer(data_app, name="data")

out = Console()
err = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps.")]


def user_errors(fn: F) -> F:
    """Turn a UserError into one line and its exit code; Ctrl-C into exit 130. Bugs keep their traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            err.print(f"[bold red]error:[/bold red] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


@app.command()
@user_errors
def train(
    recipe: Annotated[str, typer.Argument(help="Built-in recipe name, a recipe .yaml, or a run directory to resume.")],
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Run directory (default: runs/<run.name>).")] = None,
    overrides: Annotated[Optional[list[str]], typer.Option("--set", help="Override a recipe value: key.path=value (repeatable).")] = None,
    device: DeviceOpt = "auto",
    precision: Annotated[Optional[str], typer.Option(help="fp32, bf16 or fp16 (sets train.precision).")] = None,
    max_steps: Annotated[Optional[int], typer.Option(help="Train up to this step (sets train.max_steps).")] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Start over instead of resuming the run directory.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="With --fresh: discard the run directory's checkpoints.")] = False,
    gpus: Annotated[Optional[int], typer.Option("--gpus", help="Train on N GPUs of this machine: relaunches this command under torchrun, one process per GPU (with --device cpu: N CPU processes). train.batch_size is per GPU.")] = None,
    max_batch_search: Annotated[bool, typer.Option("--max-batch-search", help="Instead of training: find the largest train.batch_size whose step fits in GPU memory.")] = False,
) -> None:
    """Train a model. Run again on the same run directory to resume from its latest checkpoint."""
    from vidgen.train import resolve_run, train as run_training

    settings = list(overrides or [])
    if precision is not None:
        settings.append(f"train.precision={precision}")
    if max_steps is not None:
        settings.append(f"train.max_steps={max_steps}")
    resolved, run_dir = resolve_run(recipe, out_dir, settings)  # a bad recipe fails here, once, not per rank
    if max_batch_search:
        _report_max_batch(resolved, device)
        return
    if gpus is not None:
        from vidgen_cli.launch import check_gpus, exec_torchrun

        check_gpus(gpus, device)
        if gpus > 1:
            exec_torchrun(gpus, [recipe, *(["--out", str(out_dir)] if out_dir else []),
                                 *(arg for item in settings for arg in ("--set", item)), "--device", device,
                                 *(["--fresh"] if fresh else []), *(["--overwrite"] if overwrite else [])])
    result = run_training(resolved, run_dir, device=device, fresh=fresh, overwrite=overwrite, console=err)
    if result.is_main:  # under torchrun, rank 0 speaks for the job
        out.print(f"run: {result.run_dir}\ncheckpoint: {result.checkpoint} (step {result.step})", highlight=False)
    if result.interrupted:
        raise typer.Exit(130)


def _report_max_batch(recipe: Any, device: str) -> None:
    from vidgen.batch_search import find_max_batch
    from vidgen.core.device import resolve_device

    result = find_max_batch(recipe, resolve_device(device))
    tried = ", ".join(f"{size} {'fits' if fits else 'out of memory'}" for size, fits in result.tried.items())
    out.print(f"largest batch that fits: {result.batch_size} (tried {tried}); "
              f"train with --set train.batch_size={result.batch_size}", highlight=False)


@app.command()
@user_errors
def sample(
    source: Annotated[Path, typer.Argument(help="A run directory (latest checkpoint) or a checkpoint file.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the mp4 files, grid and contact sheet.")],
    num: Annotated[Optional[int], typer.Option(help="Number of videos (default: the recipe's sample.num).")] = None,
    frames: Annotated[Optional[int], typer.Option(help="Frames per video.")] = None,
    fps: Annotated[Optional[float], typer.Option(help="Frame rate of the written videos.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Video i uses seed + i.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Videos generated at once (does not change them).")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Sampler steps (diffusion).")] = None,
    sampler: Annotated[Optional[str], typer.Option(help="Diffusion: ancestral (default), pc, ddim or heun.")] = None,
    eta: Annotated[Optional[float], typer.Option(help="Diffusion, --sampler ddim: noise eta (0: deterministic; 1: the ancestral posterior variance; default: model.ddim_eta).")] = None,
    time_offset: Annotated[Optional[float], typer.Option(help="StyleGAN-V: time of the first frame, in training frames.")] = None,
    truncation: Annotated[Optional[float], typer.Option(help="StyleGAN-V: truncation psi (1: none; lower: less variety, higher quality).")] = None,
    label: Annotated[Optional[int], typer.Option("--class", help="Class-conditional diffusion or VideoGPT: the class of every video (default: video i gets class (seed + i) mod classes).")] = None,
    guidance: Annotated[Optional[float], typer.Option(help="Diffusion: classifier-free guidance weight w (default: model.guidance).")] = None,
    extend: Annotated[Optional[Path], typer.Option(help="Diffusion: continue this video to --frames frames (reconstruction guidance).")] = None,
    upsample: Annotated[Optional[Path], typer.Option(help="Diffusion: generate this low-resolution video at the model's resolution.")] = None,
    cond_method: Annotated[Optional[str], typer.Option(help="Diffusion, --extend: reconstruction (default) or replacement.")] = None,
    cond_frames: Annotated[Optional[int], typer.Option(help="Diffusion, --extend: frames each window is conditioned on (default: half the training clip).")] = None,
    guidance_recon: Annotated[Optional[float], typer.Option(help="Diffusion, --extend/--upsample: reconstruction guidance weight w_r (default: model.guidance_recon).")] = None,
    temperature: Annotated[Optional[float], typer.Option(help="VideoGPT: divides the logits (> 0; below 1 sharper).")] = None,
    top_k: Annotated[Optional[int], typer.Option(help="VideoGPT: draw each code among the k most likely.")] = None,
    top_p: Annotated[Optional[float], typer.Option(help="VideoGPT: nucleus sampling, among the most likely codes whose probability sums to p, in (0, 1].")] = None,
    context: Annotated[Optional[Path], typer.Option(help="Predict: a video whose first --context-frames frames every sample continues (DVG, VDM, frame-conditioned VideoGPT); --num K gives K futures of it.")] = None,
    context_frames: Annotated[Optional[int], typer.Option(help="Predict: frames of --context to condition on (default: the model's own count); --frames counts them too.")] = None,
    trigger: Annotated[Optional[str], typer.Option(help="DVG: when a predicted frame is drawn from the Gaussian process instead of the LSTM: gp (the first predicted frame, then the variance trigger; default), none (the LSTM alone) or every:M (every M-th predicted frame).")] = None,
    trigger_window: Annotated[Optional[int], typer.Option(help="DVG, --trigger gp: the recent frames whose GP variances set the threshold (default 12).")] = None,
    reconstruct: Annotated[Optional[str], typer.Option(help="VQ-VAE: reconstruct the clips of this dataset (a folder, zip or 'synthetic'; default: the run's data), written beside the originals with PSNR and SSIM.")] = None,
    device: DeviceOpt = "auto",
) -> None:
    """Generate videos with a trained run's EMA weights. Each option replaces the run's sample-section value of
    the same name; an option its model family does not take is an error."""
    from vidgen.sample import REFERENCE_PREFIX, sample as run_sampling

    given = {"num": num, "frames": frames, "fps": fps, "seed": seed, "batch_size": batch_size, "steps": steps,
             "sampler": sampler, "eta": eta, "label": label, "guidance": guidance, "extend": extend,
             "upsample": upsample, "cond_method": cond_method, "cond_frames": cond_frames,
             "guidance_recon": guidance_recon, "time_offset": time_offset, "truncation": truncation,
             "temperature": temperature, "top_k": top_k, "top_p": top_p, "context": context,
             "context_frames": context_frames, "trigger": trigger, "trigger_window": trigger_window,
             "reconstruct": reconstruct}
    options = {name: str(value) if isinstance(value, Path) else value
               for name, value in given.items() if value is not None}
    result = run_sampling(source, out_dir, options, device=device, console=err)
    for path in result.videos:
        out.print(str(path), highlight=False)
    out.print(f"grid: {result.grid}\ncontact sheet: {result.contact_sheet}", highlight=False)
    quality = result.reference_quality
    if quality is not None:
        out.print(f"against the real clips beside them ({REFERENCE_PREFIX}*.mp4), per frame: PSNR "
                  f"{quality['psnr']:.2f} dB, SSIM {quality['ssim']:.4f} ({quality['videos']} videos)",
                  highlight=False)


@app.command("export")
@user_errors
def export_run(
    run: Annotated[Path, typer.Argument(help="A run directory.")],
    out_dir: Annotated[Path, typer.Option("--out", help="New (or empty) folder for model.safetensors, config.yaml and README.md.")],
    checkpoint: Annotated[str, typer.Option(help="latest, best (checkpoints/best.pt) or a checkpoint file.")] = "latest",
) -> None:
    """Write a run's sampling weights (safetensors), recipe and model card to a folder to share; `vidgen sample`
    and `vidgen eval --fake` take it as they take a run."""
    from vidgen.export import export

    result = export(run, out_dir, checkpoint)
    out.print(f"exported {result.checkpoint} (step {result.step}, {result.parameters:,} parameters) to "
              f"{result.out_dir}", highlight=False)


@app.command("import")
@user_errors
def import_checkpoint(
    family: Annotated[str, typer.Argument(help="The family whose reference code wrote the file: stylegan-v.")],
    checkpoint: Annotated[Path, typer.Argument(help="The file, e.g. StyleGAN-V's network-snapshot-*.pkl.")],
    out_dir: Annotated[Path, typer.Option("--out", help="New (or empty) folder for the export.")],
) -> None:
    """Convert a checkpoint of a family's official code into a vidgen export, reading it as data (no code in it
    runs); `vidgen sample` and `vidgen eval --fake` take the folder as they take a run."""
    from vidgen.import_official import import_official

    result = import_official(family, checkpoint, out_dir)
    out.print(f"imported {checkpoint} as a '{result.family}' model ({result.parameters:,} parameters) into "
              f"{result.out_dir}", highlight=False)


@app.command("recipes")
@user_errors
def list_recipes() -> None:
    """List the built-in recipes."""
    from vidgen.recipe import builtin_recipes, load_recipe

    table = Table("recipe", "model", "description")
    for name in builtin_recipes():
        recipe = load_recipe(name)
        table.add_row(name, recipe.model.name, recipe.run.description)
    out.print(table)


@app.command()
@user_errors
def info() -> None:
    """Versions, devices and the default device."""
    import av
    import numpy
    import torch

    from vidgen.core.device import describe_devices, resolve_device

    versions = Table("package", "version", title="versions")
    for name, version in (("vidgen", __version__), ("python", platform.python_version()),
                          ("torch", torch.__version__), ("cuda (torch build)", torch.version.cuda or "none"),
                          ("av (PyAV)", av.__version__), ("ffmpeg", _ffmpeg_version()),
                          ("numpy", numpy.__version__)):
        versions.add_row(name, str(version))
    out.print(versions)
    devices = Table("device", "name", "memory", "available", title="devices")
    for row in describe_devices():
        devices.add_row(*row.values())
    out.print(devices)
    out.print(f"default device: {resolve_device('auto')}")


@data_app.command("synth")
@user_errors
def data_synth(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write the mp4 files to.")],
    num: Annotated[int, typer.Option(help="Number of videos.")] = 64,
    frames: Annotated[int, typer.Option(help="Frames per video.")] = 64,
    size: Annotated[int, typer.Option(help="Width and height in pixels.")] = 64,
    fps: Annotated[float, typer.Option(help="Frame rate.")] = 8.0,
    seed: Annotated[int, typer.Option(help="Video i is rendered from seed (seed, i).")] = 0,
    max_shapes: Annotated[int, typer.Option(help="Each video shows 1..this many shapes.")] = 3,
    colours: Annotated[int, typer.Option(help="Use the first this many of the 7 palette colours.")] = 7,
    textures: Annotated[bool, typer.Option(help="Striped and checkered shapes besides solid ones.")] = True,
    action_changes: Annotated[bool, typer.Option(help="Each shape changes its action once, in the middle half of the video (a new direction, or it starts to spin): data for video prediction.")] = False,
) -> None:
    """Write the built-in synthetic dataset (moving shapes) as mp4 files."""
    from vidgen.core.run_dir import ensure_writable_dir
    from vidgen.core.synthetic import SceneStyle, check_colours, write_synthetic_dataset

    for name, value in (("--num", num), ("--frames", frames), ("--size", size), ("--fps", fps),
                        ("--max-shapes", max_shapes)):
        if not 0 < value < float("inf"):  # (NaN fails it too)
            raise UserError(f"{name} must be a finite number > 0, got {value}")
    check_colours(colours, "--colours", UserError)  # UserError (exit 1), like the other options here
    ensure_writable_dir(out_dir)
    paths = write_synthetic_dataset(out_dir, num=num, frames=frames, size=size, fps=fps, seed=seed,
                                    style=SceneStyle(max_shapes, colours, textures, action_changes,
                                                     duration=frames / fps if action_changes else None))
    out.print(f"wrote {len(paths)} videos to {out_dir}", highlight=False)


@data_app.command("info")
@user_errors
def data_info(path: Annotated[Path, typer.Argument(help="A dataset: video folder, frame folders or zip.")]) -> None:
    """Count, resolution, fps and frame counts of a dataset, and any unreadable files."""
    from vidgen.core.data.info import dataset_info

    summary = dataset_info(path)
    table = Table("property", "value", title=str(path))
    for key, value in summary.rows():
        table.add_row(key, value)
    out.print(table)
    for bad, reason in summary.unreadable:  # one line each, never wrapped
        err.print(f"[yellow]unreadable:[/yellow] {escape(bad)} ({escape(reason)})", highlight=False, soft_wrap=True)


from vidgen_cli.metrics_cli import register as register_metrics  # noqa: E402  (needs user_errors above)
from vidgen_cli.prepare_cli import register as register_prepare  # noqa: E402

register_metrics(app, user_errors)
register_prepare(data_app, user_errors)


def _ffmpeg_version() -> str:
    import av

    libs = getattr(av, "library_versions", {})
    version = libs.get("libavformat")
    return ".".join(map(str, version)) + " (libavformat)" if version else "unknown"


def main() -> None:
    app(prog_name="vidgen")


if __name__ == "__main__":
    sys.exit(main())
