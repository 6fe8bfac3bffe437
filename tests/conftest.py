"""Shared test helpers: tiny recipes that run through the real code paths in seconds on a CPU."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest
import torch

from vidgen.models.registry import BACKENDS, BackendSpec

# The tiny test variants the registry declares for the backend contract suite: same code paths, a fraction of
# the width.
TINY_VDM = list(BACKENDS["vdm"].test_overrides)
TINY_SGV = list(BACKENDS["stylegan-v"].test_overrides)


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@contextmanager
def benchmark_module(name: str) -> Iterator[ModuleType]:
    """benchmarks/<name>.py imported as module `name` (the scripts are not a package), registered in sys.modules
    while in use: dataclasses look their module up while the class is built."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[name]


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Run a test's many tiny ops on one thread: with two, each op's parallel region waits for both cores, and a
    busy machine (other test processes) then makes a tiny training loop 10-30x slower. Families whose tests use
    tiny networks request it for every test (an autouse fixture in their conftest)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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


def stage_one_overrides(spec: BackendSpec, stage_one_runs: dict[str, Path]) -> list[str]:
    """A family's tiny test overrides, plus the trained tiny stage-1 run that a two-stage family builds on."""
    overrides = list(spec.test_overrides)
    if spec.upstream is not None:
        overrides.append(f"model.{spec.upstream.field}={stage_one_runs[spec.upstream.family]}")
    return overrides


@pytest.fixture(scope="session")
def stage_one_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A few steps of each family that another builds on (the tiny VQ-VAE), trained once per session: the run
    directories by family name."""
    from rich.console import Console

    from vidgen.recipe import load_recipe
    from vidgen.train import train

    runs = {}
    for family in {spec.upstream.family for spec in BACKENDS.values() if spec.upstream is not None}:
        spec = BACKENDS[family]
        run = tmp_path_factory.mktemp("stage-one") / family
        train(load_recipe(spec.tiny_recipe, [*spec.test_overrides, "train.max_steps=4"]), run, device="cpu",
              console=Console(quiet=True))
        runs[family] = run
    return runs
