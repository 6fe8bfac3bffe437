"""Evaluation: FVD, FID and KVD of generated videos against real data, with the real pretrained detectors.

    evaluate(real, fake, ["fvd2048_16f", "fid50k"]) -> EvalResult

- real: a dataset (folder of videos, folder of frame folders, zip), `synthetic[:key=value,...]`, or a stats
  file written by --save-stats.
- fake: a folder of videos (each scored from frame 0), or a run directory / checkpoint, sampled on the fly
  with its EMA weights (nothing is written).

    evaluate_repeats(real, fake, metrics, repeats=5) -> EvalResult with each value the mean of 5 draws, and std
    evaluate_repeats(*split_halves("data"), metrics) -> the real-versus-real floor of "data"

evaluate_repeats is a loop around evaluate() over independent seeds; split_halves makes two disjoint halves of
one dataset (DatasetHalf), one scored as REAL, the other as FAKE with real-style clips.

Stages: resolve the protocols and load the detectors (verifying their weights) -> open the fake source ->
real statistics per protocol (from a stats file, the cache, or by extracting features) -> fake statistics
-> the distance of each protocol. Protocols that see the same clips (fvd2048_16f and kvd2048_16f) share one
pass over the videos. Real statistics are cached under $VIDGEN_HOME/stats keyed by the data's fingerprint,
the protocol's settings, the detector's sha256 and the seed, so a second evaluation against the same data
does no real-side work; a cache that cannot be written is skipped with one warning. Output files are checked
before the work, and a write that fails after it still hands back the scores (OutputNotWritten).
"""

from __future__ import annotations

import dataclasses
import functools
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import torch
from rich.console import Console
from rich.markup import escape
from torch import nn

from vidgen import __version__
from vidgen.core import distributed
from vidgen.core.config import DataConfig, Recipe
from vidgen.core.data.sources import Video
from vidgen.core.device import resolve_device
from vidgen.core.distributed import DistInfo
from vidgen.core.progress import task_progress
from vidgen.core.run_dir import check_output_file
from vidgen.errors import ConfigError, UserError
from vidgen.metrics.detectors import Detector, load_detector, vidgen_home
from vidgen.metrics.features import ClipDataset, clip_batches, extract_features, generated_batches
from vidgen.metrics.frechet import frechet_distance
from vidgen.metrics.gate import exceeded
from vidgen.metrics.kvd import kernel_distance
from vidgen.metrics import statsfile
from vidgen.metrics.protocols import Protocol, get_protocols, select_fake_clips, select_real_clips
from vidgen.metrics.sources import SyntheticSpec, folder_fingerprint, index_videos, is_run, parse_synthetic
from vidgen.metrics.stats import FeatureBank, MomentAccumulator
from vidgen.metrics.statsfile import RealStats, cache_path

if TYPE_CHECKING:
    from vidgen.models.base import Backend

JSON_SCHEMA = "vidgen-eval/1"
RealOrigin = Literal["computed", "cache", "file"]
T = TypeVar("T")


@dataclass(frozen=True)
class MetricResult:
    name: str
    label: str
    """The name, with "(n=...)" when fewer samples than the protocol asks for were used."""
    value: float
    protocol: Protocol
    detector: str
    detector_sha256: str
    num_real: int
    num_fake: int
    real_stats: RealOrigin | str
    """Where the real statistics came from: computed now, the cache, or a stats file (several draws: their
    origins joined by '+', e.g. 'cache+computed')."""
    std: float | None = None
    """Several draws (evaluate_repeats): the sample standard deviation (ddof 1) of their values; `value` is
    their mean."""
    draws: tuple[float, ...] = ()
    """Several draws: the value of each, in seed order (empty for one)."""


class MetricTable:
    """A result's `metrics` (each with a name and a value) looked up by name, and as {name: value}."""

    metrics: tuple[Any, ...]

    def __getitem__(self, name: str) -> Any:
        for metric in self.metrics:
            if metric.name == name:
                return metric
        raise KeyError(name)

    def values(self) -> dict[str, float]:
        return {m.name: m.value for m in self.metrics}


