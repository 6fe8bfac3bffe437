"""Streaming extraction with a cheap stand-in detector: the plumbing, not the network."""

import numpy as np
import torch
from torch import nn

from vidgen.core.data.sources import SyntheticVideo
from vidgen.core.synthetic import SceneStyle
from vidgen.metrics.detectors import Detector
from vidgen.metrics.features import ClipDataset, clip_batches, extract_features, generated_batches
from vidgen.metrics.stats import FeatureBank, MomentAccumulator


class _MeanColour(nn.Module):
    """uint8 [B, T, H, W, 3] -> per-video mean colour and its square [B, 6]."""

    dim, per_frame, resolution = 6, False, 224

    def forward(self, videos):
        colour = videos.float().mean(dim=(1, 2, 3))
        return torch.cat([colour, colour**2], dim=1)


def _dataset(num=7):
    videos = [SyntheticVideo(seed, 12, 8.0, 16 if seed % 3 else 24, SceneStyle(max_shapes=2)) for seed in range(num)]  # two sizes
    return ClipDataset(videos, [seed % 3 for seed in range(num)], frames=4, stride=2)


def test_streaming_statistics_equal_the_batch_statistics():
    dataset = _dataset()
    detector = Detector("stand-in", "0" * 64, _MeanColour())
    everything = torch.cat([detector.module(dataset[i][None]) for i in range(len(dataset))]).double().numpy()
    moments, bank = MomentAccumulator(6), FeatureBank(6, len(dataset))
    seen = extract_features(clip_batches(dataset, batch_size=3, workers=2), detector, torch.device("cpu"),
                            [moments, bank])
    assert seen == len(dataset)
    np.testing.assert_allclose(bank.features, everything, rtol=1e-6)  # in order, across workers
    np.testing.assert_allclose(moments.mean, everything.mean(0), rtol=1e-10)
    np.testing.assert_allclose(moments.covariance, np.cov(everything, rowvar=False), rtol=1e-8)


def test_clips_hold_the_protocol_frames():
    video = SyntheticVideo(5, 20, 8.0, 16, SceneStyle(max_shapes=2))
    clip = ClipDataset([video], [3], frames=4, stride=2)[0]
    np.testing.assert_array_equal(clip.numpy(), video.read(np.array([3, 5, 7, 9])))


def test_generated_batches_take_every_stride_th_frame_and_quantise_like_samples():
    calls = []

    def sample(seeds):
        calls.append(seeds)
        time = torch.arange(9, dtype=torch.float32).view(1, 1, 9, 1, 1) / 8 * 2 - 1  # frame t at (t/8)·2 − 1
        return time.expand(len(seeds), 3, 9, 2, 2)

    batches = list(generated_batches(sample, seeds=[10, 11, 12], batch_size=2, stride=4))
    assert calls == [[10, 11], [12]]
    assert batches[0].shape == (2, 3, 2, 2, 3) and batches[0].dtype == torch.uint8
    assert batches[0][0, :, 0, 0, 0].tolist() == [0, 128, 255]  # frames 0, 4, 8: round((x + 1) · 127.5)
