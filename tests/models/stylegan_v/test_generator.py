"""The StyleGAN-V generator: motion codes, the acyclic positional encoding, synthesis and long-video sampling."""

from __future__ import annotations

import math

import pytest
import torch

from vidgen.models.stylegan_v.backend import StyleGANVBackend, frame_times
from vidgen.models.stylegan_v.generator import (Generator, MotionEncoder, linspaced_period_frequencies,
                                                num_motion_codes)

CPU = torch.device("cpu")


def motion_setup(make_config, seed: int = 0, codes_for: float = 200.0):
    """A float64 motion encoder (tiny widths) and enough motion noise for times [0, codes_for]."""
    torch.manual_seed(seed)
    encoder = MotionEncoder(make_config()).double().requires_grad_(False)
    motion_z = torch.randn(2, encoder.num_codes(codes_for), encoder.z_dim, dtype=torch.float64)
    return encoder, motion_z


def test_frequencies_are_log_spaced_periods_in_frames():
    freqs = linspaced_period_frequencies(256, 16, 1024)
    periods = 2 * math.pi / freqs.double()
    assert freqs.shape == (256,)
    assert float(periods.max()) == pytest.approx(1024) and float(periods.min()) == pytest.approx(16)
    ratios = periods[:-1] / periods[1:]  # ascending frequencies: constant ratio between neighbouring periods
    torch.testing.assert_close(ratios, torch.full_like(ratios, 2 ** (6 / 255)))


def test_motion_code_count_covers_the_requested_time_span(make_config):
    cfg = make_config()
    assert num_motion_codes(100, delta=16, kernel_size=11) == math.ceil(100 / 16) + 2 + 20 == 29
    generator = Generator(cfg, 8)
    for t_max in (0.0, 15.5, 96.0, 100.0, 1000.0):  # 96 lies on a knot: its right knot must still exist
        motion_z = generator.draw_motion_z(2, t_max)
        assert motion_z.shape == (2, num_motion_codes(t_max, 16, 11), cfg.motion_z_dim)
        u = generator.motion.mapping(motion_z)
        assert u.shape[1] == motion_z.shape[1] - 2 * (cfg.motion_kernel_size - 1) == math.ceil(t_max / 16) + 2
        t = torch.tensor([[0.0, t_max]] * 2)
        assert generator.motion(t, motion_z).shape == (2, 2, cfg.motion_v_dim)
        # The count is tight for a t_max on a knot (it needs the knot after it); one knot looser otherwise.
        spare = 0 if t_max % 16 == 0 else 1
        generator.motion(t, motion_z[:, :motion_z.shape[1] - spare])
        with pytest.raises(ValueError, match="motion codes cover"):
            generator.motion(t, motion_z[:, :motion_z.shape[1] - spare - 1])


def test_positional_encoding_equals_A_u_at_every_knot(make_config):
    encoder, motion_z = motion_setup(make_config)
    delta = encoder.delta
    knots = torch.arange(0, 12, dtype=torch.float64) * delta  # t = j * delta
    v = encoder(knots.expand(2, -1), motion_z)  # [2, 12, v]
    u = encoder.mapping(motion_z)  # [2, L', v]
    expected = encoder.encoding.aligner(u[:, :12].reshape(-1, u.shape[2])).reshape(2, 12, -1)
    torch.testing.assert_close(v, expected, rtol=0, atol=1e-12)


def test_positional_encoding_is_continuous_across_knots(make_config):
    encoder, motion_z = motion_setup(make_config)
    delta = encoder.delta
    h = delta / 10_000
    t = torch.arange(0, 5 * delta, h, dtype=torch.float64)  # crosses the knots at 16, 32, 48, 64
    v = encoder(t.expand(2, -1), motion_z)  # [2, T, v]
    steps = (v[:, 1:] - v[:, :-1]).abs().amax(dim=(0, 2))  # [T - 1] largest finite difference per step
    assert float(v.abs().max()) > 0.5  # values are O(1) ...
    assert float(steps.max()) < 5e-3  # ... and every step of h = delta / 10^4 changes them by O(h): no jumps
    at_knots = steps[torch.round(t[1:] / h) % 10_000 == 0]  # the steps that land on a knot
    assert at_knots.numel() >= 4 and float(at_knots.max()) < 5e-3
    # The same steps without the alignment would jump at the knots: the encoding really is stitched.
    scale = encoder.encoding.period_predictor(encoder.mapping(motion_z)[0, :6]).tanh() + 1
    assert float((scale[1] - scale[0]).abs().max()) > 1e-3


def test_positional_encoding_is_not_periodic(make_config):
    encoder, motion_z = motion_setup(make_config, codes_for=4096.0)
    t = torch.arange(4096, dtype=torch.float64)
    v = encoder(t.expand(2, -1), motion_z)[0]  # [4096, v]
    norm = v.norm(dim=1).mean()
    for lag in range(2 * encoder.delta, 2049, 7):  # no shift of >= 2 knots maps the trajectory onto itself
        relative = (v[lag:] - v[:-lag]).norm(dim=1).mean() / norm
        assert float(relative) > 0.3, f"v(t + {lag}) is close to v(t)"


