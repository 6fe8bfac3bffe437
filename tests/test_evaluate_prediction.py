"""Prediction metrics (`vidgen eval --metrics pred_*`): the library entry point driven by a test double that predicts in
a known way, checked against an independent computation (scikit-image, brute force, I3D by hand); and the CLI's
one-line errors through the real entry point."""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from torch import nn

from tests.conftest import TINY_SGV, TINY_VDM, run_cli, set_args
from tests.metrics.conftest import detector_dir, i3d  # noqa: F401  (fixtures)
from vidgen.core import layout
from vidgen.core.io import rgb_to_gray, write_png
from vidgen.errors import UserError
from vidgen.evaluate_prediction import PredictorSource, evaluate_prediction
from vidgen.metrics.frechet import frechet_distance
from vidgen.metrics.prediction import PSNR_CAP_DB
from vidgen.models.base import Backend, Phase, Prediction
from vidgen.recipe import load_recipe

QUIET = Console(quiet=True)


class _Brightness(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(()))


class RepeatLastFrame(Backend):
    """A test double that predicts: every future frame is the last context frame brightened by
    levels[seed mod len(levels)] (clamped to [-1, 1]), plus a learnt brightness (0 untrained). It trains that
    brightness to predict a clip's later frames from its first, and samples flat frames at the seeds' levels."""

    ema_networks = ("brightness",)

    def __init__(self, recipe, levels: Sequence[float] = (0.0,)) -> None:  # noqa: ANN001 - a Recipe
        super().__init__(recipe)
        self.networks = nn.ModuleDict({"brightness": _Brightness()})
        self.levels = tuple(levels)
        self.calls: list[list[int]] = []
        """The seeds of every predict() call."""

    def phases(self) -> Sequence[Phase]:
        return [Phase("main", "main")]

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"main": torch.optim.SGD(self.networks.parameters(), lr=0.1)}

    def loss(self, phase, batch, nets, generator):  # noqa: ANN001
        video = batch["video"]  # (B, C, T, H, W)
        guess = video[:, :, :1] + nets["brightness"].bias
        loss = (guess - video[:, :, 1:]).square().mean()
        return loss, {"loss": loss.item()}

    def _level(self, seed: int) -> float:
        return self.levels[seed % len(self.levels)]

    def sample(self, nets, seeds, frames, device, options=None) -> torch.Tensor:  # noqa: ANN001
        data = self.recipe.data
        flat = torch.tensor([self._level(s) for s in seeds], device=device).view(-1, 1, 1, 1, 1)
        return (flat + nets["brightness"].bias).clamp(-1, 1).expand(-1, data.channels, frames, data.resolution,
                                                                    data.resolution)

    @property
    def predicts(self) -> bool:
        return True

    def context_frames(self) -> int:
        return 2

    def predict(self, nets: Mapping[str, nn.Module], context: torch.Tensor, seeds: Sequence[int], frames: int,
                device: torch.device, options=None) -> Prediction:  # noqa: ANN001
        self.calls.append(list(seeds))
        c = context.shape[2]
        level = torch.tensor([self._level(s) for s in seeds], device=device).view(-1, 1, 1, 1, 1)
        future = (context[:, :, -1:] + level + nets["brightness"].bias).clamp(-1, 1)  # (N, C, 1, H, W)
        return Prediction(torch.cat([context, future.expand(-1, -1, frames - c, -1, -1)], dim=2))


def _predictor(levels: Sequence[float], channels: int = 3, batch_size: int = 4) -> PredictorSource:
    recipe = load_recipe("vdm-tiny", [*TINY_VDM, f"data.channels={channels}"])  # 16x16, the test double's data
    backend = RepeatLastFrame(recipe, levels)
    return PredictorSource(backend, backend.networks, batch_size=batch_size)


def _write_frame_folders(root: Path, videos: np.ndarray) -> Path:
    """uint8 [N, T, H, W, 3] as frame folders of lossless PNGs (clips read back exactly)."""
    for i, video in enumerate(videos):
        for t, frame in enumerate(video):
            write_png(root / f"v{i}" / f"{t:03d}.png", frame)
    return root


