"""Tiny DVG configurations: the real code paths at widths that run in milliseconds on a CPU."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from vidgen.core.config import DataConfig, Recipe, RunConfig, TrainConfig
from vidgen.models.dvg.backend import DVGBackend
from vidgen.models.dvg.config import DVGConfig, DVGSampleConfig


@pytest.fixture(autouse=True)
def single_threaded(one_thread) -> None:
    """Every test here runs tiny networks (tests/conftest.py: one_thread)."""


def tiny_recipe(channels: int = 3, resolution: int = 16, frames: int = 6, **model) -> Recipe:
    # Two encoder levels at 16 px, an 8-d latent, one LSTM cell of 16 units, 8 inducing points, 3 context frames.
    values = dict(width=8, g_dim=8, rnn_size=16, rnn_layers=1, inducing_points=8, context_frames=3)
    values.update(model)
    return Recipe(run=RunConfig(name="tiny-dvg", seed=0),
                  data=DataConfig(resolution=resolution, frames=frames, channels=channels, workers=0,
                                  synthetic_videos=16),
                  model=DVGConfig(**values), train=TrainConfig(batch_size=4, lr=2e-3, grad_clip=None),
                  sample=DVGSampleConfig())


@pytest.fixture
def make_backend() -> Callable[..., DVGBackend]:
    def make(**kwargs) -> DVGBackend:
        return DVGBackend(tiny_recipe(**kwargs))

    return make
