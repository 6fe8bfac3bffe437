"""Evaluation of video prediction: how well a run continues real clips (vidgen.metrics.prediction's protocols).

    evaluate_prediction(real, run, ["pred_psnr_c5_n10_best100", "pred_fvd_c5_n10_k100"]) -> PredictionResult

- real: a dataset (folder of videos, folder of frame folders, zip) or `synthetic[:key=value,...]`; not a stats
  file, since the real frames themselves are the context.
- run: a run directory or checkpoint of a family that predicts (Backend.predicts), sampled with its EMA weights;
  or a PredictorSource (a backend with its networks in hand).

Stages, per group of protocols with equal (c, n, K, test videos), which share one generation pass: pick one clip of
c + n frames per real video (evaluate's clip selection: a seeded subset and seeded offsets) -> read the clips a
chunk at a time, resized and converted to the run's resolution and channels as its training data is -> the real
clips' I3D features -> K futures of each clip's first c frames, future k of test video j from seed + j·K + k,
`batch_size` futures at a time -> their I3D features (context included), their per-frame PSNR and SSIM against the
real frames (n predicted frames, 8-bit, float64) and their spread. Only the scores ([N, K, n] floats), the moment
accumulators and the spread of the videos in progress outlive a chunk, so memory does not grow with N·K.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from rich.console import Console
from rich.markup import escape
from torch import nn

from vidgen import __version__
from vidgen.core import layout
from vidgen.core.config import SampleConfig
from vidgen.core.data.dataset import resize_center_crop
from vidgen.core.device import resolve_device
from vidgen.core.progress import task_progress
from vidgen.errors import ConfigError, UserError
from vidgen.evaluate import JSON_SCHEMA, MetricTable, check_count, parse_real, real_videos, synthetic_of
from vidgen.metrics.detectors import Detector, load_detector
from vidgen.metrics.features import ClipDataset, clip_batches, extract_features
from vidgen.metrics.frechet import frechet_distance
from vidgen.metrics.gate import exceeded
from vidgen.metrics.prediction import (PSNR_CAP_DB, Curve, FutureSpread, PredictionProtocol, best_of_k_curve,
                                       check_num, get_prediction_protocols, plot_curves, prediction_groups)
from vidgen.metrics.protocols import Protocol, select_real_clips
from vidgen.metrics.quality import psnr, ssim
from vidgen.metrics.sources import is_run
from vidgen.metrics.stats import MomentAccumulator

if TYPE_CHECKING:
    from vidgen.models.base import Backend

SSIM_MIN_SIDE = 11
"""SSIM's Gaussian window (vidgen.metrics.quality.ssim) needs frames of at least 11x11 pixels."""
PREDICTING_FAMILIES = "dvg, vdm, videogpt with model.context_frames > 0"


@dataclass(frozen=True)
class PredictionMetric:
    name: str
    label: str
    """The name, with "(n=...)" when fewer test videos than the protocol asks for were used."""
    value: float
    """FVD; else the mean of the curve over the predicted frames."""
    curve: tuple[float, ...] | None
    """Per predicted frame c + 1 .. c + n (None for FVD)."""
    protocol: PredictionProtocol
    num_videos: int
    """Test videos used (each with K futures)."""
    detector: str | None = None
    detector_sha256: str | None = None

    def to_json(self) -> dict[str, Any]:
        p = self.protocol
        return {"value": self.value, "label": self.label, "curve": None if self.curve is None else list(self.curve),
                "frames": list(range(p.context + 1, p.context + p.frames + 1)) if self.curve is not None else None,
                "c": p.context, "n": p.frames, "k": p.samples, "num_videos": self.num_videos,
                "detector": None if self.detector is None else {"name": self.detector, "sha256": self.detector_sha256},
                "protocol": p.to_dict()}


