"""Grayscale runs and data in the metrics: gray clips reach the detectors as gray RGB; the synthetic real set
follows a run's channels and action changes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidgen.core.config import DataConfig
from vidgen.core.io import rgb_to_gray, write_mp4
from vidgen.core.synthetic import SceneStyle, render_video
from vidgen.errors import ConfigError
from vidgen.metrics.detectors import Detector
from vidgen.metrics.features import ClipDataset, as_rgb, clip_batches, extract_features
from vidgen.metrics.sources import SyntheticSpec, folder_fingerprint, index_videos, parse_synthetic
from vidgen.metrics.stats import FeatureBank

CPU = torch.device("cpu")


def _features(batches, detector: Detector, count: int) -> np.ndarray:
    bank = FeatureBank(detector.module.dim, count)
    extract_features(batches, detector, CPU, [bank])
    return bank.features


def test_i3d_features_of_a_gray_clip_are_those_of_the_clip_as_gray_rgb(i3d: Detector) -> None:
    gray = torch.from_numpy(rgb_to_gray(render_video(1, np.arange(10) / 8, 32)))[None]  # (1, T, H, W, 1)
    one = _features([gray], i3d, 1)
    three = _features([gray.repeat(1, 1, 1, 1, 3)], i3d, 1)
    assert one.shape == (1, 400)
    np.testing.assert_allclose(one, three, rtol=1e-5, atol=1e-5)


class _ChannelMeans(torch.nn.Module):
    """uint8 [B, T, H, W, 3] -> the mean of each channel [B, 3]; fails on anything but 3 channels."""

    dim, per_frame, resolution = 3, False, 224

    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        assert videos.shape[-1] == 3
        return videos.float().mean(dim=(1, 2, 3))


def test_gray_clips_of_a_folder_or_the_synthetic_set_reach_detectors_as_rgb(tmp_path) -> None:
    write_mp4(tmp_path / "a.mp4", render_video(0, np.arange(8) / 8, 16), fps=8)  # colour
    write_mp4(tmp_path / "b.mp4", rgb_to_gray(render_video(1, np.arange(8) / 8, 16)), fps=8)  # gray
    detector = Detector("stand-in", "0" * 64, _ChannelMeans())
    for channels in (1, 3):
        videos = index_videos(tmp_path, "REAL data", channels=channels)
        clips = ClipDataset(videos, [0, 0], frames=4, stride=1)
        assert clips[0].shape == (4, 16, 16, channels)
        features = _features(clip_batches(clips, batch_size=2, workers=0), detector, 2)
        gray = np.ptp(features, axis=1) < 1e-9  # the three channel means agree
        assert gray.tolist() == ([True, True] if channels == 1 else [False, True])
    assert folder_fingerprint(tmp_path, channels=1) != folder_fingerprint(tmp_path)
    spec = parse_synthetic("synthetic:videos=2,frames=6,resolution=16,channels=1", SyntheticSpec.from_data(
        DataConfig(), seed=0))
    clips = ClipDataset(spec.make_videos(), [0, 1], frames=4, stride=1)
    assert clips[1].shape == (4, 16, 16, 1)
    assert as_rgb(clips[1]).shape == (4, 16, 16, 3)


def test_synthetic_settings_for_channels_and_action_changes() -> None:
    defaults = SyntheticSpec.from_data(DataConfig(), seed=0)
    assert (defaults.action_changes, defaults.channels) == (False, 3)
    # The defaults keep the fingerprint of the sets before these settings, so their cached statistics stay valid.
    assert defaults.fingerprint() == ('synthetic:{"colours": 7, "fps": 8.0, "frames": 64, "max_shapes": 3, '
                                      '"resolution": 64, "seed": 0, "textured": true, "videos": 512}')
    spec = parse_synthetic("synthetic:action_changes=true,frames=32", defaults)
    assert spec.style == SceneStyle(action_changes=True, duration=4.0)  # 32 frames at 8 fps
    assert spec.make_videos()[0].style == spec.style
    assert len({defaults.fingerprint(), spec.fingerprint(), parse_synthetic("synthetic:channels=1",
                                                                            defaults).fingerprint()}) == 3
    run = SyntheticSpec.from_data(DataConfig(channels=1, synthetic_action_changes=True), seed=2)
    assert (run.channels, run.action_changes, run.style) == (1, True, DataConfig(
        synthetic_action_changes=True).synthetic_style)
    with pytest.raises(ConfigError, match="synthetic.channels must be 1 .grayscale. or 3 .RGB., got 2"):
        parse_synthetic("synthetic:channels=2", defaults)
    with pytest.raises(ConfigError, match="synthetic.action_changes"):
        parse_synthetic("synthetic:action_changes=maybe", defaults)