@dataclass(frozen=True)
class EvalResult(MetricTable):
    metrics: tuple[MetricResult, ...]
    real: str
    fake: str
    seed: int
    device: str
    saved_stats: str | None = None
    seeds: tuple[int, ...] = ()
    """Several draws (evaluate_repeats): the seed of each; `seed` is the first."""

    def to_json(self, thresholds: Mapping[str, float] | None = None) -> dict[str, Any]:
        """Everything needed to compare or reproduce the scores: values, protocols, detector hashes, sample
        counts, seed, vidgen version; and the gate's verdict when thresholds are given."""
        thresholds = dict(thresholds or {})
        failed = exceeded(self.values(), thresholds)
        return {
            "schema": JSON_SCHEMA,
            "vidgen_version": __version__,
            "real": self.real,
            "fake": self.fake,
            "seed": self.seed,
            "device": self.device,
            "metrics": {m.name: {
                "value": m.value, "label": m.label, "num_real": m.num_real, "num_fake": m.num_fake,
                "real_stats": m.real_stats, "detector": {"name": m.detector, "sha256": m.detector_sha256},
                "protocol": m.protocol.to_dict(),
                # Several draws: value is their mean (what the gate compares).
                **({"std": m.std, "values": list(m.draws), "repeats": len(m.draws)} if m.draws else {}),
            } for m in self.metrics},
            "thresholds": thresholds,
            "exceeded": [name for name, _, _ in failed],
            "passed": not failed,
            "saved_stats": self.saved_stats,
            **({"seeds": list(self.seeds)} if self.seeds else {}),
        }


class OutputNotWritten(UserError):
    """The scores were computed but an output could not be written (a full disk, a read-only mount): `what`
    names it and why; `result` keeps the scores, so the caller can still show them."""

    def __init__(self, what: str, result: EvalResult) -> None:
        super().__init__(f"could not write {what}")
        self.what = what
        self.result = result


# ----------------------------------------------------------------------------------------------------------
# Evaluation


@dataclass(frozen=True)
class DatasetHalf:
    """One of two disjoint halves of a dataset, for the real-versus-real floor (split_halves): the videos at even
    (half 0) or odd (half 1) positions of its video list (a folder's, sorted by name; the synthetic set's, by
    index). Even/odd rather than a seeded permutation: the halves do not change with the seed, so each half's
    real statistics are cached like a dataset's, and repeated draws vary the clips only.

    As REAL, a half is scored as any dataset (its clips from the seed). As FAKE, its clips are taken as real
    clips are (a random subset when it has more videos than wanted, a random offset per video), not from frame 0:
    a dataset's videos are not aligned at t = 0 as generated ones are. They are drawn from seed + 1, so that the
    two halves' subsets and offsets are independent draws rather than the same positions twice."""

    data: str
    half: Literal[0, 1]

    def __str__(self) -> str:
        return f"{self.data} [{('even', 'odd')[self.half]} half]"

    def videos(self, warn: Callable[[str], None]) -> list[Video]:
        spec = parse_real(self.data, SyntheticSpec.from_data(DataConfig(), 0))
        return halves(real_videos(self.data, spec, warn))[self.half]


def split_halves(data: str | Path) -> tuple[DatasetHalf, DatasetHalf]:
    """(REAL, FAKE) for the real-versus-real floor of `data`: its even- and odd-position videos."""
    return DatasetHalf(str(data), 0), DatasetHalf(str(data), 1)


def halves(items: Sequence[T]) -> tuple[list[T], list[T]]:
    """The items at even positions and those at odd positions: disjoint, and together all of them."""
    return list(items[0::2]), list(items[1::2])


