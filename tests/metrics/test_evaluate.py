"""The real-detector pipeline end to end, on a handful of short, small videos (I3D on a CPU costs a few
seconds per clip, whatever the input size, since every frame is resized to 224).

FID goes through the same code with the Inception detector (see test_inception.py for the detector). It is
left out here because the Fréchet distance of 2048-d covariances estimated from a few frames (rank-deficient,
so sqrtm meets denormal numbers) alone costs 20-40 s on a 2-core CPU."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from vidgen.core.io import read_video
from vidgen.errors import UserError
from vidgen.evaluate import JSON_SCHEMA, evaluate
from vidgen.metrics.detectors import DetectorError
from vidgen.metrics.features import extract_features
from vidgen.metrics.frechet import frechet_distance
from vidgen.metrics.protocols import PROTOCOLS, Protocol
from vidgen.metrics.stats import MomentAccumulator
from vidgen.metrics.statsfile import RealStats, load_stats, pick_stats

from .conftest import write_videos


def test_a_set_scored_against_itself(evaluated):
    _, result = evaluated
    fvd, kvd = result["fvd2048_16f"], result["kvd2048_16f"]
    assert fvd.label == "fvd2048_16f (n=3)" and (fvd.num_real, fvd.num_fake) == (3, 3)
    assert abs(fvd.value) < 0.5  # the clips are identical: each video is exactly one clip long
    # The unbiased MMD² of a set with itself is 2·(mean off-diagonal − mean of all kernel values) < 0.
    assert np.isfinite(kvd.value) and kvd.value <= 0.0
    assert {m.real_stats for m in result.metrics} == {"computed"}
    assert fvd.detector_sha256 == "af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd"


def test_json_holds_what_is_needed_to_compare_results(evaluated):
    _, result = evaluated
    data = result.to_json({"fvd2048_16f": 300.0})
    assert data["schema"] == JSON_SCHEMA and data["vidgen_version"] and data["seed"] == 0
    entry = data["metrics"]["fvd2048_16f"]
    assert set(entry) == {"value", "label", "num_real", "num_fake", "real_stats", "detector", "protocol"}
    assert entry["protocol"]["num_videos"] == 2048 and entry["protocol"]["frames"] == 16
    assert entry["detector"]["name"] == "i3d" and len(entry["detector"]["sha256"]) == 64
    assert data["passed"] is True and data["exceeded"] == []


def test_fvd_grows_with_corruption(evaluated, i3d):
    root, _ = evaluated
    real = load_stats(root / "real.npz")["fvd2048_16f"]
    clean = np.stack([read_video(path) for path in sorted((root / "videos").glob("*.mp4"))[:2]])  # (2, 16, 32, 32, 3)
    rng = np.random.default_rng(0)
    values = []
    for sigma in (12.0, 48.0):
        noisy = np.clip(clean + rng.normal(0, sigma, clean.shape), 0, 255).round().astype(np.uint8)
        moments = MomentAccumulator(i3d.dim)
        extract_features([torch.from_numpy(noisy)], i3d, torch.device("cpu"), [moments])
        values.append(frechet_distance(real.mean, real.cov, moments.mean, moments.covariance))
    assert 5.0 < values[0] < values[1]


def test_real_statistics_come_from_the_cache_and_from_a_stats_file(evaluated, detector_dir, monkeypatch):
    root, first = evaluated
    import vidgen.evaluate as module

    def no_real_work(*args, **kwargs):
        raise AssertionError("the real side was recomputed")

    monkeypatch.setattr(module, "_compute_real", no_real_work)
    fake = root / "fake"
    fake.mkdir(exist_ok=True)
    for path in sorted((root / "videos").glob("*.mp4"))[:2]:
        shutil.copy(path, fake / path.name)
    cached = evaluate(root / "videos", fake, ["fvd2048_16f"], device="cpu", allow_fewer=True,
                      detector_dir=detector_dir, cache_dir=root / "home" / "stats", workers=0)
    from_file = evaluate(root / "real.npz", fake, ["fvd2048_16f"], device="cpu", allow_fewer=True,
                         detector_dir=detector_dir, workers=0, use_cache=False)
    assert cached["fvd2048_16f"].real_stats == "cache" and from_file["fvd2048_16f"].real_stats == "file"
    assert cached["fvd2048_16f"].value == pytest.approx(from_file["fvd2048_16f"].value, rel=1e-12)
    assert cached["fvd2048_16f"].label == "fvd2048_16f (n=2)"


def test_stats_from_another_protocol_or_detector_are_refused(evaluated):
    root, _ = evaluated
    entries = load_stats(root / "real.npz")
    path = root / "real.npz"
    with pytest.raises(UserError, match="holds real statistics for fvd2048_16f, kvd2048_16f, not fvd2048_128f"):
        pick_stats(entries, PROTOCOLS["fvd2048_128f"], entries["fvd2048_16f"].detector_sha256, path)
    with pytest.raises(UserError, match="another detector"):
        pick_stats(entries, PROTOCOLS["fvd2048_16f"], "0" * 64, path)
    changed = Protocol("fvd2048_16f", "i3d", "frechet", 2048, 16, stride=2)
    with pytest.raises(UserError, match="other settings"):
        pick_stats(entries, changed, entries["fvd2048_16f"].detector_sha256, path)
    assert isinstance(entries["kvd2048_16f"], RealStats) and entries["kvd2048_16f"].features.shape == (3, 400)


def test_bad_inputs_are_one_line_errors(evaluated, detector_dir, tmp_path):
    root, _ = evaluated
    videos = root / "videos"  # three videos of 16 frames
    kwargs = dict(device="cpu", detector_dir=detector_dir, cache_dir=tmp_path / "stats", workers=0)
    with pytest.raises(UserError, match=r"fvd2048_16f needs 2048 videos, FAKE .* has 3 long enough; "
                                        r"pass --allow-fewer"):
        evaluate(videos, videos, ["fvd2048_16f"], **kwargs)
    with pytest.raises(UserError, match=r"3 videos in FAKE .* are shorter than fvd2048_128f's clips of 128 frames "
                                        r"\(frames=128, stride=1\)"):
        evaluate(videos, videos, ["fvd2048_128f"], **kwargs)
    write_videos(tmp_path / "short", num=2, frames=8)
    with pytest.raises(UserError, match=r"2 videos in REAL .* are shorter than fvd3_16f's clips of 16 frames"):
        evaluate(tmp_path / "short", videos, [Protocol("fvd3_16f", "i3d", "frechet", 3, 16)], **kwargs)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "broken.mp4").write_bytes(b"not a video")
    with pytest.raises(UserError, match="no readable videos in FAKE folder"):
        evaluate(videos, empty, ["fvd2048_16f"], **kwargs)
    with pytest.raises(DetectorError, match="vidgen detectors install"):
        evaluate(videos, videos, ["fvd2048_16f"], device="cpu", detector_dir=tmp_path)


def test_a_run_is_sampled_on_the_fly_against_synthetic_data(tmp_path, detector_dir, tiny_vdm):
    from vidgen.recipe import load_recipe
    from vidgen.train import train

    recipe = load_recipe("vdm-tiny", [*tiny_vdm, "train.max_steps=1", "train.checkpoint_every=1"])
    train(recipe, tmp_path / "run", device="cpu")
    protocol = Protocol("fvd2_9f", "i3d", "frechet", 2, 9)
    result = evaluate("synthetic:videos=2,frames=9", tmp_path / "run", [protocol], device="cpu",
                      detector_dir=detector_dir, cache_dir=tmp_path / "stats", workers=0,
                      sample_options={"steps": 2})
    assert result["fvd2_9f"].num_fake == 2 and result["fvd2_9f"].value > 0
    assert not list((tmp_path / "run").rglob("*.mp4"))  # nothing written
