"""StyleGAN2 layers against float64 numpy references and closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vidgen.models.stylegan_v.layers import (Conv2d, FullyConnected, MinibatchStd, bias_act, conv2d_resample,
                                             downsample2d, filter2d, modulated_conv2d, setup_filter, upsample2d)

# ----------------------------------------------------------------------------------------------------------
# Float64 numpy references: upfirdn2d by its definition, and a plain correlation.


def upfirdn_np(x: np.ndarray, f: np.ndarray, up: int = 1, down: int = 1, pad=(0, 0, 0, 0), gain: float = 1.0):
    """Zero-insertion upsampling, pad (x0, x1, y0, y1), convolve with f, keep every `down`-th sample."""
    b, c, h, w = x.shape
    y = np.zeros((b, c, h * up, w * up))
    y[:, :, ::up, ::up] = x
    px0, px1, py0, py1 = pad
    y = np.pad(y, ((0, 0), (0, 0), (py0, py1), (px0, px1)))
    fh, fw = f.shape
    kernel = f[::-1, ::-1] * gain  # convolution = correlation with the flipped filter
    out = np.zeros((b, c, y.shape[2] - fh + 1, y.shape[3] - fw + 1))
    for i in range(fh):
        for j in range(fw):
            out += kernel[i, j] * y[:, :, i:i + out.shape[2], j:j + out.shape[3]]
    return out[:, :, ::down, ::down]


def correlate_np(x: np.ndarray, w: np.ndarray, stride: int = 1) -> np.ndarray:
    """Valid cross-correlation (F.conv2d without padding)."""
    _, _, h, wd = x.shape
    _, _, kh, kw = w.shape
    ho, wo = (h - kh) // stride + 1, (wd - kw) // stride + 1
    out = np.zeros((x.shape[0], w.shape[0], ho, wo))
    for i in range(kh):
        for j in range(kw):
            patch = x[:, :, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride]
            out += np.einsum("bchw,oc->bohw", patch, w[:, :, i, j])
    return out


@pytest.fixture
def data():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 8, 8, generator=gen, dtype=torch.float64)
    w3 = torch.randn(5, 3, 3, 3, generator=gen, dtype=torch.float64)
    w1 = torch.randn(5, 3, 1, 1, generator=gen, dtype=torch.float64)
    return x, w3, w1, setup_filter().double()


def test_filter_is_separable_normalised_and_symmetric():
    f = setup_filter([1, 3, 3, 1])
    expected = np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64.0
    np.testing.assert_allclose(f.numpy(), expected, rtol=0, atol=1e-7)
    with pytest.raises(ValueError, match="symmetric"):
        setup_filter([1, 2, 3])


def test_upsample_and_downsample_match_upfirdn_reference(data):
    x, _, _, f = data
    # The reference's upsample2d: up=2, pad (2, 1), gain 4; downsample2d: down=2, pad (1, 1).
    np.testing.assert_allclose(upsample2d(x, f).numpy(), upfirdn_np(x.numpy(), f.numpy(), up=2, pad=(2, 1, 2, 1),
                                                                     gain=4.0), atol=1e-12)
    np.testing.assert_allclose(downsample2d(x, f).numpy(), upfirdn_np(x.numpy(), f.numpy(), down=2,
                                                                       pad=(1, 1, 1, 1)), atol=1e-12)
    np.testing.assert_allclose(filter2d(x, f, padding=(2, 1, 0, 3)).numpy(),
                               upfirdn_np(x.numpy(), f.numpy(), pad=(2, 1, 0, 3)), atol=1e-12)


def test_resampling_preserves_a_constant_image_away_from_the_border():
    f = setup_filter().double()
    ones = torch.ones(1, 1, 8, 8, dtype=torch.float64)
    assert torch.allclose(upsample2d(ones, f)[..., 2:-2, 2:-2], torch.ones(1, 1, 12, 12, dtype=torch.float64))
    assert torch.allclose(downsample2d(ones, f)[..., 1:-1, 1:-1], torch.ones(1, 1, 2, 2, dtype=torch.float64))


def test_up_and_down_convolutions_match_the_reference_composition(data):
    x, w3, w1, f = data
    xn, fn = x.numpy(), f.numpy()
    # up=2, 3x3: zero insertion, then the kernel and the filter with no cropping in between.
    expected = correlate_np(upfirdn_np(xn, fn, up=2, pad=(3, 2, 3, 2), gain=4.0), w3.numpy())
    np.testing.assert_allclose(conv2d_resample(x, w3, f, up=2, padding=1).numpy(), expected, atol=1e-12)
    expected = correlate_np(upfirdn_np(xn, fn, up=2, pad=(2, 1, 2, 1), gain=4.0), w1.numpy())
    np.testing.assert_allclose(conv2d_resample(x, w1, f, up=2).numpy(), expected, atol=1e-12)
    # down=2, 3x3: filter with padding 2, then a stride-2 correlation; 1x1: downsample, then the kernel.
    expected = correlate_np(upfirdn_np(xn, fn, pad=(2, 2, 2, 2)), w3.numpy(), stride=2)
    np.testing.assert_allclose(conv2d_resample(x, w3, f, down=2, padding=1).numpy(), expected, atol=1e-12)
    expected = correlate_np(upfirdn_np(xn, fn, down=2, pad=(1, 1, 1, 1)), w1.numpy())
    np.testing.assert_allclose(conv2d_resample(x, w1, f, down=2).numpy(), expected, atol=1e-12)


def test_grouped_up_convolution_equals_separate_groups(data):
    _, w3, _, f = data
    x = torch.randn(1, 6, 8, 8, dtype=torch.float64)
    w = torch.cat([w3, w3.flip(0)])  # [10, 3, 3, 3]: two groups of 5 outputs
    grouped = conv2d_resample(x, w, f, up=2, padding=1, groups=2)
    separate = torch.cat([conv2d_resample(x[:, :3], w[:5], f, up=2, padding=1),
                          conv2d_resample(x[:, 3:], w[5:], f, up=2, padding=1)], dim=1)
    torch.testing.assert_close(grouped, separate)


@pytest.mark.parametrize("up", [1, 2])
@pytest.mark.parametrize("demodulate", [True, False])
def test_modulated_conv_grouped_equals_activation_scaling(up, demodulate):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, 4, 8, 8, generator=gen, dtype=torch.float64)
    weight = torch.randn(6, 4, 3, 3, generator=gen, dtype=torch.float64)
    styles = torch.randn(3, 4, generator=gen, dtype=torch.float64)
    f = setup_filter().double()
    fused = modulated_conv2d(x, weight, styles, demodulate=demodulate, up=up, padding=1, resample_filter=f, fused=True)
    scaled = modulated_conv2d(x, weight, styles, demodulate=demodulate, up=up, padding=1, resample_filter=f,
                              fused=False)
    torch.testing.assert_close(fused, scaled)
    # Against the definition for sample 0: w'' = s * w / ||s * w||, then a plain convolution.
    w0 = weight * styles[0].reshape(1, -1, 1, 1)
    if demodulate:
        w0 = w0 / (w0.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8).sqrt()
    torch.testing.assert_close(fused[:1], conv2d_resample(x[:1], w0, f, up=up, padding=1))


def test_demodulation_gives_unit_output_variance():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(4, 64, 16, 16, generator=gen)
    y = modulated_conv2d(x, torch.randn(64, 64, 3, 3, generator=gen), torch.randn(4, 64, generator=gen) * 3,
                         padding=1)
    assert abs(float(y[..., 1:-1, 1:-1].std()) - 1.0) < 0.1


@pytest.mark.parametrize("lr_mult", [1.0, 0.01])
def test_equalized_lr_gains_for_dense_and_conv_layers(lr_mult):
    torch.manual_seed(0)
    fc = FullyConnected(256, 128, lr_mult=lr_mult)
    conv = Conv2d(32, 64, 3, lr_mult=lr_mult)
    for layer, fan_in in ((fc, 256), (conv, 32 * 9)):
        assert layer.weight_gain == pytest.approx(lr_mult / math.sqrt(fan_in))
        effective = (layer.weight * layer.weight_gain).detach()
        # Runtime scaling: the effective weight has std 1 / sqrt(fan_in) whatever the multiplier ...
        assert float(effective.std()) == pytest.approx(1 / math.sqrt(fan_in), rel=0.05)
        # ... and one Adam step (which moves every stored weight by ~lr) moves it by lr * lr_mult / sqrt(fan_in).
        before = effective.clone()
        opt = torch.optim.Adam(layer.parameters(), lr=1e-3)
        x = torch.randn(8, 256) if layer is fc else torch.randn(2, 32, 6, 6)
        layer(x).square().sum().backward()
        opt.step()
        change = (layer.weight * layer.weight_gain).detach() - before
        assert float(change.abs().mean()) == pytest.approx(1e-3 * lr_mult / math.sqrt(fan_in), rel=0.05)


def test_lrelu_layers_keep_unit_scale():
    torch.manual_seed(0)
    x = torch.randn(4096, 512)
    with torch.no_grad():
        y = FullyConnected(512, 512, activation="lrelu")(x)
    # He gain sqrt(2) for the leaky ReLU: E[y^2] = 2 E[lrelu(n)^2] = 1 + 0.2^2 for n ~ N(0, 1).
    assert float(y.square().mean()) == pytest.approx(1 + 0.2 ** 2, rel=0.05)


def test_bias_act_gain_and_clamp():
    x = torch.tensor([[-1.0, 0.5, 300.0]]).reshape(1, 3, 1, 1)
    y = bias_act(x, torch.tensor([0.0, 0.5, 0.0]), "lrelu", gain=1.0, clamp=256.0).flatten()
    torch.testing.assert_close(y, torch.tensor([-0.2 * math.sqrt(2), math.sqrt(2), 256.0]))


def test_minibatch_std_matches_group_statistics():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(8, 5, 4, 4, generator=gen, dtype=torch.float64)
    y = MinibatchStd(group_size=4)(x)
    assert y.shape == (8, 6, 4, 4)
    # Group g holds samples g, g + 2, g + 4, g + 6 (the batch is split as [G, n]).
    for g in range(2):
        members = x[g::2]
        expected = (members.var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
        for i in range(g, 8, 2):
            torch.testing.assert_close(y[i, 5], torch.full((4, 4), float(expected), dtype=torch.float64))
    with pytest.raises(ValueError, match="not divisible"):
        MinibatchStd(group_size=4)(torch.randn(6, 5, 4, 4))
    assert MinibatchStd(group_size=4)(torch.randn(3, 5, 4, 4)).shape == (3, 6, 4, 4)  # smaller batch: one group