def _textured_videos(num: int, frames: int, seed: int = 0, size: int = 16) -> np.ndarray:
    """Smooth moving patterns with noise: PSNR and SSIM of a repeated frame far from their extremes."""
    rng = np.random.default_rng(seed)
    i, j = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    videos = np.empty((num, frames, size, size, 3))
    for v, t, ch in itertools.product(range(num), range(frames), range(3)):
        wave = np.sin(0.35 * i + 0.2 * (v + 1) * j + 0.15 * t + ch) * np.cos(0.3 * j - 0.1 * t)
        videos[v, t, :, :, ch] = 128 + 90 * wave
    return (videos + rng.normal(0, 6, videos.shape)).round().clip(0, 255).astype(np.uint8)


def _expected_futures(videos: np.ndarray, source: PredictorSource, c: int, n: int, K: int, seed: int) -> torch.Tensor:
    """Every future by the documented seeds (future k of video j: seed + j·K + k), each predicted on its own and
    quantised as a written sample: uint8 [N, K, c + n, H, W, C]."""
    if source.backend.recipe.data.channels == 1:
        videos = rgb_to_gray(videos)  # (N, T, H, W, 1): as the data layer reads a grayscale run's videos
    context = layout.to_model(torch.from_numpy(videos[:, :c]))  # (N, C, c, H, W)
    return torch.stack([torch.stack([
        layout.to_uint8(source.backend.predict(source.nets, context[j:j + 1], [seed + j * K + k], c + n,
                                               torch.device("cpu")).videos)[0]
        for k in range(K)]) for j in range(len(videos))])


def _unit(frames: torch.Tensor) -> np.ndarray:
    return frames.numpy().astype(np.float64) / 127.5 - 1.0  # uint8 -> [-1, 1], float64


def _skimage_best_curves(futures: torch.Tensor, truth: torch.Tensor, c: int) -> dict[str, np.ndarray]:
    """Per metric, the mean over videos of the per-frame curve of the sample with the best mean (scikit-image)."""
    N, K = futures.shape[:2]
    metrics = {
        "psnr": lambda a, b: min(peak_signal_noise_ratio(b, a, data_range=2.0), PSNR_CAP_DB),
        "ssim": lambda a, b: structural_similarity(a, b, channel_axis=-1, data_range=2.0, gaussian_weights=True,
                                                   sigma=1.5, use_sample_covariance=False),
    }
    curves = {}
    for name, metric in metrics.items():
        best = []
        for j in range(N):
            per_sample = np.array([[metric(_unit(futures[j, k, t]), _unit(truth[j, t]))
                                    for t in range(c, futures.shape[2])] for k in range(K)])  # (K, n)
            best.append(per_sample[per_sample.mean(axis=1).argmax()])
        curves[name] = np.mean(best, axis=0)
    return curves


# ---------------------------------------------------------------------------------------------------------- library


def test_psnr_and_ssim_curves_match_scikit_image_with_the_documented_seeds(tmp_path):
    c, n, K, seed = 2, 3, 3, 5
    videos = _textured_videos(3, c + n)  # exactly c + n frames: every clip starts at frame 0
    real = _write_frame_folders(tmp_path / "real", videos)
    source = _predictor(levels=(0.25, -0.1, 0.05, 0.4), batch_size=2)  # 4 levels, K = 3: seeds pick them
    result = evaluate_prediction(real, source, f"pred_psnr_c{c}_n{n}_best{K},pred_ssim_c{c}_n{n}_best{K}",
                                 seed=seed, num=3, device="cpu", workers=0, console=QUIET)
    expected = _skimage_best_curves(_expected_futures(videos, source, c, n, K, seed), torch.from_numpy(videos), c)
    for name in ("psnr", "ssim"):
        metric = result[f"pred_{name}_c{c}_n{n}_best{K}"]
        assert metric.num_videos == 3 and metric.label == f"{metric.name} (n=3)"
        np.testing.assert_allclose(metric.curve, expected[name], rtol=1e-9)
        assert metric.value == pytest.approx(np.mean(expected[name]), rel=1e-12)
        assert 0.05 < abs(expected[name]).min() and expected[name].max() < 60  # far from the extremes


