"""PSNR and SSIM against scikit-image (an independent numpy/scipy implementation), best-of-K and diversity by hand."""

import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from vidgen.metrics.quality import best_of_k, mean_pairwise_distance, psnr, ssim


def _skimage_per_frame(metric, x, y):
    """metric(frame_x, frame_y) on each [H, W, C] frame: [B, T]."""
    B, C, T, H, W = x.shape
    xs, ys = x.permute(0, 2, 3, 4, 1).numpy(), y.permute(0, 2, 3, 4, 1).numpy()  # (B, T, H, W, C)
    return np.array([[metric(xs[b, t], ys[b, t]) for t in range(T)] for b in range(B)])


def _skimage_ssim(a, b):
    return structural_similarity(a, b, channel_axis=-1, data_range=2.0, gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False)


def _random_videos(seed, channels, shape=(2, 3, 24, 20)):
    g = torch.Generator().manual_seed(seed)
    B, T, H, W = shape
    x = torch.rand(B, channels, T, H, W, generator=g, dtype=torch.float64) * 2 - 1
    y = (x + 0.3 * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(-1, 1)
    return x, y


def _smooth_videos(channels):
    """Low-frequency patterns and a shifted, rescaled copy: SSIM far from 0 and from 1."""
    B, T, H, W = 2, 3, 32, 28
    i, j = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    b, c, t = (torch.arange(n, dtype=torch.float64).view(*s) for n, s in
               [(B, (B, 1, 1, 1, 1)), (channels, (1, channels, 1, 1, 1)), (T, (1, 1, T, 1, 1))])
    x = torch.sin(0.2 * i + 0.1 * (b + 1) * j + t + c) * torch.cos(0.15 * j - 0.3 * c)  # (B, C, T, H, W)
    y = 0.8 * torch.sin(0.2 * i + 0.1 * (b + 1) * j + t + c + 0.4) * torch.cos(0.15 * j - 0.3 * c) + 0.05
    return x, y


# ---------------------------------------------------------------------------------------------------------- PSNR

def test_psnr_closed_form_constant_offset():
    x = torch.rand(2, 3, 4, 8, 8, dtype=torch.float64) * 1.5 - 1
    d = 0.1  # MSE = d², PSNR = 10·log10(2² / d²)
    assert torch.allclose(psnr(x, x + d), torch.full((2, 4), 10 * math.log10(4 / d**2), dtype=torch.float64))


@pytest.mark.parametrize("channels", [1, 3])
def test_psnr_matches_skimage(channels):
    x, y = _random_videos(0, channels)
    expected = _skimage_per_frame(lambda a, b: peak_signal_noise_ratio(a, b, data_range=2.0), x, y)
    out = psnr(x, y)
    assert out.shape == (2, 3)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12)


def test_psnr_identical_frames_are_inf():
    x, y = _random_videos(1, 3)
    y[:, :, 1] = x[:, :, 1]
    out = psnr(x, y)
    assert torch.isinf(out[:, 1]).all() and (out[:, 1] > 0).all() and torch.isfinite(out[:, [0, 2]]).all()


# ---------------------------------------------------------------------------------------------------------- SSIM

@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("videos", [_random_videos, _smooth_videos], ids=["random", "smooth"])
def test_ssim_matches_skimage_in_float64(videos, channels):
    x, y = videos(0, channels) if videos is _random_videos else videos(channels)
    expected = _skimage_per_frame(_skimage_ssim, x, y)
    out = ssim(x, y)
    assert out.shape == (2, 3) and out.dtype == torch.float64
    assert 0.05 < np.abs(expected).min() and expected.max() < 0.99  # a test that can see a wrong formula
    np.testing.assert_allclose(out.numpy(), expected, rtol=0, atol=1e-12)  # measured: ~2e-16


@pytest.mark.parametrize("channels", [1, 3])
def test_ssim_of_identical_frames_is_one(channels):
    x, _ = _random_videos(2, channels)
    torch.testing.assert_close(ssim(x, x.clone()), torch.ones(2, 3, dtype=torch.float64), rtol=0, atol=1e-12)


def test_ssim_float32_stays_close():
    x, y = _random_videos(3, 3)
    torch.testing.assert_close(ssim(x.float(), y.float()), ssim(x, y), rtol=0, atol=1e-5)


def test_ssim_rejects_frames_smaller_than_the_window():
    x = torch.zeros(1, 1, 2, 10, 16)
    with pytest.raises(ValueError, match="11x11"):
        ssim(x, x)


# ---------------------------------------------------------------------------------------------------- best of K

def test_best_of_k_picks_by_the_mean_over_frames_in_both_directions():
    scores = torch.tensor([  # (K=3, B=2, T=3)
        [[1.0, 1.0, 1.0], [5.0, 0.0, 0.0]],
        [[9.0, 0.0, 0.0], [2.0, 2.0, 2.0]],  # video 0: highest single frame, but mean 3 ...
        [[3.0, 3.0, 4.0], [0.0, 1.0, 0.0]],  # ... loses to this mean of 3.33
    ])
    assert torch.equal(best_of_k(scores), torch.tensor([[3.0, 3.0, 4.0], [2.0, 2.0, 2.0]]))
    assert torch.equal(best_of_k(scores, higher_is_better=False), torch.tensor([[1.0, 1.0, 1.0], [0.0, 1.0, 0.0]]))


def test_best_of_k_on_real_scores_has_shape_b_t():
    x, _ = _random_videos(4, 3)
    samples = [(x + 0.1 * k * torch.randn_like(x)).clamp(-1, 1) for k in range(4)]
    scores = torch.stack([psnr(s, x) for s in samples])  # (K, B, T); sample 0 is x itself: +inf
    best = best_of_k(scores)
    assert best.shape == (2, 3) and torch.isinf(best).all()
    assert best_of_k(torch.stack([ssim(s, x) for s in samples])).shape == (2, 3)


# ------------------------------------------------------------------------------------------ pairwise distance

def test_pairwise_distance_of_identical_samples_is_zero():
    x = torch.rand(1, 2, 3, 4, 5, 6).expand(5, -1, -1, -1, -1, -1)
    assert torch.equal(mean_pairwise_distance(x), torch.zeros(2, dtype=torch.float64))


def test_pairwise_distance_closed_form_and_explicit_pairs():
    # K=3 constant samples 0, 1, 3 (one video, 2 elements): pair MSEs 1, 9, 4 -> mean 14/3.
    tiny = torch.tensor([0.0, 1.0, 3.0]).view(3, 1, 1, 1, 1, 1).expand(3, 1, 1, 1, 1, 2)
    assert mean_pairwise_distance(tiny).item() == pytest.approx(14 / 3, rel=1e-12)
    # Random: every unordered pair, by a loop.
    s = torch.randn(6, 2, 3, 2, 5, 5, dtype=torch.float64)
    pairs = [(s[i] - s[j]).square().flatten(1).mean(1) for i in range(6) for j in range(i + 1, 6)]
    torch.testing.assert_close(mean_pairwise_distance(s), torch.stack(pairs).mean(0), rtol=1e-12, atol=0)
