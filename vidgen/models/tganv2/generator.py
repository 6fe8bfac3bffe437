"""The TGANv2 generator: a ConvLSTM that unrolls one latent into per-frame feature maps, and a 2-D ResNet that
renders them at several levels of resolution, subsampling frames (and optionally videos) between levels.

Saito, Saito, Koyama, Kobayashi, "Train Sparsely, Generate Densely" (IJCV 2020), Sec. 3-4; as released in
pfnet-research/tgan2 (tgan2/models/generators/multi_tgan_clstm_generator.py, conv_lstm.py, resblocks.py):

    z ~ U(-1, 1)^z_slow_dim                                  one latent per video
    x_0 = reshape(linear(z)) [clstm_ch, t_size, t_size];  x_t = 0 for t > 0
    h_t = ConvLSTM(x_t, h_{t-1}) (clstm_layers stacked)      the top cell's h_t is frame t's feature map
    a   = abstract blocks(h_t)            per frame          level 0 = head_0(a) at every frame
    for l = 1 .. L-1:  a = block_l(subsample_l(a));  level l = head_l(a)
    head = BatchNorm -> ReLU -> conv 3x3 -> tanh;  block = BN-ReLU-up2-conv3-BN-ReLU-conv3 + up2-conv1 (BigGAN-style)

Training (`forward`) renders all levels of a pyramid: the top level sees only 1 in prod(frame_factors) frames, which
is the paper's memory claim. Sampling (`render`) runs every frame through every block and renders the top level
only, as the reference does in test mode (chainer train=False: render_level 4, all frames), for any number of frames:
the ConvLSTM unrolls as far as asked. In eval mode BatchNorm uses its running statistics, so a frame depends only on
its own video's latent, and `render` can push frames through the up-blocks in chunks.

Deviations from the reference:
- Class-conditional BatchNorm. The reference's multi-level generator builds per-class BatchNorm when n_classes > 0 but
  never passes the label to it (and its updater hands the label to G as n_frames), so its conditional variant does not
  run. Here every BatchNorm of the blocks and heads gets the label, as in the reference's ResNetImageGenerator.
- The 1x1 shortcut convolution of an up-block runs before the nearest-neighbour upsampling instead of after it: the
  two commute exactly, and the former costs a quarter.
- The ConvLSTM skips convolutions of all-zero tensors (the input after the first frame, the state before it) and
  uses their exact result (the bias, or zero).
- BatchNorm statistics are per rank: the reference synchronises them over its GPUs (ChainerMN's
  MultiNodeBatchNormalization). With the reference's 32 videos per GPU a rank's statistics already cover 512 frames
  at level 0 and 64 at the top; the running statistics saved are rank 0's. (torch's SyncBatchNorm would need
  CUDA, which the CPU tests of the distributed loop cannot run.)
- `clstm_forget_bias` (default 0, the reference's) can start the forget gates open; see TGANv2Config.
Initialisation follows Chainer's: GlorotUniform(sqrt 2) for the blocks' 3x3 convolutions, GlorotUniform(1) for their
shortcuts, LeCunNormal (Chainer's default) for the linear map, the ConvLSTM and the heads, biases zero; BatchNorm
eps 2e-5 and momentum 0.1 (Chainer's defaults, decay 0.9).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vidgen.models.tganv2.config import TGANv2Config
from vidgen.models.tganv2.pyramid import check_phases, level_frame_counts, subsample_batch, subsample_frames

BN_EPS = 2e-5
"""Chainer's BatchNormalization default (torch's is 1e-5)."""
BN_MOMENTUM = 0.1
"""Chainer's decay 0.9: running = 0.9 running + 0.1 batch."""


def sample_z(generators: Sequence[torch.Generator], z_dim: int, device: torch.device) -> torch.Tensor:
    """z_slow ~ U(-1, 1)^z_dim, row i from generators[i] alone, so that a video depends only on its own seed."""
    rows = [torch.rand(z_dim, generator=g, device=g.device) for g in generators]
    return torch.stack(rows).to(device) * 2.0 - 1.0  # [B, z_dim]


def lecun_normal_(layer: nn.Linear | nn.Conv2d) -> None:
    """Chainer's default initialiser LeCunNormal: N(0, 1 / fan_in); bias zero."""
    fan_in = layer.weight[0].numel()
    nn.init.normal_(layer.weight, 0.0, 1.0 / math.sqrt(fan_in))
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


