"""Configuration of the Video Diffusion backend (Ho et al. 2022). No torch import: recipes load without it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from vidgen.errors import ConfigError

if TYPE_CHECKING:
    from vidgen.core.config import Recipe


@dataclass(frozen=True)
class VDMConfig:
    name: Literal["vdm"] = "vdm"
    # --- U-Net (factorized space-time) ---
    channels: int = 64
    """Base width of the U-Net (the paper's UCF-101 model: 256)."""
    channel_mults: tuple[int, ...] = (1, 2, 4, 8)
    """Width multiplier per resolution level; the U-Net downsamples len(channel_mults) - 1 times (x2 each)."""
    blocks_per_level: int = 2
    """Residual blocks per level on the way down (the way up has one more, as in DDPM)."""
    attention_resolutions: tuple[int, ...] = (32, 16, 8)
    """Spatial sizes (in pixels of the feature map) at which blocks get spatial + temporal attention."""
    head_channels: int = 64
    """Channels per attention head (heads = width / head_channels, at least 1)."""
    dropout: float = 0.0
    """Dropout inside residual blocks (the paper: 0.1)."""
    temporal_attention: bool = True
    """Temporal self-attention after each spatial attention (false: an image model applied per frame)."""
    norm_groups: int = 32
    """GroupNorm groups (reduced to a divisor of the width for tiny models)."""
    # --- Gaussian diffusion (continuous time) ---
    prediction: Literal["v", "eps"] = "v"
    """What the network predicts: v = alpha * eps - sigma * x (the paper for BAIR/Kinetics), or eps."""
    logsnr_min: float = -20.0
    """Cosine log-SNR schedule lambda(t) = -2 log tan(pi t / 2), clipped to [logsnr_min, logsnr_max]."""
    logsnr_max: float = 20.0
    sampler_gamma: float = 0.3
    """Ancestral sampler noise: the step variance is (posterior variance)^(1 - gamma) x (forward-step
    variance)^gamma (Ho et al. 2022 §2, after Nichol & Dhariwal 2021); 0 adds the least noise, 1 the most."""

    def __post_init__(self) -> None:
        for key in ("channels", "blocks_per_level", "head_channels", "norm_groups"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"model.{key} must be > 0, got {getattr(self, key)}")
        if not self.channel_mults or any(m <= 0 for m in self.channel_mults):
            raise ConfigError(f"model.channel_mults must be positive integers, got {list(self.channel_mults)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.dropout must lie in [0, 1), got {self.dropout}")
        if not self.logsnr_min < self.logsnr_max:
            raise ConfigError("model.logsnr_min must be smaller than model.logsnr_max")
        if not 0.0 <= self.sampler_gamma <= 1.0:
            raise ConfigError(f"model.sampler_gamma must lie in [0, 1], got {self.sampler_gamma}")

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.channel_mults) - 1)

    def check_recipe(self, recipe: Recipe) -> None:
        """Cross-checks against the other sections, run when a recipe is loaded."""
        res = recipe.data.resolution
        if res % self.downsample_factor:
            raise ConfigError(
                f"data.resolution {res} is not divisible by {self.downsample_factor}, the U-Net's downsampling "
                f"(2^(len(model.channel_mults) - 1)); use a multiple of {self.downsample_factor}")