def test_best_of_k_picks_the_perfect_future_of_a_still_video(tmp_path):
    still = np.repeat(_textured_videos(2, 1), 6, axis=1)  # (2, 6, 16, 16, 3): every frame the same
    real = _write_frame_folders(tmp_path / "real", still)
    source = _predictor(levels=(0.3, 0.0, -0.2))  # future 1 of each video repeats the frame exactly
    result = evaluate_prediction(real, source, "pred_psnr_c2_n4_best3,pred_ssim_c2_n4_best3", num=2,
                                 device="cpu", workers=0, console=QUIET)
    assert result["pred_psnr_c2_n4_best3"].curve == (PSNR_CAP_DB,) * 4
    np.testing.assert_allclose(result["pred_ssim_c2_n4_best3"].curve, [1.0] * 4, rtol=1e-12)
    # Without a perfect level, the smaller offset wins: best of (0.4, -0.1) is the curve of -0.1 alone.
    best = evaluate_prediction(real, _predictor(levels=(0.4, -0.1)), "pred_psnr_c2_n4_best2", num=2,
                               device="cpu", workers=0, console=QUIET)
    nearest = evaluate_prediction(real, _predictor(levels=(-0.1,)), "pred_psnr_c2_n4_best1", num=2,
                                  device="cpu", workers=0, console=QUIET)
    assert best["pred_psnr_c2_n4_best2"].curve == nearest["pred_psnr_c2_n4_best1"].curve


def test_diversity_is_zero_for_identical_futures_and_the_pairwise_mean_otherwise(tmp_path):
    c, n, K = 2, 3, 4
    videos = _textured_videos(2, c + n, seed=1)
    real = _write_frame_folders(tmp_path / "real", videos)
    same = evaluate_prediction(real, _predictor(levels=(0.1,)), f"pred_div_c{c}_n{n}_k{K}", num=2, device="cpu",
                               workers=0, console=QUIET)
    assert max(same[f"pred_div_c{c}_n{n}_k{K}"].curve) < 1e-30
    source = _predictor(levels=(0.3, -0.1, 0.05, 0.6, -0.5), batch_size=3)  # batches that split a video's futures
    result = evaluate_prediction(real, source, f"pred_div_c{c}_n{n}_k{K}", num=2, device="cpu", workers=0,
                                 console=QUIET)
    futures = _expected_futures(videos, source, c, n, K, seed=0)  # (N, K, c + n, H, W, 3) uint8
    brute = np.mean([[np.mean([((_unit(futures[j, a, t]) - _unit(futures[j, b, t])) ** 2).mean()
                               for a, b in itertools.combinations(range(K), 2)]) for t in range(c, c + n)]
                     for j in range(len(videos))], axis=0)
    np.testing.assert_allclose(result[f"pred_div_c{c}_n{n}_k{K}"].curve, brute, rtol=1e-10)


