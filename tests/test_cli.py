"""The command line through its real entry point (a subprocess), as a user runs it."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli, set_args


def test_help_does_not_import_torch():  # its start-up time: benchmarks/bench_cli.py
    code = "import sys, vidgen_cli.main; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
    result = run_cli("--help", check=True)
    for command in ("train", "sample", "data", "recipes", "info"):
        assert command in result.stdout


def test_recipes_lists_builtin_recipes():
    result = run_cli("recipes", check=True)
    assert "vdm-tiny" in result.stdout and "vdm-ucf101-64" in result.stdout


def test_info_shows_versions_and_default_device():
    from vidgen.core.device import resolve_device  # the same environment as the subprocess: cpu, cuda:N or mps

    result = run_cli("info", check=True)
    assert "torch" in result.stdout and f"default device: {resolve_device('auto')}\n" in result.stdout

BINARY_FILE = Path(__file__).parent / "metrics" / "fixtures" / "i3d_reference.npz"


@pytest.mark.parametrize("args, code, message", [
    (["train", "no-such-recipe"], 2, "unknown recipe 'no-such-recipe'"),
    (["train", "vdm-tiny", "--set", "train.lrr=1"], 2, "unknown key 'train.lrr'"),
    (["train", "vdm-tiny", "--set", "train.max_steps=x"], 2, "'train.max_steps' expects an integer"),
    (["train", "vdm-tiny", "--set", "model.name=nope"], 2, "unknown model 'nope'; known models: vdm, stylegan-v"),
    (["train", "vdm-tiny", "--set", "data.resolution=30"], 2, "not divisible by 4"),
    (["train", "missing.yaml"], 2, "recipe file missing.yaml does not exist"),
    (["train", "vdm-tiny", "--device", "cuda:7"], 1, "CUDA is not available"),
    (["train", "vdm-tiny", "--device", "tpu"], 1, "unknown device 'tpu'"),
    (["train", "vdm-tiny", "--precision", "fp16", "--device", "cpu"], 1, "fp16 needs a GPU"),
    (["train", "vdm-tiny", "--set", "data.source=/no/such/dir"], 1, "/no/such/dir"),
    (["sample", "/no/such/run", "--out", "x"], 1, "neither a run directory nor a checkpoint"),
    (["data", "synth", "shapes", "--colours", "9"], 1, "--colours must lie in 1..7 (the palette), got 9"),
    (["train", "vdm-tiny", "--set", "train.lr=.nan"], 2, "'train.lr' must be a finite number, got nan"),
    (["train", "vdm-tiny", "--set", "data.fps=.inf"], 2, "'data.fps' must be a finite number, got inf"),
    (["train", str(BINARY_FILE)], 2, "i3d_reference.npz is not a text file; a recipe is YAML"),
])
def test_user_errors_are_one_line_without_traceback(tmp_path, args, code, message):
    result = run_cli(*args, "--out", str(tmp_path / "out"), cwd=tmp_path) if args[0] == "train" \
        else run_cli(*args, cwd=tmp_path)
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_damaged_checkpoint_is_one_line(tmp_path):
    bad = tmp_path / "ckpt-00000001.pt"
    bad.write_bytes(b"not a checkpoint")
    result = run_cli("sample", str(bad), "--out", str(tmp_path / "s"))
    assert result.returncode == 1 and "damaged" in result.stderr and "Traceback" not in result.stderr


def test_unwritable_output_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run_cli("data", "synth", str(blocker / "sub"), "--num", "1")
    assert result.returncode == 1 and "cannot create output folder" in result.stderr
    assert "Traceback" not in result.stderr


def test_data_synth_then_info(tmp_path):
    run_cli("data", "synth", str(tmp_path / "shapes"), "--num", "3", "--frames", "10", "--size", "24",
            check=True)
    assert len(list((tmp_path / "shapes").glob("*.mp4"))) == 3
    result = run_cli("data", "info", str(tmp_path / "shapes"), check=True)
    assert "3" in result.stdout and "24" in result.stdout


def test_train_resume_and_sample_end_to_end(tmp_path, tiny_vdm):
    from vidgen.core.io import probe_video, read_video

    run = tmp_path / "run"
    first = run_cli("train", "vdm-tiny", "--out", str(run), "--max-steps", "3", *set_args(tiny_vdm), check=True)
    assert "step 3" in first.stdout
    assert (run / "config.yaml").is_file() and (run / "metrics.jsonl").is_file()
    # Running again resumes the run directory and continues to the new max.
    second = run_cli("train", str(run), "--max-steps", "5", check=True)
    assert "Resuming" in second.stderr and "step 5" in second.stdout
    # --fresh refuses to discard the run unless asked.
    refused = run_cli("train", "vdm-tiny", "--out", str(run), "--fresh", *set_args(tiny_vdm))
    assert refused.returncode == 1 and "--overwrite" in refused.stderr

    result = run_cli("sample", str(run), "--out", str(tmp_path / "samples"), "--num", "3", "--frames", "6",
                     "--batch-size", "2", check=True)
    videos = sorted((tmp_path / "samples").glob("sample-*.mp4"))
    assert len(videos) == 3 and all(str(v) in result.stdout for v in videos)
    info = probe_video(videos[0])
    assert (info.num_frames, info.width, info.height) == (6, 16, 16)
    assert read_video(tmp_path / "samples" / "grid.mp4").shape[0] == 6
    assert (tmp_path / "samples" / "contact_sheet.png").stat().st_size > 0


def test_stylegan_v_trains_and_samples_any_length_and_fps(tmp_path, tiny_sgv):
    from vidgen.core.io import probe_video

    run = tmp_path / "run"
    run_cli("train", "stylegan-v-tiny", "--out", str(run), "--max-steps", "2", *set_args(tiny_sgv), check=True)
    run_cli("sample", str(run), "--out", str(tmp_path / "s"), "--num", "2", "--frames", "40", "--fps", "24",
            "--time-offset", "3", "--truncation", "0.7", check=True)
    info = probe_video(tmp_path / "s" / "sample-000000.mp4")
    assert (info.num_frames, info.fps, info.width) == (40, 24.0, 16)


def test_eval_of_a_sample_folder_scores_the_samples_not_the_grid(tmp_path, tiny_vdm):
    from vidgen.core.run_dir import manifest_videos
    from vidgen.metrics.sources import index_videos

    run = tmp_path / "run"
    run_cli("train", "vdm-tiny", "--out", str(run), "--max-steps", "1", *set_args(tiny_vdm), check=True)
    run_cli("sample", str(run), "--out", str(tmp_path / "s"), "--num", "3", check=True)
    assert manifest_videos(tmp_path / "s") == {f"sample-00000{i}.mp4" for i in range(3)}
    assert sorted(v.name.split("/")[-1] for v in index_videos(tmp_path / "s", "FAKE")) == [
        "sample-000000.mp4", "sample-000001.mp4", "sample-000002.mp4"]
