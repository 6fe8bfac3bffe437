"""The StyleGAN-V generator: a StyleGAN2 image generator whose input carries a continuous-time motion code.

Skorokhodov, Tulyakov, Elhoseiny, "StyleGAN-V: A Continuous Video Generator with the Price, Image Quality and
Perks of StyleGAN2" (CVPR 2022), Sec. 3.1, as released (universome/stylegan-v):

    w    = mapping(z)                                    one content code per video
    u_j  = conv1d(conv1d(m))_j,  m_j ~ N(0, I)           motion codes at the knots t = j * delta
    v(t) = e(t) - lerp(e(t_l), e(t_r), a) + lerp(A u_l, A u_r, a)      acyclic positional encoding
    x(t) = synthesis(w, [const ; tile_4x4(v(t))])        every frame rendered independently

Each frame depends only on (w, v(t)): no 3-D convolutions, no recurrence, so a video of any length is rendered in
chunks with memory that does not grow with its length, and a frame does not depend on which other frames are
rendered with it. v(t) needs only the motion codes of the knots around t, so a window of frames far along the time
axis (t up to 2^53 frames) costs what the same window at t = 0 costs.
"""

from __future__ import annotations

import hashlib
import math

import torch
from torch import nn

from vidgen.models.stylegan_v.config import StyleGANVConfig
from vidgen.models.stylegan_v.layers import (Conv1d, FullyConnected, ModulatedConv2d, ToRGB, normalize_2nd_moment,
                                             setup_filter, upsample2d)

MOTION_CODE_BLOCK = 16
"""Per-seed motion noise is drawn in blocks of this many codes, each block from its own generator seeded by a hash
of (video seed, block index): noise code j of a seed is a pure function of (seed, j), so a window of frames far
along the time axis draws only the few codes it needs, and a longer video extends a shorter one."""


def channels_at(resolution: int, channel_base: int, channel_max: int) -> int:
    """Width of the layers working at `resolution` (StyleGAN2: channel_base / resolution, capped)."""
    return min(channel_base // resolution, channel_max)


# ----------------------------------------------------------------------------------------------------------
# Content mapping


class MappingNetwork(nn.Module):
    """z -> w: normalise z's second moment, then `num_layers` equalized-lr FC + lrelu layers (lr mult 0.01).

    Tracks the running mean of w (decay w_avg_beta, in training mode) as the centre of the truncation trick."""

    def __init__(self, z_dim: int, w_dim: int, num_layers: int, lr_mult: float, w_avg_beta: float) -> None:
        super().__init__()
        self.w_avg_beta = w_avg_beta
        dims = [z_dim] + [w_dim] * num_layers
        self.layers = nn.Sequential(*[FullyConnected(dims[i], dims[i + 1], activation="lrelu", lr_mult=lr_mult)
                                      for i in range(num_layers)])
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: torch.Tensor, truncation: float = 1.0, update_w_avg: bool = True) -> torch.Tensor:
        w = self.layers(normalize_2nd_moment(z.to(self.w_avg.dtype)))  # [B, w_dim]
        if self.training and update_w_avg:
            # In float32 whatever autocast computed w in: the running mean is a float32 buffer.
            self.w_avg.copy_(w.detach().mean(dim=0).to(self.w_avg.dtype).lerp(self.w_avg, self.w_avg_beta))
        if truncation != 1.0:
            w = self.w_avg.lerp(w, truncation)  # w_avg + psi (w - w_avg)
        return w


# ----------------------------------------------------------------------------------------------------------
# Motion


def num_motion_codes(t_max: float, delta: int, kernel_size: int) -> int:
    """Noise codes needed to cover times [0, t_max]: knots j = 0 .. floor(t_max / delta) + 1 must exist after the
    two unpadded Conv1d layers, each of which shortens the sequence by kernel_size - 1.

    ceil(t_max / delta) + 2 + 2 (kernel_size - 1), as the reference (its + 2 keeps the right knot of a t that
    falls exactly on a knot)."""
    return math.ceil(t_max / delta) + 2 + 2 * (kernel_size - 1)


def motion_noise_block_seed(seed: int, block: int) -> int:
    """The 64-bit generator seed of block `block` of video seed `seed`'s motion noise. A hash, so that neighbouring
    seeds and blocks get unrelated streams, none of them the stream of the seed's content generator (seeded with
    `seed` itself)."""
    digest = hashlib.blake2b(f"{int(seed)}:{int(block)}".encode(), digest_size=8, person=b"sgv-motion-noise")
    return int.from_bytes(digest.digest(), "little")


