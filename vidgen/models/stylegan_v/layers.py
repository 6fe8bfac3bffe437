"""StyleGAN2 building blocks in plain PyTorch: no custom CUDA kernels, no runtime compilation.

Karras et al., "Analyzing and Improving the Image Quality of StyleGAN" (CVPR 2020), as released in
stylegan2-ada-pytorch; re-derived here from the equations, with the FIR resampling expressed as ordinary
(depthwise / transposed) convolutions so it runs on any device PyTorch supports.

- Equalized learning rate (Karras et al. 2018, Sec. 4.1): weights are stored as N(0, 1) / lr_mult and scaled at
  run time by lr_mult / sqrt(fan_in), so Adam's step moves every layer at the same relative speed and
  `lr_mult` slows a layer down (the mapping networks use 0.01).
- Modulation / demodulation (StyleGAN2 Eq. 1-3): w'_oik = s_i w_oik, w''_oik = w'_oik / sqrt(sum_ik w'_oik^2 + eps).
- Resampling with the separable [1, 3, 3, 1] low-pass filter (StyleGAN2 Appendix B, after Zhang 2019).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)
"""He gain of a leaky ReLU: keeps activations at unit variance from layer to layer."""

# ----------------------------------------------------------------------------------------------------------
# FIR resampling (upfirdn2d) with standard convolution ops


def setup_filter(taps: Sequence[float] = (1, 3, 3, 1)) -> torch.Tensor:
    """Separable 2-D low-pass filter from 1-D taps, normalised to unit DC gain: [fh, fw], sums to 1.

    The taps must be symmetric (every filter here is), which makes convolution and correlation the same
    operation and lets transposed convolutions implement zero-insertion upsampling exactly.
    """
    f1 = torch.as_tensor(taps, dtype=torch.float32)
    if f1.ndim != 1 or f1.numel() < 1 or not torch.equal(f1, f1.flip(0)):
        raise ValueError(f"resampling filter taps must be a symmetric 1-D sequence, got {list(taps)}")
    f = torch.outer(f1, f1)
    return f / f.sum()


def _depthwise(f: torch.Tensor, channels: int, dtype: torch.dtype, gain: float = 1.0) -> torch.Tensor:
    return (f * gain).to(dtype)[None, None].expand(channels, 1, *f.shape)  # [C, 1, fh, fw]


def filter2d(x: torch.Tensor, f: torch.Tensor, padding: int | Sequence[int] = 0, gain: float = 1.0) -> torch.Tensor:
    """Pad (x0, x1, y0, y1), then convolve every channel with `f` (no resampling). [B, C, H, W] -> same layout."""
    px0, px1, py0, py1 = _pad4(padding)
    x = F.pad(x, [px0, px1, py0, py1])
    return F.conv2d(x, _depthwise(f, x.shape[1], x.dtype, gain), groups=x.shape[1])


def upsample2d(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """2x upsampling: zero insertion, then the low-pass filter with gain 4 (= upfirdn2d(up=2, pad=[p+1, p]) for
    a filter of 2p+2 taps). One depthwise transposed convolution: [B, C, H, W] -> [B, C, 2H, 2W]."""
    fh, fw = f.shape
    if fh % 2 or fw % 2:
        raise ValueError("upsample2d needs a filter with an even number of taps (e.g. [1, 3, 3, 1])")
    # conv_transpose2d(stride 2) places x at even positions and sums filter copies: exactly zero insertion
    # followed by the (symmetric) filter; padding (f - 2) / 2 crops the result to 2H x 2W.
    return F.conv_transpose2d(x, _depthwise(f, x.shape[1], x.dtype, gain=4.0), stride=2,
                              padding=((fh - 2) // 2, (fw - 2) // 2), groups=x.shape[1])


def downsample2d(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """2x downsampling: low-pass filter, keep every second sample (= upfirdn2d(down=2, pad=[p, p]) for a filter
    of 2p+2 taps). One depthwise strided convolution: [B, C, H, W] -> [B, C, H/2, W/2]."""
    fh, fw = f.shape
    py, px = (fh - 2) // 2, (fw - 2) // 2
    x = F.pad(x, [px, px, py, py])
    return F.conv2d(x, _depthwise(f, x.shape[1], x.dtype), stride=2, groups=x.shape[1])


def conv2d_resample(x: torch.Tensor, w: torch.Tensor, f: torch.Tensor | None = None, up: int = 1,
                    down: int = 1, padding: int = 0, groups: int = 1) -> torch.Tensor:
    """Convolution (correlation, as F.conv2d) with optional 2x up- or downsampling by the FIR filter `f`.

    up = 2:   zero insertion, then correlation with w (with `padding` on the upsampled grid) and the filter
              (gain 4), as upsample2d does — without cropping between the two, so it equals conv2d(upsample2d(x),
              w, padding) except that the border sees the filtered signal rather than zeros. Computed as a stride-2
              transposed convolution with the flipped kernel, then the filter: the kernel never touches the
              inserted zeros.
    down = 2: equals conv2d(filter2d(x, f, pad), w, stride=2) — the filter, then a strided convolution;
              for a 1x1 kernel, downsample first (the filter then runs on the narrower input).
    """
    if up not in (1, 2) or down not in (1, 2) or (up > 1 and down > 1):
        raise ValueError(f"conv2d_resample supports up=2 or down=2 (not both), got up={up}, down={down}")
    kh, kw = w.shape[-2:]
    if up == 1 and down == 1:
        return F.conv2d(x, w, padding=padding, groups=groups)
    assert f is not None, "resampling needs a filter"
    fh, fw = f.shape
    if down == 2:
        if kh == 1 and kw == 1 and padding == 0:
            return F.conv2d(downsample2d(x, f), w, groups=groups)
        # Total padding so that blur (f) then a k x k stride-2 conv yields H/2: (f - 2) / 2 + padding per side.
        py, px = (fh - 2) // 2 + padding, (fw - 2) // 2 + padding
        x = filter2d(x, f, padding=(px, px, py, py))
        return F.conv2d(x, w, stride=2, groups=groups)
    # up == 2. conv_transpose2d wants [in, out/groups, kh, kw]; regroup a grouped [out, in/groups, ...] weight.
    out_ch, in_per_group = w.shape[:2]
    wt = w.flip([2, 3]).reshape(groups, out_ch // groups, in_per_group, kh, kw).transpose(1, 2)
    wt = wt.reshape(groups * in_per_group, out_ch // groups, kh, kw)
    x = F.conv_transpose2d(x, wt, stride=2, groups=groups)  # [B, O, 2H + k - 2, 2W + k - 2]
    # The transposed convolution is the zero-inserted input correlated with w after (k - 1) zeros of padding;
    # pad (or crop) it so that the filter lines up as in upsample2d and the output is 2H x 2W.
    p0y = (fh - 2) // 2 + 1 + padding - (kh - 1)
    p1y = fh + 1 - kh - p0y
    p0x = (fw - 2) // 2 + 1 + padding - (kw - 1)
    p1x = fw + 1 - kw - p0x
    return filter2d(x, f, padding=(p0x, p1x, p0y, p1y), gain=4.0)  # negative padding crops


def _pad4(padding: int | Sequence[int]) -> tuple[int, int, int, int]:
    if isinstance(padding, int):
        return padding, padding, padding, padding
    px0, px1, py0, py1 = padding
    return px0, px1, py0, py1


# ----------------------------------------------------------------------------------------------------------
# Bias + activation, and the equalized-lr layers


def bias_act(x: torch.Tensor, bias: torch.Tensor | None, activation: str = "linear", gain: float = 1.0,
             clamp: float | None = None) -> torch.Tensor:
    """x + b, then the activation times its gain (lrelu: sqrt 2) times `gain`, then clamp to +-clamp.

    Channels are on dim 1. Clamping bounds fp16 activations (the reference clamps every layer at 256)."""
    if bias is not None:
        x = x + bias.to(x.dtype).reshape(1, -1, *([1] * (x.ndim - 2)))
    if activation == "lrelu":
        x = F.leaky_relu(x, LRELU_SLOPE)
        gain = gain * LRELU_GAIN
    elif activation != "linear":
        raise ValueError(f"unknown activation '{activation}' (linear or lrelu)")
    if gain != 1.0:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


class FullyConnected(nn.Module):
    """Equalized-lr dense layer: y = act(x (W lr_mult / sqrt(in))^T + b lr_mult)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, bias_init: float = 0.0,
                 activation: str = "linear", lr_mult: float = 1.0) -> None:
        super().__init__()
        self.activation = activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mult)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init) / lr_mult)) if bias else None
        self.weight_gain = lr_mult / math.sqrt(in_features)
        self.bias_gain = lr_mult

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        if self.bias is None:
            return bias_act(x @ w.t(), None, self.activation)
        b = self.bias.to(x.dtype) * self.bias_gain
        if self.activation == "linear":
            return torch.addmm(b, x, w.t())
        return bias_act(x @ w.t(), b, self.activation)

    def extra_repr(self) -> str:
        return f"in={self.weight.shape[1]}, out={self.weight.shape[0]}, activation={self.activation}"


