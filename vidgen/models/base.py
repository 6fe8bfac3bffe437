"""The backend interface: what a model family provides to the shared training loop and sampler.

The shared loop (vidgen/train.py) owns everything that is not model maths: data, devices, mixed precision,
gradient accumulation, optimizer steps, EMA, logging, checkpoints and resume. A backend owns its networks,
its optimizers' parameter groups, its losses, and its sampler. A GAN has several phases per step
(G main, D main, D reg ...); a diffusion model has one. Each phase names the optimizer it steps.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from vidgen.core.clips import ClipSampler, ContiguousClips
from vidgen.core.config import Recipe


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


class Backend(ABC):
    """A model family. Build it from a recipe; the loop moves `networks` to the device."""

    networks: nn.ModuleDict
    """Every trained network, by name. Its state dict is the model part of a checkpoint."""
    ema_networks: tuple[str, ...]
    """Names of the networks that get an EMA copy; sampling uses those copies."""
    sample_options: tuple[str, ...] = ()
    """Keyword-only options its sample() takes beyond the common ones (e.g. truncation)."""

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
        """Scalar loss of one phase on one micro-batch, and values to log.

        `nets` are the networks to call (they may be wrapped for DDP); `generator` is the loop's training
        random generator (on the batch's device), whose state is checkpointed so a resumed run draws the same
        noise.
        """

    @abstractmethod
    def sample(self, nets: Mapping[str, nn.Module], seeds: Sequence[int], frames: int, fps: float,
               device: torch.device, steps: int | None = None) -> torch.Tensor:
        """One video per seed, each from its own random generator (so the batch size does not change it):
        float [len(seeds), C, frames, H, W] in [-1, 1]."""

    def training_clips(self) -> ClipSampler:
        """Which frames of a video make a training clip: by default data.frames consecutive frames at
        data.frame_stride; a backend trained on sparse frames (StyleGAN-V) returns its own sampler."""
        data = self.recipe.data
        return ContiguousClips(data.frames, data.frame_stride)

    def extra_state(self) -> dict[str, Any]:
        """Non-network state to checkpoint (e.g. an adaptive augmentation probability)."""
        return {}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        del state
