"""The StyleGAN-V generator: motion codes, the acyclic positional encoding, synthesis and long-video sampling."""

from __future__ import annotations

import math
from decimal import Decimal, getcontext
from fractions import Fraction

import pytest
import torch

from vidgen.models.stylegan_v.backend import StyleGANVBackend, frame_times
from vidgen.models.stylegan_v.generator import (MOTION_CODE_BLOCK, Generator, MotionEncoder, draw_motion_noise,
                                                linspaced_period_frequencies, num_motion_codes, wrapped_phase)

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


FAR = 1e12  # a knot (16 * 62_500_000_000); float32 spaces representable times 65536 frames apart here


def test_motion_noise_code_depends_on_the_seed_and_its_index_only():
    whole = draw_motion_noise(7, 0, 5 * MOTION_CODE_BLOCK, 4)  # [80, 4]
    assert whole.shape == (80, 4)
    for first, count in ((0, 1), (3, 9), (13, 40), (16, 16), (79, 1)):  # inside and across block boundaries
        assert torch.equal(draw_motion_noise(7, first, count, 4), whole[first:first + count])
    far = int(FAR) // 16  # a window of codes around t = 1e12, drawn without the 6e10 codes before it
    assert torch.equal(draw_motion_noise(7, far - 3, 30, 4)[3:], draw_motion_noise(7, far, 27, 4))
    assert torch.equal(draw_motion_noise(7, far, 27, 4), draw_motion_noise(7, far, 27, 4))  # deterministic
    assert not torch.equal(draw_motion_noise(8, 0, 80, 4), whole)  # seeds, and blocks of a seed, differ
    assert not torch.equal(whole[:MOTION_CODE_BLOCK], whole[MOTION_CODE_BLOCK:2 * MOTION_CODE_BLOCK])
    assert draw_motion_noise(7, far, 0, 4).shape == (0, 4)


