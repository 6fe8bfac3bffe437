"""The backend interface: what a model family provides to the shared training loop and sampler.

The shared loop (vidgen/train.py) owns everything that is not model maths: data, devices, mixed precision,
gradient accumulation, optimizer steps, gradient averaging over ranks, EMA, logging, checkpoints and resume. A
backend owns its networks, its optimizers' parameter groups, its losses, and its sampler. A GAN has several
phases per step (G main, D main, D reg ...); a diffusion model has one. Each phase names the optimizer it steps.
vidgen/models/README.md walks through adding a family.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from vidgen.core import layout
from vidgen.core.clips import ClipSampler, ContiguousClips
from vidgen.core.config import Recipe, SampleConfig
from vidgen.core.data.dataset import ClipTransform, VideoDataset, build_dataset
from vidgen.core.data.tokens import TokenDataset
from vidgen.errors import UserError


@dataclass(frozen=True)
class Phase:
    """One optimisation phase of a training step."""

    name: str
    """Shown in logs; passed back to Backend.loss."""
    optimizer: str
    """Key in Backend.make_optimizers() of the optimizer this phase steps."""
    every: int = 1
    """Run only on steps divisible by this (lazy regularisation)."""


Batch = dict[str, torch.Tensor]
"""A training batch on the device: "video" float [B, C, T, H, W] in [-1, 1]; "times" float [B, T] (frame
times in source frames, relative to the clip's first frame); "video_frames" long [B] (the length of each clip's
source video); optional "label" long [B]."""


@dataclass(frozen=True)
class FrozenStage:
    """A trained run of another family that a backend builds on (VideoGPT's prior on its VQ-VAE; a latent
    diffusion model on its autoencoder), loaded by vidgen/upstream.py. The backend puts the networks it uses into
    its own `networks` wrapped in core.frozen.Frozen, so every checkpoint embeds them and sampling needs only that
    checkpoint."""

    recipe: Recipe
    """The stage-1 run's config."""
    networks: Mapping[str, nn.Module]
    """Its sampling networks (EMA copies where it has them), on the CPU, in eval mode, without gradients."""
    record: dict[str, Any]
    """Provenance, stored in every checkpoint of the backend: source (as the recipe named it), checkpoint, step,
    sha256 (of the checkpoint file) and config."""


@dataclass(frozen=True)
class Prediction:
    """Futures of given context frames (Backend.predict)."""

    videos: torch.Tensor
    """float [N, C, frames, H, W] in [-1, 1]; the first c frames of video i are context i, unchanged."""
    details: list[dict[str, Any]] | None = None
    """Per video, JSON-able facts about how its future was made (DVG: each frame's GP variance and trigger
    decision), or None; `vidgen sample` writes them into samples.json."""


@dataclass(frozen=True)
class OfficialImport:
    """A checkpoint of a family's reference implementation, converted to vidgen (`vidgen import FAMILY FILE`)."""

    recipe: dict[str, Any]
    """Raw recipe sections with the checkpoint's settings; sections and fields left out take their defaults."""
    networks: dict[str, torch.Tensor]
    """The state dict of the backend's networks with the sampling weights (EMA copies where the family keeps
    them): what an export's model.safetensors holds."""
    backend_state: dict[str, Any]
    """Backend.extra_state() of the converted model."""
    description: str
    """What the checkpoint is, for the model card."""
    details: list[tuple[str, str]]
    """(what, value) rows for the model card: parameter counts, training progress, data."""


@dataclass(frozen=True)
class TrainingJob:
    """What only the running job knows, told to the backend once by the shared loop (Backend.bind_loop)."""

    global_batch: int
    """Videos per optimizer step over every micro-batch and rank."""
    sum_over_ranks: Callable[[list[float]], list[float]]
    """Sums a list of numbers over the ranks (identity in one process); every rank must call it alike."""
    sum_tensor_over_ranks: Callable[[torch.Tensor], torch.Tensor] = lambda tensor: tensor
    """Sums a tensor over the ranks (the identity in one process); every rank must call it alike."""
    is_main: bool = True
    """True on exactly one rank (rank 0): where a value drawn on one rank only (e.g. codebook restarts) comes from."""


