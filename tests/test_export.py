"""`vidgen export`: every registered family exports to safetensors + YAML, and the export samples exactly as its
run does, without unpickling anything."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from rich.console import Console

from tests.conftest import run_cli, stage_one_overrides
from vidgen.core.checkpoint import EXPORT_CONFIG, EXPORT_WEIGHTS, is_export
from vidgen.export import export
from vidgen.metrics.sources import is_run
from vidgen.models.registry import BACKENDS, BackendSpec
from vidgen.recipe import load_recipe
from vidgen.sample import load_for_sampling, unprompted_videos
from vidgen.train import train

CPU = torch.device("cpu")
SEEDS = [0, 1]


@pytest.fixture(params=list(BACKENDS.values()), ids=list(BACKENDS), scope="module")
def spec(request: pytest.FixtureRequest) -> BackendSpec:
    return request.param


@pytest.fixture(scope="module")
def exported(spec: BackendSpec, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
             ) -> tuple[Path, Path]:
    """A run of the family trained 2 steps, and its export: (run, export)."""
    runs = request.getfixturevalue("stage_one_runs") if spec.upstream is not None else {}
    root = tmp_path_factory.mktemp(f"export-{spec.name}")
    run = root / "run"
    recipe = load_recipe(spec.tiny_recipe, [*stage_one_overrides(spec, runs), "train.max_steps=2"])
    train(recipe, run, device="cpu", console=Console(quiet=True))
    export(run, root / "export")
    return run, root / "export"


def _videos(source: Path) -> torch.Tensor:
    recipe, backend = load_for_sampling(source, CPU)
    with torch.no_grad():
        return unprompted_videos(backend, backend.networks, SEEDS, recipe.output_frames(), CPU)


def test_export_samples_as_the_run_without_unpickling(exported: tuple[Path, Path],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    run, out = exported
    assert (out / EXPORT_WEIGHTS).is_file() and (out / EXPORT_CONFIG).is_file()
    assert is_export(out) and is_run(out)
    expected = _videos(run)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("torch.load called while loading an export")

    monkeypatch.setattr(torch, "load", refuse)
    assert torch.equal(_videos(out), expected)


def test_model_card(exported: tuple[Path, Path]) -> None:
    _, out = exported
    recipe, backend = load_for_sampling(out, CPU)
    card = (out / "README.md").read_text()
    parameters = sum(p.numel() for p in backend.networks.parameters())
    assert card.startswith("---\nlibrary_name: vidgen\n")
    assert f"| parameters | {parameters:,} |" in card
    assert f"vidgen sample {out} --out samples --num 8" in card
    assert "| training step | 2 |" in card


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    empty_run = tmp_path / "run"
    (empty_run / "checkpoints").mkdir(parents=True)
    result = run_cli("export", str(empty_run), "--out", str(tmp_path / "out"))
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1 and "no checkpoints" in result.stderr
    assert "Traceback" not in result.stderr

    full = tmp_path / "full"
    full.mkdir()
    (full / "something").write_text("x")
    result = run_cli("export", str(empty_run), "--out", str(full))
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1 and "not an empty folder" in result.stderr