def draw_motion_noise(seed: int, first: int, count: int, dim: int, device: torch.device | None = None
                      ) -> torch.Tensor:
    """Motion noise codes first .. first + count - 1 of one video seed: [count, dim] ~ N(0, I).

    Code j is row j mod MOTION_CODE_BLOCK of block j // MOTION_CODE_BLOCK, drawn by a generator seeded with
    motion_noise_block_seed(seed, block) on `device`: it depends on (seed, j, device type) only, not on the window
    asked for, the batch or the codes before it. Memory and time are O(count), whatever `first` is."""
    device = torch.device(device if device is not None else "cpu")
    if count <= 0:
        return torch.zeros(0, dim, device=device)
    blocks = range(first // MOTION_CODE_BLOCK, (first + count - 1) // MOTION_CODE_BLOCK + 1)
    drawn = [torch.randn(MOTION_CODE_BLOCK, dim, device=device,
                         generator=torch.Generator(device).manual_seed(motion_noise_block_seed(seed, block)))
             for block in blocks]
    start = first - blocks.start * MOTION_CODE_BLOCK
    return torch.cat(drawn)[start:start + count]  # [count, dim]


class MotionMappingNetwork(nn.Module):
    """Motion noise sequence [B, L, z_m] -> motion codes u [B, L - 2 (k - 1), v]: two unpadded equalized-lr
    Conv1d layers with leaky ReLU and lr mult 0.01 (a Conv1d rather than an LSTM: an LSTM diverges for large t).
    Runs in the input's dtype (MotionEncoder gives it float64, see AcyclicPositionalEncoding)."""

    def __init__(self, z_dim: int, v_dim: int, kernel_size: int, lr_mult: float) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.conv0 = Conv1d(z_dim, z_dim, kernel_size, activation="lrelu", lr_mult=lr_mult)
        self.conv1 = Conv1d(z_dim, v_dim, kernel_size, activation="lrelu", lr_mult=lr_mult)

    def forward(self, motion_z: torch.Tensor) -> torch.Tensor:
        x = motion_z.transpose(1, 2)  # [B, z_m, L]
        return self.conv1(self.conv0(x)).transpose(1, 2)  # [B, L - 2 (k - 1), v]


def linspaced_period_frequencies(num: int, min_period: float, max_period: float) -> torch.Tensor:
    """omega_i = 2 pi / 2^linspace(log2 min_period, log2 max_period, num), in radians per frame, ascending."""
    exponents = torch.linspace(math.log2(min_period), math.log2(max_period), num, dtype=torch.float64)
    return (2 * math.pi / 2.0 ** exponents).flip(0).float()


def time_dtype(device: torch.device) -> torch.dtype:
    """The dtype of frame times and knot computations: float64, except on MPS, which has none (there, times past
    2^24 frames lose their fractional part and phases far along the time axis their accuracy)."""
    return torch.float32 if device.type == "mps" else torch.float64


def wrapped_phase(omega: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """(omega * t) mod 2 pi in omega's dtype: omega [N, F] radians per frame, t [N] frames -> [N, F] in [0, 2 pi).

    For knot times t far along the axis, with omega in float64: t (an integer multiple of delta below 2^53) is
    exact, and the product and its reduction err by a few float64 ulps of omega t, about 1e-4 rad at t = 1e12
    frames, 1e-8 rad at 1e8 and 1e-13 at training times. In float32 the product's spacing is 2^16 rad at
    t = 1e12: no phase at all."""
    return torch.remainder(omega * t.to(omega.dtype).unsqueeze(1), 2 * math.pi)  # [N, F]


class AcyclicPositionalEncoding(nn.Module):
    """v(t) = e(t) - lerp(e(t_l), e(t_r), alpha) + lerp(A u_l, A u_r, alpha)   (StyleGAN-V Eq. 5-6, as released).

    e(t) = [sin, cos](omega * s * t + phi), with a period scale s = tanh(P u_l) + 1 in (0, 2) and a phase
    phi = (Phi u_l) * max_period * omega / (2 pi), both predicted without bias from the left knot's code. Removing
    the interpolated wave of the two knots and adding the interpolated A u makes v equal A u exactly at every knot:
    v is continuous, and no period of the sinusoids survives, so it is not periodic.

    Far along the time axis. Between two knots, v depends on t only through tau = t - t_l in [0, delta) and the
    waves' phase at the left knot, theta_l = (omega s t_l mod 2 pi) + phi: the three waves are [sin, cos] of
    theta_l + omega s tau, theta_l and theta_l + omega s delta, the same values as with t (sin and cos have period
    2 pi). So the work is split: `knot_waves` computes omega s, theta_l and A u once per knot, in float64, and
    `forward` evaluates the frames from them and tau. Why float64 for the knots: in float32, t has no fractional
    bits above 2^24 frames (its spacing is 8 frames at t = 1e8, 65536 at 1e12) and omega s t none at all; and the
    phase amplifies any rounding of s by omega t, so that one float32 ulp of s moves it by ~5 rad at t = 1e8, and
    two computations of the same knot that round differently (another batch size, another window of knots: matmul
    and conv kernels change their summation order) would give the same frame different waves. In float64 the phase
    is right, and the same across such computations, to ~1e-4 rad at t = 1e12 (1e-8 rad at 1e8) — below what an
    8-bit frame shows, and shared by every frame between two knots, so v stays continuous. The frames' part then
    runs in the network's dtype: its arguments are O(10) radians.
    """

    def __init__(self, v_dim: int, min_period: float, max_period: float) -> None:
        super().__init__()
        num_freqs = v_dim // 2
        freqs = linspaced_period_frequencies(num_freqs, min_period, max_period)
        self.register_buffer("freqs", freqs, persistent=False)  # [F], radians per frame
        self.register_buffer("phase_scales", max_period * freqs / (2 * math.pi), persistent=False)  # [F]
        self.period_predictor = FullyConnected(v_dim, num_freqs, bias=False)  # P
        self.phase_predictor = FullyConnected(v_dim, num_freqs, bias=False)  # Phi
        self.aligner = FullyConnected(v_dim, 2 * num_freqs, bias=False)  # A

    @staticmethod
    def wave(arg: torch.Tensor) -> torch.Tensor:
        """e = [sin, cos](arg): [N, F] -> [N, 2F]."""
        return torch.cat([arg.sin(), arg.cos()], dim=1)

    def knot_waves(self, u: torch.Tensor, t_knot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per knot, in u's dtype (time_dtype from MotionEncoder): u [N, v_dim], t_knot [N] -> the waves' angular
        frequency omega s until the next knot [N, F], their phase theta at the knot (wrapped) [N, F], and A u
        [N, 2F]."""
        scale = self.period_predictor(u).tanh() + 1  # [N, F], in (0, 2)
        omega = self.freqs.to(u.dtype) * scale  # [N, F], radians per frame
        phase = self.phase_predictor(u) * self.phase_scales.to(u.dtype)  # [N, F], phi
        theta = wrapped_phase(omega, t_knot).to(u.dtype) + phase  # [N, F]
        return omega, theta, self.aligner(u)

    def forward(self, omega: torch.Tensor, theta: torch.Tensor, au_left: torch.Tensor, au_right: torch.Tensor,
                tau: torch.Tensor, delta: float) -> torch.Tensor:
        """Per frame: its left knot's omega, theta [N, F] and A u [N, 2F], its right knot's A u [N, 2F], and
        tau = t - t_l in [0, delta) [N] -> v [N, 2F]."""
        tau = tau.unsqueeze(1)  # [N, 1]
        alpha = tau / delta  # [N, 1]
        e_t = self.wave(theta + omega * tau)
        e_knots = torch.lerp(self.wave(theta), self.wave(theta + omega * delta), alpha)
        return e_t - e_knots + torch.lerp(au_left, au_right, alpha)


class MotionEncoder(nn.Module):
    """Motion noise + frame times -> per-frame motion codes v(t)."""

    def __init__(self, cfg: StyleGANVConfig) -> None:
        super().__init__()
        self.delta = cfg.motion_z_distance
        self.z_dim = cfg.motion_z_dim
        self.kernel_size = cfg.motion_kernel_size
        self.mapping = MotionMappingNetwork(cfg.motion_z_dim, cfg.motion_v_dim, cfg.motion_kernel_size,
                                            cfg.mapping_lr_mult)
        self.encoding = AcyclicPositionalEncoding(cfg.motion_v_dim, cfg.min_period, cfg.time_max_period)

    def num_codes(self, t_max: float) -> int:
        """Noise codes covering times [0, t_max] (from code 0; see code_window for a window of times)."""
        return num_motion_codes(t_max, self.delta, self.kernel_size)

    def knots(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """t [...] (frames, >= 0, any float dtype) -> the left knot's index j = floor(t / delta) (int64) and the
        time since it, tau = t - j delta in [0, delta).

        In float64 (time_dtype), where t is exact below 2^53 frames, and with fmod, which is exact: the knot and
        tau agree at any t (t / delta rounded could land on the next knot for a t just below it)."""
        t = t.to(time_dtype(t.device))
        tau = torch.fmod(t, self.delta)
        return torch.round((t - tau) / self.delta).long(), tau

    def code_window(self, t: torch.Tensor) -> tuple[int, int]:
        """The noise codes the times t need: (first index, count).

        Times in [j_min delta, (j_max + 1) delta) use the motion codes of knots j_min .. j_max + 1, and motion code
        j is computed from noise codes j .. j + 2 (k - 1) (two unpadded Conv1d of kernel k). So the count depends
        on the span of t, never on where it lies on the time axis."""
        if t.numel() == 0:
            return 0, 0
        index, _ = self.knots(t)
        first, last = int(index.min()), int(index.max()) + 1
        return first, last - first + 1 + 2 * (self.kernel_size - 1)

    def forward(self, t: torch.Tensor, motion_z: torch.Tensor, first_code: int = 0) -> torch.Tensor:
        """t [B, T] frame times (>= 0, fractional allowed; float64 for times beyond 2^24 frames); motion_z
        [B, L, z_m], the noise codes first_code .. first_code + L - 1 -> v [B, T, v_dim] in the parameters' dtype.

        Knots in float64 and frames in the parameters' dtype (see AcyclicPositionalEncoding), also under autocast:
        bfloat16's 8 significant bits cannot resolve the phases omega t at times in the hundreds of frames."""
        with torch.autocast(t.device.type, enabled=False):
            return self._codes(t, motion_z, first_code)

    def _codes(self, t: torch.Tensor, motion_z: torch.Tensor, first_code: int) -> torch.Tensor:
        batch, frames = t.shape
        dtype, exact = self.encoding.aligner.weight.dtype, time_dtype(t.device)
        if not frames:
            return torch.zeros(batch, 0, 2 * self.encoding.freqs.shape[0], device=t.device, dtype=dtype)
        if float(t.min()) < 0:
            raise ValueError("frame times must be >= 0")
        index, tau = self.knots(t)  # [B, T] each: the left knot of every time, and the time since it
        local = index - first_code  # [B, T]: the left knot's position in the motion codes motion_z gives
        available = motion_z.shape[1] - 2 * (self.kernel_size - 1)  # motion codes the noise gives
        if int(local.min()) < 0 or int(local.max()) + 1 >= available:
            first, count = self.code_window(t)
            raise ValueError(f"{motion_z.shape[1]} motion codes cover t in [{first_code * self.delta}, "
                             f"{(first_code + available - 1) * self.delta}) (noise codes from index {first_code}), "
                             f"got t in [{float(t.min())}, {float(t.max())}]; draw the {count} codes from index "
                             f"{first} that code_window(t) gives")

        # --- Knots: only those each video's times use (a training clip spans a few of the noise's many) ---
        width = int((local.amax(dim=1) - local.amin(dim=1)).max()) + 2  # left knots and the last one's right
        start = torch.minimum(local.amin(dim=1), torch.full_like(local[:, 0], available - width))  # [B]
        span = torch.arange(width + 2 * (self.kernel_size - 1), device=t.device)
        rows = (start[:, None] + span).unsqueeze(2).expand(-1, -1, motion_z.shape[2])  # [B, W + 2 (k - 1), z_m]
        u = self.mapping(torch.gather(motion_z, 1, rows).to(exact))  # [B, W, v], in float64
        knot_index = first_code + start[:, None] + torch.arange(width, device=t.device)  # [B, W]
        omega, theta, au = self.encoding.knot_waves(u.reshape(batch * width, -1),
                                                    knot_index.reshape(-1).to(exact) * self.delta)
        knot = torch.cat([omega, theta, au], dim=1).to(dtype).reshape(batch, width, -1)  # [B, W, F + F + 2F]

        # --- Frames: the left knot's waves and A u, the right knot's A u, and the time since the left knot ---
        rel = (local - start[:, None]).unsqueeze(2).expand(-1, -1, knot.shape[2])  # [B, T, 4F]
        left = torch.gather(knot, 1, rel).reshape(batch * frames, -1)  # [B T, 4F]
        right = torch.gather(knot, 1, rel + 1).reshape(batch * frames, -1)
        f = omega.shape[1]
        v = self.encoding(left[:, :f], left[:, f:2 * f], left[:, 2 * f:], right[:, 2 * f:],
                          tau.reshape(-1).to(dtype), self.delta)
        return v.reshape(batch, frames, -1)  # [B, T, v]


# ----------------------------------------------------------------------------------------------------------
# Synthesis


class SynthesisBlock(nn.Module):
    """One resolution of the skip generator: [up-conv 3x3,] conv 3x3, ToRGB; img = upsample(img) + rgb.

    The first (4x4) block starts from a learned constant, concatenated with the motion code tiled over 4x4."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 motion_dim: int = 0, use_fp16: bool = False, conv_clamp: float | None = None) -> None:
        super().__init__()
        self.resolution, self.use_fp16, self.first = resolution, use_fp16, in_channels == 0
        self.register_buffer("resample_filter", setup_filter(), persistent=False)
        if self.first:
            self.const = nn.Parameter(torch.randn(out_channels, 4, 4))
            self.motion_dim = motion_dim
            self.conv1 = ModulatedConv2d(out_channels + motion_dim, out_channels, w_dim, conv_clamp=conv_clamp)
            self.num_conv = 1
        else:
            self.conv0 = ModulatedConv2d(in_channels, out_channels, w_dim, up=2, conv_clamp=conv_clamp)
            self.conv1 = ModulatedConv2d(out_channels, out_channels, w_dim, conv_clamp=conv_clamp)
            self.num_conv = 2
        self.torgb = ToRGB(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None, ws: torch.Tensor,
                motion_v: torch.Tensor | None = None, fused: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """ws [N, num_conv + 1, w_dim] (the last one feeds ToRGB); returns features and the RGB image so far."""
        device = self.conv1.weight.device
        dtype = torch.float16 if self.use_fp16 and device.type == "cuda" else torch.float32
        if fused is None:
            # The grouped form materialises per-sample weights [N, O, I, 3, 3] (1.2 GB for a 128-frame chunk at
            # 512 channels) and ran 2x slower on CPU here; activation scaling is the same maths with one shared
            # convolution, so the grouped form is kept for a single sample.
            fused = ws.shape[0] == 1
        if self.first:
            n = ws.shape[0]
            x = self.const.to(dtype).unsqueeze(0).expand(n, -1, -1, -1)  # [N, C, 4, 4]
            if self.motion_dim:
                tiled = motion_v.to(dtype)[:, :, None, None].expand(-1, -1, 4, 4)  # [N, v, 4, 4]
                x = torch.cat([x, tiled], dim=1)  # [N, C + v, 4, 4]
            x = self.conv1(x, ws[:, 0], fused=fused)
        else:
            x = self.conv0(x.to(dtype), ws[:, 0], fused=fused)  # [N, C, 2H, 2W]
            x = self.conv1(x, ws[:, 1], fused=fused)
        rgb = self.torgb(x, ws[:, -1], fused=fused).float()
        img = rgb if img is None else upsample2d(img, self.resample_filter) + rgb
        return x, img


class SynthesisNetwork(nn.Module):
    """StyleGAN2 skip generator from 4x4 to `resolution`, one frame per row of ws."""

    def __init__(self, cfg: StyleGANVConfig, resolution: int, img_channels: int = 3, motion_dim: int = 0) -> None:
        super().__init__()
        self.resolution = resolution
        log2 = int(math.log2(resolution))
        self.block_resolutions = [2 ** i for i in range(2, log2 + 1)]
        fp16_from = max(2 ** (log2 + 1 - cfg.fp16_resolutions), 8)
        blocks, self.num_ws = [], 0
        for res in self.block_resolutions:
            in_ch = channels_at(res // 2, cfg.channel_base, cfg.channel_max) if res > 4 else 0
            out_ch = channels_at(res, cfg.channel_base, cfg.channel_max)
            blocks.append(SynthesisBlock(in_ch, out_ch, cfg.w_dim, res, img_channels,
                                         motion_dim=motion_dim if res == 4 else 0,
                                         use_fp16=cfg.fp16_resolutions > 0 and res >= fp16_from,
                                         conv_clamp=cfg.conv_clamp))
            self.num_ws += blocks[-1].num_conv
        self.num_ws += 1  # the last ToRGB; each other ToRGB shares its w with the next block's first conv
        self.blocks = nn.ModuleList(blocks)

    def forward(self, ws: torch.Tensor, motion_v: torch.Tensor | None = None,
                fused: bool | None = None) -> torch.Tensor:
        """ws [N, num_ws, w_dim], motion_v [N, v] -> images [N, C, H, W] (float32)."""
        x = img = None
        index = 0
        for block in self.blocks:
            x, img = block(x, img, ws[:, index:index + block.num_conv + 1], motion_v=motion_v, fused=fused)
            index += block.num_conv
        return img


# ----------------------------------------------------------------------------------------------------------
# The generator


class Generator(nn.Module):
    """z [B, z_dim] + frame times [B, T] (+ motion noise) -> video [B, C, T, H, W] in about [-1, 1].

    use_motion=False builds the plain StyleGAN2 image generator of the same width (the constant input alone):
    a baseline for benchmarks and ablations.
    """

    def __init__(self, cfg: StyleGANVConfig, resolution: int, img_channels: int = 3, use_motion: bool = True) -> None:
        super().__init__()
        self.cfg, self.resolution, self.img_channels = cfg, resolution, img_channels
        self.z_dim, self.w_dim = cfg.z_dim, cfg.w_dim
        self.mapping = MappingNetwork(cfg.z_dim, cfg.w_dim, cfg.mapping_layers, cfg.mapping_lr_mult, cfg.w_avg_beta)
        self.motion = MotionEncoder(cfg) if use_motion else None
        self.synthesis = SynthesisNetwork(cfg, resolution, img_channels,
                                          motion_dim=cfg.motion_v_dim if use_motion else 0)
        self.num_ws = self.synthesis.num_ws

    def draw_motion_z(self, batch: int, t_max: float, generator: torch.Generator | None = None,
                      device: torch.device | None = None) -> torch.Tensor:
        """Motion noise covering times [0, t_max] from one generator: [B, L, z_m] (empty when motion is off)."""
        if self.motion is None:
            return torch.zeros(batch, 0, 0, device=device)
        return torch.randn(batch, self.motion.num_codes(t_max), self.motion.z_dim, generator=generator,
                           device=device)

    def motion_window(self, t: torch.Tensor) -> tuple[int, int]:
        """(first index, count) of the motion noise codes frame times t need; (0, 0) without motion."""
        return (0, 0) if self.motion is None else self.motion.code_window(t)

    def draw_motion_z_for_seed(self, seed: int, first: int, count: int,
                               device: torch.device | None = None) -> torch.Tensor:
        """Motion noise codes first .. first + count - 1 of one video seed, each a pure function of (seed, its
        index): [count, z_m] (see draw_motion_noise)."""
        if self.motion is None:
            return torch.zeros(0, 0, device=device)
        return draw_motion_noise(seed, first, count, self.motion.z_dim, device)

    def motion_codes(self, t: torch.Tensor, motion_z: torch.Tensor | None,
                     first_code: int = 0) -> torch.Tensor | None:
        """Per-frame motion codes v(t) [B, T, v] (None without motion); motion_z holds the noise codes from
        index first_code on."""
        return None if self.motion is None else self.motion(t, motion_z, first_code)

    def render(self, w: torch.Tensor, motion_v: torch.Tensor | None, frames: int,
               fused: bool | None = None) -> torch.Tensor:
        """Render every frame independently: w [B, w_dim] (or per-layer [B, num_ws, w_dim]), motion_v [B, T, v]
        -> video [B, C, T, H, W]."""
        batch = w.shape[0]
        ws = w.unsqueeze(1).expand(-1, self.num_ws, -1) if w.ndim == 2 else w  # [B, num_ws, w_dim]
        ws = ws.repeat_interleave(frames, dim=0)  # [B T, num_ws, w_dim]
        v = None if motion_v is None else motion_v.reshape(batch * frames, -1)  # [B T, v]
        img = self.synthesis(ws, v, fused=fused)  # [B T, C, H, W]
        return img.reshape(batch, frames, *img.shape[1:]).transpose(1, 2)  # [B, C, T, H, W]

    def forward(self, z: torch.Tensor, t: torch.Tensor, motion_z: torch.Tensor | None = None,
                generator: torch.Generator | None = None, truncation: float = 1.0,
                fused: bool | None = None) -> torch.Tensor:
        """z [B, z_dim], t [B, T] frame times; motion_z [B, L, z_m] or None (drawn from `generator`)."""
        w = self.mapping(z, truncation=truncation)  # [B, w_dim]
        if self.motion is not None and motion_z is None:
            motion_z = self.draw_motion_z(z.shape[0], float(t.max()), generator, device=z.device)
        return self.render(w, self.motion_codes(t, motion_z), t.shape[1], fused=fused)
