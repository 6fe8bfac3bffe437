"""The prediction protocols as data: their names, the best-of-K curve, the streaming diversity, the gate, the plot."""

import itertools

import numpy as np
import pytest
import torch

from vidgen.errors import ConfigError
from vidgen.metrics.prediction import (DEFAULT_VIDEOS, Curve, FutureSpread, best_of_k_curve, check_num,
                                       get_prediction_protocols, is_prediction_metric, parse_prediction_protocol,
                                       parse_prediction_thresholds, plot_curves, prediction_groups)
from vidgen.metrics.quality import mean_pairwise_distance

# ---------------------------------------------------------------------------------------------------------- names


@pytest.mark.parametrize("name, quantity, c, n, k", [
    ("pred_psnr_c5_n10_best100", "psnr", 5, 10, 100),
    ("pred_ssim_c2_n28_best1", "ssim", 2, 28, 1),
    ("pred_fvd_c1_n15_k16", "fvd", 1, 15, 16),
    ("pred_div_c10_n1_k2", "div", 10, 1, 2),
])
def test_names_state_c_n_and_k(name, quantity, c, n, k):
    protocol = parse_prediction_protocol(name)
    assert (protocol.name, protocol.quantity, protocol.context, protocol.frames, protocol.samples) == \
        (name, quantity, c, n, k)
    assert protocol.num_videos == DEFAULT_VIDEOS and is_prediction_metric(name)
    assert protocol.label(DEFAULT_VIDEOS) == name and protocol.label(3) == f"{name} (n=3)"
    assert protocol.to_dict()["description"]


@pytest.mark.parametrize("name, message", [
    ("pred_psnr_c5_n10_best0", "K must be >= 1"),
    ("pred_fvd_c5_n10_k0", "K must be >= 1"),
    ("pred_div_c5_n10_k1", "diversity needs K >= 2"),
    ("pred_psnr_c0_n10_best4", "must be >= 1"),
    ("pred_ssim_c5_n0_best4", "must be >= 1"),
    ("pred_fvd_c2_n6_k4", "at least 9 frames"),
    ("pred_psnr_c5_n10_k100", "write it as 'pred_psnr_c5_n10_best100'"),
    ("pred_fvd_c5_n10_best100", "write it as 'pred_fvd_c5_n10_k100'"),
    ("pred_psnr_c05_n10_best100", "write it as 'pred_psnr_c5_n10_best100'"),
    ("pred_lpips_c5_n10_best100", "unknown metric 'pred_lpips_c5_n10_best100'; prediction metrics look like"),
    ("pred_psnr_c5_n10", "unknown metric"),
])
def test_bad_names_are_one_line_config_errors(name, message):
    with pytest.raises(ConfigError, match=message) as info:
        parse_prediction_protocol(name)
    assert "\n" not in str(info.value)


def test_equal_settings_share_a_group_and_num_may_only_lower_the_count():
    protocols = get_prediction_protocols("pred_psnr_c2_n7_best3, pred_fvd_c2_n7_k3,pred_div_c2_n7_k2")
    assert [[p.name for p in group] for group in prediction_groups(protocols)] == \
        [["pred_psnr_c2_n7_best3", "pred_fvd_c2_n7_k3"], ["pred_div_c2_n7_k2"]]
    check_num(None, protocols)
    check_num(2, protocols)
    for num in (1, 257):
        with pytest.raises(ConfigError, match="--num must lie in 2..256"):
            check_num(num, protocols)
    with pytest.raises(ConfigError, match="named twice"):
        get_prediction_protocols("pred_psnr_c2_n7_best3,pred_psnr_c2_n7_best3")


def test_only_fvd_can_be_gated():
    protocols = get_prediction_protocols("pred_psnr_c2_n7_best3,pred_fvd_c2_n7_k3")
    assert parse_prediction_thresholds(["pred_fvd_c2_n7_k3=300"], protocols) == {"pred_fvd_c2_n7_k3": 300.0}
    with pytest.raises(ConfigError, match="is better higher; only pred_fvd_"):
        parse_prediction_thresholds(["pred_psnr_c2_n7_best3=20"], protocols)
    with pytest.raises(ConfigError, match="not among the metrics asked for"):
        parse_prediction_thresholds(["fvd2048_16f=20"], protocols)
    with pytest.raises(ConfigError, match="must look like metric=number"):
        parse_prediction_thresholds(["pred_fvd_c2_n7_k3"], protocols)


