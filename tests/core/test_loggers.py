"""The training viewers (train.loggers): TensorBoard event files read back with TensorBoard's own reader hold the
scalars of metrics.jsonl at the same steps and the preview image; a missing package is one line, not a failure."""

import sys

import pytest
from rich.console import Console

from tests.conftest import TINY_VDM
from vidgen.core.checkpoint import list_checkpoints
from vidgen.core.run_dir import read_metrics
from vidgen.errors import ConfigError
from vidgen.recipe import load_recipe
from vidgen.train import train

QUIET = Console(quiet=True)
TINY_RUN = [*TINY_VDM, "train.max_steps=3", "train.log_every=1", "train.sample_every=3"]


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    pass


def test_tensorboard_holds_the_metrics_scalars_and_the_preview(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = tmp_path / "run"
    train(load_recipe("vdm-tiny", TINY_RUN), run_dir, device="cpu", console=QUIET)

    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    records = read_metrics(run_dir / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3]
    names = {name for r in records for name, value in r.items() if name != "step" and value is not None}
    assert {"loss", "lr", "videos_per_sec", "sec_per_step", "nonfinite_steps"} <= names
    assert names == set(events.Tags()["scalars"])
    for name in names:
        logged = {e.step: e.value for e in events.Scalars(name)}
        expected = {r["step"]: r[name] for r in records if r.get(name) is not None}
        assert logged == pytest.approx(expected, rel=1e-6), name  # event files store float32
    (image,) = events.Images("samples/preview")
    assert image.step == 3 and image.width > image.height > 0  # three stills side by side


def test_a_resumed_run_drops_the_events_after_its_checkpoint_as_metrics_jsonl_does(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = tmp_path / "run"
    train(load_recipe("vdm-tiny", [*TINY_RUN, "train.checkpoint_every=2"]), run_dir, device="cpu", console=QUIET)
    list_checkpoints(run_dir / "checkpoints")[-1].unlink()  # step 3's: the resume starts from step 2
    train(load_recipe("vdm-tiny", [*TINY_RUN, "train.checkpoint_every=2", "train.max_steps=4"]), run_dir,
          device="cpu", console=QUIET)

    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    expected = {r["step"]: r["loss"] for r in read_metrics(run_dir / "metrics.jsonl")}
    assert [e.step for e in events.Scalars("loss")] == [1, 2, 3, 4]
    assert {e.step: e.value for e in events.Scalars("loss")} == pytest.approx(expected, rel=1e-6)


def test_an_unknown_logger_is_one_line_naming_the_known_ones():
    with pytest.raises(ConfigError, match=r"^train.loggers: unknown logger 'foo'; known: jsonl, tensorboard, wandb$"):
        load_recipe("vdm-tiny", ["train.loggers=[jsonl,foo]"])


def test_a_missing_package_is_one_warning_and_training_goes_on(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # any import of it raises ImportError
    run_dir = tmp_path / "run"
    console = Console(stderr=True, width=200)
    result = train(load_recipe("vdm-tiny", TINY_RUN), run_dir, device="cpu", console=console)

    assert result.step == 3 and [r["step"] for r in read_metrics(run_dir / "metrics.jsonl")] == [1, 2, 3]
    assert not (run_dir / "tensorboard").exists()
    warnings = [line for line in capsys.readouterr().err.splitlines() if "logging is off" in line]
    assert warnings == ["tensorboard logging is off: its package is missing; pip install 'vidgen[tensorboard]'"]


def test_only_jsonl_writes_no_viewer_files(tmp_path):
    run_dir = tmp_path / "run"
    train(load_recipe("vdm-tiny", [*TINY_RUN, "train.loggers=[jsonl]"]), run_dir, device="cpu", console=QUIET)
    assert sorted(p.name for p in run_dir.iterdir()) == [".lock", "checkpoints", "config.yaml", "metrics.jsonl",
                                                          "samples"]


def test_wandb_offline_run_writes_its_files(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_dir = tmp_path / "run"
    train(load_recipe("vdm-tiny", [*TINY_RUN, "train.loggers=[jsonl,wandb]"]), run_dir, device="cpu",
          console=QUIET)
    (offline,) = (run_dir / "wandb").glob("offline-run-*")
    assert list(offline.glob("run-*.wandb")), "the run's data file"
    assert list((offline / "files" / "media" / "images").rglob("preview_3_*.png")), "the preview image"
    assert not (run_dir / "tensorboard").exists()

    # Resuming continues the same W&B run: the id is kept in the run directory.
    run_id = (run_dir / "wandb" / "run-id").read_text().strip()
    train(load_recipe("vdm-tiny", [*TINY_RUN, "train.loggers=[jsonl,wandb]", "train.max_steps=4"]), run_dir,
          device="cpu", console=QUIET)
    runs = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(path.name.endswith(f"-{run_id}") for path in runs)
