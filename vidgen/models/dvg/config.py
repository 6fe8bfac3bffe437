"""Configuration of the DVG backend (Shrivastava & Shrivastava, "Diverse Video Generation using a Gaussian Process
Trigger", ICLR 2021). No torch import: recipes load without it.

Defaults are the released KTH code where it says (its end-to-end training script on SVG-LP's networks, Denton &
Fergus 2018): DCGAN frame encoder and decoder at nf = 64, a 2-layer LSTM of 256 units, one GP per latent
dimension with 40 inducing points, 5 context frames, loss weights 1000 / 1 / 1. Its g_dim is hard-coded to 90
for KTH; the default here is SVG's 128 (recipes/dvg-kth-64.yaml sets 90).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vidgen.core.config import PredictionSampleConfig, Recipe, check_class_labels
from vidgen.errors import ConfigError
from vidgen.models.dvg.trigger import TriggerSpec, parse_trigger

Architecture = Literal["dcgan", "vgg"]
"""The frame encoder/decoder pair of SVG (models/dcgan_64.py, models/vgg_64.py)."""

TRIGGER_FORMS = "gp, none or every:M (M an integer >= 1)"


@dataclass(frozen=True)
class DVGConfig:
    name: Literal["dvg"] = "dvg"

    # --- Frame encoder / decoder (SVG) ---
    architecture: Architecture = "dcgan"
    """dcgan: strided 4x4 convolutions (SVG's KTH choice); vgg: 3x3 VGG blocks with max-pooling (its BAIR choice)."""
    width: int = 64
    """Channels of the first encoder level (the reference's nf = 64; VGG's 64-128-256-512 scale with it); each
    level doubles them, up to 8 x width."""
    g_dim: int = 128
    """Size of a frame's latent h_t (the encoder's tanh output, the LSTM's and the GPs' input and output). The
    released KTH code: 90; SVG: 128."""
    last_frame_skip: bool = False
    """Skip connections from the frame before each predicted one (true), or from the last context frame for every
    predicted frame (false, SVG's and DVG's default: better for backgrounds that do not move)."""

    # --- Frame predictor (SVG's deterministic LSTM) ---
    rnn_size: int = 256
    """Units of the LSTM cells (and of its input embedding)."""
    rnn_layers: int = 2
    """Stacked LSTM cells (the reference's predictor_rnn_layers)."""

    # --- GP layer (released gp_models.GPRegressionLayer1) ---
    inducing_points: int = 40
    """Inducing points of each latent dimension's 1-D GP (initialised uniformly in [0, 1), learned)."""

    # --- Prediction ---
    context_frames: int = 5
    """Frames given before the predicted ones, in training (n_past) and by default when predicting."""

    # --- Loss weights (the released end-to-end training script) ---
    recon_weight: float = 1000.0
    """Weight of each of the three MSE terms in [0, 1] pixels and latents: the autoencoder's reconstruction of the
    target frame, the LSTM's decoded prediction, and the LSTM's latent prediction."""
    gp_recon_weight: float = 1.0
    """Weight of the MSE of the frame decoded from the GP's predictive mean."""
    elbo_weight: float = 1.0
    """Weight of the GP's negative variational ELBO (summed over the latent dimensions and frames)."""
    detach_latent_target: bool = False
    """Whether the latent loss and the GP's ELBO see the next frame's latent without its gradient (a stop-gradient
    target), so that they train the LSTM and the GP to follow the encoder. False is the released code, whose
    targets also train the encoder: both losses then fall by making the latents constant, through the scale of the
    encoder's last BatchNorm, and in a short run (dvg-tiny, 4,500 steps) the latents' spread fell to 0.004, below
    the GP's noise floor (GPyTorch's 1e-4 variance), so every GP draw jumped far off the data."""

    def __post_init__(self) -> None:
        for key in ("width", "g_dim", "rnn_size", "rnn_layers", "inducing_points", "context_frames"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"model.{key} must be > 0, got {getattr(self, key)}")
        for key in ("recon_weight", "gp_recon_weight", "elbo_weight"):
            if getattr(self, key) < 0:
                raise ConfigError(f"model.{key} must be >= 0, got {getattr(self, key)}")

    def check_recipe(self, recipe: Recipe) -> None:
        """Cross-checks against the other sections, run when a recipe is loaded."""
        data = recipe.data
        if data.frames <= self.context_frames:
            raise ConfigError(f"data.frames ({data.frames}) must exceed model.context_frames ({self.context_frames}): "
                              f"a training clip is the context then the frames to predict; e.g. data.frames: "
                              f"{self.context_frames + 10}")
        res = data.resolution
        if res < 8 or res & (res - 1):
            raise ConfigError(f"data.resolution ({res}) must be a power of two >= 8 (the encoder halves it down to "
                              f"4 x 4); e.g. 64")
        if data.image_frames:
            raise ConfigError("data.image_frames is for video diffusion models; set it to 0 for DVG")
        check_class_labels(0, data.labels)


@dataclass(frozen=True)
class DVGSampleConfig(PredictionSampleConfig):
    """Sampling options of DVG: the recipe's sample section and `vidgen sample`'s flags. DVG only predicts: every
    sample continues --context (vidgen.models.dvg.backend)."""

    trigger: str = "gp"
    """When a predicted frame comes from a GP draw instead of the LSTM: gp (the first predicted frame, as the
    released code, then the paper's variance rule, vidgen.models.dvg.trigger), none (the LSTM alone: one future
    per context whatever the seed; the GP is never evaluated), or every:M (every M-th predicted frame)."""
    trigger_window: int = 12
    """Values of the gp rule's moving window, context frames included (the released code: 12)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if parse_trigger(self.trigger) is None:
            raise ConfigError(f"{self.key('trigger')} must be {TRIGGER_FORMS}; got {self.trigger!r}")
        if self.trigger_window < 2:
            raise ConfigError(f"{self.key('trigger_window')} must be >= 2, got {self.trigger_window}")

    @property
    def trigger_spec(self) -> TriggerSpec:
        spec = parse_trigger(self.trigger)
        assert spec is not None  # checked in __post_init__
        return spec

    def check_recipe(self, recipe: Recipe) -> None:
        context = self.context_frames or recipe.model.context_frames
        frames = recipe.output_frames(self)
        if frames <= context:
            raise ConfigError(f"{self.key('frames')} is {frames}, but the output holds the {context} context frames "
                              f"and then the predicted ones; give more than {context}")
