"""The TGANv2 generator: the ConvLSTM cell against its equations, the pyramid it renders, and sampling."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vidgen.models.tganv2.generator import ConvLSTMCell, TGANv2Generator, sample_z
from vidgen.models.tganv2.pyramid import draw_phases, level_frame_indices

CPU = torch.device("cpu")


def seeded_z(seeds, dim: int) -> torch.Tensor:
    return sample_z([torch.Generator().manual_seed(s) for s in seeds], dim, CPU)


def lstm_step_reference(cell: ConvLSTMCell, x, h, c):
    """One ConvLSTM step written out gate by gate (tgan2/models/conv_lstm.py): the convolutions' output channels
    hold the gates in the order i, f, o, c; only the input convolution has a bias."""
    n = cell.hidden_channels
    wx, bx, wh = cell.conv_x.weight, cell.conv_x.bias, cell.conv_h.weight

    def pre_activation(k: int) -> torch.Tensor:  # gate k: W_xk * x + b_k + W_hk * h
        return (F.conv2d(x, wx[k * n:(k + 1) * n], bx[k * n:(k + 1) * n], padding=1)
                + F.conv2d(h, wh[k * n:(k + 1) * n], padding=1))

    i = torch.sigmoid(pre_activation(0))
    f = torch.sigmoid(pre_activation(1))
    o = torch.sigmoid(pre_activation(2))
    c_next = f * c + i * torch.tanh(pre_activation(3))
    h_next = o * torch.tanh(c_next)
    return h_next, c_next


def test_conv_lstm_cell_matches_the_gate_equations_in_float64():
    torch.manual_seed(0)
    cell = ConvLSTMCell(3, 5).double()
    with torch.no_grad():
        cell.conv_x.bias.normal_()  # the reference initialises it to zero; a test needs it to show
    xs = torch.randn(4, 2, 3, 6, 7, dtype=torch.float64)  # [T, B, C, H, W]
    h = c = torch.zeros(2, 5, 6, 7, dtype=torch.float64)
    state = None
    for t in range(4):
        h, c = lstm_step_reference(cell, xs[t], h, c)
        state = cell(xs[t], state)
        torch.testing.assert_close(state[0], h, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(state[1], c, rtol=1e-12, atol=1e-12)
    # None is an all-zero input (the generator's input after the first frame).
    zero = torch.zeros_like(xs[0])
    for got, want in zip(cell(None, state), lstm_step_reference(cell, zero, h, c)):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_forget_bias_opens_only_the_forget_gates():
    cell = ConvLSTMCell(3, 4, forget_bias=2.0)
    i, f, o, c = cell.conv_x.bias.detach().chunk(4)  # the gate order of the reference: i, f, o, c
    assert (f == 2.0).all() and not torch.cat([i, o, c]).any()
    assert not ConvLSTMCell(3, 4).conv_x.bias.any()  # the reference's (Chainer's) zero biases by default


def test_pyramid_shapes_and_range(make_config):
    cfg = make_config()
    torch.manual_seed(0)
    gen = TGANv2Generator(cfg, frames=16)  # training mode
    phases = draw_phases(cfg.frame_factors, torch.Generator().manual_seed(1))
    videos = gen(seeded_z(range(4), cfg.z_slow_dim), phases=phases)
    assert [tuple(v.shape) for v in videos] == [(4, 3, 16, 4, 4), (4, 3, 8, 8, 8), (4, 3, 4, 16, 16),
                                                (4, 3, 2, 32, 32)]
    for v in videos:
        assert torch.isfinite(v).all() and v.abs().max() <= 1.0
    sum(v.square().mean() for v in videos).backward()  # every block and head takes part in some level
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in gen.parameters())


def test_batch_subsampling_halves_the_videos_per_level(make_config):
    cfg = make_config(batch_factors=(2, 2, 2))
    torch.manual_seed(0)
    videos = TGANv2Generator(cfg, frames=8)(seeded_z(range(8), cfg.z_slow_dim), phases=(1, 1, 1))
    assert [tuple(v.shape[:3]) for v in videos] == [(8, 3, 8), (4, 3, 4), (2, 3, 2), (1, 3, 1)]


def test_forward_rejects_lengths_and_phases_the_levels_cannot_use(make_config):
    cfg = make_config()
    gen = TGANv2Generator(cfg, frames=16)
    z = seeded_z(range(2), cfg.z_slow_dim)
    with pytest.raises(ValueError, match="not divisible"):
        gen(z, frames=12)
    with pytest.raises(ValueError, match="phases"):
        gen(z, phases=(0, 2, 0))


def test_render_gives_every_frame_at_the_top_level_for_any_length(make_config):
    cfg = make_config()
    torch.manual_seed(0)
    gen = TGANv2Generator(cfg, frames=16).eval()
    z = seeded_z(range(2), cfg.z_slow_dim)
    long = gen.render(z, frames=40)  # longer than a training clip: the ConvLSTM unrolls as far as asked
    assert long.shape == (2, 3, 40, cfg.resolution, cfg.resolution)
    assert torch.isfinite(long).all() and long.abs().max() <= 1.0
    assert gen.render(z, frames=7).shape[2] == 7  # any length, not only multiples of the frame factors
    # Causal: the first 16 frames of a long video are the 16-frame video; chunking does not change a frame.
    torch.testing.assert_close(long[:, :, :16], gen.render(z, frames=16))
    whole = TGANv2Generator(make_config(render_chunk=1000), frames=16).eval()
    whole.load_state_dict(gen.state_dict())
    torch.testing.assert_close(whole.render(z, frames=40), long)
    assert long[:, :, 1:].sub(long[:, :, :-1]).abs().amax() > 0  # frames differ: the ConvLSTM state moves on


@pytest.mark.parametrize("phases", [(0, 0, 0), (1, 0, 1), (1, 1, 1)])
def test_render_is_the_top_level_of_the_training_pyramid_at_every_frame(make_config, phases):
    """Sparse training, dense generation: the frames the top level renders in training (with any phases) are the
    frames of the sampled video at those indices, and sampling renders the others too."""
    cfg = make_config()
    torch.manual_seed(0)
    gen = TGANv2Generator(cfg, frames=16)
    gen(seeded_z(range(8), cfg.z_slow_dim))  # BatchNorm running statistics, as after a training step
    gen.eval()
    z = seeded_z(range(3), cfg.z_slow_dim)
    with torch.no_grad():
        pyramid = gen(z, phases=phases)
    dense = gen.render(z, frames=16)
    top = level_frame_indices(16, cfg.frame_factors, phases)[-1]
    assert pyramid[-1].shape[2] == len(top) == 2 and dense.shape[2] == 16
    torch.testing.assert_close(dense[:, :, top], pyramid[-1])


def test_a_sampled_video_depends_only_on_its_own_seed(make_config):
    cfg = make_config()
    torch.manual_seed(0)
    gen = TGANv2Generator(cfg, frames=16)
    gen(seeded_z(range(8), cfg.z_slow_dim))  # one training step's worth of BatchNorm running statistics
    gen.eval()
    z_batch = seeded_z([5, 6, 7], cfg.z_slow_dim)
    z_alone = seeded_z([6], cfg.z_slow_dim)
    torch.testing.assert_close(z_alone[0], z_batch[1], rtol=0, atol=0)
    assert z_batch.min() >= -1 and z_batch.max() <= 1  # z ~ U(-1, 1)
    torch.testing.assert_close(gen.render(z_alone, frames=20)[0], gen.render(z_batch, frames=20)[1])


def test_class_conditional_batchnorm_changes_the_output_with_the_label(make_config):
    cfg = make_config(num_classes=3)
    torch.manual_seed(0)
    gen = TGANv2Generator(cfg, frames=8)
    with torch.no_grad():  # as training would leave them: per-class gains and biases apart from 1 and 0
        for name, p in gen.named_parameters():
            if name.endswith(("gamma.weight", "beta.weight")):
                p.add_(0.3 * torch.randn_like(p))
    z = seeded_z(range(2), cfg.z_slow_dim)
    same = [gen(z, torch.tensor([1, 1]), phases=(0, 0, 0)) for _ in range(2)]
    other = gen(z, torch.tensor([2, 2]), phases=(0, 0, 0))
    for a, b, c in zip(*same, other):
        torch.testing.assert_close(a, b)
        assert (a - c).abs().max() > 1e-3
    gen.eval()
    rendered = [gen.render(z, torch.tensor([label, label]), frames=4) for label in (0, 1)]
    assert (rendered[0] - rendered[1]).abs().max() > 1e-3
    with pytest.raises(ValueError, match="class-conditional"):
        gen(z)
    with pytest.raises(ValueError, match="unconditional"):
        TGANv2Generator(make_config(), frames=8)(z, torch.tensor([0, 1]))
