"""SVG's frame encoder/decoder (vidgen.models.dvg.networks) at several resolutions, and the stateless LSTM
(vidgen.models.dvg.predictor)."""

from __future__ import annotations

import pytest
import torch

from vidgen.models.dvg.networks import Decoder, Encoder, init_weights, level_widths, levels_for, vgg_convs
from vidgen.models.dvg.predictor import FramePredictor


def test_levels_and_widths_reproduce_svg_at_64_px():
    assert levels_for(64) == 4 and levels_for(8) == 1 and levels_for(128) == 5
    assert level_widths(64, 4) == [64, 128, 256, 512]  # dcgan_64: nf, 2nf, 4nf, 8nf; vgg_64: 64 ... 512
    assert level_widths(64, 5) == [64, 128, 256, 512, 512]  # capped at 8 x width
    assert [vgg_convs(level) for level in range(4)] == [2, 2, 3, 3]
    for bad in (4, 48, 100):
        with pytest.raises(ValueError, match="power of two"):
            levels_for(bad)


@pytest.mark.parametrize("architecture", ["dcgan", "vgg"])
@pytest.mark.parametrize("resolution", [16, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_skips_and_range(architecture, resolution, channels):
    torch.manual_seed(0)
    width, g_dim, batch = 4, 6, 3
    encoder = Encoder(architecture, channels, g_dim, width, resolution)
    decoder = Decoder(architecture, channels, g_dim, width, resolution)
    frames = torch.rand(batch, channels, resolution, resolution)
    h, skips = encoder(frames)
    assert h.shape == (batch, g_dim) and h.abs().max() < 1  # tanh
    levels = levels_for(resolution)
    first = resolution // 2 if architecture == "dcgan" else resolution  # dcgan's stride halves at once
    assert [tuple(s.shape) for s in skips] == [(batch, w, first >> i, first >> i)
                                               for i, w in enumerate(level_widths(width, levels))]
    out = decoder(h, skips)
    assert out.shape == frames.shape
    assert out.min() >= 0 and out.max() <= 1  # sigmoid


def test_svg_parameter_counts_at_64_px():
    """At 64 px and width 64, the layouts are SVG's dcgan_64 and vgg_64 (parameter counts worked out from those
    files for g_dim 128 and one channel), less the biases of the convolutions that a BatchNorm follows."""
    def count(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    def conv(cin: int, cout: int, k: int, bn: bool = True) -> int:
        return cin * cout * k * k + (2 * cout if bn else cout)  # BatchNorm's gain and bias, or the conv's bias

    nf, g, nc = 64, 128, 1
    dcgan_encoder = (conv(nc, nf, 4) + conv(nf, 2 * nf, 4) + conv(2 * nf, 4 * nf, 4) + conv(4 * nf, 8 * nf, 4)
                     + conv(8 * nf, g, 4))
    dcgan_decoder = (conv(g, 8 * nf, 4) + conv(16 * nf, 4 * nf, 4) + conv(8 * nf, 2 * nf, 4) + conv(4 * nf, nf, 4)
                     + conv(2 * nf, nc, 4, bn=False))
    assert count(Encoder("dcgan", nc, g, nf, 64)) == dcgan_encoder
    assert count(Decoder("dcgan", nc, g, nf, 64)) == dcgan_decoder
    vgg_encoder = (conv(nc, 64, 3) + conv(64, 64, 3) + conv(64, 128, 3) + conv(128, 128, 3) + conv(128, 256, 3)
                   + 2 * conv(256, 256, 3) + conv(256, 512, 3) + 2 * conv(512, 512, 3) + conv(512, g, 4))
    vgg_decoder = (conv(g, 512, 4) + conv(1024, 512, 3) + conv(512, 512, 3) + conv(512, 256, 3)
                   + conv(512, 256, 3) + conv(256, 256, 3) + conv(256, 128, 3) + conv(256, 128, 3)
                   + conv(128, 64, 3) + conv(128, 64, 3) + conv(64, nc, 3, bn=False))
    assert count(Encoder("vgg", nc, g, nf, 64)) == vgg_encoder
    assert count(Decoder("vgg", nc, g, nf, 64)) == vgg_decoder


def test_svg_weight_init():
    torch.manual_seed(0)
    encoder = Encoder("dcgan", 3, 16, 32, 32)
    encoder.apply(init_weights)
    conv, norm = encoder.levels[1][0], encoder.levels[1][1]
    assert conv.weight.std().item() == pytest.approx(0.02, rel=0.1) and conv.bias is None
    assert norm.weight.mean().item() == pytest.approx(1.0, abs=0.01) and not norm.bias.any()
    assert 0 < norm.weight.std().item() < 0.04
    decoder = Decoder("dcgan", 3, 16, 32, 32)
    decoder.apply(init_weights)
    assert not decoder.to_frame[0].bias.any()  # the output conv keeps its (zeroed) bias: no BatchNorm follows


def test_the_lstm_state_belongs_to_one_sequence():
    torch.manual_seed(0)
    predictor = FramePredictor(g_dim=6, rnn_size=10, layers=2)
    sequences = torch.rand(5, 3, 6) * 2 - 1  # [T, B, g]

    def roll(seq: torch.Tensor) -> torch.Tensor:
        state = predictor.initial_state(seq.shape[1], seq.device)
        outputs = []
        for h in seq:
            out, state = predictor(h, state)
            outputs.append(out)
        return torch.stack(outputs)

    together = roll(sequences)
    assert together.shape == (5, 3, 6) and together.abs().max() < 1
    torch.testing.assert_close(roll(sequences[:, 1:2])[:, 0], together[:, 1])  # no state shared in a batch
    torch.testing.assert_close(roll(sequences), together)  # each sequence starts from zeros: no leftover state
    assert all(torch.equal(t, torch.zeros(3, 10)) for pair in predictor.initial_state(3, torch.device("cpu"))
               for t in pair)
    # The state carries the past: the same frame after different histories predicts differently.
    other = sequences.clone()
    other[0] = -other[0]
    assert not torch.allclose(roll(other)[-1], together[-1])
