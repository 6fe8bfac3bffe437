"""The backend interface: what a model family provides to the shared training loop and sampler.

The shared loop (vidgen/train.py) owns everything that is not model maths: data, devices, mixed precision,
gradient accumulation, optimizer steps, gradient averaging over ranks, EMA, logging, checkpoints and resume. A
backend owns its networks, its optimizers' parameter groups, its losses, and its sampler. A GAN has several
phases per step (G main, D main, D reg ...); a diffusion model has one. Each phase names the optimizer it steps.
vidgen/models/README.md walks through adding a family.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from vidgen.core.clips import ClipSampler, ContiguousClips
from vidgen.core.config import Recipe, SampleConfig

if TYPE_CHECKING:
    from vidgen.core.data.dataset import VideoDataset


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
times in source frames, relative to the clip's first frame); optional "label" long [B]."""


@dataclass(frozen=True)
class TrainingJob:
    """What only the running job knows, told to the backend once by the shared loop (Backend.bind_loop)."""

    global_batch: int
    """Videos per optimizer step over every micro-batch and rank."""
    sum_over_ranks: Callable[[list[float]], list[float]]
    """Sums a list of numbers over the ranks (identity in one process); every rank must call it alike."""


class Backend(ABC):
    """A model family, built from a recipe (its registry entry's build function); the loop moves `networks` to
    the device. Its recipe.model and recipe.sample are its own config classes (vidgen/models/registry.py)."""

    networks: nn.ModuleDict
    """Every trained network, by name. Its state dict is the model part of a checkpoint."""
    ema_networks: tuple[str, ...]
    """Names of the networks that get an EMA copy; sampling uses those copies."""

    def __init__(self, recipe: Recipe) -> None:
        self.recipe = recipe

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

    def training_clips(self) -> ClipSampler:
        """Which frames of a video make a training clip: by default data.frames consecutive frames at
        data.frame_stride; a backend trained on sparse frames (StyleGAN-V) returns its own sampler."""
        data = self.recipe.data
        return ContiguousClips(data.frames, data.frame_stride)

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
