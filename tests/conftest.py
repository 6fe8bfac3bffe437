"""Shared test helpers: tiny recipes that run through the real code paths in seconds on a CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# A vdm-tiny variant small enough for tests: same code paths, a fraction of the width.
TINY_VDM = [
    "model.channels=8", "model.channel_mults=[1,2]", "model.attention_resolutions=[8]",
    "model.temporal_attention_resolutions=[8]",
    "model.head_channels=8", "model.norm_groups=4", "data.resolution=16", "data.frames=4",
    "data.synthetic_videos=64", "data.workers=0", "train.batch_size=2", "train.warmup_steps=0",
    "train.log_every=1", "sample.steps=4", "sample.num=2",
]

# A stylegan-v-tiny variant for tests: 16x16, narrow, a few fake-clip times.
TINY_SGV = [
    "model.z_dim=8", "model.w_dim=8", "model.motion_z_dim=8", "model.motion_v_dim=8", "model.channel_base=128",
    "model.channel_max=8", "data.resolution=16", "data.synthetic_videos=64", "data.workers=0",
    "train.batch_size=4", "train.log_every=1", "sample.num=2", "sample.frames=5",
]


def set_args(overrides: list[str]) -> list[str]:
    return [arg for item in overrides for arg in ("--set", item)]


def run_cli(*args: str, cwd: Path | None = None, check: bool = False, timeout: float = 300,
            env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real entry point (`python -m vidgen_cli`) in a subprocess."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    result = subprocess.run([sys.executable, "-m", "vidgen_cli", *args], cwd=cwd, capture_output=True,
                            text=True, timeout=timeout, env=full_env)
    if check and result.returncode != 0:
        raise AssertionError(f"vidgen {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


@pytest.fixture
def tiny_vdm() -> list[str]:
    return list(TINY_VDM)


@pytest.fixture
def tiny_sgv() -> list[str]:
    return list(TINY_SGV)
