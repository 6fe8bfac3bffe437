"""Prediction protocols: how well a model continues given frames, named by their budget.

    pred_psnr_c5_n10_best100   per-frame PSNR of the best of 100 futures (SVG/DVG "best of 100")
    pred_ssim_c5_n10_best100   per-frame SSIM of the best of 100 futures
    pred_fvd_c5_n10_k100       FVD of all 100 futures of every test video (context included) vs the real clips
    pred_div_c5_n10_k100       diversity: mean pairwise distance between the 100 futures, per frame

Each test video (one clip of c + n frames per real video, at a seeded offset) gives its first c frames as the
context; K futures of n frames are predicted from K seeds. PSNR and SSIM (vidgen.metrics.quality) are taken on
the n predicted frames only, after 8-bit quantisation (vidgen.core.layout.to_uint8, the pixels a written sample
holds), in float64; for each video the one sample whose mean over the n frames is best is kept (quality.best_of_k,
each metric its own best), and the curve is the mean of those over the test videos. The protocols are data, as
in protocols.py; the streaming aggregation (FutureSpread) and the plot are here too.

No torch import at module level: `vidgen --help` and the usage checks of `vidgen eval` read these names.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from vidgen.core.atomic import atomic_file
from vidgen.errors import ConfigError
from vidgen.metrics.gate import parse_threshold_items

if TYPE_CHECKING:
    from torch import Tensor

Quantity = Literal["psnr", "ssim", "fvd", "div"]

DEFAULT_VIDEOS = 256
"""Test videos per protocol unless --num lowers it."""
PSNR_CAP_DB = 100.0
"""A predicted frame identical to the real one (8-bit MSE 0) scores this instead of +inf, so that averages stay
finite. It is above any finite 8-bit PSNR for frames up to 150,000 values (one level off in one value of a 64x64x3
frame is 89 dB)."""
I3D_MIN_FRAMES = 9
"""I3D's shortest input (vidgen.metrics.i3d): pred_fvd needs c + n >= 9."""
EXAMPLES = "pred_psnr_c5_n10_best100, pred_ssim_c5_n10_best100, pred_fvd_c5_n10_k100, pred_div_c5_n10_k100"

_NAME = re.compile(r"pred_(?P<quantity>[a-z]+)_c(?P<c>\d+)_n(?P<n>\d+)_(?P<tag>best|k)(?P<k>\d+)")
_TAG = {"psnr": "best", "ssim": "best", "fvd": "k", "div": "k"}
_TITLE = {"psnr": "PSNR (dB)", "ssim": "SSIM", "fvd": "FVD", "div": "diversity (mean pairwise MSE)"}


@dataclass(frozen=True)
class PredictionProtocol:
    name: str
    quantity: Quantity
    context: int
    """c: real frames given to the model."""
    frames: int
    """n: frames predicted after them (scored for PSNR, SSIM and diversity)."""
    samples: int
    """K: futures predicted per test video."""
    num_videos: int = DEFAULT_VIDEOS
    """Test videos: one clip of c + n frames per real video."""

    @property
    def group(self) -> tuple[int, int, int, int]:
        """Protocols with equal groups share one generation pass (the same test clips, seeds and futures)."""
        return self.context, self.frames, self.samples, self.num_videos

    @property
    def higher_is_better(self) -> bool:
        return self.quantity in ("psnr", "ssim")

    @property
    def has_curve(self) -> bool:
        """Everything but FVD has a per-frame curve."""
        return self.quantity != "fvd"

    @property
    def description(self) -> str:
        c, n, k = self.context, self.frames, self.samples
        return {
            "psnr": f"PSNR (dB) per predicted frame {c + 1}..{c + n} given {c} real frames, of the best of {k} "
                    f"futures per test video (the one with the best mean PSNR over the {n} frames), 8-bit frames, "
                    f"a perfect frame counted as {PSNR_CAP_DB:g} dB",
            "ssim": f"SSIM per predicted frame {c + 1}..{c + n} given {c} real frames, of the best of {k} futures "
                    f"per test video (the one with the best mean SSIM over the {n} frames), 8-bit frames",
            "fvd": f"FVD (I3D) of the {k} futures of every test video, {c + n} frames each with the {c} context "
                   f"frames, against the test videos' real clips of {c + n} frames",
            "div": f"diversity per predicted frame {c + 1}..{c + n}: mean squared difference between two of the "
                   f"{k} futures of a test video, over all pairs, averaged over the test videos",
        }[self.quantity]

    def label(self, count: int) -> str:
        """The name, with the number of test videos when fewer than the protocol asks for were used."""
        return self.name if count >= self.num_videos else f"{self.name} (n={count})"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "description": self.description,
                "test_clips": "one per real video, c + n frames at the run's data.frame_stride, offset uniform over "
                              "the valid starts from the seed, resized and centre-cropped to the run's resolution "
                              "as its training data is",
                "seeds": "future k of test video j is predicted from seed + j*K + k"}