def glorot_uniform_(layer: nn.Module, gain: float = 1.0) -> None:
    """Chainer's GlorotUniform(scale): U(-s, s), s = scale sqrt(6 / (fan_in + fan_out)) (= torch's xavier_uniform_
    with that gain); bias zero."""
    nn.init.xavier_uniform_(layer.weight, gain)
    if getattr(layer, "bias", None) is not None:
        nn.init.zeros_(layer.bias)


# ----------------------------------------------------------------------------------------------------------
# ConvLSTM


class ConvLSTMCell(nn.Module):
    """A convolutional LSTM cell without peepholes (Shi et al. 2015; the reference's ConvLSTM, peephole=False).

    Both convolutions produce the four gates stacked along channels in the order i, f, o, c (input, forget, output,
    cell candidate: the reference's `w_xifoc` / `w_hifoc`, split by F.split_axis; torch.nn.LSTM's order is i, f, g, o):

        xi, xf, xo, xc = conv_x(x)          3x3, with bias
        hi, hf, ho, hc = conv_h(h)          3x3, no bias
        i  = sigmoid(xi + hi)
        f  = sigmoid(xf + hf)
        c' = f * c + i * tanh(xc + hc)
        o  = sigmoid(xo + ho)
        h' = o * tanh(c')

    The state starts at h = c = 0. `x=None` stands for an all-zero input (the generator's input after the first
    frame): conv_x(0) is its bias, so the convolution is skipped.
    """

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int = 3, forget_bias: float = 0.0) -> None:
        super().__init__()
        self.hidden_channels = hidden_channels
        self.conv_x = nn.Conv2d(in_channels, 4 * hidden_channels, kernel_size, padding=kernel_size // 2)
        self.conv_h = nn.Conv2d(hidden_channels, 4 * hidden_channels, kernel_size, padding=kernel_size // 2,
                                bias=False)
        lecun_normal_(self.conv_x)
        lecun_normal_(self.conv_h)
        with torch.no_grad():
            self.conv_x.bias[hidden_channels:2 * hidden_channels] = forget_bias  # gate order i, f, o, c

    def forward(self, x: torch.Tensor | None,
                state: tuple[torch.Tensor, torch.Tensor] | None) -> tuple[torch.Tensor, torch.Tensor]:
        """One step: (x [B, in, H, W] or None, (h, c) [B, hidden, H, W] or None) -> (h', c')."""
        if x is None and state is None:
            raise ValueError("give an input or a state: the step of a zero input from a zero state needs its size")
        if x is None:
            gates = self.conv_x.bias.view(1, -1, 1, 1).expand(state[0].shape[0], -1, *state[0].shape[2:])
        else:
            gates = self.conv_x(x)  # [B, 4 hidden, H, W]
        if state is not None:
            gates = gates + self.conv_h(state[0])  # conv_h(0) = 0: skipped at the first step
        xi, xf, xo, xc = gates.chunk(4, dim=1)  # each [B, hidden, H, W]; now x- and h-terms summed
        c = torch.zeros_like(xc) if state is None else state[1]
        i = torch.sigmoid(xi)
        f = torch.sigmoid(xf)
        c = f * c + i * torch.tanh(xc)
        o = torch.sigmoid(xo)
        h = o * torch.tanh(c)
        return h, c


# ----------------------------------------------------------------------------------------------------------
# Per-frame 2-D layers


class BatchNorm(nn.Module):
    """BatchNorm2d over frames; with classes, categorical conditional BatchNorm (de Vries et al. 2017; the
    reference's CategoricalConditionalBatchNormalization): normalise without affine, then scale and shift by the
    label's learned gamma (init 1) and beta (init 0)."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM, affine=num_classes == 0)
        self.gamma = self.beta = None
        if num_classes:
            self.gamma = nn.Embedding(num_classes, channels)
            self.beta = nn.Embedding(num_classes, channels)
            nn.init.ones_(self.gamma.weight)
            nn.init.zeros_(self.beta.weight)

    def forward(self, x: torch.Tensor, label: torch.Tensor | None) -> torch.Tensor:
        h = self.norm(x)  # [N, C, H, W]
        if self.gamma is None:
            return h
        return h * self.gamma(label)[:, :, None, None] + self.beta(label)[:, :, None, None]


class UpBlock(nn.Module):
    """The reference's GenBlock(upsample=True): BN-ReLU-up2-conv3x3-BN-ReLU-conv3x3, plus up2(conv1x1(x)).
    Upsampling is nearest-neighbour (Chainer's unpooling_2d with ksize 2). Its convs have no biases: every path from
    a block's output to the videos passes a BatchNorm (the next block's, a level head's) through maps that keep
    per-channel constants (1x1 shortcuts, nearest upsampling, frame subsampling), so a bias there only adds a
    constant that a BatchNorm removes. Its gradient is zero in exact arithmetic, and Adam, which divides by the
    gradient's size, would turn the float noise in it into steps of size lr (different on two GPUs and one
    process). The reference's biases start at zero and stay there: the function is the same."""

    def __init__(self, in_channels: int, out_channels: int, num_classes: int) -> None:
        super().__init__()
        self.norm1 = BatchNorm(in_channels, num_classes)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = BatchNorm(out_channels, num_classes)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        glorot_uniform_(self.conv1, math.sqrt(2))
        glorot_uniform_(self.conv2, math.sqrt(2))
        glorot_uniform_(self.shortcut)

    def forward(self, x: torch.Tensor, label: torch.Tensor | None) -> torch.Tensor:
        h = F.relu(self.norm1(x, label))
        h = self.conv1(F.interpolate(h, scale_factor=2, mode="nearest"))  # [N, out, 2H, 2W]
        h = self.conv2(F.relu(self.norm2(h, label)))
        return h + F.interpolate(self.shortcut(x), scale_factor=2, mode="nearest")


class RenderHead(nn.Module):
    """A level's output: BN -> ReLU -> conv 3x3 -> tanh, per frame (the reference's b3/c3 ... b6/c6)."""

    def __init__(self, in_channels: int, out_channels: int, num_classes: int) -> None:
        super().__init__()
        self.norm = BatchNorm(in_channels, num_classes)
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        lecun_normal_(self.conv)

    def forward(self, h: torch.Tensor, label: torch.Tensor | None, batch: int) -> torch.Tensor:
        """Frames [B T, C, H, W] (video-major) -> video [B, out, T, H, W] in [-1, 1]."""
        x = torch.tanh(self.conv(F.relu(self.norm(h, label))))  # [B T, out, H, W]
        return x.unflatten(0, (batch, -1)).transpose(1, 2)  # [B, out, T, H, W]


def frame_labels(label: torch.Tensor | None, frames: int) -> torch.Tensor | None:
    """A video's label for each of its frames, video-major like the [B T, C, H, W] features."""
    return None if label is None else label.repeat_interleave(frames)


# ----------------------------------------------------------------------------------------------------------
# Generator


class TGANv2Generator(nn.Module):
    """z_slow [B, z_slow_dim] -> a pyramid of videos (training) or the top level at every frame (sampling)."""

    def __init__(self, cfg: TGANv2Config, frames: int = 16, out_channels: int = 3) -> None:
        super().__init__()
        self.cfg = cfg
        self.frames = frames  # the training clip length: forward's and render's default
        self.num_classes = cfg.num_classes
        self.fc = nn.Linear(cfg.z_slow_dim, cfg.clstm_ch * cfg.t_size ** 2)
        lecun_normal_(self.fc)
        self.clstm = nn.ModuleList([ConvLSTMCell(cfg.clstm_ch, cfg.clstm_ch, forget_bias=cfg.clstm_forget_bias)
                                    for _ in range(cfg.clstm_layers)])
        widths = (cfg.clstm_ch, *cfg.g_channels)
        self.blocks = nn.ModuleList([UpBlock(widths[i], widths[i + 1], cfg.num_classes)
                                     for i in range(len(cfg.g_channels))])
        # Level l renders after block abstract_blocks - 1 + l.
        self.heads = nn.ModuleList([RenderHead(widths[cfg.abstract_blocks + level], out_channels, cfg.num_classes)
                                    for level in range(cfg.levels)])

    def _check_label(self, label: torch.Tensor | None, batch: int) -> None:
        if self.num_classes and label is None:
            raise ValueError(f"this generator is class-conditional ({self.num_classes} classes): give a label")
        if not self.num_classes and label is not None:
            raise ValueError("this generator is unconditional: give no label")
        if label is not None and label.shape != (batch,):
            raise ValueError(f"expected one label per video, shape ({batch},), got {tuple(label.shape)}")

    def unroll(self, z: torch.Tensor, frames: int) -> torch.Tensor:
        """z [B, z_slow_dim] -> the top ConvLSTM cell's h for frames 0 .. frames-1: [B, T, clstm_ch, t, t]."""
        cfg = self.cfg
        x0 = self.fc(z).view(z.shape[0], cfg.clstm_ch, cfg.t_size, cfg.t_size)  # the first frame's input
        states: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(self.clstm)
        hs = []
        for t in range(frames):
            h = x0 if t == 0 else None  # None: zeros after the first frame, as the reference's make_in_val
            for layer, cell in enumerate(self.clstm):
                h, c = cell(h, states[layer])
                states[layer] = (h, c)
            hs.append(h)
        return torch.stack(hs, dim=1)  # [B, T, clstm_ch, t, t]

    def forward(self, z: torch.Tensor, label: torch.Tensor | None = None, frames: int | None = None,
                phases: Sequence[int] | None = None) -> list[torch.Tensor]:
        """Training: the pyramid of videos [B_l, 3, T_l, R_l, R_l], lowest resolution first. `phases` (one per
        level transition, see pyramid.draw_phases; None: all 0) choose the frames each level keeps."""
        cfg = self.cfg
        frames = self.frames if frames is None else frames
        level_frame_counts(frames, cfg.frame_factors)  # raises on a length the levels cannot split
        phases = check_phases(cfg.frame_factors, phases)
        batch = z.shape[0]
        self._check_label(label, batch)

        # Stage 1: ConvLSTM over time, at t_size x t_size
        h = self.unroll(z, frames).flatten(0, 1)  # [B T, clstm_ch, t, t], video-major

        # Stage 2: abstract blocks on every frame; level 0 renders all of them
        for block in self.blocks[:cfg.abstract_blocks]:
            h = block(h, frame_labels(label, frames))
        videos = [self.heads[0](h, frame_labels(label, frames), batch)]

        # Stage 3: each further level subsamples videos and frames, then one rendering block and its head
        for level in range(1, cfg.levels):
            h = h.unflatten(0, (batch, frames))  # [B_l, T_l, C, H, W]
            h = subsample_batch(h, cfg.batch_factors[level - 1])
            h = subsample_frames(h, cfg.frame_factors[level - 1], phases[level - 1], dim=1)
            if label is not None:
                label = subsample_batch(label, cfg.batch_factors[level - 1])
            batch, frames = h.shape[:2]
            h = self.blocks[cfg.abstract_blocks + level - 1](h.flatten(0, 1), frame_labels(label, frames))
            videos.append(self.heads[level](h, frame_labels(label, frames), batch))  # [B_l, 3, T_l, R_l, R_l]
        return videos

    @torch.no_grad()
    def render(self, z: torch.Tensor, label: torch.Tensor | None = None, frames: int | None = None) -> torch.Tensor:
        """Sampling: the top level at every frame, [B, 3, frames, R, R], for any number of frames. Frames go through
        the up-blocks render_chunk at a time (summed over the videos); put the generator in eval mode first, so
        that BatchNorm uses its running statistics and a video depends only on its own z."""
        cfg = self.cfg
        frames = self.frames if frames is None else frames
        batch = z.shape[0]
        self._check_label(label, batch)
        hs = self.unroll(z, frames)  # [B, N, clstm_ch, t, t]: small, kept whole
        out = None
        step = max(1, cfg.render_chunk // batch)
        for start in range(0, frames, step):
            chunk = hs[:, start:start + step]  # [B, n, clstm_ch, t, t]
            n = chunk.shape[1]
            y = frame_labels(label, n)
            h = chunk.flatten(0, 1)
            for block in self.blocks:
                h = block(h, y)
            x = self.heads[-1](h, y, batch)  # [B, 3, n, R, R]
            if out is None:
                out = x.new_empty(batch, x.shape[1], frames, *x.shape[3:])
            out[:, :, start:start + n] = x
        return out