@dataclass(frozen=True)
class PredictionResult(MetricTable):
    metrics: tuple[PredictionMetric, ...]
    real: str
    fake: str
    seed: int
    device: str

    def to_json(self, thresholds: Mapping[str, float] | None = None) -> dict[str, Any]:
        """The scores with their curves and protocols, the seed and vidgen version; and the gate's verdict."""
        thresholds = dict(thresholds or {})
        failed = exceeded(self.values(), thresholds)
        return {"schema": JSON_SCHEMA, "kind": "prediction", "vidgen_version": __version__, "real": self.real,
                "fake": self.fake, "seed": self.seed, "device": self.device,
                "metrics": {m.name: m.to_json() for m in self.metrics},
                "thresholds": thresholds, "exceeded": [name for name, _, _ in failed], "passed": not failed}

    def plot(self, path: Path) -> None:
        """The per-frame curves (PSNR, SSIM, diversity; one subplot each) as one PNG."""
        curves = [Curve(m.label, m.protocol.quantity, m.protocol.context, m.curve)
                  for m in self.metrics if m.curve is not None]
        plot_curves(curves, path, title=f"{self.fake} vs {self.real}")


@dataclass(frozen=True)
class PredictorSource:
    """A model that continues given frames, as FAKE: a run's EMA weights (open_predictor), or a backend with its
    networks in hand (tests, notebooks)."""

    backend: Backend
    nets: Mapping[str, nn.Module]
    options: SampleConfig | None = None
    """Its sample config (None: the recipe's)."""
    batch_size: int = 4
    """Futures predicted at once (a run: its sample.batch_size, or --sample-batch-size)."""

    def predict(self, context: torch.Tensor, seeds: Sequence[int], frames: int, device: torch.device) -> torch.Tensor:
        """float [N, C, c, H, W] -> float [N, C, frames, H, W] in [-1, 1], video i from seeds[i]."""
        return self.backend.predict(self.nets, context, seeds, frames, device, self.options).videos


def open_predictor(path: Path, device: torch.device, options: Mapping[str, Any] | None = None) -> PredictorSource:
    """A run directory or checkpoint as a PredictorSource; a folder of videos or a family that cannot predict is
    one line. `options`: sampling options in place of the recipe's, checked as `vidgen sample` checks them."""
    from vidgen.sample import load_for_sampling

    if not is_run(path):
        if not path.exists():
            raise UserError(f"FAKE '{path}' does not exist; prediction metrics need a run directory or checkpoint "
                            f"of a family that predicts ({PREDICTING_FAMILIES})")
        raise UserError(f"FAKE '{path}' is not a run; prediction metrics need a run directory or checkpoint to "
                        "continue the real clips (a folder of generated videos has no context to continue)")
    recipe, backend = load_for_sampling(path, device)
    name = recipe.model.name
    if not backend.predicts:
        raise UserError(f"FAKE '{path}' is a '{name}' run; '{name}' runs cannot continue given frames; prediction "
                        f"metrics need a family that predicts ({PREDICTING_FAMILIES})")
    sample = recipe.sample_options(**(options or {}))
    return PredictorSource(backend, backend.networks, sample, sample.batch_size)