def is_prediction_metric(name: str) -> bool:
    """Whether a metric name belongs to the prediction family (pred_*), valid or not."""
    return name.strip().startswith("pred_")


def parse_prediction_protocol(name: str, num_videos: int = DEFAULT_VIDEOS) -> PredictionProtocol:
    """pred_<psnr|ssim>_c<c>_n<n>_best<K> or pred_<fvd|div>_c<c>_n<n>_k<K>; a bad name is a one-line ConfigError."""
    match = _NAME.fullmatch(name)
    if match is None or match["quantity"] not in _TAG:
        raise ConfigError(f"unknown metric '{name}'; prediction metrics look like {EXAMPLES}")
    quantity, tag = match["quantity"], match["tag"]
    c, n, k = int(match["c"]), int(match["n"]), int(match["k"])
    canonical = f"pred_{quantity}_c{c}_n{n}_{_TAG[quantity]}{k}"
    if tag != _TAG[quantity] or canonical != name:
        raise ConfigError(f"metric '{name}': write it as '{canonical}'")
    if k < 1:
        raise ConfigError(f"metric '{name}': K must be >= 1")
    if c < 1 or n < 1:
        raise ConfigError(f"metric '{name}': c (context frames) and n (predicted frames) must be >= 1")
    if quantity == "div" and k < 2:
        raise ConfigError(f"metric '{name}': diversity needs K >= 2 futures per video")
    if quantity == "fvd" and c + n < I3D_MIN_FRAMES:
        raise ConfigError(f"metric '{name}': FVD's I3D needs clips of at least {I3D_MIN_FRAMES} frames; "
                          f"make c + n >= {I3D_MIN_FRAMES}")
    return PredictionProtocol(name, quantity, c, n, k, num_videos)


def get_prediction_protocols(names: str | Sequence[str]) -> list[PredictionProtocol]:
    """Protocols by name ("a,b" or a list)."""
    items = [n.strip() for n in names.split(",")] if isinstance(names, str) else [n.strip() for n in names]
    protocols = [parse_prediction_protocol(item) for item in items]
    if not protocols:
        raise ConfigError(f"no metric given; prediction metrics look like {EXAMPLES}")
    if len({p.name for p in protocols}) != len(protocols):
        raise ConfigError(f"a metric is named twice in {', '.join(p.name for p in protocols)}")
    return protocols


def check_num(num: int | None, protocols: Sequence[PredictionProtocol]) -> None:
    """--num: fewer test videos than the protocols' (labelled with the count), at least 2."""
    if num is None:
        return
    most = min(p.num_videos for p in protocols)
    if not 2 <= num <= most:
        raise ConfigError(f"--num must lie in 2..{most} for these prediction metrics (a score needs at least 2 test "
                          f"videos; the protocols use {most}), got {num}")


def prediction_groups(protocols: Sequence[PredictionProtocol]) -> list[list[PredictionProtocol]]:
    """Protocols grouped by their (c, n, K, videos), in first-appearance order: one generation pass each."""
    groups: dict[tuple, list[PredictionProtocol]] = {}
    for protocol in protocols:
        groups.setdefault(protocol.group, []).append(protocol)
    return list(groups.values())


def parse_prediction_thresholds(items: Sequence[str], protocols: Sequence[PredictionProtocol]) -> dict[str, float]:
    """`--fail-above name=value` for prediction metrics: FVD only, since the gate fails a score above its limit and
    PSNR, SSIM and diversity are better higher. A bad item is a one-line ConfigError."""
    thresholds = parse_threshold_items(items, [p.name for p in protocols], example="pred_fvd_c5_n10_k100=300")
    for protocol in protocols:
        if protocol.name in thresholds and protocol.quantity != "fvd":
            raise ConfigError(f"--fail-above fails a score above its limit, and {protocol.name} is better higher; "
                              "only pred_fvd_* can be gated")
    return thresholds


# ----------------------------------------------------------------------------------------------------------
# Aggregation


def best_of_k_curve(scores: Tensor) -> Tensor:
    """The per-frame curve of the best-of-K protocol: scores [N, K, n] (test video, future, predicted frame) ->
    float64 [n], the mean over the test videos of each one's best future (quality.best_of_k: the future with the
    best mean over the n frames, higher is better)."""
    from vidgen.metrics.quality import best_of_k

    return best_of_k(scores.transpose(0, 1)).double().mean(dim=0)  # (K, N, n) -> (N, n) -> (n,)


