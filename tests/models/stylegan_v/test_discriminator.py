"""The StyleGAN-V discriminator: frame concatenation and time-gap conditioning."""

from __future__ import annotations

import math

import pytest
import torch

from vidgen.models.stylegan_v.config import StyleGANVConfig
from vidgen.models.stylegan_v.discriminator import Discriminator, TimeGapEncoder, log_spaced_gap_frequencies
from vidgen.models.stylegan_v.generator import channels_at


@pytest.fixture
def D(make_config):
    torch.manual_seed(0)
    return Discriminator(make_config(), 32)


@torch.no_grad()
def test_output_depends_on_the_time_gaps(D):
    torch.manual_seed(1)
    video = torch.randn(4, 3, 3, 32, 32)
    base = D(video, torch.tensor([[0.0, 1.0, 2.0]] * 4))
    for times in ([0.0, 4.0, 8.0], [0.0, 1.0, 8.0], [5.0, 9.0, 13.0]):
        other = D(video, torch.tensor([times] * 4))
        if times[0] == 5.0:  # same gaps as [0, 4, 8]: only the gaps matter
            torch.testing.assert_close(other, D(video, torch.tensor([[0.0, 4.0, 8.0]] * 4)))
        else:
            assert float((other - base).abs().min()) > 1e-4


def test_fractional_gaps_use_the_rounded_embedding_and_exact_sinusoids():
    encoder = TimeGapEncoder(num_frames=3, max_num_frames=1024).requires_grad_(False)
    assert encoder.dim == 2 * 276  # (256 + 2 x 10) per gap, 10 frequencies at 1024 frames
    exact = encoder(torch.tensor([[0.0, 2.0, 6.0]]))
    fractional = encoder(torch.tensor([[0.0, 2.3, 6.0]]))  # gaps 2.3 and 3.7 round to 2 and 4
    per_gap = fractional.reshape(2, 276) - exact.reshape(2, 276)
    assert torch.equal(per_gap[:, :256], torch.zeros(2, 256))  # the learned table sees round(gap) ...
    assert float(per_gap[:, 256:].abs().min()) > 0  # ... the fixed waves see the exact gap
    freqs = log_spaced_gap_frequencies(1024)
    torch.testing.assert_close(freqs, math.pi * 2.0 ** torch.arange(10) / 1024)


def test_frames_are_processed_separately_then_side_by_side(make_config):
    cfg = make_config(num_frames_per_clip=4, max_frame_distance=8)
    D = Discriminator(cfg, 64)
    ch = lambda res: channels_at(res, cfg.channel_base, cfg.channel_max)  # noqa: E731
    # Per frame 64 -> 32 -> 16 (the block producing 16x16 halves its width); jointly 16 -> 8 -> 4.
    assert len(D.frame_blocks) == 2 and len(D.joint_blocks) == 2
    assert D.frame_blocks[-1].conv1.weight.shape[0] == ch(16) // 2
    assert D.joint_blocks[0].conv0.weight.shape[1] == 4 * (ch(16) // 2)  # [B, k C/2, 16, 16]
    features = {}

    def record_input(module, args):
        features["in"] = args[0].shape

    D.joint_blocks[0].register_forward_pre_hook(record_input)
    D(torch.randn(4, 3, 4, 64, 64), torch.tensor([[0.0, 1.0, 3.0, 8.0]] * 4))
    assert features["in"] == (4, 4 * (ch(16) // 2), 16, 16)


def test_each_frame_reaches_the_logit(D):
    video = torch.randn(4, 3, 3, 32, 32, requires_grad=True)
    D(video, torch.tensor([[0.0, 2.0, 4.0]] * 4)).sum().backward()
    per_frame = video.grad.abs().sum(dim=(1, 3, 4))  # [B, k]
    assert (per_frame > 0).all()


def test_sky_256_architecture_matches_the_reference_widths():
    cfg = StyleGANVConfig()
    D = Discriminator(cfg, 256)
    widths = [block.conv1.weight.shape[0] for block in D.frame_blocks]
    assert widths == [128, 256, 512, 256]  # 256 -> 128 -> 64 -> 32 -> 16 px, halved at 16
    assert D.joint_blocks[0].conv0.weight.shape[1] == 3 * 256
    assert D.epilogue.out.weight.shape[0] == 512 and D.time_encoder.dim == 2 * 276
