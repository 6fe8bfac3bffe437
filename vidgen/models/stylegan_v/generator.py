"""The StyleGAN-V generator: a StyleGAN2 image generator whose input carries a continuous-time motion code.

Skorokhodov, Tulyakov, Elhoseiny, "StyleGAN-V: A Continuous Video Generator with the Price, Image Quality and
Perks of StyleGAN2" (CVPR 2022), Sec. 3.1, as released (universome/stylegan-v):

    w    = mapping(z)                                    one content code per video
    u_j  = conv1d(conv1d(m))_j,  m_j ~ N(0, I)           motion codes at the knots t = j * delta
    v(t) = e(t) - lerp(e(t_l), e(t_r), a) + lerp(A u_l, A u_r, a)      acyclic positional encoding
    x(t) = synthesis(w, [const ; tile_4x4(v(t))])        every frame rendered independently

Each frame depends only on (w, v(t)): no 3-D convolutions, no recurrence, so a video of any length is rendered in
chunks with memory that does not grow with its length, and a frame does not depend on which other frames are
rendered with it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vidgen.models.stylegan_v.config import StyleGANVConfig
from vidgen.models.stylegan_v.layers import (Conv1d, FullyConnected, ModulatedConv2d, ToRGB, normalize_2nd_moment,
                                             setup_filter, upsample2d)

MOTION_CODE_BLOCK = 16
"""Per-seed motion noise is drawn in blocks of this many codes, so the first n codes of a seed are the same however
many codes a call needs (a longer video extends a shorter one instead of redrawing it)."""


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


class MotionMappingNetwork(nn.Module):
    """Motion noise sequence [B, L, z_m] -> motion codes u [B, L - 2 (k - 1), v]: two unpadded equalized-lr
    Conv1d layers with leaky ReLU and lr mult 0.01 (a Conv1d rather than an LSTM: an LSTM diverges for large t)."""

    def __init__(self, z_dim: int, v_dim: int, kernel_size: int, lr_mult: float) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.conv0 = Conv1d(z_dim, z_dim, kernel_size, activation="lrelu", lr_mult=lr_mult)
        self.conv1 = Conv1d(z_dim, v_dim, kernel_size, activation="lrelu", lr_mult=lr_mult)

    def forward(self, motion_z: torch.Tensor) -> torch.Tensor:
        x = motion_z.to(self.conv0.weight.dtype).transpose(1, 2)  # [B, z_m, L]
        return self.conv1(self.conv0(x)).transpose(1, 2)  # [B, L - 2 (k - 1), v]


def linspaced_period_frequencies(num: int, min_period: float, max_period: float) -> torch.Tensor:
    """omega_i = 2 pi / 2^linspace(log2 min_period, log2 max_period, num), in radians per frame, ascending."""
    exponents = torch.linspace(math.log2(min_period), math.log2(max_period), num, dtype=torch.float64)
    return (2 * math.pi / 2.0 ** exponents).flip(0).float()


class AcyclicPositionalEncoding(nn.Module):
    """v(t) = e(t) - lerp(e(t_l), e(t_r), alpha) + lerp(A u_l, A u_r, alpha)   (StyleGAN-V Eq. 5-6, as released).

    e(t) = [sin, cos](omega * s * t + phi), with a period scale s = tanh(P u_l) + 1 in (0, 2) and a phase
    phi = (Phi u_l) * max_period * omega / (2 pi), both predicted without bias from the left knot's code. Removing
    the interpolated wave of the two knots and adding the interpolated A u makes v equal A u exactly at every knot:
    v is continuous, and no period of the sinusoids survives, so it is not periodic.
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

    def wave(self, t: torch.Tensor, scale: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
        """e(t) = [sin, cos](omega * scale * t + phase): t [N], scale/phase [N, F] -> [N, 2F]."""
        arg = self.freqs.to(scale.dtype) * scale * t.unsqueeze(1) + phase
        return torch.cat([arg.sin(), arg.cos()], dim=1)

    def forward(self, t: torch.Tensor, t_left: torch.Tensor, t_right: torch.Tensor, alpha: torch.Tensor,
                u_left: torch.Tensor, u_right: torch.Tensor) -> torch.Tensor:
        """t, t_left, t_right, alpha [N]; u_left, u_right [N, v_dim] -> v [N, 2F]."""
        scale = self.period_predictor(u_left).tanh() + 1  # [N, F], in (0, 2)
        phase = self.phase_predictor(u_left) * self.phase_scales.to(u_left.dtype)  # [N, F]
        a = alpha.unsqueeze(1)  # [N, 1]
        e_t = self.wave(t, scale, phase)
        e_knots = torch.lerp(self.wave(t_left, scale, phase), self.wave(t_right, scale, phase), a)
        return e_t - e_knots + torch.lerp(self.aligner(u_left), self.aligner(u_right), a)


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
        return num_motion_codes(t_max, self.delta, self.kernel_size)

    def knots(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """t [...] (frames, >= 0) -> left knot index, t_l, t_r = t_l + delta, alpha = (t - t_l) / delta."""
        remainder = torch.remainder(t, self.delta)
        t_left = t - remainder
        index = torch.round(t_left / self.delta).long()
        return index, t_left, t_left + self.delta, remainder / self.delta

    def forward(self, t: torch.Tensor, motion_z: torch.Tensor) -> torch.Tensor:
        """t [B, T] frame times (>= 0, fractional allowed); motion_z [B, L, z_m] -> v [B, T, v_dim].

        Always computed in the parameters' dtype (float32), also under autocast: bfloat16's 8 significant bits
        cannot resolve the phases omega t at times in the hundreds of frames."""
        with torch.autocast(t.device.type, enabled=False):
            return self._codes(t.to(self.encoding.aligner.weight.dtype), motion_z)

    def _codes(self, t: torch.Tensor, motion_z: torch.Tensor) -> torch.Tensor:
        batch, frames = t.shape
        if frames and float(t.min()) < 0:
            raise ValueError("frame times must be >= 0")
        u = self.mapping(motion_z)  # [B, L', v]
        index, t_left, t_right, alpha = self.knots(t)  # [B, T] each
        if frames and int(index.max()) + 1 >= u.shape[1]:
            raise ValueError(f"{motion_z.shape[1]} motion codes cover t < {(u.shape[1] - 1) * self.delta}, "
                             f"got t = {float(t.max())}; draw num_codes(t_max) = {self.num_codes(float(t.max()))}")
        u_left = torch.gather(u, 1, index.unsqueeze(2).expand(-1, -1, u.shape[2]))  # [B, T, v]
        u_right = torch.gather(u, 1, (index + 1).unsqueeze(2).expand(-1, -1, u.shape[2]))
        v = self.encoding(t.reshape(-1), t_left.reshape(-1), t_right.reshape(-1), alpha.reshape(-1),
                          u_left.reshape(batch * frames, -1), u_right.reshape(batch * frames, -1))
        return v.reshape(batch, frames, -1)


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

    def draw_motion_z_for_seed(self, t_max: float, generator: torch.Generator,
                               device: torch.device | None = None) -> torch.Tensor:
        """Motion noise of one video, drawn in fixed blocks so that the codes of a longer video extend (rather
        than replace) those of a shorter one: [L, z_m]."""
        if self.motion is None:
            return torch.zeros(0, 0, device=device)
        needed = self.motion.num_codes(t_max)
        blocks = [torch.randn(MOTION_CODE_BLOCK, self.motion.z_dim, generator=generator, device=device)
                  for _ in range(math.ceil(needed / MOTION_CODE_BLOCK))]
        return torch.cat(blocks)[:needed]

    def motion_codes(self, t: torch.Tensor, motion_z: torch.Tensor | None) -> torch.Tensor | None:
        """Per-frame motion codes v(t) [B, T, v] (None without motion)."""
        return None if self.motion is None else self.motion(t, motion_z)

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
