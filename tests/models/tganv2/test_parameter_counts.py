"""Parameter counts at the reference's UCF-101 192x192 setting, against counts derived layer by layer from the
reference's definitions (tgan2/models/generators/multi_tgan_clstm_generator.py with clstm_ch 1024, n_layers 1, t_size 3,
ch 32; tgan2/models/discriminators/multi_resnet_video_discriminator.py with mid_ch 64). Chainer counts BatchNorm's
gamma and beta as parameters and its running statistics not, like torch. Built on the meta device: no memory, no
forward pass."""

from __future__ import annotations

import pytest
import torch

from vidgen.models.tganv2.config import TGANv2Config
from vidgen.models.tganv2.discriminator import TGANv2Discriminator
from vidgen.models.tganv2.generator import TGANv2Generator
from vidgen.recipe import load_recipe


def conv(cin: int, cout: int, taps: int, bias: bool = True) -> int:
    return cin * cout * taps + (cout if bias else 0)


def reference_generator_count(z=256, t=3, clstm=1024, layers=1, ch=32, out=3) -> int:
    fc = conv(z, t * t * clstm, 1)  # L.Linear(z_slow_dim, t_size^2 clstm_ch)
    lstm = layers * (conv(clstm, 4 * clstm, 9) + conv(clstm, 4 * clstm, 9, bias=False))  # w_xifoc, w_hifoc
    widths = [clstm, ch * 16, ch * 8, ch * 4, ch * 2, ch, ch]  # block1 .. block6

    def gen_block(cin, cout):  # b1, c1, b2, c2, c_sc
        return 2 * cin + conv(cin, cout, 9) + 2 * cout + conv(cout, cout, 9) + conv(cin, cout, 1)

    blocks = sum(gen_block(a, b) for a, b in zip(widths, widths[1:]))
    heads = sum(2 * c + conv(c, out, 9) for c in (ch * 4, ch * 2, ch, ch))  # b3/c3 .. b6/c6
    return fc + lstm + blocks + heads


def dead_biases(clstm=1024, ch=32) -> int:
    """The block convs' biases that vidgen leaves out (each feeds only BatchNorms; generator.UpBlock)."""
    widths = [clstm, ch * 16, ch * 8, ch * 4, ch * 2, ch, ch]
    return sum(3 * b for b in widths[1:])  # c1, c2, c_sc of each block


def reference_discriminator_count(mid=64, levels=4, cin=3) -> int:
    optimized = conv(cin, mid, 27) + conv(mid, mid, 27) + conv(cin, mid, 1)  # OptimizedDisBlock
    widths = [mid, mid * 2, mid * 4, mid * 8, mid * 16]
    dis_blocks = sum(conv(a, a, 27) + conv(a, b, 27) + conv(a, b, 1) for a, b in zip(widths, widths[1:]))  # hidden = in
    return levels * (optimized + dis_blocks + conv(mid * 16, 1, 1))  # + l6


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("source", ["defaults", "recipe"])
def test_parameter_counts_at_the_reference_ucf101_192_setting(source):
    cfg = TGANv2Config() if source == "defaults" else load_recipe("tganv2-ucf101-192").model
    with torch.device("meta"):
        gen, dis = TGANv2Generator(cfg), TGANv2Discriminator(cfg)
    assert count(gen) + dead_biases() == reference_generator_count() == 88_032_460
    assert count(gen.clstm) == 2 * 9 * 4 * 1024 ** 2 + 4 * 1024  # the ConvLSTM: 75.5 M of G's 88.0 M
    assert count(dis) == reference_discriminator_count() == 116_077_060  # 4 levels x 29.0 M
    # The rendering blocks and heads of levels 1-3, which see 1/2, 1/4 and 1/8 of the frames, are small: the
    # paper's premise that the costly late layers hold few parameters.
    late = sum(count(m) for m in (*gen.blocks[3:], *gen.heads[1:]))
    assert late == 172_745 - 3 * (64 + 32 + 32) and late < 0.0025 * count(gen)  # 0.2 %; less their dead biases