def test_one_generation_pass_serves_psnr_ssim_fvd_and_diversity(tmp_path, detector_dir, i3d):  # noqa: F811
    c, n, K = 2, 7, 2
    videos = _textured_videos(3, c + n, seed=2)
    real = _write_frame_folders(tmp_path / "real", videos)
    source = _predictor(levels=(0.2, -0.3), batch_size=4)
    names = [f"pred_psnr_c{c}_n{n}_best{K}", f"pred_ssim_c{c}_n{n}_best{K}", f"pred_fvd_c{c}_n{n}_k{K}",
             f"pred_div_c{c}_n{n}_k{K}"]
    result = evaluate_prediction(real, source, names, num=3, device="cpu", workers=0, batch_size=2,
                                 detector_dir=detector_dir, console=QUIET)
    seeds = [s for call in source.backend.calls for s in call]
    assert sorted(seeds) == list(range(3 * K))  # every future predicted once, for all four metrics
    assert [m.name for m in result.metrics] == names
    # FVD by hand: I3D on the real clips and on all K futures of each (context included), as a sample is written.
    futures = _expected_futures(videos, source, c, n, K, seed=0).flatten(0, 1)  # (N·K, c + n, H, W, 3)
    with torch.inference_mode():
        real_features = i3d.module(torch.from_numpy(videos)).double().numpy()
        fake_features = i3d.module(futures).double().numpy()
    expected = frechet_distance(real_features.mean(0), np.cov(real_features, rowvar=False),
                                fake_features.mean(0), np.cov(fake_features, rowvar=False))
    fvd = result[f"pred_fvd_c{c}_n{n}_k{K}"]
    assert fvd.value == pytest.approx(expected, rel=1e-6) and fvd.curve is None and fvd.detector == "i3d"
    # The JSON holds every curve and what made it; the PNG holds the three quantities.
    data = json.loads(json.dumps(result.to_json({fvd.name: 1e9})))
    psnr = data["metrics"][names[0]]
    assert len(psnr["curve"]) == n and psnr["frames"] == list(range(c + 1, c + n + 1))
    assert (psnr["c"], psnr["n"], psnr["k"], psnr["num_videos"]) == (c, n, K, 3)
    assert psnr["protocol"]["description"].startswith("PSNR") and data["metrics"][names[2]]["curve"] is None
    assert data["passed"] is True and data["kind"] == "prediction"
    result.plot(tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_grayscale_run_is_scored_on_gray_frames(tmp_path, detector_dir):  # noqa: F811
    c, n, K = 2, 7, 2
    videos = _textured_videos(2, c + n, seed=3)
    real = _write_frame_folders(tmp_path / "real", videos)
    source = _predictor(levels=(0.1, -0.2), channels=1)
    result = evaluate_prediction(real, source, f"pred_psnr_c{c}_n{n}_best{K},pred_fvd_c{c}_n{n}_k{K}", num=2,
                                 device="cpu", workers=0, detector_dir=detector_dir, console=QUIET)
    gray = torch.from_numpy(rgb_to_gray(videos))  # (N, T, H, W, 1)
    expected = _skimage_best_curves(_expected_futures(videos, source, c, n, K, seed=0), gray, c)["psnr"]
    np.testing.assert_allclose(result[f"pred_psnr_c{c}_n{n}_best{K}"].curve, expected, rtol=1e-9)
    assert np.isfinite(result[f"pred_fvd_c{c}_n{n}_k{K}"].value)


def test_fewer_or_shorter_test_videos(tmp_path):
    videos = _textured_videos(3, 5)
    real = _write_frame_folders(tmp_path / "real", videos)
    source = _predictor(levels=(0.1, -0.2))
    with pytest.raises(UserError, match="pred_psnr_c2_n3_best2 needs 256 videos, REAL .* has 3 long enough; pass "
                                        "--allow-fewer"):
        evaluate_prediction(real, source, "pred_psnr_c2_n3_best2", device="cpu", workers=0, console=QUIET)
    result = evaluate_prediction(real, source, "pred_psnr_c2_n3_best2", allow_fewer=True, device="cpu", workers=0,
                                 console=QUIET)
    assert result["pred_psnr_c2_n3_best2"].label == "pred_psnr_c2_n3_best2 (n=3)"
    with pytest.raises(UserError, match="3 videos in REAL .* are shorter than pred_psnr_c2_n4_best2's clips of 6 "
                                        "frames"):
        evaluate_prediction(real, source, "pred_psnr_c2_n4_best2", num=2, device="cpu", workers=0, console=QUIET)
    with pytest.raises(UserError, match="is a stats file; prediction metrics need the real videos"):
        (tmp_path / "real.npz").write_bytes(b"")
        evaluate_prediction(tmp_path / "real.npz", source, "pred_psnr_c2_n3_best2", device="cpu", console=QUIET)


def test_clips_are_picked_from_longer_videos_by_the_seed(tmp_path):
    videos = _textured_videos(4, 12, seed=4)
    real = _write_frame_folders(tmp_path / "real", videos)
    kwargs = dict(num=3, device="cpu", workers=0, console=QUIET)
    first = evaluate_prediction(real, _predictor((0.1, -0.2)), "pred_ssim_c2_n3_best2", seed=1, **kwargs)
    again = evaluate_prediction(real, _predictor((0.1, -0.2)), "pred_ssim_c2_n3_best2", seed=1, **kwargs)
    other = evaluate_prediction(real, _predictor((0.1, -0.2)), "pred_ssim_c2_n3_best2", seed=2, **kwargs)
    assert first["pred_ssim_c2_n3_best2"].curve == again["pred_ssim_c2_n3_best2"].curve
    assert first["pred_ssim_c2_n3_best2"].curve != other["pred_ssim_c2_n3_best2"].curve


# ---------------------------------------------------------------------------------------------------------- CLI


def _eval(*args: str, cwd: Path | None = None):
    return run_cli("eval", *args, "--device", "cpu", "--workers", "0", cwd=cwd)


def _one_line(result, code: int, message: str) -> None:
    assert result.returncode == code, result.stderr
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize("args, message", [
    (["--metrics", "pred_psnr_c5_n10_best0"], "K must be >= 1"),
    (["--metrics", "pred_fvd_c5_n10_k0"], "K must be >= 1"),
    (["--metrics", "pred_div_c5_n10_k1"], "diversity needs K >= 2"),
    (["--metrics", "pred_psnr_c5_n10_best4,fvd2048_16f"], "in separate `vidgen eval` calls"),
    (["--metrics", "pred_psnr_c5_n10_best4", "--fail-above", "pred_psnr_c5_n10_best4=20"], "is better higher"),
    (["--metrics", "pred_psnr_c5_n10_best4", "--plot", "curves.pdf"], "--plot writes a PNG"),
    (["--metrics", "pred_fvd_c5_n10_k4", "--plot", "curves.png"], "FVD has none"),
    (["--metrics", "fvd2048_16f", "--plot", "curves.png"], "the unconditional metrics have none"),
    (["--metrics", "pred_psnr_c5_n10_best4", "--save-stats", "s.npz"], "--save-stats saves the real statistics"),
])
def test_cli_usage_errors_are_one_line(tmp_path, args, message):
    _one_line(_eval("--real", "synthetic", "--fake", str(tmp_path), *args, cwd=tmp_path), 2, message)


def test_cli_prediction_needs_a_run_that_predicts(tmp_path):
    from vidgen.train import train

    videos = tmp_path / "videos"
    _write_frame_folders(videos, _textured_videos(2, 5))
    _one_line(_eval("--real", "synthetic", "--fake", str(videos), "--metrics", "pred_psnr_c2_n3_best2"), 1,
              "is not a run; prediction metrics need a run directory or checkpoint")
    run = tmp_path / "sgv"
    train(load_recipe("stylegan-v-tiny", [*TINY_SGV, "train.max_steps=1"]), run, device="cpu", console=QUIET)
    _one_line(_eval("--real", "synthetic", "--fake", str(run), "--metrics", "pred_psnr_c2_n3_best2"), 1,
              "'stylegan-v' runs cannot continue given frames; prediction metrics need a family that predicts "
              "(dvg, vdm, videogpt with model.context_frames > 0)")


def test_cli_scores_a_vdm_run_end_to_end(tmp_path):
    from vidgen.models.vdm.backend import VDMBackend

    if VDMBackend.predicts is Backend.predicts:
        pytest.skip("VDMBackend does not predict yet")
    run = tmp_path / "run"
    run_cli("train", "vdm-tiny", "--out", str(run), "--max-steps", "1", *set_args(TINY_VDM), check=True)
    out, plot = tmp_path / "result.json", tmp_path / "curves.png"
    result = _eval("--real", "synthetic:videos=2,frames=8", "--fake", str(run), "--metrics",
                   "pred_psnr_c2_n2_best2,pred_ssim_c2_n2_best2,pred_div_c2_n2_k2", "--num", "2", "--steps", "2",
                   "--json", str(out), "--plot", str(plot))
    assert result.returncode == 0, result.stderr
    assert "pred_psnr_c2_n2_best2 (n=2)" in result.stdout
    data = json.loads(out.read_text())
    assert len(data["metrics"]["pred_ssim_c2_n2_best2"]["curve"]) == 2
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