def evaluate_prediction(real: str | Path, fake: str | Path | PredictorSource, metrics: str | Sequence[str], *,
                        seed: int = 0, device: str = "auto", allow_fewer: bool = False, num: int | None = None,
                        batch_size: int = 4, workers: int = 2, sample_options: Mapping[str, Any] | None = None,
                        detector_dir: Path | None = None, detector_files: Mapping[str, Path] | None = None,
                        console: Console | None = None) -> PredictionResult:
    """Score how `fake` continues the clips of `real` with each prediction protocol in `metrics` (pred_* names).

    `seed` picks the test clips (as evaluate() picks real clips) and the futures: future k of test video j (j
    counts the chosen clips in dataset order) is predicted from seed + j·K + k. `num`: test videos per protocol
    instead of its 256 (labelled with the count); with `allow_fewer`, fewer (or videos shorter than c + n frames,
    then left out) give a labelled result instead of an error. `batch_size` real clips go through the detector at
    once, decoded by `workers` DataLoader processes; the futures are predicted the run's sample.batch_size at a
    time (when `fake` is a run, `sample_options`, e.g. {"batch_size": 16, "steps": 50}, replace its recipe's
    sampling options, checked as `vidgen sample` checks them)."""
    if batch_size < 1 or workers < 0:
        raise ConfigError(f"batch size must be >= 1 and workers >= 0, got {batch_size} and {workers}")
    protocols = get_prediction_protocols(metrics)
    check_num(num, protocols)
    dev = resolve_device(device)
    console = console or Console(stderr=True)

    # --- The predictor: a run that cannot predict is refused before any video is read -------------------------
    if isinstance(fake, PredictorSource):
        source, fake_name = fake, "<predictor>"
    else:
        source, fake_name = open_predictor(Path(fake), dev, sample_options), str(fake)
    data = source.backend.recipe.data
    if data.resolution < SSIM_MIN_SIDE:
        for protocol in protocols:
            if protocol.quantity == "ssim":
                raise UserError(f"{protocol.name} needs frames of at least {SSIM_MIN_SIDE}x{SSIM_MIN_SIDE} pixels "
                                f"(SSIM's window); this run makes {data.resolution}x{data.resolution}")

    # --- The detector (FVD only), its weights verified before any video is read ------------------------------
    detector = None
    if any(p.quantity == "fvd" for p in protocols):
        detector = load_detector("i3d", dev, detector_dir, dict(detector_files or {}).get("i3d"))

    # --- The real videos ------------------------------------------------------------------------------------
    real = str(real)
    if Path(real).suffix == ".npz" and Path(real).expanduser().is_file():
        raise UserError(f"REAL '{real}' is a stats file; prediction metrics need the real videos themselves (their "
                        "first frames are the context)")

    def warn(message: str) -> None:
        console.print(f"[yellow]{escape(message)}[/yellow]", highlight=False, soft_wrap=True)

    # Read with the run's channels (grayscale: each frame's luma, as its training data is read).
    spec = parse_real(real, dataclasses.replace(synthetic_of(source.backend.recipe), channels=data.channels))
    if spec is not None and spec.channels != data.channels:
        raise UserError(f"REAL '{real}' asks for {spec.channels}-channel videos, but the run continues "
                        f"{data.channels}-channel frames (data.channels); drop the synthetic 'channels' setting")
    videos = real_videos(real, spec, warn, channels=data.channels)

    # --- One generation pass per group ------------------------------------------------------------------------
    scored: dict[str, PredictionMetric] = {}
    for group in prediction_groups(protocols):
        first = group[0]
        wanted = num or first.num_videos
        clip = Protocol(first.name, "i3d", "frechet", first.num_videos, first.context + first.frames,
                        stride=data.frame_stride)  # the test clips, as evaluate() selects and checks real clips
        selection = select_real_clips([v.num_frames for v in videos], dataclasses.replace(clip, num_videos=wanted),
                                      seed)
        check_count(len(selection.videos), len(selection.too_short), clip, f"REAL '{real}'", allow_fewer, wanted)
        clips = ClipDataset([videos[i] for i in selection.videos], selection.starts, clip.frames, clip.stride)
        for metric in _score_group(group, clips, source, detector, _Settings(seed, dev, batch_size, workers, console)):
            scored[metric.name] = metric
    return PredictionResult(tuple(scored[p.name] for p in protocols), real, fake_name, seed, str(dev))


@dataclass(frozen=True)
class _Settings:
    seed: int
    device: torch.device
    batch_size: int
    workers: int
    console: Console