class Conv2d(nn.Module):
    """Equalized-lr 2-D convolution with optional 2x FIR up/downsampling, bias, activation and clamping."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activation: str = "linear", up: int = 1, down: int = 1, filter_taps: Sequence[int] = (1, 3, 3, 1),
                 conv_clamp: float | None = None, lr_mult: float = 1.0) -> None:
        super().__init__()
        self.activation, self.up, self.down, self.conv_clamp = activation, up, down, conv_clamp
        self.padding = kernel_size // 2
        self.register_buffer("resample_filter", setup_filter(filter_taps), persistent=False)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size) / lr_mult)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = lr_mult / math.sqrt(in_channels * kernel_size ** 2)
        self.bias_gain = lr_mult

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        w = (self.weight * self.weight_gain).to(x.dtype)
        x = conv2d_resample(x, w, self.resample_filter, up=self.up, down=self.down, padding=self.padding)
        b = self.bias * self.bias_gain if self.bias is not None else None
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, b, self.activation, gain=gain, clamp=clamp)

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return f"{i}->{o}, k={k}, up={self.up}, down={self.down}, activation={self.activation}"


class Conv1d(nn.Module):
    """Equalized-lr 1-D convolution without padding (the motion mapping network's layer).

    As in StyleGAN-V's release, its leaky ReLU has no sqrt(2) gain."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, activation: str = "lrelu",
                 lr_mult: float = 1.0) -> None:
        super().__init__()
        self.activation = activation
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size) / lr_mult)
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = lr_mult / math.sqrt(in_channels * kernel_size)
        self.bias_gain = lr_mult

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, L] -> [B, C', L - k + 1]
        y = F.conv1d(x, self.weight.to(x.dtype) * self.weight_gain, self.bias.to(x.dtype) * self.bias_gain)
        return F.leaky_relu(y, LRELU_SLOPE) if self.activation == "lrelu" else y


# ----------------------------------------------------------------------------------------------------------
# Modulated convolution


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True,
                     up: int = 1, padding: int = 0, resample_filter: torch.Tensor | None = None,
                     fused: bool = True) -> torch.Tensor:
    """StyleGAN2 modulated convolution (Eq. 1-3). x [B, I, H, W], weight [O, I, k, k], styles [B, I].

    fused=True: fold the per-sample style and demodulation into per-sample weights and run one grouped
    convolution (groups = B); it materialises [B, O, I, k, k] weights.
    fused=False: scale the activations by the styles, convolve with the shared weight, scale the outputs by the
    demodulation coefficients — the same maths (the convolution is linear) with one shared-weight convolution.
    Both give the same result.
    """
    batch, in_ch = styles.shape
    out_ch, _, kh, kw = weight.shape

    if x.dtype == torch.float16 and demodulate:
        # Pre-normalise so the fp16 products below cannot overflow; demodulation cancels these scales.
        weight = weight * (1 / math.sqrt(in_ch * kh * kw) / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)

    dcoefs = None
    if demodulate:
        # sum_{i,k} (s_i w_oik)^2 = sum_i s_i^2 sum_k w_oik^2: a [B, I] x [I, O] product, no [B, O, I, k, k].
        dcoefs = (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()  # [B, O]

    if not fused:
        x = x * styles.to(x.dtype).reshape(batch, -1, 1, 1)
        x = conv2d_resample(x, weight.to(x.dtype), resample_filter, up=up, padding=padding)
        if dcoefs is not None:
            x = x * dcoefs.to(x.dtype).reshape(batch, -1, 1, 1)
        return x

    w = weight.unsqueeze(0) * styles.reshape(batch, 1, in_ch, 1, 1)  # [B, O, I, k, k]
    if dcoefs is not None:
        w = w * dcoefs.reshape(batch, out_ch, 1, 1, 1)
    x = x.reshape(1, batch * in_ch, *x.shape[2:])  # the batch becomes groups of channels
    x = conv2d_resample(x, w.reshape(batch * out_ch, in_ch, kh, kw).to(x.dtype), resample_filter, up=up,
                        padding=padding, groups=batch)
    return x.reshape(batch, out_ch, *x.shape[2:])


class ModulatedConv2d(nn.Module):
    """A synthesis layer: affine(w) -> styles, modulated 3x3 conv (optionally 2x up), bias, lrelu, clamp.

    Per-pixel noise inputs are omitted: StyleGAN-V turns them off."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, kernel_size: int = 3, up: int = 1,
                 filter_taps: Sequence[int] = (1, 3, 3, 1), conv_clamp: float | None = None) -> None:
        super().__init__()
        self.up, self.conv_clamp, self.padding = up, conv_clamp, kernel_size // 2
        self.affine = FullyConnected(w_dim, in_channels, bias_init=1.0)  # styles start at 1
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.register_buffer("resample_filter", setup_filter(filter_taps), persistent=False)

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused: bool = True, gain: float = 1.0) -> torch.Tensor:
        styles = self.affine(w)  # [B, I]
        x = modulated_conv2d(x, self.weight, styles, up=self.up, padding=self.padding,
                             resample_filter=self.resample_filter, fused=fused)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias, "lrelu", gain=gain, clamp=clamp)


class ToRGB(nn.Module):
    """1x1 modulated convolution to RGB, without demodulation (StyleGAN2 skip generator)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, conv_clamp: float | None = None) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnected(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused: bool = True) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused=fused)
        return bias_act(x, self.bias, "linear", clamp=self.conv_clamp)


class MinibatchStd(nn.Module):
    """Append the mean (over channels and pixels) of the per-group standard deviation as one extra channel.

    Salimans et al. 2016 / Karras et al. 2018: lets D see the variety of a group of samples. The batch must be
    divisible by the group size (or smaller than it: then the whole batch is one group)."""

    def __init__(self, group_size: int = 4, num_channels: int = 1) -> None:
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = min(self.group_size, n)
        if n % g:
            raise ValueError(f"minibatch-std: batch {n} is not divisible by the group size {g}")
        f = self.num_channels
        y = x.reshape(g, -1, f, c // f, h, w)  # [G, n, F, c, H, W]: sample i belongs to group i % (n / G)
        y = (y - y.mean(dim=0)).square().mean(dim=0)  # variance over the group, [n, F, c, H, W]
        y = (y + 1e-8).sqrt().mean(dim=[2, 3, 4])  # [n, F]
        y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w)  # [N, F, H, W]
        return torch.cat([x, y], dim=1)


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Scale each vector to unit root-mean-square (the mapping networks' input normalisation)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()