def test_code_window_depends_on_the_span_of_times_not_their_offset(make_config):
    encoder = MotionEncoder(make_config())
    k = encoder.kernel_size
    for t_max in (0.0, 15.5, 96.0, 100.0):  # from 0 the window is num_codes(t_max), tight on a knot
        first, count = encoder.code_window(torch.tensor([0.0, t_max]))
        assert first == 0 and count == num_motion_codes(t_max, 16, k) - (0 if t_max % 16 == 0 else 1)
    near = encoder.code_window(torch.arange(16, dtype=torch.float64) + 3)  # knots 0, 1 and 1's right, 2
    far = encoder.code_window(torch.arange(16, dtype=torch.float64) + 3 + FAR)
    assert near == (0, 3 + 2 * (k - 1)) and far == (int(FAR) // 16, near[1])
    assert encoder.code_window(torch.zeros(0)) == (0, 0)


def test_motion_codes_need_exactly_their_window(make_config):
    encoder = MotionEncoder(make_config()).requires_grad_(False)
    t = torch.tensor([[FAR - 20.5, FAR, FAR + 17.0]], dtype=torch.float64)  # left knots j - 2, j, j + 1
    first, count = encoder.code_window(t)
    assert (first, count) == (int(FAR) // 16 - 2, 5 + 2 * (encoder.kernel_size - 1))
    noise = draw_motion_noise(0, first - 1, count + 2, encoder.z_dim).unsqueeze(0)  # one spare code each side
    v = encoder(t, noise[:, 1:-1], first)
    # Spare codes change nothing but rounding, which the phase far out amplifies: ~1e-4 rad at t = 1e12 in float64
    # knots (in float32 knots this difference was O(1)).
    torch.testing.assert_close(encoder(t, noise, first - 1), v, rtol=0, atol=1e-4)
    with pytest.raises(ValueError, match="motion codes cover"):
        encoder(t, noise[:, 2:], first + 1)  # the left knot of the first time missing
    with pytest.raises(ValueError, match="motion codes cover"):
        encoder(t, noise[:, 1:-2], first)  # the right knot of the last time missing


def exact_phase(omega: float, t: float) -> float:
    """(omega t) mod 2 pi with rational arithmetic and 60 digits of pi: a reference for wrapped_phase."""
    getcontext().prec = 70
    two_pi = 2 * Fraction(Decimal("3.14159265358979323846264338327950288419716939937510582097494459"))
    x = Fraction(omega) * Fraction(t)
    return float(x - two_pi * (x // two_pi))


@pytest.mark.parametrize("t", [0.0, 48.0, 1e5, 1e8, FAR, 2.0 ** 52])
def test_wrapped_phase_is_accurate_far_along_the_time_axis(t):
    torch.manual_seed(0)
    scale = torch.rand(1, 8) * 2  # (0, 2), as the period scale
    omega = linspaced_period_frequencies(8, 16, 1024).double() * scale.double()  # [1, 8], as the knots have it
    phase = wrapped_phase(omega, torch.tensor([t], dtype=torch.float64))  # [1, 8]
    assert phase.dtype == torch.float64 and float(phase.min()) >= 0 and float(phase.max()) < 2 * math.pi
    for got, w in zip(phase[0].tolist(), omega[0].tolist()):
        error = abs(got - exact_phase(w, t))
        error = min(error, 2 * math.pi - error)  # on the circle
        assert error <= 4 * 2.0 ** -52 * max(w * t, 1.0), (w, t, error)  # a few float64 ulps of omega t
    if t >= FAR:  # where the same product in float32 is meaningless
        naive = (omega.float() * torch.tensor(t, dtype=torch.float32)).remainder(2 * math.pi).double()
        assert float((naive - phase).abs().max()) > 0.1


def test_positional_encoding_far_along_is_continuous_and_resolves_every_time(make_config):
    torch.manual_seed(0)
    encoder = MotionEncoder(make_config()).requires_grad_(False)  # float32, as sampling runs it
    delta = encoder.delta
    h = delta / 1000
    t = FAR + torch.arange(-2 * delta, 2 * delta, h, dtype=torch.float64)  # crosses FAR - 16, FAR and FAR + 16
    first, count = encoder.code_window(t)
    noise = draw_motion_noise(0, first, count, encoder.z_dim).unsqueeze(0)
    v = encoder(t.unsqueeze(0), noise, first)[0]  # [T, v]
    steps = (v[1:] - v[:-1]).abs().amax(dim=1)  # [T - 1]
    assert float(v.abs().max()) > 0.5 and float(steps.max()) < 5e-2  # O(1) values, O(h) steps: no jumps
    assert bool((steps > 0).all())  # every time its own value: float32 t would merge 65536 frames into one
    on_knots = torch.round((t - FAR) / h) % 1000 == 0
    u = encoder.mapping(noise)[0]  # motion codes of knots first ..
    index, _ = encoder.knots(t[on_knots])
    torch.testing.assert_close(v[on_knots], encoder.encoding.aligner(u[index - first]), rtol=0, atol=1e-6)


def test_positional_encoding_equals_A_u_at_every_knot(make_config):
    encoder, motion_z = motion_setup(make_config)
    delta = encoder.delta
    knots = torch.arange(0, 12, dtype=torch.float64) * delta  # t = j * delta
    v = encoder(knots.expand(2, -1), motion_z)  # [2, 12, v]
    u = encoder.mapping(motion_z)  # [2, L', v]
    expected = encoder.encoding.aligner(u[:, :12].reshape(-1, u.shape[2])).reshape(2, 12, -1)
    torch.testing.assert_close(v, expected, rtol=0, atol=1e-12)


def test_positional_encoding_follows_the_equation_in_absolute_time(make_config):
    """v(t) = e(t) - lerp(e(t_l), e(t_r), a) + lerp(A u_l, A u_r, a), e(t) = [sin, cos](omega s t + phi) evaluated
    directly with absolute t (float64, moderate t): the knot/frame split and the per-video knot windows are the
    same maths. Rows need different knots, one of them at the end of the noise."""
    encoder, motion_z = motion_setup(make_config)  # noise for t <= 200: knots 0 .. 14
    enc, delta = encoder.encoding, encoder.delta
    t = torch.tensor([[0.0, 40.0, 100.0], [190.0, 199.5, 207.9], [3.25, 3.5, 17.0]], dtype=torch.float64)
    v = encoder(t, motion_z[[0, 1, 0]])  # [3, 3, v]
    u = encoder.mapping(motion_z[[0, 1, 0]])  # [3, 15, v]
    for b in range(3):
        for i in range(3):
            j = int(t[b, i] // delta)
            t_l, t_r, a = j * delta, (j + 1) * delta, float(t[b, i] % delta) / delta
            u_l, u_r = u[b, j:j + 1], u[b, j + 1:j + 2]
            omega = enc.freqs * (enc.period_predictor(u_l).tanh() + 1)
            phi = enc.phase_predictor(u_l) * enc.phase_scales

            def e(time: float) -> torch.Tensor:
                return enc.wave(omega * time + phi)

            expected = e(float(t[b, i])) - torch.lerp(e(t_l), e(t_r), a) + torch.lerp(enc.aligner(u_l),
                                                                                        enc.aligner(u_r), a)
            torch.testing.assert_close(v[b, i], expected[0], rtol=0, atol=1e-10)


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


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_far_window_does_not_depend_on_where_the_video_starts(backend, dtype):
    nets = backend.networks.to(dtype)
    options = backend.recipe.sample_options
    start = FAR - 3.0  # the frames cross the knot at FAR
    full = backend.sample(nets, [3, 4], 12, CPU, options(time_offset=start))
    later = backend.sample(nets, [4], 5, CPU, options(time_offset=start + 5))  # other knots, alone in the batch
    # Equal up to the phase's rounding at t = 1e12 (~1e-4 rad, the knots being float64 in both dtypes), far below
    # an 8-bit frame's step of 2 / 255.
    torch.testing.assert_close(later[0], full[1, :, 5:10], rtol=0, atol=1e-4)
    assert float((full[0] - full[1]).abs().max()) > 1e-3  # seeds still give different videos out there


def test_sampling_far_along_draws_only_the_window_of_motion_codes(backend, monkeypatch):
    G = backend.networks["G"]
    drawn = []
    draw = G.draw_motion_z_for_seed

    def spy(seed, first, count, device=None):
        drawn.append(count)
        assert count < 1000, f"{count} motion codes drawn for 16 frames"  # fail before drawing them
        return draw(seed, first, count, device)

    monkeypatch.setattr(G, "draw_motion_z_for_seed", spy)
    videos = {}
    for offset in (0.0, 1e8, FAR):  # 16 frames at half-frame steps, each window starting on a knot
        videos[offset] = backend.sample(backend.networks, [5], 16, CPU,
                                        backend.recipe.sample_options(time_offset=offset, fps=16.0))
    # The same number of codes at every offset: the knots of 8 frames of time, not t / delta of them.
    assert drawn == [1 + 1 + 2 * (G.cfg.motion_kernel_size - 1)] * 3
    for video in videos.values():  # and every frame its own time: none merged by float32 rounding
        assert torch.isfinite(video).all()
        assert float((video[:, :, 1:] - video[:, :, :-1]).abs().amax(dim=(0, 1, 3, 4)).min()) > 0


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