def evaluate_repeats(real: str | Path | DatasetHalf, fake: str | Path | GeneratorSource | DatasetHalf,
                     metrics: str | Sequence[str | Protocol], *, repeats: int = 1, seed: int = 0,
                     num_fake: int | None = None, save_stats: Path | None = None, console: Console | None = None,
                     **options: Any) -> EvalResult:
    """evaluate() over `repeats` independent draws: each metric's value is their mean, with the std and every
    draw's value; one draw is evaluate() itself, unchanged. Draw r runs with seed_r = seed + r·N, N the fake
    videos per metric (num_fake, else the largest protocol count): a run as FAKE generates the seeds seed_r ..
    seed_r + N − 1, which no other draw uses, and the real clips (subset and offsets) are drawn from seed_r, each
    draw's real statistics cached under its own seed. A FAKE folder has fixed videos, so only the real clips
    change. `save_stats` saves the first draw's real statistics. `options`: evaluate()'s other keywords."""
    if repeats < 1:
        raise ConfigError(f"--repeats must be >= 1 (the number of draws), got {repeats}")
    if repeats == 1:
        return evaluate(real, fake, metrics, seed=seed, num_fake=num_fake, save_stats=save_stats, console=console,
                        **options)
    protocols = get_protocols(metrics)
    count = num_fake or max(p.num_videos for p in protocols)
    seeds = [seed + r * count for r in range(repeats)]
    console = console or Console(stderr=True)
    draws, unwritten = [], None
    for r, draw_seed in enumerate(seeds):
        console.print(f"draw {r + 1}/{repeats} (seed {draw_seed})", highlight=False)
        try:
            draws.append(evaluate(real, fake, protocols, seed=draw_seed, num_fake=num_fake,
                                  save_stats=save_stats if r == 0 else None, console=console, **options))
        except OutputNotWritten as exc:  # the scores exist: finish the draws, then say what was not written
            draws.append(exc.result)
            unwritten = exc.what
    result = _combine_draws(draws, seeds)
    if unwritten is not None:
        raise OutputNotWritten(unwritten, result)
    return result


def _combine_draws(draws: Sequence[EvalResult], seeds: Sequence[int]) -> EvalResult:
    """The first draw's result with each value replaced by the draws' mean, and their std and values."""
    metrics = []
    for first in draws[0].metrics:
        values = [draw[first.name].value for draw in draws]
        origins = "+".join(sorted({draw[first.name].real_stats for draw in draws}))
        metrics.append(dataclasses.replace(first, value=statistics.fmean(values), std=statistics.stdev(values),
                                           draws=tuple(values), real_stats=origins))
    return dataclasses.replace(draws[0], metrics=tuple(metrics), seeds=tuple(seeds))


@dataclass(frozen=True)
class _Options:
    seed: int
    device: torch.device
    allow_fewer: bool
    batch_size: int
    workers: int
    console: Console

    def warn(self, message: str) -> None:
        """One yellow line on the console: something was left out or skipped, and scoring goes on."""
        self.console.print(f"[yellow]{escape(message)}[/yellow]", highlight=False, soft_wrap=True)


@dataclass(frozen=True)
class RankShare:
    """This process's part in scoring a generator over the ranks of a job (the training loop's metric): it
    generates and featurises one contiguous block of the seeds, and the blocks' statistics are gathered and
    merged in rank order, which is seed order."""

    rank: int
    world_size: int
    gather: Callable[[Any], list[Any]]
    """All-gather of a picklable value: [rank 0's, rank 1's, ...] on every rank."""

    def block(self, seeds: Sequence[int]) -> list[int]:
        """This rank's seeds: block `rank` of `world_size` near-equal contiguous blocks."""
        start = len(seeds) * self.rank // self.world_size
        stop = len(seeds) * (self.rank + 1) // self.world_size
        return list(seeds[start:stop])


@dataclass(frozen=True)
class GeneratorSource:
    """A trained generator as FAKE, sampled on the fly (a run's EMA weights; the training loop's EMA)."""

    sample: Callable[[list[int], int], torch.Tensor]
    """(seeds, frames) -> float [len(seeds), C, frames, H, W] in [-1, 1]."""
    batch_size: int
    synthetic: SyntheticSpec
    """The run's synthetic dataset settings: what `--real synthetic` means next to this run."""
    ranks: RankShare | None = None
    """Set under several ranks: every rank generates its share of the videos (rank 0 runs evaluate(), the
    others contribute_generated_statistics())."""


