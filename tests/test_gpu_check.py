"""benchmarks/gpu_check.py, the check prepared for the next GPU: its --dry-run runs the same code at tiny sizes on
the CPU, so the script cannot rot while no GPU runs it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import BENCHMARKS, benchmark_module

SCRIPT = BENCHMARKS / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    with benchmark_module("gpu_check") as module:
        yield module


def run_check(*args: str, logs: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--logs", str(logs), *args],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "200"})


def table_line(stdout: str, label: str) -> str:
    lines = [line for line in stdout.splitlines() if line.startswith(label + "  ")]
    assert len(lines) == 1, f"no table row for {label!r}:\n{stdout}"
    return lines[0]


def test_dry_run_measures_every_row(gpu_check, tmp_path):
    result = run_check(logs=tmp_path / "logs")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "CUDA-only tests (tests/models/stylegan_v/test_cuda.py): 0 passed, 0 failed, 0 errors, 2 skipped" \
        in result.stdout
    labels = [row.label for row in gpu_check.ROWS]
    assert len(labels) == 7 and len(set(labels)) == 7
    for row in gpu_check.ROWS:
        line = table_line(result.stdout, row.label)
        if isinstance(row, gpu_check.TrainRow):  # steps/s, videos/s, TFLOP/step and MFU are numbers; status ok
            assert line.endswith("  ok") and "%" in line, line
            assert (tmp_path / "logs" / f"{gpu_check.slug(row.label)}.log").is_file()
        else:  # the I3D weights may be missing: then the row says so and is skipped
            assert line.endswith("  ok") or "SKIPPED: " in line, line
    assert "fp32, fp16 top 2 res, clamp 256" in table_line(result.stdout, "stylegan-v-sky-256 fp16 top resolutions")


def test_a_failing_row_is_its_reason_in_the_table(tmp_path):
    result = run_check("--skip-tests", "--only", "vdm-ucf101-64 default", "--set", "train.lr=-1",
                       logs=tmp_path / "logs")
    assert result.returncode == 1, result.stdout + result.stderr
    line = table_line(result.stdout, "vdm-ucf101-64 default")
    assert "FAILED: ConfigError: train.lr must be > 0" in line, line
    assert "stylegan-v" not in result.stdout and "CUDA-only tests" not in result.stdout


def test_out_of_memory_halves_the_batch_down_to_one(gpu_check):
    tried, released = [], []

    def measure_at(batch: int) -> str:
        tried.append(batch)
        if batch > 4:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return f"measured at {batch}"

    result, did_not_fit = gpu_check.halving_on_oom(measure_at, 16, release=lambda: released.append(True))
    assert (result, did_not_fit, tried, len(released)) == ("measured at 4", [16, 8], [16, 8, 4], 2)

    def never_fits(batch: int) -> str:
        tried.append(batch)
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    tried.clear()
    with pytest.raises(torch.cuda.OutOfMemoryError):  # not even one video: the row's failure, as any other
        gpu_check.halving_on_oom(never_fits, 4, release=lambda: None)
    assert tried == [4, 2, 1]


def test_cuda_only_tests_are_found_by_their_skip(gpu_check, tmp_path):
    assert gpu_check.cuda_only_tests() == ["tests/models/stylegan_v/test_cuda.py"]
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_mixed.py").write_text(
        "import pytest, torch\n\n"
        "@pytest.mark.skipif(\n    not torch.cuda.is_available(), reason='GPU')\ndef test_on_gpu():\n    pass\n\n"
        "@pytest.mark.skipif(torch.cuda.is_available(), reason='a machine without CUDA')\n"
        "def test_without_cuda():\n    pass\n\n"
        "def test_anywhere():\n    pass\n")
    (tmp_path / "tests" / "test_all_gpu.py").write_text(
        "import pytest, torch\npytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason='GPU')\n")
    assert gpu_check.cuda_only_tests(tmp_path) == [*gpu_check.CUDA_TESTS, "tests/test_all_gpu.py",
                                                   "tests/test_mixed.py::test_on_gpu"]


def test_a_row_past_its_budget_is_killed(gpu_check):
    start = time.monotonic()
    done = gpu_check.run_bounded([sys.executable, "-c", "import time; print('started', flush=True); time.sleep(60)"],
                                 timeout=2)
    assert done.timed_out and "started" in done.stdout and time.monotonic() - start < 30