# ---------------------------------------------------------------------------------------------------------- best of K


def test_best_of_k_curve_keeps_each_videos_best_mean_sample():
    # 2 videos, 3 samples, 2 frames. Video 0: sample 2 has the best mean (though sample 0 wins frame 0);
    # video 1: sample 1.
    scores = torch.tensor([[[30.0, 10.0], [20.0, 20.0], [25.0, 24.0]],
                           [[10.0, 10.0], [12.0, 40.0], [39.0, 11.0]]], dtype=torch.float64)  # (N, K, n)
    np.testing.assert_allclose(best_of_k_curve(scores).numpy(), [(25.0 + 12.0) / 2, (24.0 + 40.0) / 2])


# ---------------------------------------------------------------------------------------------------------- diversity


def _futures(seed, K=5, N=3, C=2, n=4, H=6, W=5):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(N, K, C, n, H, W, generator=g, dtype=torch.float64) * 2 - 1  # (N, K, C, n, H, W)


@pytest.mark.parametrize("batch", [1, 2, 4, 15])
def test_streaming_diversity_equals_the_pairwise_mean(batch):
    futures = _futures(0)
    N, K, C, n, H, W = futures.shape
    spread = FutureSpread(K)
    flat = futures.flatten(0, 1)  # (N·K, C, n, H, W), video-major as the evaluation predicts them
    owners = [j for j in range(N) for _ in range(K)]
    for start in range(0, N * K, batch):  # batches that split a video's futures, or hold several videos
        spread.add(owners[start:start + batch], flat[start:start + batch])
    # Brute force: the mean over the K(K-1)/2 pairs of the per-value squared difference, frame by frame.
    brute = np.array([[np.mean([((futures[j, a, :, t] - futures[j, b, :, t]) ** 2).mean().item()
                                 for a, b in itertools.combinations(range(K), 2)]) for t in range(n)]
                      for j in range(N)])
    curves = torch.stack([spread.curves[j] for j in range(N)]).numpy()
    np.testing.assert_allclose(curves, brute, rtol=1e-12)
    np.testing.assert_allclose(spread.curve().numpy(), brute.mean(axis=0), rtol=1e-12)
    # Averaged over the frames, it is quality.mean_pairwise_distance of the whole futures.
    np.testing.assert_allclose(curves.mean(axis=1), mean_pairwise_distance(futures.transpose(0, 1)).numpy(),
                               rtol=1e-12)


def test_identical_futures_have_no_diversity():
    futures = _futures(1, K=1).expand(-1, 4, -1, -1, -1, -1)  # (N, 4, ...): the same future 4 times
    spread = FutureSpread(4)
    for j in range(futures.shape[0]):
        spread.add([j] * 3, futures[j, :3])
        spread.add([j], futures[j, 3:])
    assert spread.curve().abs().max().item() < 1e-30


def test_a_video_given_more_than_k_futures_is_a_bug():
    spread = FutureSpread(2)
    futures = _futures(2, K=3, N=1)[0]
    with pytest.raises(ValueError, match="more than K"):
        spread.add([0, 0, 0], futures)


# ---------------------------------------------------------------------------------------------------------- plot


def test_plot_writes_one_png_with_a_subplot_per_quantity(tmp_path):
    import matplotlib.image

    path = tmp_path / "curves.png"
    plot_curves([Curve("pred_psnr_c2_n3_best4", "psnr", 2, (30.0, 25.0, 21.0)),
                 Curve("pred_ssim_c2_n3_best4", "ssim", 2, (0.9, 0.8, 0.7)),
                 Curve("pred_div_c2_n3_k4", "div", 2, (0.01, 0.02, 0.04))], path, title="run vs data")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[1] > 2 * image.shape[0]  # three subplots side by side
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically
    with pytest.raises(ValueError, match="no per-frame curve"):
        plot_curves([], tmp_path / "none.png")