def evaluate(real: str | Path | DatasetHalf, fake: str | Path | GeneratorSource | DatasetHalf,
             metrics: str | Sequence[str | Protocol], *, seed: int = 0,
             device: str = "auto", allow_fewer: bool = False, save_stats: Path | None = None,
             detector_dir: Path | None = None, detector_files: Mapping[str, Path] | None = None,
             batch_size: int = 4, workers: int = 2, sample_options: Mapping[str, Any] | None = None,
             use_cache: bool = True, cache_dir: Path | None = None, num_fake: int | None = None,
             console: Console | None = None) -> EvalResult:
    """Score `fake` against `real` with each protocol in `metrics` (names, or Protocol objects for custom
    budgets). `seed` picks the real clips and the fake sample seeds (seed, seed + 1, ...). With
    `allow_fewer`, fewer videos than a protocol asks for (or videos too short for its clips, then left out)
    give a result labelled with the count actually used instead of an error. `batch_size` clips go through
    the detector at once, decoded by `workers` DataLoader processes. `sample_options`: when `fake` is a run,
    sampling options in place of its recipe's (e.g. {"steps": 50, "batch_size": 16}), checked as `vidgen sample`
    checks them. `num_fake`: score this many fake videos per protocol instead of its count (a run generates
    them, a folder gives its first ones), labelled with the count. `save_stats` is checked before any work; if
    writing it fails after scoring, OutputNotWritten carries the result. A DatasetHalf as REAL and FAKE (split_halves)
    scores one half of a dataset against the other; `num_fake` then caps both halves."""
    if batch_size < 1 or workers < 0:
        raise ConfigError(f"batch size must be >= 1 and workers >= 0, got {batch_size} and {workers}")
    protocols = get_protocols(metrics)
    _check_num_fake(num_fake, protocols)
    if save_stats is not None:
        check_output_file(Path(save_stats), "--save-stats", "real-stats.npz")
    dev = resolve_device(device)
    opts = _Options(seed, dev, allow_fewer, batch_size, workers, console or Console(stderr=True))

    # --- Detectors: weights verified before any video is touched ----------------------------------------
    files = dict(detector_files or {})
    detectors = {name: load_detector(name, dev, detector_dir, files.get(name))
                 for name in dict.fromkeys(p.detector for p in protocols)}
    for protocol in protocols:
        if detectors[protocol.detector].resolution != protocol.resolution:
            raise ValueError(f"{protocol.name} resizes to {protocol.resolution}, its detector expects "
                             f"{detectors[protocol.detector].resolution}")

    # --- Fake source: checked before any real-side work (an empty folder, too few or too short videos) ----
    if isinstance(fake, GeneratorSource):
        fake_path, fake_run = Path("<generator>"), fake
    elif isinstance(fake, DatasetHalf):
        fake_path, fake_run = fake, None
    else:
        fake_path = Path(fake)
        fake_run = _open_run(fake_path, dev, sample_options or {}) if is_run(fake_path) else None
    groups = _groups(protocols)
    fake_clips = {} if fake_run is not None else _fake_folder_clips(fake_path, groups, opts, num_fake)

    # --- Real statistics: a stats file, the cache, or one pass per group of protocols --------------------
    real_stats, origins = _real_statistics(real if isinstance(real, DatasetHalf) else str(real), protocols, detectors,
                                           opts, use_cache, Path(cache_dir) if cache_dir else vidgen_home() / "stats",
                                           fake_run.synthetic if fake_run else SyntheticSpec.from_data(DataConfig(), 0),
                                           num_fake if isinstance(real, DatasetHalf) else None)

    # --- Fake statistics: one pass per group ------------------------------------------------------------
    fake_stats: dict[str, MomentAccumulator | FeatureBank] = {}
    fake_counts: dict[str, int] = {}
    for group in groups:
        first, detector = group[0], detectors[group[0].detector]
        if fake_run is not None:
            count = num_fake or first.num_videos
            sinks = _generated_statistics(fake_run, group, detector, range(seed, seed + count), dev,
                                          opts.console)
        else:
            clips = fake_clips[first.clip_key]
            count = len(clips)
            sinks = {p.name: _make_sink(p, detector, count) for p in group}
            with task_progress(opts.console, f"fake {'+'.join(p.name for p in group)}", count) as advance:
                extract_features(clip_batches(clips, batch_size, workers, pin_memory=dev.type == "cuda"),
                                 detector, dev, list(sinks.values()), advance)
        fake_stats.update(sinks)
        fake_counts.update({p.name: count for p in group})

    # --- Scores -----------------------------------------------------------------------------------------
    results = []
    for protocol in protocols:
        ref, gen = real_stats[protocol.name], fake_stats[protocol.name]
        if protocol.statistic == "frechet":
            value = frechet_distance(ref.mean, ref.cov, gen.mean, gen.covariance)
        else:
            value = kernel_distance(ref.features, gen.features, protocol.num_subsets, protocol.subset_size, seed)
        detector = detectors[protocol.detector]
        used = min(ref.count, fake_counts[protocol.name])
        results.append(MetricResult(protocol.name, protocol.label(used), value, protocol, detector.name,
                                    detector.sha256, ref.count, fake_counts[protocol.name], origins[protocol.name]))
    result = EvalResult(tuple(results), str(real), str(fake_path), seed, str(dev))
    if save_stats is not None:
        try:
            statsfile.save_stats(Path(save_stats), [real_stats[p.name] for p in protocols])
        except OSError as exc:  # checked before the work, yet the disk filled or the place changed meanwhile
            raise OutputNotWritten(f"--save-stats {save_stats} ({exc.strerror or exc})", result) from None
        result = dataclasses.replace(result, saved_stats=str(save_stats))
    return result


