"""Tiny VDM configurations: the real code paths at widths that run in milliseconds on a CPU."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from vidgen.core.config import DataConfig, Recipe, RunConfig, TrainConfig
from vidgen.models.vdm.config import VDMConfig, VDMSampleConfig


@pytest.fixture
def tiny_config() -> VDMConfig:
    # Two levels (16 px and 8 px frames), attention at 8 px and in the middle, two heads at the wider level.
    # (Attention at 16 px too would triple the cost of a training step on two busy CPU cores.)
    return VDMConfig(channels=8, channel_mults=(1, 2), blocks_per_level=1, attention_resolutions=(8,),
                     head_channels=8, norm_groups=4)


@pytest.fixture
def tiny_recipe(tiny_config: VDMConfig) -> Recipe:
    return Recipe(run=RunConfig(name="tiny-vdm", seed=0), data=DataConfig(resolution=16, frames=4),
                  model=tiny_config, train=TrainConfig(lr=1e-2, betas=(0.9, 0.99)), sample=VDMSampleConfig(steps=4))


@pytest.fixture
def randomize_weights() -> Callable[[nn.Module], nn.Module]:
    """Replace every parameter with small random values, so zero-initialised layers (which make a fresh U-Net
    output zeros) take part in a test."""

    def randomize(module: nn.Module, seed: int = 0) -> nn.Module:
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in module.parameters():
                p.copy_(0.2 * torch.randn(p.shape, generator=generator))
        return module

    return randomize


@pytest.fixture(autouse=True)
def single_threaded(one_thread) -> None:
    """Every test here runs tiny networks (tests/conftest.py: one_thread)."""
