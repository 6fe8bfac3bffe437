"""Configuration of the TGANv2 backend (Saito, Saito, Koyama, Kobayashi, "Train Sparsely, Generate Densely",
IJCV 2020, arXiv 1811.09245). No torch import: recipes load without it.

Defaults are the released UCF-101 192x192 run (pfnet-research/tgan2, the README's training command): the config
files conf/dirac.yml + conf/dset/ucf101_192x256.yml + conf/gen/tgan_multi_192x256.yml + conf/dis/resnet_multi.yml,
overridden on the command line with gen.args.n_layers=1, gen.args.clstm_ch=1024, subsample_frame=[2,2,2] and
subsample_batch=false (generator and updater). Where a config file and that command disagree (the files say 3
ConvLSTM layers of 512 channels and batch subsampling on), the command wins: it is the run behind the published
Inception Score (conf/tgan-v41-ucf101.yml, the same run written out, agrees on 1 layer x 1024 channels).

Levels: the generator renders `levels = len(frame_factors) + 1` videos. Level 0 (lowest resolution) has every
frame of the clip; each next level keeps 1 in frame_factors[l] of the previous level's frames and doubles the
resolution (vidgen.models.tganv2.pyramid is the one place that rule is written).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from vidgen.core.config import Recipe, SampleConfig, check_class_labels, check_rgb
from vidgen.errors import ConfigError


@dataclass(frozen=True)
class TGANv2Config:
    name: Literal["tganv2"] = "tganv2"

    # --- Generator: z_slow -> linear -> ConvLSTM at t_size x t_size -> per-frame 2-D ResNet up-blocks ---
    z_slow_dim: int = 256
    """Dimensionality of the video's latent z_slow ~ U(-1, 1) (the reference's z_slow_dim)."""
    t_size: int = 3
    """Side of the ConvLSTM's feature map; each up-block doubles it, so the top level is t_size x 2^len(g_channels)
    (the reference: 3 for UCF-101 at 192 = 3 x 64, 4 for FaceForensics at 256)."""
    clstm_ch: int = 1024
    """Channels of the ConvLSTM state, and of the linear map z_slow -> its first input (the reference's UCF-101
    command: 1024; conf/gen/tgan_multi*.yml: 512). The ConvLSTM holds most of G's parameters (75.5 M of 88 M)."""
    clstm_layers: int = 1
    """Stacked ConvLSTM cells (the reference's n_layers: 1 in the UCF-101 command; 3 in tgan_multi_192x256.yml)."""
    clstm_forget_bias: float = 0.0
    """Initial bias of the ConvLSTM's forget gate (the reference: 0, Chainer's default). After the first frame the
    cell's input is zero, so with forget gate sigmoid(0) = 1/2 the state from z halves every frame at
    initialisation (measured: the videos' spread falls to 2 % by frame 8), and Adam, moving a bias by about lr a
    step, needs ~10^4 steps to raise it. A positive value (1-2; Jozefowicz et al. 2015) lets short runs keep z's
    content across the clip from the start."""
    g_channels: tuple[int, ...] = (512, 256, 128, 64, 32, 32)
    """Output width of each up-block (ResNet block, x2 nearest upsampling). The last len(frame_factors) blocks are
    the rendering blocks of levels 1.., the ones before them the abstract blocks that level 0 renders after. The
    reference: ch x (16, 8, 4, 2, 1, 1) with ch = 32, i.e. 24, 48, 96 and 192 px for levels 0-3 at t_size 3."""
    frame_factors: tuple[int, ...] = (2, 2, 2)
    """Frame subsampling between consecutive levels: level l + 1 keeps 1 in frame_factors[l] frames of level l, at a
    random phase in training (the reference's subsample_frame [2, 2, 2]: 16, 8, 4, 2 frames). One entry per level
    transition: 3 entries, 4 levels. data.frames must be divisible by their product."""
    batch_factors: tuple[int, ...] = (1, 1, 1)
    """Batch subsampling between consecutive levels ("adaptive batch reduction"): level l + 1 keeps every
    batch_factors[l]-th video of level l. The reference's UCF-101 command turns it off (1, 1, 1); its config files
    default to (2, 2, 2). One entry per level transition, like frame_factors."""
    num_classes: int = 0
    """Class-conditional when > 0: every BatchNorm of G gets per-class gains and biases, and every level of D a
    projection term (the reference trains UCF-101 unconditionally: label False). Needs data.labels: true."""
    render_chunk: int = 64
    """Frames pushed through the up-blocks at once when sampling (summed over the videos of a call), so that memory
    does not grow with the video's length. Does not change the result (BatchNorm is per frame in eval mode)."""

    # --- Discriminator: one 3-D ResNet per level ---
    d_channels: tuple[int, ...] = (64, 128, 256, 512, 1024)
    """Output width of each 3-D ResNet block of every level's discriminator: the first halves H and W, the others
    halve T, H and W (the reference: mid_ch x (1, 2, 4, 8, 16) with mid_ch = 64, conf/dis/resnet_multi.yml)."""

    # --- Objective: the reference's "Dirac" updater ---
    gp_lambda: float = 0.5
    """Weight of the zero-centred gradient penalty on real clips, summed over the levels and the videos (the
    reference's lam: 0.5 in its UCF-101 command; conf/dirac.yml says 10)."""
    n_dis: int = 1
    """Discriminator steps per generator step (the reference's UCF-101 run: 1). Each is its own phase on the step's
    real clips, with fresh fakes."""

    def __post_init__(self) -> None:
        if self.gp_lambda < 0:
            raise ConfigError(f"model.gp_lambda must be >= 0, got {self.gp_lambda}")
        for key in ("z_slow_dim", "t_size", "clstm_ch", "clstm_layers", "render_chunk", "n_dis"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"model.{key} must be > 0, got {getattr(self, key)}")
        if self.num_classes < 0:
            raise ConfigError(f"model.num_classes must be >= 0 (0: unconditional), got {self.num_classes}")
        for key in ("g_channels", "d_channels"):
            widths = getattr(self, key)
            if not widths or any(w <= 0 for w in widths):
                raise ConfigError(f"model.{key} must be a non-empty list of positive widths, got {list(widths)}")
        for key in ("frame_factors", "batch_factors"):
            factors = getattr(self, key)
            if any(f < 1 for f in factors):
                raise ConfigError(f"model.{key} must be integers >= 1 (1: no subsampling), got {list(factors)}")
        if len(self.batch_factors) != len(self.frame_factors):
            raise ConfigError(f"model.batch_factors ({list(self.batch_factors)}) needs one entry per level transition, "
                              f"like model.frame_factors ({list(self.frame_factors)}); use "
                              f"{[1] * len(self.frame_factors)} for no batch subsampling")
        if len(self.g_channels) < self.levels:
            raise ConfigError(f"model.g_channels has {len(self.g_channels)} up-blocks but the {self.levels} levels "
                              f"(len(model.frame_factors) + 1) need at least one each; give at least {self.levels}")

    @property
    def levels(self) -> int:
        """Number of rendered videos (and of discriminators): one more than the subsampling steps between them."""
        return len(self.frame_factors) + 1

    @property
    def abstract_blocks(self) -> int:
        """Up-blocks before level 0 is rendered (the reference: 3)."""
        return len(self.g_channels) - len(self.frame_factors)

    @property
    def resolution(self) -> int:
        """Side of the top level's frames: t_size doubled by every up-block."""
        return self.t_size * 2 ** len(self.g_channels)

    @property
    def frame_divisor(self) -> int:
        """A clip length must be a multiple of this: the product of frame_factors."""
        return math.prod(self.frame_factors)

    def check_recipe(self, recipe: Recipe) -> None:
        """Cross-checks against the other sections, run when a recipe is loaded."""
        check_rgb(recipe)
        frames, div = recipe.data.frames, self.frame_divisor
        if frames % div:
            factors = " x ".join(map(str, self.frame_factors))
            raise ConfigError(f"data.frames ({frames}) must be divisible by {div} (model.frame_factors: {factors}) so "
                              f"that every level keeps a whole number of frames; use {div}, {2 * div}, {3 * div}, "
                              f"{4 * div}, ...")
        res, blocks = recipe.data.resolution, len(self.g_channels)
        if res != self.resolution:
            hint = f"; or model.t_size: {res // 2 ** blocks}" if res % 2 ** blocks == 0 else ""
            raise ConfigError(f"data.resolution ({res}) is not what the generator renders: model.t_size "
                              f"({self.t_size}) x 2^{blocks} (one doubling per model.g_channels entry) = "
                              f"{self.resolution}; set data.resolution: {self.resolution}{hint}")
        if recipe.data.image_frames:
            raise ConfigError("data.image_frames is for video diffusion models; set it to 0 for TGANv2")
        check_class_labels(self.num_classes, recipe.data.labels)


@dataclass(frozen=True)
class TGANv2SampleConfig(SampleConfig):
    """Sampling options of TGANv2: the recipe's sample section and `vidgen sample`'s flags."""

    label: int | None = field(default=None, metadata={"flag": "--class"})
    """Class-conditional models: the class of every video (null: video i gets class (seed + i) mod classes)."""

    def check_recipe(self, recipe: Recipe) -> None:
        classes = recipe.model.num_classes
        if self.label is not None and not 0 <= self.label < classes:
            raise ConfigError(f"--class {self.label} needs a class-conditional model with that class; this one has "
                              f"{classes} classes")
