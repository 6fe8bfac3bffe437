"""Tiny StyleGAN-V configurations: the real code paths at widths that run in milliseconds on a CPU."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from vidgen.core.config import DataConfig, Recipe, RunConfig, TrainConfig
from vidgen.models.stylegan_v.config import StyleGANVConfig, StyleGANVSampleConfig


@pytest.fixture(autouse=True)
def single_threaded(one_thread) -> None:
    """Every test here runs tiny networks (tests/conftest.py: one_thread)."""


def tiny_config(**overrides) -> StyleGANVConfig:
    # 16 channels up to 16 px, 8 above; 16-d latents and motion codes (8 frequencies); a short time horizon.
    values = dict(z_dim=16, w_dim=16, channel_base=256, channel_max=16, motion_z_dim=16, motion_v_dim=16,
                  max_num_frames=64, max_frame_distance=8, mbstd_group=4)
    values.update(overrides)
    return StyleGANVConfig(**values)


def tiny_recipe(resolution: int = 16, batch_size: int = 4, **overrides) -> Recipe:
    return Recipe(run=RunConfig(name="tiny-stylegan-v", seed=0),
                  data=DataConfig(resolution=resolution, frames=3, fps=8.0),
                  model=tiny_config(**overrides),
                  train=TrainConfig(batch_size=batch_size, lr=0.0025, betas=(0.0, 0.99), grad_clip=None),
                  sample=StyleGANVSampleConfig(num=2))


@pytest.fixture
def make_config() -> Callable[..., StyleGANVConfig]:
    return tiny_config


@pytest.fixture
def make_recipe() -> Callable[..., Recipe]:
    return tiny_recipe