def _check_num_fake(num_fake: int | None, protocols: Sequence[Protocol]) -> None:
    if num_fake is None:
        return
    if num_fake < 2:
        raise ConfigError(f"--num must be >= 2 (a score needs at least 2 videos), got {num_fake}")
    for protocol in protocols:
        if num_fake > protocol.num_videos:
            raise ConfigError(f"--num {num_fake} is more than the {protocol.num_videos} videos of {protocol.name}; "
                              f"give at most {protocol.num_videos}")


def contribute_generated_statistics(source: GeneratorSource, metrics: Sequence[str | Protocol], *, seed: int,
                                    device: str | torch.device, detector_dir: Path | None = None,
                                    num_fake: int | None = None, console: Console | None = None) -> None:
    """What a rank other than 0 does while rank 0 runs `evaluate(real, source, metrics, seed=seed,
    num_fake=num_fake)` with source.ranks set: generate and featurise its block of the fake videos, group by
    group, and hand the statistics to the gather."""
    protocols = get_protocols(metrics)
    dev = resolve_device(str(device))
    detectors = {name: load_detector(name, dev, detector_dir)
                 for name in dict.fromkeys(p.detector for p in protocols)}
    for group in _groups(protocols):
        first = group[0]
        _generated_statistics(source, group, detectors[first.detector],
                              range(seed, seed + (num_fake or first.num_videos)), dev, console or Console(quiet=True))


def _generated_statistics(source: GeneratorSource, group: Sequence[Protocol], detector: Detector,
                          seeds: Sequence[int], device: torch.device,
                          console: Console) -> dict[str, MomentAccumulator | FeatureBank]:
    """Per protocol of `group` (equal clips), the statistics of one generated video per seed. Under several
    ranks, this rank does its block of the seeds and every rank's statistics are merged in rank order (Chan et
    al.'s merge for moments, rows appended for kernels): the single-process result up to float64 rounding."""
    first = group[0]
    mine = source.ranks.block(seeds) if source.ranks is not None else list(seeds)
    sinks = {p.name: _make_sink(p, detector, len(mine)) for p in group}
    batches = generated_batches(lambda s: source.sample(s, first.span), mine, source.batch_size, first.stride)
    with task_progress(console, f"fake {'+'.join(p.name for p in group)}", len(mine)) as advance:
        extract_features(batches, detector, device, list(sinks.values()), advance)
    if source.ranks is None:
        return sinks
    parts = source.ranks.gather(sinks)  # [{protocol name: sink} of rank 0, of rank 1, ...]
    merged = {}
    for protocol in group:
        sink = _make_sink(protocol, detector, len(seeds))
        for part in (rank_sinks[protocol.name] for rank_sinks in parts):
            if isinstance(part, MomentAccumulator):
                if part.count:  # a rank with no seeds (more ranks than videos) adds nothing
                    sink.merge(part.count, part.mean, part.scatter)
            else:
                sink.update(part.features)
        merged[protocol.name] = sink
    return merged


