"""Configuration of the Video Diffusion backend (Ho et al. 2022). No torch import: recipes load without it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from vidgen.core.config import PredictionSampleConfig, Recipe, check_class_labels
from vidgen.errors import ConfigError

SamplerName = Literal["ancestral", "pc", "ddim", "heun"]
"""The samplers of vidgen.models.vdm.sampler.SAMPLERS."""
CondMethod = Literal["reconstruction", "replacement"]
"""How --extend conditions a window on the frames so far (vidgen.models.vdm.conditioning)."""


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
    temporal_attention_resolutions: tuple[int, ...] | None = None
    """Spatial sizes at which blocks get temporal attention (null: attention_resolutions, the paper's pairing);
    the middle block always has it. Its cost grows with T² per pixel, not (H·W)² per frame, but at full
    resolution it still adds a third to a half to a CPU training step of vdm-tiny."""
    norm_groups: int = 32
    """GroupNorm groups (reduced to a divisor of the width for tiny models)."""
    channels_last: bool = False
    """Keep convolution weights and activations channels-last (NDHWC): the layout the fast convolution
    kernels of GPUs (tensor cores) and of CPUs (oneDNN) work in natively, so they skip a transposition per
    convolution. Same numbers either way; a speed option (see benchmarks/bench_vdm_train_step.py)."""
    # --- Gaussian diffusion (continuous time) ---
    prediction: Literal["v", "eps"] = "v"
    """What the network predicts: v = alpha * eps - sigma * x (the paper for BAIR/Kinetics), or eps."""
    logsnr_min: float = -20.0
    """Cosine log-SNR schedule lambda(t) = -2 log tan(pi t / 2), clipped to [logsnr_min, logsnr_max]."""
    logsnr_max: float = 20.0
    min_snr_gamma: float | None = None
    """Min-SNR-γ loss weighting (Hang et al. 2023; 5 in that paper): weight the error of each training video
    by min(SNR, γ) in terms of ‖x − x̂‖², so that nearly clean videos stop dominating the gradient (the paper
    reports several-fold faster convergence; the noisiest levels get weight SNR, far below the v loss's 1).
    null: the paper's unweighted loss on the prediction target."""
    noise_correlation: float = 0.0
    """Correlation ρ of the diffusion noise between the frames of a clip, in training and in every sampler
    (PYoCo's mixed noise prior, Ge et al. 2023): ε = √ρ ε_shared + √(1 − ρ) ε_frame. A small model that has
    not yet learned to pool its frames decides each frame's scene from that frame's own noise, so with
    independent noise (0, the paper) its frames flicker between unrelated scenes; shared noise makes them
    start alike. Appended image frames (data.image_frames) always get independent noise."""
    sampler_gamma: float = 0.0
    """Ancestral sampler noise: the step variance is (posterior variance)^(1 - gamma) x (forward-step
    variance)^gamma (Ho et al. 2022 §2, after Nichol & Dhariwal 2021); 0 adds the least noise, 1 the most.
    On vdm-tiny, 0 beats 0.3 at 50 and 64 steps and ties at 256 (benchmarks/bench_vdm_sampling.py)."""
    ddim_eta: float = 0.0
    """DDIM sampler noise η (Song et al. 2021 eq. 16): 0 is the deterministic sampler (each video a fixed
    function of its starting noise); 1 adds the posterior variance, which makes it the ancestral sampler at
    sampler_gamma 0."""
    # --- Conditioning and guidance (Ho et al. 2022 §3.1, §4.3) ---
    num_classes: int = 0
    """Class-conditional when > 0: a label embedding (plus one "no label" entry) is added to the log-SNR
    embedding. Needs data.labels: true."""
    label_dropout: float = 0.1
    """Class-conditional only: probability of training on the "no label" entry instead of the label, which
    gives the unconditional model that classifier-free guidance needs (Ho & Salimans 2021)."""
    guidance: float = 0.0
    """Classifier-free guidance weight w at sampling: x̂ = (1 + w) x̂(z, c) − w x̂(z) (paper eq. for ε̃, which
    carries over to x̂ and v as they are affine in ε for a given z). 0: the conditional model alone."""
    guidance_recon: float = 9.0
    """Reconstruction guidance weight w_r for `vidgen sample --extend/--upsample` (paper eq. 7: 50 for BAIR,
    9 for Kinetics)."""
    long_videos: Literal["extend", "joint"] = "extend"
    """Sampling more frames than a training clip: "extend" generates one clip, then extends it window by
    window with reconstruction guidance (paper §3.1, §4.3.3); "joint" denoises all frames at once (the
    temporal attention accepts any length, but quality falls beyond the training length)."""

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
        if self.min_snr_gamma is not None and self.min_snr_gamma <= 0:
            raise ConfigError(f"model.min_snr_gamma must be > 0 (null: no weighting), got {self.min_snr_gamma}")
        if not 0.0 <= self.noise_correlation < 1.0:
            raise ConfigError(f"model.noise_correlation must lie in [0, 1), got {self.noise_correlation}")
        if not 0.0 <= self.sampler_gamma <= 1.0:
            raise ConfigError(f"model.sampler_gamma must lie in [0, 1], got {self.sampler_gamma}")
        if self.ddim_eta < 0:
            raise ConfigError(f"model.ddim_eta must be >= 0 (0: deterministic DDIM), got {self.ddim_eta}")
        if self.num_classes < 0:
            raise ConfigError(f"model.num_classes must be >= 0 (0: unconditional), got {self.num_classes}")
        if not 0.0 <= self.label_dropout < 1.0:
            raise ConfigError(f"model.label_dropout must lie in [0, 1), got {self.label_dropout}")
        if self.guidance < 0 or self.guidance_recon < 0:
            raise ConfigError("model.guidance and model.guidance_recon must be >= 0")

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
        check_class_labels(self.num_classes, recipe.data.labels)


@dataclass(frozen=True)
class VDMSampleConfig(PredictionSampleConfig):
    """Sampling options of the diffusion backend: the recipe's sample section and `vidgen sample`'s flags.
    The options left null take the model section's value (model.ddim_eta, model.guidance, ...)."""

    steps: int = 64
    """Sampler steps (Heun: network evaluations are 2 x steps - 1)."""
    sampler: SamplerName = "ancestral"
    """ancestral (paper), pc (predictor-corrector), ddim, or heun (EDM's second-order sampler)."""
    eta: float | None = None
    """DDIM only: its noise η (null: model.ddim_eta)."""
    label: int | None = field(default=None, metadata={"flag": "--class"})
    """Class-conditional models: the class of every video (null: video i gets class (seed + i) mod classes)."""
    guidance: float | None = None
    """Classifier-free guidance weight w (null: model.guidance)."""
    extend: str | None = None
    """A video file to continue to `frames` frames, window by window (reconstruction guidance)."""
    upsample: str | None = None
    """A low-resolution video file to generate at the model's resolution (keeps its length)."""
    cond_method: CondMethod = "reconstruction"
    """How a window is conditioned on the frames before it when extending (--extend, or more frames than a
    training clip): reconstruction guidance, or the replacement method."""
    cond_frames: int | None = None
    """Frames each extension window is conditioned on (null: half a training clip)."""
    guidance_recon: float | None = None
    """Reconstruction guidance weight w_r for extend and upsample (null: model.guidance_recon)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("steps", "cond_frames"):
            value = getattr(self, key)
            if value is not None and value <= 0:
                raise ConfigError(f"{self.key(key)} must be > 0, got {value}")
        for key in ("eta", "guidance", "guidance_recon"):
            value = getattr(self, key)
            if value is not None and value < 0:
                raise ConfigError(f"{self.key(key)} must be >= 0, got {value}")
        if self.eta is not None and self.sampler != "ddim":
            raise ConfigError(f"{self.key('eta')} sets the DDIM sampler's noise and does not apply to --sampler "
                              f"{self.sampler}; add --sampler ddim")
        if self.extend is not None and self.upsample is not None:
            raise ConfigError("--extend and --upsample cannot be combined; extend first, then upsample the result")
        if self.upsample is not None and self.cond_method == "replacement":
            raise ConfigError("--cond-method replacement only applies to extension; super-resolution conditions "
                              "by reconstruction guidance")

    def check_recipe(self, recipe: Recipe) -> None:
        classes = recipe.model.num_classes
        if not classes and self.label is not None:
            raise ConfigError("--class needs a class-conditional model (model.num_classes > 0); this one is "
                              "unconditional")
        if not classes and self.guidance:
            raise ConfigError("--guidance needs a class-conditional model (model.num_classes > 0); this one is "
                              "unconditional")
        if self.label is not None and not 0 <= self.label < classes:
            raise ConfigError(f"--class {self.label} is out of range; this model has classes 0..{classes - 1}")
        window = recipe.data.frames
        if self.cond_frames is not None and not self.cond_frames < window:
            raise ConfigError(f"{self.key('cond_frames')} must lie in 1..{window - 1} (the window is the training "
                              f"clip of {window} frames), got {self.cond_frames}")
