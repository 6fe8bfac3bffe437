"""The diffusion-specific options of `vidgen train` and `vidgen sample` through the real entry point."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TINY_VDM, run_cli, set_args
from vidgen.core.io import probe_video, read_video, write_mp4
from vidgen.core.synthetic import SceneStyle, render_video

# Class-conditional (the synthetic shape kind), joint image-video training, gradient checkpointing.
CONDITIONAL_JOINT = [*TINY_VDM, "data.labels=true", "model.num_classes=4", "data.synthetic_max_shapes=1",
                     "data.image_frames=2", "train.grad_checkpointing=true", "model.guidance=1.0"]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    run_cli("train", "vdm-tiny", "--out", str(run_dir), "--max-steps", "2", *set_args(CONDITIONAL_JOINT),
            check=True)
    return run_dir


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-frame 16x16 video to extend, and its 8x8 version to upsample."""
    folder = tmp_path_factory.mktemp("inputs")
    frames = render_video(5, np.arange(3) / 8, 16, SceneStyle(max_shapes=1))
    write_mp4(folder / "clip16.mp4", frames, fps=8)
    write_mp4(folder / "clip8.mp4", render_video(5, np.arange(3) / 8, 8, SceneStyle(max_shapes=1)), fps=8)
    return folder


def sample(run: Path, out: Path, *args: str, check: bool = True):
    return run_cli("sample", str(run), "--out", str(out), "--num", "2", "--steps", "2", *args, check=check)


def test_class_and_guidance(run: Path, tmp_path: Path) -> None:
    sample(run, tmp_path / "s", "--class", "2", "--guidance", "1.5", "--sampler", "ddim")
    manifest = json.loads((tmp_path / "s" / "samples.json").read_text())
    assert manifest["options"]["label"] == 2 and manifest["options"]["guidance"] == 1.5
    assert probe_video(tmp_path / "s" / "sample-000000.mp4").num_frames == 4


def test_extend_keeps_the_input_frames(run: Path, clip: Path, tmp_path: Path) -> None:
    sample(run, tmp_path / "s", "--extend", str(clip / "clip16.mp4"), "--frames", "7", "--cond-frames", "2")
    out = read_video(tmp_path / "s" / "sample-000000.mp4")
    assert out.shape == (7, 16, 16, 3)
    given = read_video(clip / "clip16.mp4")
    assert np.abs(out[:3].astype(int) - given.astype(int)).mean() < 4  # the same frames, through H.264 twice
    manifest = json.loads((tmp_path / "s" / "samples.json").read_text())
    assert manifest["options"]["extend"].endswith("clip16.mp4")


def test_extend_with_replacement(run: Path, clip: Path, tmp_path: Path) -> None:
    sample(run, tmp_path / "s", "--extend", str(clip / "clip16.mp4"), "--frames", "5",
           "--cond-method", "replacement")
    assert read_video(tmp_path / "s" / "sample-000001.mp4").shape == (5, 16, 16, 3)


def test_upsample_keeps_the_input_length(run: Path, clip: Path, tmp_path: Path) -> None:
    sample(run, tmp_path / "s", "--upsample", str(clip / "clip8.mp4"), "--guidance-recon", "2")
    assert read_video(tmp_path / "s" / "sample-000000.mp4").shape == (3, 16, 16, 3)


@pytest.mark.parametrize("args, code, message", [
    (["--class", "4"], 2, "--class 4 is out of range; this model has classes 0..3"),
    (["--extend", "{clip}/clip8.mp4", "--frames", "6"], 1, "is 8x8 but the model makes 16x16; resize it first"),
    (["--extend", "{clip}/clip16.mp4", "--frames", "3"], 1, "--frames (3) must exceed"),
    (["--extend", "{clip}/missing.mp4"], 1, "missing.mp4: no such file"),
    (["--upsample", "{clip}/clip16.mp4"], 1, "needs a model trained at a higher resolution"),
    (["--extend", "{clip}/clip16.mp4", "--frames", "6", "--cond-method", "inpaint"], 2,
     "'sample.cond_method' must be one of reconstruction, replacement; got 'inpaint'"),
    (["--guidance", "-1"], 2, "sample.guidance (--guidance) must be >= 0"),
    (["--cond-frames", "0"], 2, "sample.cond_frames (--cond-frames) must be > 0"),
    (["--steps", "0"], 2, "sample.steps (--steps) must be > 0"),
    (["--eta", "nan"], 2, "'sample.eta' must be a finite number"),
    (["--num", "0"], 2, "sample.num (--num) must be > 0"),
    (["--truncation", "0.5"], 2, "--truncation does not apply to a 'vdm' model; its own options are --context, "
                                 "--context-frames, --steps, --sampler, --eta, --class"),
])
def test_bad_sampling_options_are_one_line(run: Path, clip: Path, tmp_path: Path, args, code, message) -> None:
    result = sample(run, tmp_path / "s", *[a.format(clip=clip) for a in args], check=False)
    assert result.returncode == code, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_class_on_an_unconditional_model_is_one_line(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    run_cli("train", "vdm-tiny", "--out", str(plain), "--max-steps", "1", *set_args(TINY_VDM), check=True)
    result = sample(plain, tmp_path / "s", "--class", "1", check=False)
    assert result.returncode == 2 and "--class needs a class-conditional model" in result.stderr


def test_labels_and_classes_must_agree_in_the_recipe(tmp_path: Path) -> None:
    result = run_cli("train", "vdm-tiny", "--out", str(tmp_path / "r"), *set_args([*TINY_VDM, "model.num_classes=4"]))
    assert result.returncode == 2 and "set data.labels: true" in result.stderr
    too_few = [*TINY_VDM, "data.labels=true", "model.num_classes=2", "data.synthetic_max_shapes=1"]
    result = run_cli("train", "vdm-tiny", "--out", str(tmp_path / "r2"), *set_args(too_few))
    assert result.returncode == 1 and "set model.num_classes: 4" in result.stderr