class Backend(ABC):
    """A model family, built from a recipe (its registry entry's build function); the loop moves `networks` to
    the device. Its recipe.model and recipe.sample are its own config classes (vidgen/models/registry.py)."""

    networks: nn.ModuleDict
    """Every trained network, by name. Its state dict is the model part of a checkpoint."""
    ema_networks: tuple[str, ...]
    """Names of the networks that get an EMA copy; sampling uses those copies."""

    upstream: FrozenStage | None = None
    """The stage-1 run a two-stage family builds on (its BackendSpec.upstream), else None."""
    makes_tokens: bool = False
    """Whether it encodes videos to integer code grids (encode_tokens): a tokenizer such as a VQ-VAE, whose runs
    `vidgen data prepare --format tokens --vqvae RUN` takes."""
    trains_on_tokens: bool = False
    """Whether its loss also takes a token dataset's batches ("codes" instead of "video"): a prior over the codes
    of its first stage. Training any other backend on a token dataset is a one-line error."""
    needs_context: bool = False
    """Whether it only continues given frames (a video prediction model such as DVG): sampling without
    `--context` is a one-line error, and only the prediction protocols of `vidgen eval` apply to it."""

    def __init__(self, recipe: Recipe, upstream: FrozenStage | None = None) -> None:
        self.recipe = recipe
        self.upstream = upstream
        self._datasets: dict[tuple[str | None, int], VideoDataset] = {}

    @abstractmethod
    def phases(self) -> Sequence[Phase]:
        """The phases of one training step, in order."""

    @abstractmethod
    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Optimizers over self.networks' parameters, keyed by the names Phase.optimizer uses."""

    @abstractmethod
    def loss(self, phase: str, batch: Batch, nets: Mapping[str, nn.Module],
             generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        """Scalar loss of one phase on one micro-batch, and values to log (the key "loss" is the progress bar's).

        `nets` are the networks to call: self.networks, or their torch.compile wrappers (which forward attribute
        access to the plain modules). The loop averages gradients over ranks itself, so a phase may freeze a
        network or call its parts. `generator` is the loop's training random generator (on the batch's device),
        whose state is checkpointed so a resumed run draws the same noise.
        """

    @abstractmethod
    def sample(self, nets: Mapping[str, nn.Module], seeds: Sequence[int], frames: int, device: torch.device,
               options: SampleConfig | None = None) -> torch.Tensor:
        """One video per seed, each from its own random generator (so the batch size does not change it):
        float [len(seeds), C, frames, H, W] in [-1, 1].

        `options`: the backend's sample config (None: the recipe's sample section), already checked
        (Recipe.sample_options); its num, seed and batch_size are the caller's business, its fps the output's
        frame rate (Recipe.output_fps). `nets` are self.networks or their EMA copies."""

    @property
    def predicts(self) -> bool:
        """Whether predict() continues given frames: `vidgen sample --context` and the prediction protocols of
        `vidgen eval` (pred_*) take this backend. Its sample config is then a PredictionSampleConfig."""
        return False

    def context_frames(self) -> int:
        """How many frames a prediction is conditioned on when --context-frames is left out."""
        raise NotImplementedError(f"a '{self.recipe.model.name}' backend does not predict")

    def predict(self, nets: Mapping[str, nn.Module], context: torch.Tensor, seeds: Sequence[int], frames: int,
                device: torch.device, options: SampleConfig | None = None) -> Prediction:
        """Continue context clip i (float [N, C, c, H, W] in [-1, 1]) to `frames` frames from the random
        generator of seeds[i] alone, for a backend that `predicts`: the same context with K seeds gives K
        futures. The returned videos start with the context frames, unchanged. `options` as for sample()."""
        raise NotImplementedError(f"a '{self.recipe.model.name}' backend does not predict")

    def training_clips(self) -> ClipSampler:
        """Which frames of a video make a training clip: by default data.frames consecutive frames at
        data.frame_stride; a backend trained on sparse frames (StyleGAN-V) returns its own sampler."""
        data = self.recipe.data
        return ContiguousClips(data.frames, data.frame_stride)

    def clip_transform(self) -> ClipTransform | None:
        """Entries the data layer derives from each training clip, in the loader's workers, for this backend's
        loss: none by default; TGANv2 turns each real clip into its pyramid of levels."""
        return None

    def training_dataset(self) -> VideoDataset | TokenDataset:
        """The recipe's training data as this backend reads it: its clip sampler and clip transform."""
        return build_dataset(self.recipe.data, seed=self.recipe.run.seed, clips=self.training_clips(),
                             transform=self.clip_transform())

    def references(self, seeds: Sequence[int], frames: int, device: torch.device,
                   options: SampleConfig | None = None) -> torch.Tensor | None:
        """The real videos that the samples of these seeds should match, as sample() returns them (a VQ-VAE's
        inputs, a predictor's ground truth), or None for a generator without one (the default). `vidgen sample`
        writes them beside the samples and reports PSNR and SSIM against them."""
        del seeds, frames, device, options
        return None

    def dataset_clips(self, source: str | None, seeds: Sequence[int], frames: int,
                      device: torch.device) -> torch.Tensor:
        """Clip `seed` of a dataset for each seed, in the model layout [N, C, frames, H, W]: video seed mod len,
        `frames` consecutive frames at data.frame_stride from a start drawn from the seed, at data.resolution.
        `source`: a data.source value (a folder, zip or 'synthetic'), or None for the run's own training data.
        For families that sample from real clips (a VQ-VAE reconstructs them, a frame-conditioned prior
        continues them)."""
        if (source, frames) not in self._datasets:
            data = dataclasses.replace(self.recipe.data, frames=frames, image_frames=0)
            if source is not None:
                data = dataclasses.replace(data, source=source, labels=False)
            dataset = build_dataset(data, seed=self.recipe.run.seed)
            if not isinstance(dataset, VideoDataset):
                raise UserError(f"'{data.source}' holds encoded tokens, not videos; give the videos themselves")
            self._datasets[source, frames] = dataset
        dataset = self._datasets[source, frames]
        clips = [dataset[(seed % len(dataset), seed)]["video"] for seed in seeds]  # each (F, R, R, 3) uint8
        return layout.to_model(torch.stack(clips).to(device))

    def encode_tokens(self, videos: torch.Tensor) -> torch.Tensor:
        """Videos [N, C, T, H, W] in [-1, 1] -> integer code grids [N, T', H', W'] (long), for a backend that
        `makes_tokens`: what `vidgen data prepare --format tokens` stores. Batch-independent."""
        raise NotImplementedError(f"a '{self.recipe.model.name}' backend does not make tokens")

    def bind_loop(self, job: TrainingJob) -> None:
        """Called once by the shared loop, before the first step, with what only the running job knows. Until
        then (a backend used on its own, in tests or notebooks) it is one process with the recipe's batch."""
        del job

    def end_step(self, applied: bool) -> None:
        """Called on every rank after each training step; `applied` is False when the step was skipped (a loss
        that was not finite)."""
        del applied

    def check_dataset(self, dataset: VideoDataset) -> None:
        """Cross-check the training data against the model (e.g. its labels against model.num_classes);
        raise a UserError on a mismatch."""
        del dataset

    def extra_state(self) -> dict[str, Any]:
        """Non-network state to checkpoint (e.g. an adaptive augmentation probability)."""
        return {}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        del state
