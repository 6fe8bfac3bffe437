"""Per-frame prediction metrics (PSNR, SSIM), the best-of-K selection and the diversity of K futures.

Pure torch; videos are float [B, C, T, H, W] in [-1, 1], so the data range is 2. Every score is per frame: [B, T].

The video-prediction papers (SVG, Denton & Fergus 2018; DVG, Shrivastava & Shrivastava 2021) score each predicted
frame with scikit-image's PSNR and SSIM, draw K futures per test video, keep the best one and plot its per-frame
curve. `psnr` and `ssim` here reproduce scikit-image's formulas (tests check them against it); `best_of_k` is the
selection.
"""

import torch
import torch.nn.functional as F
from torch import Tensor


def psnr(x: Tensor, y: Tensor, data_range: float = 2.0) -> Tensor:
    """Peak signal-to-noise ratio per frame, in dB: 10·log10(R² / MSE), the MSE taken over C, H and W.

    x, y: [B, C, T, H, W]. Returns float64 [B, T]. Same formula as skimage.metrics.peak_signal_noise_ratio on one
    [H, W, C] frame. Identical frames have MSE 0 and give +inf, as scikit-image does; nothing is capped here, so a
    caller that averages must decide (keep inf, average the finite values, or cap) and say which it did.
    Note: SVG's own eval_seq averages per-channel PSNRs instead; that differs from this for C > 1.
    """
    _check_videos(x, y)
    mse = (x.double() - y.double()).square().mean(dim=(1, 3, 4))  # (B, T), float64 accumulation
    return 10 * torch.log10(data_range**2 / mse)  # (B, T); mse 0 -> +inf


def _gaussian_window(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """The normalised 1-D Gaussian, as scipy.ndimage.gaussian_filter1d builds it."""
    r = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2
    w = torch.exp(-0.5 * (r / sigma) ** 2)
    return (w / w.sum()).to(dtype)


def ssim(x: Tensor, y: Tensor, data_range: float = 2.0) -> Tensor:
    """Structural similarity per frame (Wang, Bovik, Sheikh & Simoncelli 2004, eq. 13), averaged over channels.

    x, y: [B, C, T, H, W] with H, W >= 11. Returns float64 [B, T]. The paper's settings: an 11x11 Gaussian window
    with sigma 1.5, K1 = 0.01, K2 = 0.03, population (not sample) covariances. It equals
    skimage.metrics.structural_similarity(a, b, channel_axis=-1, data_range=data_range, gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False) on each [H, W, C] frame: scikit-image filters with reflected borders
    and then drops a (11 - 1) // 2 = 5 pixel strip before averaging, which is exactly the 'valid' convolution used
    here (the reflected pixels never reach the kept region). The local statistics are computed in the input's
    floating dtype (pass float64 for reference numbers; float32 is enough for [-1, 1] frames) and averaged in
    float64.
    """
    _check_videos(x, y)
    B, C, T, H, W = x.shape
    size, sigma = 11, 1.5  # truncate 3.5 in scikit-image: radius int(3.5 * 1.5 + 0.5) = 5
    if H < size or W < size:
        raise ValueError(f"ssim needs frames of at least {size}x{size} pixels; got {H}x{W}")
    dtype = x.dtype if x.dtype.is_floating_point else torch.float32

    def frames(v: Tensor) -> Tensor:  # every (video, channel, frame) as a one-channel image
        return v.to(dtype).reshape(B * C * T, 1, H, W)  # (BCT, 1, H, W); [B, C, T] order kept for the regroup

    w = _gaussian_window(size, sigma, dtype, x.device)

    def blur(v: Tensor) -> Tensor:  # separable Gaussian, valid region only
        v = F.conv2d(v, w.view(1, 1, size, 1))  # (BCT, 1, H-10, W)
        return F.conv2d(v, w.view(1, 1, 1, size))  # (BCT, 1, H-10, W-10)

    a, b = frames(x), frames(y)
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a * mu_a  # population variances and covariance under the window
    var_b = blur(b * b) - mu_b * mu_b
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    per_channel = ssim_map.double().mean(dim=(1, 2, 3)).view(B, C, T)  # float64 mean over the valid region
    return per_channel.mean(dim=1)  # (B, T)


def best_of_k(scores: Tensor, higher_is_better: bool = True) -> Tensor:
    """The per-frame curve of the best of K samples, per video: the SVG/DVG "best of 100" convention.

    scores: [K, B, T], one score per sample, video and predicted frame. For each video the sample whose mean over
    the T frames is best (largest, or smallest when higher_is_better is False) is chosen, and its per-frame scores
    are returned: [B, T]. One sample per video is chosen for the whole curve, not the best per frame (SVG's
    generate script sorts the samples by their mean SSIM over the predicted frames). Each metric picks its own best
    sample. A sample with a +inf PSNR frame (a perfect frame) has a +inf mean and is chosen.
    """
    if scores.ndim != 3:
        raise ValueError(f"best_of_k expects scores [K, B, T]; got shape {tuple(scores.shape)}")
    mean = scores.double().mean(dim=2)  # (K, B)
    best = mean.argmax(dim=0) if higher_is_better else mean.argmin(dim=0)  # (B,)
    return scores[best, torch.arange(scores.shape[1], device=scores.device)]  # (B, T)


def mean_pairwise_distance(samples: Tensor) -> Tensor:
    """Diversity of K futures: the mean over the K(K-1)/2 unordered pairs of the mean squared error between them.

    samples: [K, B, C, T, H, W]. Returns float64 [B]. The distance is the per-element MSE (squared L2 divided by
    C·T·H·W), so it does not grow with the resolution. Computed in O(K) through the identity
    Σ_{i<j} ‖x_i − x_j‖² = K Σ_i ‖x_i − x̄‖², in float64.
    """
    if samples.ndim != 6 or samples.shape[0] < 2:
        raise ValueError(f"mean_pairwise_distance expects samples [K>=2, B, C, T, H, W]; got {tuple(samples.shape)}")
    K = samples.shape[0]
    s = samples.double().flatten(2)  # (K, B, N)
    spread = (s - s.mean(dim=0)).square().sum(dim=0).mean(dim=1)  # (B,): Σ_i ‖x_i − x̄‖² / N
    return 2 * spread / (K - 1)  # K·spread / (K(K-1)/2)


def _check_videos(x: Tensor, y: Tensor) -> None:
    if x.ndim != 5 or x.shape != y.shape:
        raise ValueError(f"expected two videos [B, C, T, H, W] of one shape; got {tuple(x.shape)} and {tuple(y.shape)}")