class FutureSpread:
    """Per-frame diversity of each test video's K futures, as the futures come in a batch at a time.

    The same number as quality.mean_pairwise_distance on the video's K futures, split by frame: for frame t,
    2 / (K − 1) · Σ_i ‖x_i,t − x̄_t‖² / (C·H·W) (the mean over the K(K−1)/2 pairs of their per-value squared
    difference). Only the running mean and scatter of the videos still open are kept (Chan, Golub & LeVeque
    1979, eq. 2.1, as stats.MomentAccumulator merges moments), so memory does not grow with K or the number of
    videos; a video's curve is final once its K futures are in.
    """

    def __init__(self, samples: int) -> None:
        if samples < 2:
            raise ValueError(f"diversity needs at least 2 futures per video, got {samples}")
        self.samples = samples
        self._open: dict[int, tuple[int, Tensor, Tensor]] = {}  # video -> (count, mean [C, n, H, W], scatter [n])
        self.curves: dict[int, Tensor] = {}
        """Video -> float64 [n], once all its futures are in."""

    def add(self, videos: Sequence[int], futures: Tensor) -> None:
        """futures: [B, C, n, H, W], future b belonging to test video videos[b]."""
        import torch

        futures = futures.double()
        index = torch.as_tensor(list(videos))
        for video in dict.fromkeys(videos):
            x = futures[index == video]  # (m, C, n, H, W): this batch's futures of the video
            mean_b = x.mean(dim=0)
            scatter_b = (x - mean_b).square().sum(dim=(0, 1, 3, 4))  # (n,)
            count_a, mean_a, scatter_a = self._open.pop(video, (0, torch.zeros_like(mean_b),
                                                                 torch.zeros_like(scatter_b)))
            count = count_a + len(x)
            delta = mean_b - mean_a
            scatter = scatter_a + scatter_b + delta.square().sum(dim=(0, 2, 3)) * (count_a * len(x) / count)
            mean = mean_a + delta * (len(x) / count)
            if count > self.samples:
                raise ValueError(f"video {video} got {count} futures, more than K = {self.samples}")
            if count < self.samples:
                self._open[video] = (count, mean, scatter)
                continue
            values = mean.shape[0] * mean.shape[2] * mean.shape[3]  # C·H·W per frame
            self.curves[video] = 2 * scatter / ((self.samples - 1) * values)

    def curve(self) -> Tensor:
        """Mean over the finished videos: float64 [n]."""
        import torch

        if self._open or not self.curves:
            raise ValueError(f"{len(self._open)} videos still wait for futures, {len(self.curves)} are finished")
        return torch.stack([self.curves[v] for v in sorted(self.curves)]).mean(dim=0)


# ----------------------------------------------------------------------------------------------------------
# The plot


@dataclass(frozen=True)
class Curve:
    label: str
    quantity: Quantity
    context: int
    values: tuple[float, ...]
    """One per predicted frame c + 1, ..., c + n."""


def plot_curves(curves: Iterable[Curve], path: Path, title: str = "") -> None:
    """One PNG: a subplot per quantity (PSNR, SSIM, diversity, in that order), x the predicted frame's index in the
    clip (c + 1 .. c + n), one line per protocol. matplotlib (Agg) is imported here only."""
    import matplotlib

    matplotlib.use("Agg")  # no display; the figure is only written
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    by_quantity: dict[str, list[Curve]] = {}
    for curve in curves:
        by_quantity.setdefault(curve.quantity, []).append(curve)
    quantities = [q for q in ("psnr", "ssim", "div") if q in by_quantity]
    if not quantities:
        raise ValueError("no per-frame curve to plot (FVD has none)")
    fig, axes = plt.subplots(1, len(quantities), figsize=(4.5 * len(quantities), 3.6), squeeze=False)
    try:
        for ax, quantity in zip(axes[0], quantities, strict=True):
            for curve in by_quantity[quantity]:
                xs = range(curve.context + 1, curve.context + 1 + len(curve.values))
                ax.plot(list(xs), curve.values, marker="o", markersize=3, label=curve.label)
            ax.set_title(_TITLE[quantity])
            ax.set_xlabel("predicted frame (the clip's frames 1..c are the context)")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        if title:
            fig.suptitle(title, fontsize=9)
        fig.tight_layout()
        with atomic_file(Path(path), "wb") as handle:  # a killed process leaves no half-written PNG
            fig.savefig(handle, format="png", dpi=100)
    finally:
        plt.close(fig)
