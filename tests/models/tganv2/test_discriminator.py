"""The TGANv2 discriminators: one 3-D ResNet per level, the reference's downsampling, projection conditioning."""

from __future__ import annotations

import itertools

import pytest
import torch

from vidgen.models.tganv2.discriminator import TGANv2Discriminator, downsample
from vidgen.models.tganv2.generator import TGANv2Generator, sample_z
from vidgen.models.tganv2.pyramid import PyramidSpec, batch_levels, level_clips


def chainer_average_pool_reference(x: torch.Tensor, kernel, pad) -> torch.Tensor:
    """Chainer's average_pooling_nd (stride = kernel, pad on both sides, padding counted as zeros, windows starting
    at -pad + j kernel for j < (size + 2 pad - kernel) // kernel + 1), as explicit loops over a [C, T, H, W] tensor."""
    sizes = x.shape[1:]
    outs = [(s + 2 * p - k) // k + 1 for s, k, p in zip(sizes, kernel, pad)]
    y = torch.zeros(x.shape[0], *outs, dtype=x.dtype)
    for j in itertools.product(*(range(o) for o in outs)):
        total = torch.zeros(x.shape[0], dtype=x.dtype)
        for d in itertools.product(*(range(k) for k in kernel)):
            src = [-p + jj * k + dd for jj, k, p, dd in zip(j, kernel, pad, d)]
            if all(0 <= s < n for s, n in zip(src, sizes)):
                total += x[(slice(None), *src)]
        y[(slice(None), *j)] = total / (kernel[0] * kernel[1] * kernel[2])
    return y


@pytest.mark.parametrize("shape", [(4, 6, 6), (1, 3, 3), (3, 6, 5), (2, 1, 4)])
def test_downsample_is_the_reference_padded_average_pool(shape):
    x = torch.randn(1, 2, *shape, dtype=torch.float64)
    # tgan2/models/resblocks.py `_downsample`: kernel 2 on axes longer than 1, pad 1 on odd axes (length 1 included)
    kernel = [2 if s > 1 else 1 for s in shape]
    pad = [s % 2 for s in shape]
    torch.testing.assert_close(downsample(x)[0], chainer_average_pool_reference(x[0], kernel, pad))
    if shape[0] == 1:  # a single frame becomes [0, h, 0]
        y = downsample(x)
        assert y.shape[2] == 3 and y[:, :, 0].abs().max() == 0 and y[:, :, 2].abs().max() == 0


def test_per_level_logits_and_gradients_reach_every_level(make_config):
    cfg = make_config(batch_factors=(2, 1, 2))
    torch.manual_seed(0)
    dis = TGANv2Discriminator(cfg)
    clip = torch.rand(8, 3, 16, cfg.resolution, cfg.resolution) * 2 - 1
    real = batch_levels(level_clips(clip, PyramidSpec.from_config(cfg), (1, 0, 1)), cfg.batch_factors)
    levels = [x.clone().requires_grad_(True) for x in real]
    logits = dis(levels)
    assert [tuple(y.shape) for y in logits] == [(8,), (4,), (4,), (2,)]
    # The zero-centred penalty on real clips needs d(sum of all logits) / d(each level's input).
    grads = torch.autograd.grad(torch.cat(logits).sum(), levels, create_graph=True)
    for g, x in zip(grads, levels):
        assert g.shape == x.shape and torch.isfinite(g).all() and g.abs().amax(dim=(1, 2, 3, 4)).min() > 0
    sum(g.square().sum() for g in grads).backward()  # double backprop reaches every level's weights
    weights = [p for name, p in dis.named_parameters() if name.endswith("weight")]  # biases drop out of dy/dx
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in weights)


def test_discriminator_takes_the_generators_pyramid(make_config):
    cfg = make_config(batch_factors=(2, 2, 2))
    torch.manual_seed(0)
    gen, dis = TGANv2Generator(cfg, frames=16), TGANv2Discriminator(cfg)
    z = sample_z([torch.Generator().manual_seed(s) for s in range(8)], cfg.z_slow_dim, torch.device("cpu"))
    logits = dis(gen(z, phases=(0, 1, 0)))
    assert [tuple(y.shape) for y in logits] == [(8,), (4,), (2,), (1,)]
    torch.cat(logits).mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in gen.parameters())


def test_projection_conditioning(make_config):
    cfg = make_config(num_classes=3, batch_factors=(2, 1, 1))
    torch.manual_seed(0)
    dis = TGANv2Discriminator(cfg)
    clip = torch.rand(4, 3, 8, cfg.resolution, cfg.resolution) * 2 - 1
    levels = batch_levels(level_clips(clip, PyramidSpec.from_config(cfg)), cfg.batch_factors)
    a = dis(levels, torch.tensor([0, 1, 2, 0]))
    b = dis(levels, torch.tensor([1, 1, 2, 0]))
    assert (a[0][0] - b[0][0]).abs() > 0 and a[0][1:].equal(b[0][1:])
    assert a[1][0] != b[1][0]  # level 1 keeps videos 0 and 2, with their labels
    with pytest.raises(ValueError, match="label"):
        dis(levels)
