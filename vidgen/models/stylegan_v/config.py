"""Configuration of the StyleGAN-V backend (Skorokhodov et al., CVPR 2022). No torch import: recipes load
without it.

Defaults follow the released code (universome/stylegan-v, configs/model/stylegan-v.yaml and src/train.py with
cfg=auto at 256x256): where the early paper text and the code disagree, the code wins.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from vidgen.core.config import Recipe, SampleConfig, check_rgb
from vidgen.errors import ConfigError

Augment = Literal["none", "fixed", "ada"]
FakeClipTimes = Literal["like_real", "sampled"]


@dataclass(frozen=True)
class StyleGANVConfig:
    name: Literal["stylegan-v"] = "stylegan-v"

    # --- Content mapping network: z -> w (one w per video, shared by all its frames) ---
    z_dim: int = 512
    """Content noise dimensionality."""
    w_dim: int = 512
    """Intermediate latent (W) dimensionality."""
    mapping_layers: int = 2
    """Fully connected layers in the content mapping network (StyleGAN-V: 2; StyleGAN2: 8)."""
    mapping_lr_mult: float = 0.01
    """Learning-rate multiplier of the content and motion mapping networks (equalized lr)."""
    w_avg_beta: float = 0.995
    """Decay of the running average of w, the centre for the truncation trick."""

    # --- Synthesis network (StyleGAN2 skip generator) and discriminator widths ---
    channel_base: int = 16384
    """Width at resolution r is min(channel_base / r, channel_max), for G and D (the reference: 0.5 x 32768
    below 512x512, giving 512 up to 32 px, 256 at 64, 128 at 128, 64 at 256)."""
    channel_max: int = 512
    """Widest layer."""
    fp16_resolutions: int = 0
    """Run this many of the highest resolutions (G and D blocks, down to 8x8) in float16 on CUDA (the reference:
    4, with conv_clamp 256). Ignored on other devices, which compute those layers in float32."""
    conv_clamp: float | None = None
    """Clamp every conv layer's output to +-this (null: no clamp). Needed with fp16_resolutions > 0 (256)."""

    # --- Motion: noise codes every motion_z_distance frames -> Conv1d -> acyclic positional encoding ---
    motion_z_dim: int = 512
    """Dimensionality of the motion noise codes."""
    motion_v_dim: int = 512
    """Dimensionality of the motion codes u and of the positional encoding v(t) ([sin, cos] of
    motion_v_dim / 2 frequencies); v is tiled over 4x4 and concatenated to the learned constant."""
    motion_z_distance: int = 16
    """delta: frames between two motion noise codes; v(t) interpolates between the codes around t. The reference
    ties it to the positional encoding's shortest period (configs/model/stylegan-v.yaml: motion_z_distance =
    min_period_len): 16 by default, 256 for SkyTimelapse 256x256 (its README's launch command)."""
    motion_kernel_size: int = 11
    """Kernel of the two unpadded Conv1d layers of the motion mapping network (each shortens the code
    sequence by kernel - 1)."""
    time_min_period: float | None = None
    """Shortest period of the positional encoding, in frames (null: motion_z_distance, as in the reference).
    The reference's SkyTimelapse-256 run sets 256: its motions are slow."""
    time_max_period: float = 1024.0
    """Longest period of the positional encoding, in frames; the frequencies are log-spaced in between."""
    render_chunk: int = 128
    """Frames rendered per synthesis pass when sampling (summed over the videos of a call), so memory does not
    grow with video length. Does not change the result."""

    # --- Discriminator: per-frame ResNet, frames concatenated at 16x16, time-gap conditioning ---
    num_frames_per_clip: int = 3
    """k: frames per training clip shown to D (sparse, at irregular times). Must equal data.frames."""
    max_frame_distance: int = 32
    """Longest first-to-last distance of a clip, in frames; distances are the powers of two in
    [k - 1, max_frame_distance] (the reference's total_dists with max_dist 32: 2, 4, 8, 16, 32 for k = 3)."""
    fake_clip_times: FakeClipTimes = "like_real"
    """How fake clips' frame times are drawn. like_real: each fake clip takes the time gaps of a random real clip of
    the batch, at a fractional start in [0, L - span - 1), L that clip's horizon (see max_num_frames) — real and
    fake gaps then share one distribution whatever the data pipeline samples (D would otherwise tell them apart by
    their gaps alone). sampled: the reference's own draw (distances clip_distances, integer middle frames,
    fractional start in [0, L - d - 1)), which matches the real clips only if the data pipeline samples them the
    same way."""
    max_num_frames: int = 1024
    """Time horizon in frames: a fake clip lies within L = min(length of a real clip's source video, max_num_frames)
    frames, as in the reference (training_loop.py: min(get_video_len(i), max_num_frames) for a random video i;
    here the video of a real clip of the batch), and D's gap encoder is sized for gaps below it (a learned
    Embedding(max_num_frames, 256) plus sin/cos of log2(max_num_frames) fixed frequencies: 10 at 1024)."""
    d_concat_resolution: int = 16
    """D processes frames separately down to this resolution (or the input resolution if smaller), halves the
    channels there and concatenates the k frames channel-wise."""
    mbstd_group: int = 4
    """Minibatch standard deviation group size (videos)."""

    # --- Losses and regularisation ---
    r1_gamma: float | None = None
    """R1 weight gamma (null: the reference's heuristic 0.0002 x resolution^2 / batch, with batch the global batch
    train.batch_size x train.grad_accum x ranks, so a recipe trains alike on any number of GPUs: 0.2048 at 256^2
    with 64 videos)."""
    r1_every: int = 16
    """Lazy R1: every this many steps, weighted by the interval (StyleGAN2 Sec. 3.1)."""
    pl_weight: float = 0.0
    """Path-length regularisation weight (StyleGAN-V: off)."""
    pl_every: int = 4
    """Interval of G's lazy regularisation. G's Adam lr and betas are rescaled by it even when pl_weight = 0,
    as in the reference (G_reg_interval 4)."""

    # --- Discriminator augmentation (the same parameters for every frame of a clip) ---
    augment: Augment = "none"
    """none; fixed (probability augment_p); ada (adaptive probability, Karras et al. 2020)."""
    augment_p: float = 0.0
    """Probability of each augmentation: the fixed value, or ADA's initial value."""
    ada_target: float = 0.6
    """ADA target for E[sign(D(real))] (the overfitting heuristic r_t)."""
    ada_interval: int = 4
    """Adjust p every this many D steps."""
    ada_speed_videos: int = 500_000
    """p can move from 0 to 1 in this many training videos (stylegan2-ada's ada_kimg 500; StyleGAN-V's launcher
    ends up with 100k, because its `resume: null` default takes the transfer-learning branch)."""

    def __post_init__(self) -> None:
        for key in ("z_dim", "w_dim", "mapping_layers", "channel_base", "channel_max", "motion_z_dim",
                    "motion_v_dim", "motion_z_distance", "motion_kernel_size", "render_chunk",
                    "num_frames_per_clip", "max_frame_distance", "max_num_frames", "d_concat_resolution",
                    "mbstd_group", "r1_every", "pl_every", "ada_interval", "ada_speed_videos",
                    "mapping_lr_mult", "time_max_period"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"model.{key} must be > 0, got {getattr(self, key)}")
        for key in ("fp16_resolutions", "pl_weight"):
            if getattr(self, key) < 0:
                raise ConfigError(f"model.{key} must be >= 0, got {getattr(self, key)}")
        if self.r1_gamma is not None and self.r1_gamma < 0:
            raise ConfigError(f"model.r1_gamma must be >= 0 or null, got {self.r1_gamma}")
        if self.motion_v_dim % 2:
            raise ConfigError(f"model.motion_v_dim must be even ([sin, cos] pairs), got {self.motion_v_dim}")
        if self.motion_kernel_size % 2 == 0:
            raise ConfigError(f"model.motion_kernel_size must be odd, got {self.motion_kernel_size}")
        if not 0.0 <= self.w_avg_beta < 1.0:
            raise ConfigError(f"model.w_avg_beta must lie in [0, 1), got {self.w_avg_beta}")
        if self.conv_clamp is not None and self.conv_clamp <= 0:
            raise ConfigError(f"model.conv_clamp must be > 0 or null, got {self.conv_clamp}")
        if self.fp16_resolutions > 0 and self.conv_clamp is None:
            raise ConfigError("model.fp16_resolutions > 0 needs model.conv_clamp (the reference uses 256) so that "
                              "float16 activations cannot overflow")
        if self.time_min_period is not None and self.time_min_period <= 0:
            raise ConfigError(f"model.time_min_period must be > 0 or null, got {self.time_min_period}")
        if not self.min_period < self.time_max_period:
            raise ConfigError(f"model.time_min_period ({self.min_period}) must be below model.time_max_period "
                              f"({self.time_max_period})")
        if self.num_frames_per_clip < 2:
            raise ConfigError("model.num_frames_per_clip must be >= 2: D judges motion from time gaps between "
                              f"frames (got {self.num_frames_per_clip})")
        if not self.clip_distances:
            raise ConfigError(f"model.max_frame_distance {self.max_frame_distance} leaves no power-of-two clip "
                              f"length >= num_frames_per_clip - 1 = {self.num_frames_per_clip - 1}; raise it")
        if self.max_frame_distance >= self.max_num_frames - 1:
            raise ConfigError(f"model.max_frame_distance ({self.max_frame_distance}) must be below "
                              f"model.max_num_frames - 1 ({self.max_num_frames - 1})")
        if self.d_concat_resolution < 4 or self.d_concat_resolution & (self.d_concat_resolution - 1):
            raise ConfigError(f"model.d_concat_resolution must be a power of two >= 4, got {self.d_concat_resolution}")
        if not 0.0 <= self.augment_p <= 1.0:
            raise ConfigError(f"model.augment_p must lie in [0, 1], got {self.augment_p}")
        if not 0.0 < self.ada_target < 1.0:
            raise ConfigError(f"model.ada_target must lie in (0, 1), got {self.ada_target}")
        if self.augment == "fixed" and self.augment_p == 0.0:
            raise ConfigError("model.augment is 'fixed' but model.augment_p is 0; set the probability, e.g. "
                              "model.augment_p=0.2, or use model.augment=none")

    @property
    def min_period(self) -> float:
        """Shortest positional-encoding period in frames (time_min_period, or delta when null)."""
        return float(self.motion_z_distance if self.time_min_period is None else self.time_min_period)

    @property
    def clip_distances(self) -> tuple[int, ...]:
        """Allowed first-to-last frame distances of a clip: powers of two in [k - 1, max_frame_distance]."""
        out, d = [], 1
        while d <= self.max_frame_distance:
            if d >= self.num_frames_per_clip - 1:
                out.append(d)
            d *= 2
        return tuple(out)

    def resolved_r1_gamma(self, resolution: int, batch: int) -> float:
        """r1_gamma, or the reference heuristic gamma = 0.0002 * resolution^2 / batch (src/train.py, cfg=auto)."""
        if self.r1_gamma is not None:
            return self.r1_gamma
        return 0.0002 * resolution ** 2 / batch

    def check_recipe(self, recipe: Recipe) -> None:
        """Cross-checks against the other sections, run when a recipe is loaded."""
        check_rgb(recipe)
        res = recipe.data.resolution
        if res < 4 or res & (res - 1):
            raise ConfigError(f"data.resolution must be a power of two >= 4 for StyleGAN-V (4, 8, ..., 256, ...), "
                              f"got {res}")
        if recipe.data.image_frames or recipe.data.labels or recipe.train.grad_checkpointing:
            raise ConfigError("data.image_frames, data.labels and train.grad_checkpointing are for video "
                              "diffusion models; for StyleGAN-V set them to 0 / false")
        k = self.num_frames_per_clip
        if recipe.data.frames != k:
            raise ConfigError(f"data.frames ({recipe.data.frames}) must equal model.num_frames_per_clip ({k}): "
                              "StyleGAN-V trains on sparse clips of k frames")
        batch = recipe.train.batch_size
        if batch > self.mbstd_group and batch % self.mbstd_group:
            raise ConfigError(f"train.batch_size ({batch}) must be a multiple of model.mbstd_group "
                              f"({self.mbstd_group}), or at most it")
        top = int(math.log2(res))
        if self.fp16_resolutions > top - 2:
            raise ConfigError(f"model.fp16_resolutions ({self.fp16_resolutions}) exceeds the {top - 2} resolutions "
                              f"from 8x8 to {res}x{res} (4x4 always runs in float32); use at most {top - 2}")


@dataclass(frozen=True)
class StyleGANVSampleConfig(SampleConfig):
    """Sampling options of StyleGAN-V: the recipe's sample section and `vidgen sample`'s flags."""

    truncation: float = 1.0
    """Truncation psi: w -> w_avg + psi (w - w_avg); 1 is none, lower trades variety for quality."""
    time_offset: float = 0.0
    """Time of the first frame, in training frames (the generator is continuous in time)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.time_offset < 2**53:  # beyond 2^53 even float64 times lose their fractional part
            raise ConfigError(f"{self.key('time_offset')} must lie in [0, 2^53), got {self.time_offset}")