def _fake_folder_clips(folder: Path | DatasetHalf, groups: Sequence[Sequence[Protocol]], opts: _Options,
                       num_fake: int | None) -> dict[tuple, ClipDataset]:
    """Per group of protocols, the clips of a folder of generated videos (the first `num_fake`, or the
    protocol's count, of the videos long enough, from frame 0), or of a dataset half (as real clips, from
    seed + 1: DatasetHalf), after checking there are enough of them."""
    half = isinstance(folder, DatasetHalf)
    videos = folder.videos(opts.warn) if half else index_videos(folder, "FAKE folder", opts.warn)
    clips = {}
    for group in groups:
        first = group[0]
        wanted = num_fake or first.num_videos
        frames, protocol = [v.num_frames for v in videos], dataclasses.replace(first, num_videos=wanted)
        selection = select_real_clips(frames, protocol, opts.seed + 1) if half else select_fake_clips(frames, protocol)
        check_count(len(selection.videos), len(selection.too_short), first, f"FAKE '{folder}'",
                    opts.allow_fewer, wanted)
        clips[first.clip_key] = ClipDataset([videos[i] for i in selection.videos], selection.starts, first.frames,
                                            first.stride)
    return clips


def _real_statistics(real: str | DatasetHalf, protocols: Sequence[Protocol], detectors: Mapping[str, Detector],
                     opts: _Options, use_cache: bool, cache_dir: Path, synthetic_defaults: SyntheticSpec,
                     limit: int | None = None) -> tuple[dict[str, RealStats], dict[str, RealOrigin]]:
    """Per protocol, the real statistics and where they came from. `limit`: at most this many clips (a dataset
    half scored with --num), a part of the cache key."""
    half = real if isinstance(real, DatasetHalf) else None
    label = f"REAL '{real}'"
    real = half.data if half else real
    path = Path(real).expanduser()
    if half is None and path.suffix == ".npz" and path.is_file():  # a stats file: no video is read
        entries = statsfile.load_stats(path)
        stats = {p.name: statsfile.pick_stats(entries, p, detectors[p.detector].sha256, path) for p in protocols}
        for p in protocols:
            check_count(stats[p.name].count, stats[p.name].too_short, p, f"REAL stats '{real}'", opts.allow_fewer)
        return stats, {p.name: "file" for p in protocols}
    spec = parse_real(real, synthetic_defaults, "or a stats .npz written by --save-stats")
    fingerprint = spec.fingerprint() if spec is not None else folder_fingerprint(path)
    if half is not None:
        fingerprint += f"|half {half.half} of 2" + (f"|at most {limit}" if limit else "")

    stats: dict[str, RealStats] = {}
    origins: dict[str, RealOrigin] = {}
    cache = _Cache(cache_dir, opts.warn) if use_cache else None
    for protocol in protocols:
        cached = cache_path(cache_dir, fingerprint, protocol, detectors[protocol.detector].sha256, opts.seed)
        entry = _read_cache(cached, protocol, detectors[protocol.detector].sha256) if cache else None
        if entry is not None:
            check_count(entry.count, entry.too_short, protocol, label, opts.allow_fewer, limit)
            stats[protocol.name], origins[protocol.name] = entry, "cache"

    missing = [p for p in protocols if p.name not in stats]
    if missing:
        videos = half.videos(opts.warn) if half else real_videos(real, spec, opts.warn)
        for group in _groups(missing):
            for entry in _compute_real(videos, group, detectors[group[0].detector], fingerprint, label, opts, limit):
                stats[entry.protocol.name], origins[entry.protocol.name] = entry, "computed"
                if cache:
                    cache.save(cache_path(cache_dir, fingerprint, entry.protocol, entry.detector_sha256,
                                          opts.seed), entry)
    return stats, origins


