"""Configuration of VideoGPT's two backends (Yan et al. 2021, arXiv 2104.10157): the stage-1 VQ-VAE
(`videogpt-vqvae`) and the stage-2 prior over its codes (`videogpt`). No torch import: recipes load without it.

Defaults are the paper's (appendix A, table 6) and the official code's (wilson1yan/VideoGPT) where the paper is
silent: a 2048 x 256 codebook, 240 hidden channels, 4 attention residual blocks, 4x4x4 downsampling; a prior of
width 576, 4 heads, 8 layers, dropout 0.2, attention dropout 0.3.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from vidgen.core.config import PredictionSampleConfig, Recipe, SampleConfig, check_class_labels, check_rgb
from vidgen.errors import ConfigError, UserError

Norm = Literal["batch", "group"]


def multiples_near(size: int, factor: int) -> str:
    """The multiples of `factor` around `size`, for an error message: "8 or 12" (or "4" below the first)."""
    lower = size - size % factor
    return f"{lower} or {lower + factor}" if lower else str(factor)


def divisibility_problem(frames: int, resolution: int, downsample: tuple[int, int, int]) -> str | None:
    """Why a (frames, resolution) clip cannot be encoded with a (t, h, w) downsampling, saying what would do;
    None when it can."""
    for name, size, factor in (("data.frames", frames, downsample[0]), ("data.resolution", resolution,
                                                                         downsample[1]),
                               ("data.resolution", resolution, downsample[2])):
        if size % factor:
            return (f"{name} {size} is not divisible by the VQ-VAE's downsampling factor {factor} "
                    f"(downsample {list(downsample)}); use {multiples_near(size, factor)}")
    return None


def check_sample_frames(frames: int, downsample: tuple[int, int, int]) -> None:
    """Sampled videos are whole latent frames long: a UserError naming the lengths that would do."""
    if frames % downsample[0]:
        raise UserError(f"--frames {frames} is not divisible by the VQ-VAE's temporal downsampling "
                        f"{downsample[0]}; use {multiples_near(frames, downsample[0])}")


@dataclass(frozen=True)
class VQVAEConfig:
    """Stage 1: a 3D VQ-VAE with an EMA codebook (paper §3.1)."""

    name: Literal["videogpt-vqvae"] = "videogpt-vqvae"
    n_codes: int = 2048
    """Codebook size K (the prior's vocabulary)."""
    embedding_dim: int = 256
    """Width D of each code vector."""
    n_hiddens: int = 240
    """Channels of the encoder and decoder."""
    n_res_layers: int = 4
    """Attention residual blocks in the encoder and in the decoder."""
    downsample: tuple[int, int, int] = (4, 4, 4)
    """(t, h, w) compression, powers of two: 4x4x4 for 16x128x128 UCF-101, 4x2x2 for 16x64x64 BAIR (both give
    4x32x32 codes)."""
    heads: int = 2
    """Heads of the axial attention in each residual block."""
    norm: Norm = "batch"
    """batch (the paper) or group. BatchNorm's statistics depend on how a batch is split over micro-batches and
    ranks, so only "group" makes a resumed or multi-GPU run equal an unbroken single-process one; under torchrun
    each rank keeps its own BatchNorm running statistics and rank 0's are saved, as DDP's buffer broadcast does."""
    commitment_beta: float = 0.25
    """β of the commitment loss ||z - sg(e)||²."""
    ema_decay: float = 0.99
    """Decay of the codebook's exponential moving averages (counts and sums)."""
    restart_threshold: float = 1.0
    """A code whose EMA count falls below this is dead and restarted from an encoder output (official: 1)."""

    def __post_init__(self) -> None:
        for key in ("n_codes", "embedding_dim", "n_hiddens", "heads"):
            if getattr(self, key) < 1:
                raise ConfigError(f"model.{key} must be >= 1, got {getattr(self, key)}")
        if self.n_res_layers < 0:
            raise ConfigError(f"model.n_res_layers must be >= 0, got {self.n_res_layers}")
        for factor in self.downsample:
            if factor < 1 or factor & (factor - 1):
                raise ConfigError(f"model.downsample must hold powers of two (t, h, w), got {list(self.downsample)}")
        if self.n_hiddens % 2 or self.n_hiddens % self.heads:
            raise ConfigError(f"model.n_hiddens ({self.n_hiddens}) must be even and divisible by model.heads "
                              f"({self.heads})")
        if not 0 < self.ema_decay < 1:
            raise ConfigError(f"model.ema_decay must lie in (0, 1), got {self.ema_decay}")
        if self.commitment_beta < 0 or self.restart_threshold < 0:
            raise ConfigError("model.commitment_beta and model.restart_threshold must be >= 0")

    def check_recipe(self, recipe: Recipe) -> None:
        check_rgb(recipe)
        problem = divisibility_problem(recipe.data.frames, recipe.data.resolution, self.downsample)
        if problem:
            raise ConfigError(problem)
        if recipe.data.image_frames or recipe.data.labels or recipe.train.grad_checkpointing:
            raise ConfigError("data.image_frames, data.labels and train.grad_checkpointing do not apply to a VQ-VAE; "
                              "set them to 0 / false")


@dataclass(frozen=True)
class VQVAESampleConfig(SampleConfig):
    """A VQ-VAE reconstructs: video i is clip i of a dataset (seed + i, in dataset order), encoded and decoded;
    `vidgen sample` writes the originals beside the reconstructions and reports PSNR and SSIM."""

    reconstruct: str | None = None
    """The videos to reconstruct: a folder, zip or 'synthetic[...]' spec as data.source (null: the run's own
    training data). Their clips are cut as the training clips are (data.frames, data.resolution)."""


@dataclass(frozen=True)
class VideoGPTConfig:
    """Stage 2: a GPT prior over the frozen VQ-VAE's code grid (paper §3.2)."""

    name: Literal["videogpt"] = "videogpt"
    vqvae: str = ""
    """The stage-1 VQ-VAE: a run directory (its latest checkpoint) or a checkpoint file. Loaded frozen, in eval
    mode, when training starts; every checkpoint of this run embeds it and records its config, step and sha256."""
    width: int = 576
    """Hidden width of the transformer."""
    heads: int = 4
    """Attention heads; must divide width."""
    layers: int = 8
    """Transformer blocks."""
    dropout: float = 0.2
    """Dropout on the inputs and every residual branch."""
    attn_dropout: float = 0.3
    """Dropout on the self-attention weights."""
    num_classes: int = 0
    """Class conditioning: number of classes (0: unconditional). Needs data.labels: true."""
    context_frames: int = 0
    """Frame conditioning: the first this many frames of each clip are encoded and attended to (BAIR: 1)."""
    context_downsample: int = 4
    """Spatial downsampling of the context-frame encoder, a power of two."""
    context_width: int = 64
    """Channels of the context-frame encoder."""

    def __post_init__(self) -> None:
        if not self.vqvae:
            raise ConfigError("model.vqvae must name the stage-1 VQ-VAE run (a run directory or checkpoint), e.g. "
                              "model.vqvae: runs/videogpt-tiny-vqvae")
        for key in ("width", "heads", "layers", "context_downsample", "context_width"):
            if getattr(self, key) < 1:
                raise ConfigError(f"model.{key} must be >= 1, got {getattr(self, key)}")
        if self.width % self.heads:
            raise ConfigError(f"model.width ({self.width}) must be divisible by model.heads ({self.heads})")
        if self.context_downsample & (self.context_downsample - 1):
            raise ConfigError(f"model.context_downsample must be a power of two, got {self.context_downsample}")
        for key in ("dropout", "attn_dropout"):
            if not 0 <= getattr(self, key) < 1:
                raise ConfigError(f"model.{key} must lie in [0, 1), got {getattr(self, key)}")
        if self.num_classes < 0 or self.context_frames < 0:
            raise ConfigError("model.num_classes and model.context_frames must be >= 0")

    def check_recipe(self, recipe: Recipe) -> None:
        check_rgb(recipe)
        check_class_labels(self.num_classes, recipe.data.labels)
        if self.context_frames >= recipe.data.frames:
            raise ConfigError(f"model.context_frames ({self.context_frames}) must be fewer than data.frames "
                              f"({recipe.data.frames})")
        if recipe.data.resolution % self.context_downsample:
            raise ConfigError(f"data.resolution {recipe.data.resolution} is not divisible by "
                              f"model.context_downsample {self.context_downsample}")
        if recipe.data.image_frames:
            raise ConfigError("data.image_frames does not apply to VideoGPT; set it to 0")


@dataclass(frozen=True)
class VideoGPTSampleConfig(PredictionSampleConfig):
    """Sampling options of the prior: the recipe's sample section and `vidgen sample`'s flags."""

    temperature: float = 1.0
    """Divides the logits: below 1 sharper, above 1 more varied."""
    top_k: int | None = None
    """Draw each code among the k most likely only (null: all)."""
    top_p: float | None = None
    """Nucleus sampling: draw among the most likely codes whose probability sums to p, in (0, 1] (null: all)."""
    label: int | None = field(default=None, metadata={"flag": "--class"})
    """Class-conditional priors: the class of every video (null: video i gets class (seed + i) mod classes)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.temperature > 0:
            raise ConfigError(f"{self.key('temperature')} must be > 0, got {self.temperature}")
        if self.top_k is not None and self.top_k <= 0:
            raise ConfigError(f"{self.key('top_k')} must be > 0 (or left out for no limit), got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ConfigError(f"{self.key('top_p')} must lie in (0, 1], got {self.top_p}")

    def check_recipe(self, recipe: Recipe) -> None:
        classes = recipe.model.num_classes
        if self.label is not None and not classes:
            raise ConfigError("--class needs a class-conditional prior (model.num_classes > 0); this one is "
                              "unconditional")
        if self.label is not None and not 0 <= self.label < classes:
            raise ConfigError(f"--class {self.label} is out of range; this model has classes 0..{classes - 1}")
        context_frames = recipe.model.context_frames
        if (self.context is not None or self.context_frames is not None) and not context_frames:
            raise ConfigError("--context needs a frame-conditioned prior (model.context_frames > 0); this one "
                              "is not")
        if self.context_frames is not None and self.context_frames != context_frames:
            raise ConfigError(f"{self.key('context_frames')} is {self.context_frames}, but this prior conditions "
                              f"on exactly {context_frames} (model.context_frames); leave it out or give "
                              f"{context_frames}")
