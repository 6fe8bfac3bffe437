"""Tiny TGANv2 configurations: the real code paths at widths that run in milliseconds on a CPU."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from vidgen.models.tganv2.config import TGANv2Config


@pytest.fixture(autouse=True)
def single_threaded(one_thread) -> None:
    """Every test here runs tiny networks (tests/conftest.py: one_thread)."""


def tiny_config(**overrides) -> TGANv2Config:
    # 4 levels at 4, 8, 16 and 32 px (t_size 2, one abstract block, then three rendering blocks); two stacked
    # ConvLSTM cells of 8 channels; D of two blocks; small render chunks so that `render` really splits.
    values = dict(z_slow_dim=8, t_size=2, clstm_ch=8, clstm_layers=2, g_channels=(8, 8, 4, 4), d_channels=(4, 8),
                  render_chunk=8)
    values.update(overrides)
    return TGANv2Config(**values)


@pytest.fixture
def make_config() -> Callable[..., TGANv2Config]:
    return tiny_config