def _score_group(group: Sequence[PredictionProtocol], clips: ClipDataset, source: PredictorSource,
                 detector: Detector | None, settings: _Settings) -> list[PredictionMetric]:
    """Every protocol of `group` (equal c, n, K) from one pass: K futures of each test clip."""
    first = group[0]
    c, n, K = first.context, first.frames, first.samples
    N = len(clips)
    data = source.backend.recipe.data
    quantities = {p.quantity for p in group}
    scores = {q: torch.empty(N, K, n, dtype=torch.float64) for q in ("psnr", "ssim") if q in quantities}
    spread = FutureSpread(K) if "div" in quantities else None
    real_moments = fake_moments = None
    if "fvd" in quantities:
        assert detector is not None
        real_moments, fake_moments = MomentAccumulator(detector.dim), MomentAccumulator(detector.dim)

    # A chunk holds whole test videos whose K futures fill about one prediction batch (one video when K is larger).
    per_chunk = max(1, source.batch_size // K)
    batches = clip_batches(clips, per_chunk, settings.workers, pin_memory=False)
    with torch.no_grad(), task_progress(settings.console, f"predict {'+'.join(p.name for p in group)}",
                                        N * K) as advance:
        for chunk, raw in enumerate(batches):
            # --- The real clips, as the run's training data: resolution, centre crop, channels ----------------
            truth = _as_model_clips(raw, data.resolution)  # (b, c + n, R, R, channels) uint8
            if real_moments is not None:  # the detector sees gray clips as gray RGB
                extract_features(truth.split(settings.batch_size), detector, settings.device, [real_moments])
            context = layout.to_model(truth[:, :c]).to(settings.device)  # (b, channels, c, R, R)
            first_video = chunk * per_chunk
            units = [(first_video + row, k) for row in range(len(truth)) for k in range(K)]

            # --- K futures per clip, a prediction batch at a time --------------------------------------------
            for start in range(0, len(units), source.batch_size):
                part = units[start:start + source.batch_size]
                rows = [j - first_video for j, _ in part]
                seeds = [settings.seed + j * K + k for j, k in part]
                videos = source.predict(context[rows], seeds, c + n, settings.device)  # (B, channels, c + n, R, R)
                expected = (len(part), data.channels, c + n, data.resolution, data.resolution)
                if tuple(videos.shape) != expected:
                    raise RuntimeError(f"predict() returned {tuple(videos.shape)}, expected {expected}")
                predicted = layout.to_uint8(videos)  # (B, c + n, R, R, channels): the pixels a sample holds
                if fake_moments is not None:
                    extract_features([predicted], detector, settings.device, [fake_moments])
                predicted = predicted.cpu()
                future = layout.to_model(predicted[:, c:], torch.float64)  # (B, channels, n, R, R)
                target = layout.to_model(truth[rows, c:], torch.float64)
                videos_of, samples_of = [j for j, _ in part], [k for _, k in part]
                if "psnr" in scores:
                    scores["psnr"][videos_of, samples_of] = psnr(future, target).clamp(max=PSNR_CAP_DB)
                if "ssim" in scores:
                    scores["ssim"][videos_of, samples_of] = ssim(future, target)
                if spread is not None:
                    spread.add(videos_of, future)
                advance(len(part))

    # --- The scores -------------------------------------------------------------------------------------------
    results = []
    for protocol in group:
        label = protocol.label(N)
        if protocol.quantity == "fvd":
            value = frechet_distance(real_moments.mean, real_moments.covariance, fake_moments.mean,
                                     fake_moments.covariance)
            results.append(PredictionMetric(protocol.name, label, value, None, protocol, N, detector.name,
                                            detector.sha256))
            continue
        curve = spread.curve() if protocol.quantity == "div" else best_of_k_curve(scores[protocol.quantity])
        values = tuple(float(v) for v in curve)
        results.append(PredictionMetric(protocol.name, label, sum(values) / len(values), values, protocol, N))
    return results


def _as_model_clips(clips: Sequence[torch.Tensor], resolution: int) -> torch.Tensor:
    """Decoded clips, uint8 [T, H, W, C] each (C: the run's channels, as read) -> uint8 [B, T, R, R, C], as the data
    layer makes training clips: short side to R, centre crop (resize_center_crop)."""
    return torch.stack([resize_center_crop(clip.numpy(), resolution) for clip in clips])