def parse_real(real: str, synthetic_defaults: SyntheticSpec, also: str = "") -> SyntheticSpec | None:
    """The synthetic set that REAL names (`synthetic[:key=value,...]`, unset keys from `synthetic_defaults`), or
    None for a dataset path; a path that does not exist is one line (`also`: the other kinds of REAL accepted)."""
    spec = parse_synthetic(real, synthetic_defaults)
    if spec is None and not Path(real).expanduser().exists():
        raise UserError(f"REAL '{real}' does not exist; give a dataset folder or zip{', ' if also else ' or '}"
                        f"'synthetic[:key=value,...]'{', ' + also if also else ''}")
    return spec


def real_videos(real: str, spec: SyntheticSpec | None, warn: Callable[[str], None], channels: int = 3) -> list[Video]:
    """The videos of REAL: the synthetic set `spec` (parse_real; its own channels), or the readable videos of the
    dataset read with `channels` channels (1: in grayscale, as a grayscale run's data is)."""
    if spec is not None:
        return spec.make_videos()
    return index_videos(Path(real).expanduser(), "REAL data", warn, channels=channels)


@dataclass
class _Cache:
    """Writes to the real-statistics cache. A cache that cannot be written (a read-only or unusable
    $VIDGEN_HOME) only costs the next evaluation its real-side work: one warning, and scoring goes on."""

    folder: Path
    warn: Callable[[str], None]
    broken: bool = False

    def save(self, path: Path, entry: RealStats) -> None:
        if self.broken:
            return
        try:
            statsfile.save_stats(path, [entry])
        except OSError as exc:
            self.broken = True
            self.warn(f"cannot write the statistics cache in {self.folder} ({exc.strerror or exc}); scoring goes on "
                      "without it: set VIDGEN_HOME to a writable folder, or pass --no-cache")


def _read_cache(path: Path, protocol: Protocol, detector_sha256: str) -> RealStats | None:
    try:
        if not path.is_file():
            return None
    except OSError:  # an unreadable cache folder is a cache miss
        return None
    try:
        return statsfile.pick_stats(statsfile.load_stats(path), protocol, detector_sha256, path)
    except UserError:  # a damaged or foreign cache file is recomputed and overwritten
        return None


def _compute_real(videos: Sequence[Video], group: Sequence[Protocol], detector: Detector, fingerprint: str,
                  label: str, opts: _Options, limit: int | None = None) -> list[RealStats]:
    """Real statistics of the protocols in `group` (equal clips) from one pass over the chosen clips (at most
    `limit` when given)."""
    first = group[0]
    wanted = limit or first.num_videos
    selection = select_real_clips([v.num_frames for v in videos], dataclasses.replace(first, num_videos=wanted),
                                  opts.seed)
    count = check_count(len(selection.videos), len(selection.too_short), first, label, opts.allow_fewer, wanted)
    clips = ClipDataset([videos[i] for i in selection.videos], selection.starts, first.frames, first.stride)
    sinks = {p.name: _make_sink(p, detector, count) for p in group}
    with task_progress(opts.console, f"real {'+'.join(p.name for p in group)}", count) as advance:
        extract_features(clip_batches(clips, opts.batch_size, opts.workers, opts.device.type == "cuda"),
                         detector, opts.device, list(sinks.values()), advance)
    entries = []
    for protocol in group:
        sink = sinks[protocol.name]
        arrays = ({"mean": sink.mean, "cov": sink.covariance} if isinstance(sink, MomentAccumulator)
                  else {"features": sink.features})
        entries.append(RealStats(protocol, detector.sha256, count, len(selection.too_short), opts.seed,
                                 fingerprint, **arrays))
    return entries