@pytest.mark.parametrize("resolution", [4, 8, 16, 32, 64])
def test_generator_and_discriminator_shapes(make_config, resolution):
    from vidgen.models.stylegan_v.discriminator import Discriminator

    cfg = make_config()
    torch.manual_seed(0)
    G, D = Generator(cfg, resolution), Discriminator(cfg, resolution)
    z = torch.randn(4, cfg.z_dim)
    times = torch.tensor([[0.0, 1.0, 4.0], [0.5, 2.5, 8.5], [10.0, 11.0, 12.0], [3.25, 7.0, 11.25]])
    video = G(z, times)
    assert video.shape == (4, 3, 3, resolution, resolution) and video.dtype == torch.float32
    assert torch.isfinite(video).all()
    logits = D(video, times)
    assert logits.shape == (4,) and torch.isfinite(logits).all()
    # The generator has num_conv + 1 styles: 1 at 4x4, 2 per larger resolution, and the last ToRGB.
    assert G.num_ws == 2 * int(math.log2(resolution)) - 2


def test_mapping_normalises_z_tracks_w_avg_and_truncates(make_config):
    torch.manual_seed(0)
    G = Generator(make_config(), 8)
    z = torch.randn(6, G.z_dim)
    G.eval()
    torch.testing.assert_close(G.mapping(z), G.mapping(10 * z))  # z's second moment is normalised
    assert torch.equal(G.mapping.w_avg, torch.zeros_like(G.mapping.w_avg))  # eval mode does not track
    G.train()
    w = G.mapping(z)
    torch.testing.assert_close(G.mapping.w_avg, (1 - 0.995) * w.detach().mean(0))
    G.eval()
    truncated = G.mapping(z, truncation=0.0)
    torch.testing.assert_close(truncated, G.mapping.w_avg.expand_as(truncated))


def test_without_motion_every_frame_is_the_same_image(make_config):
    torch.manual_seed(0)
    G = Generator(make_config(), 8, use_motion=False).eval()
    video = G(torch.randn(2, G.z_dim), torch.tensor([[0.0, 5.0, 100.0]] * 2))
    torch.testing.assert_close(video[:, :, 1], video[:, :, 0])
    torch.testing.assert_close(video[:, :, 2], video[:, :, 0])


@pytest.fixture
def backend(make_recipe):
    backend = StyleGANVBackend(make_recipe(resolution=8, render_chunk=128))
    backend.networks.eval()
    return backend


def test_frame_does_not_depend_on_the_other_frames_rendered(make_recipe, backend):
    nets = backend.networks.double()  # float64, so that only real dependencies (not rounding) could show
    full = backend.sample(nets, [3, 4], 20, CPU)
    assert full.shape == (2, 3, 20, 8, 8)
    # Rendered in chunks of one frame per video ...
    chunked_backend = StyleGANVBackend(make_recipe(resolution=8, render_chunk=2))
    chunked = chunked_backend.sample(nets, [3, 4], 20, CPU)
    torch.testing.assert_close(chunked, full, rtol=0, atol=1e-6)
    # ... as a shorter video (fewer motion codes drawn), alone in the batch, or from a later start.
    short = backend.sample(nets, [4], 6, CPU)
    torch.testing.assert_close(short[0], full[1, :, :6], rtol=0, atol=1e-6)
    later = backend.sample(nets, [3], 5, CPU, backend.recipe.sample_options(time_offset=15.0))
    torch.testing.assert_close(later[0], full[0, :, 15:], rtol=0, atol=1e-6)


def test_fps_changes_the_time_step_not_the_motion(backend):
    nets = backend.networks
    assert torch.equal(frame_times(4, 16.0, 8.0), torch.tensor([0.0, 0.5, 1.0, 1.5], dtype=torch.float64))
    fast = backend.sample(nets, [1], 8, CPU, backend.recipe.sample_options(fps=16.0))  # twice the training rate
    normal = backend.sample(nets, [1], 4, CPU)
    torch.testing.assert_close(fast[:, :, ::2], normal, rtol=1e-5, atol=1e-5)
    assert float((fast[:, :, 1] - normal[:, :, 0]).abs().max()) > 0  # the in-between frames are new


def test_long_videos_render_with_bounded_chunks(make_recipe):
    backend = StyleGANVBackend(make_recipe(resolution=4, render_chunk=64))
    backend.networks.eval()
    video = backend.sample(backend.networks, [0], 1500, CPU)
    assert video.shape == (1, 3, 1500, 4, 4) and torch.isfinite(video).all()
    # Motion changes over a long horizon: late frames differ from early ones.
    assert float((video[:, :, 1400:] - video[:, :, :100]).abs().mean()) > 1e-3
