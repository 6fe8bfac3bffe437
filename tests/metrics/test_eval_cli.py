"""`vidgen eval` and `vidgen detectors` through the real entry point: the CI gate's exit codes, JSON, and
one-line errors."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import run_cli
from vidgen.evaluate import JSON_SCHEMA


@pytest.fixture(scope="module")
def gate(evaluated):
    """VIDGEN_HOME holding the cached real statistics of root/videos, and a fake folder of two of them."""
    root, _ = evaluated
    fake = root / "cli-fake"
    fake.mkdir(exist_ok=True)
    for path in sorted((root / "videos").glob("*.mp4"))[:2]:
        shutil.copy(path, fake / path.name)
    return root, fake, {"VIDGEN_HOME": str(root / "home")}


def _eval(*args, env=None):
    return run_cli("eval", *args, "--device", "cpu", "--workers", "0", env=env)


@pytest.mark.parametrize("args, message", [
    (["--metrics", "fvd2048_16f,fvd9"], "unknown metric 'fvd9'; known metrics: fvd2048_16f"),
    (["--metrics", "fvd2048_16f", "--fail-above", "fid50k=10"], "'fid50k', which is not among the metrics"),
    (["--metrics", "fvd2048_16f", "--fail-above", "fvd2048_16f"], "must look like metric=number"),
])
def test_usage_errors_exit_2_before_any_work(tmp_path, args, message):
    result = _eval("--real", str(tmp_path), "--fake", str(tmp_path), *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_gate_passes_with_exit_0_and_writes_json(gate, detector_dir, tmp_path):
    root, fake, env = gate
    out = tmp_path / "result.json"
    result = _eval("--real", str(root / "videos"), "--fake", str(fake), "--metrics", "fvd2048_16f,kvd2048_16f",
                   "--allow-fewer", "--fail-above", "fvd2048_16f=1e9", "--json", str(out),
                   "--detector-dir", str(detector_dir), env=env)
    assert result.returncode == 0, result.stderr
    assert "fvd2048_16f (n=2)" in result.stdout
    data = json.loads(out.read_text())
    assert data["schema"] == JSON_SCHEMA and data["passed"] is True and data["thresholds"] == {"fvd2048_16f": 1e9}
    assert {name: m["real_stats"] for name, m in data["metrics"].items()} == \
        {"fvd2048_16f": "cache", "kvd2048_16f": "cache"}  # the second evaluation does no real-side work
    assert data["metrics"]["fvd2048_16f"]["num_real"] == 3 and data["metrics"]["fvd2048_16f"]["num_fake"] == 2


def test_gate_fails_with_exit_1_naming_the_metric(gate, detector_dir):
    root, fake, env = gate
    result = _eval("--real", str(root / "real.npz"), "--fake", str(fake), "--metrics", "fvd2048_16f",
                   "--allow-fewer", "--fail-above", "fvd2048_16f=1e-6", "--detector-dir", str(detector_dir), env=env)
    assert result.returncode == 1
    assert "fvd2048_16f" in result.stderr and "> 1e-06" in result.stderr


def test_stats_from_another_protocol_is_one_line_error(gate, detector_dir):
    root, fake, env = gate
    result = _eval("--real", str(root / "real.npz"), "--fake", str(fake), "--metrics", "fid50k", "--allow-fewer",
                   "--detector-dir", str(detector_dir), env=env)
    assert result.returncode == 1
    assert "holds real statistics for fvd2048_16f, kvd2048_16f, not fid50k" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_missing_detector_files_say_how_to_install(gate, tmp_path):
    root, fake, env = gate
    result = _eval("--real", str(root / "videos"), "--fake", str(fake), "--detector-dir", str(tmp_path), env=env)
    assert result.returncode == 1
    assert "vidgen detectors install" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_detectors_list(detector_dir, tmp_path):
    result = run_cli("detectors", "list", "--detector-dir", str(detector_dir))
    assert result.returncode == 0, result.stderr
    assert "af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd" in result.stdout
    assert result.stdout.count(" ok ") == 2
    result = run_cli("detectors", "list", "--detector-dir", str(tmp_path))
    assert result.stdout.count("missing") == 2 and "vidgen detectors install" in result.stderr