def check_count(count: int, too_short: int, protocol: Protocol, label: str, allow_fewer: bool,
                wanted: int | None = None) -> int:
    """The number of clips, unless it breaks the protocol: short videos or fewer videos than `wanted` (default:
    the protocol's count) are errors unless allow_fewer; fewer than 2 is always an error (no covariance, no
    unbiased MMD)."""
    wanted = wanted or protocol.num_videos
    if too_short and not allow_fewer:
        raise UserError(f"{too_short} videos in {label} are shorter than {protocol.name}'s clips of "
                        f"{protocol.span} frames (frames={protocol.frames}, stride={protocol.stride}); pass "
                        "--allow-fewer to leave them out, or pick a metric with shorter clips")
    if count < wanted and not allow_fewer:
        raise UserError(f"{protocol.name} needs {wanted} videos, {label} has {count} long enough; "
                        f"pass --allow-fewer to score with {count} (reported as '{protocol.label(count)}')")
    if count < 2:
        raise UserError(f"{label} has {count} video(s) usable for {protocol.name}; a score needs at least 2")
    return count


def _make_sink(protocol: Protocol, detector: Detector, count: int) -> MomentAccumulator | FeatureBank:
    if protocol.statistic == "frechet":
        return MomentAccumulator(detector.dim)
    return FeatureBank(detector.dim, count * (protocol.frames if detector.per_frame else 1))


def _groups(protocols: Sequence[Protocol]) -> list[list[Protocol]]:
    """Protocols grouped by the clips they see (in first-appearance order)."""
    groups: dict[tuple, list[Protocol]] = {}
    for protocol in protocols:
        groups.setdefault(protocol.clip_key, []).append(protocol)
    return list(groups.values())


def _open_run(path: Path, device: torch.device, options: Mapping[str, Any]) -> GeneratorSource:
    from vidgen.sample import load_for_sampling

    recipe, backend = load_for_sampling(path, device)
    if backend.needs_context:
        raise UserError(f"FAKE '{path}' is a '{recipe.model.name}' run, which only continues given frames; score it "
                        "with the prediction metrics, e.g. --metrics pred_psnr_c5_n10_best100,pred_fvd_c5_n10_k100")
    sample = recipe.sample_options(**options)

    def generate(seeds: list[int], frames: int) -> torch.Tensor:
        return backend.sample(backend.networks, seeds, frames, device, sample)

    return GeneratorSource(generate, sample.batch_size, synthetic_of(recipe))


def synthetic_of(recipe: Recipe) -> SyntheticSpec:
    """What `--real synthetic` means next to a run: its own synthetic data (with its seed) if it trained on the
    synthetic set, else the defaults with seed 0."""
    if recipe.data.source == "synthetic":
        return SyntheticSpec.from_data(recipe.data, recipe.run.seed)
    return SyntheticSpec.from_data(DataConfig(), 0)


# ----------------------------------------------------------------------------------------------------------
# The metric during training


def score_during_training(backend: Backend, nets: Mapping[str, nn.Module], recipe: Recipe, device: torch.device,
                          console: Console, dist: DistInfo) -> tuple[str, float] | None:
    """train.eval_metric of the networks `nets` (the EMA copies) against the real data (whose statistics the
    cache keeps): (label, score) on rank 0, None on the others. Every rank generates and featurises its block of
    the fake videos' seeds; rank 0 gathers their statistics, so the score is the one a single process gets for
    the same seeds."""
    cfg = recipe.train
    protocol = get_protocols([cfg.eval_metric])[0]
    if cfg.eval_videos is not None:
        protocol = dataclasses.replace(protocol, num_videos=cfg.eval_videos)

    def generate(seeds: list[int], frames: int) -> torch.Tensor:
        return backend.sample(nets, seeds, frames, device)

    ranks = (RankShare(dist.rank, dist.world_size, functools.partial(distributed.all_gather_objects, dist))
             if dist.active else None)
    source = GeneratorSource(generate, recipe.sample.batch_size,
                             SyntheticSpec.from_data(recipe.data, recipe.run.seed), ranks)
    with torch.no_grad():
        if not dist.is_main:  # rank 0 computes the real side meanwhile, then joins the gather
            contribute_generated_statistics(source, [protocol], seed=recipe.run.seed, device=device)
            return None
        # allow_fewer: a small dataset must not end a long run; the label then carries the count used.
        result = evaluate(cfg.eval_real or recipe.data.source, source, [protocol], seed=recipe.run.seed,
                          device=str(device), allow_fewer=True, console=console)
    return result.metrics[0].label, result.metrics[0].value
