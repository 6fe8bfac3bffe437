"""Shared test helpers: tiny recipes that run through the real code paths in seconds on a CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from vidgen.models.registry import BACKENDS

# The tiny test variants the registry declares for the backend contract suite: same code paths, a fraction of
# the width.
TINY_VDM = list(BACKENDS["vdm"].test_overrides)
TINY_SGV = list(BACKENDS["stylegan-v"].test_overrides)


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
