"""The robustness matrix: bad inputs met through the real command line (`python -m vidgen_cli` in a subprocess).

Every row ends in one of three outcomes, never a traceback, a hang (each command has a timeout) or a lost
checkpoint:
- skip: the input is left out, named in a warning line with the reason, and the command succeeds;
- error: one line on stderr saying what is wrong and how to fix it, and a non-zero exit code;
- ok: an unusual but valid input (variable frame rate, odd size, grey or alpha frames) that simply works.

The library-level behaviour of most of these inputs is tested beside its module (tests/core/test_io.py,
test_config.py, test_checkpoint.py, tests/test_prepare.py); this file checks what a user sees. Rows that meet the
same command share one run of it (module fixtures), to keep the matrix to a dozen subprocesses.
"""

from __future__ import annotations

import json
import subprocess
import zipfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Literal

import av
import numpy as np
import pytest

from tests.conftest import TINY_VDM, run_cli, set_args
from vidgen.core.io import read_video, write_mp4, write_png
from vidgen.core.synthetic import render_video

FRAMES = 12
TIMEOUT = 180  # seconds: a hang fails the row instead of the whole suite


def shapes(seed: int, height: int = 24, width: int = 24) -> np.ndarray:
    return render_video(seed, np.arange(FRAMES) / 8.0, max(height, width))[:, :height, :width]


def encode(path: Path, frames: np.ndarray, codec: str, pix_fmt: str, layout: str = "rgb24",
           pts_ms: list[int] | None = None) -> None:
    """Write frames with any PyAV encoder; `pts_ms` gives each frame its own time (a variable frame rate)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=8)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        if pts_ms is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
            stream.codec_context.gop_size = 4  # keyframes mid-file, so clips are read by seeking
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format=layout)
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[i], Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def assert_clean(result: subprocess.CompletedProcess, code: int) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr + result.stdout, result.stderr


def assert_one_error_line(result: subprocess.CompletedProcess, code: int, message: str) -> None:
    assert_clean(result, code)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert message in lines[0], result.stderr


# ----------------------------------------------------------------------------------------------------------
# Video files: one folder holds a good video and every bad one; `data prepare` and `train` each meet it once


def write_audio_only(path: Path) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        container.mux(stream.encode(frame))
        container.mux(stream.encode())


def write_truncated(path: Path) -> None:
    write_mp4(path, shapes(9), fps=8)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@dataclass(frozen=True)
class VideoCase:
    input: str
    file: str
    write: Callable[[Path], None]
    outcome: Literal["skip", "ok"]
    reason: str = ""
    """What the skip line says."""


VIDEO_CASES = [
    VideoCase("truncated mp4", "truncated.mp4", write_truncated, "skip", "not a readable video"),
    VideoCase("zero-byte file", "empty.mp4", lambda p: p.write_bytes(b""), "skip", "not a readable video"),
    VideoCase("non-video file named .mp4", "notes.mp4", lambda p: p.write_text("a shopping list\n"), "skip",
              "not a readable video"),
    VideoCase("a file with no video stream", "sound.mkv", write_audio_only, "skip", "the file has no video stream"),
    VideoCase("variable frame rate", "vfr.mp4", lambda p: encode(
        p, shapes(1), "libx264", "yuv420p", pts_ms=[sum(40 if i % 3 == 0 else 125 for i in range(k))
                                                    for k in range(FRAMES)]), "ok"),
    VideoCase("odd resolution", "odd.mkv", lambda p: encode(p, shapes(2, 25, 33), "ffv1", "yuv444p"), "ok"),
    VideoCase("grayscale frames", "gray.mkv", lambda p: encode(p, shapes(3)[..., 0], "ffv1", "gray", "gray"), "ok"),
    VideoCase("RGBA frames", "rgba.mkv", lambda p: encode(
        p, np.concatenate([shapes(4), np.full((FRAMES, 24, 24, 1), 128, np.uint8)], axis=-1), "ffv1", "bgra",
        "rgba"), "ok"),
]
SKIPPED = sum(case.outcome == "skip" for case in VIDEO_CASES)


@pytest.fixture(scope="module")
def video_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("videos")
    write_mp4(root / "good.mp4", shapes(0), fps=8)
    for case in VIDEO_CASES:
        case.write(root / case.file)
    return root


@pytest.fixture(scope="module")
def prepare_run(video_folder: Path) -> tuple[subprocess.CompletedProcess, Path]:
    out = video_folder.parent / "prepared16.zip"
    result = run_cli("data", "prepare", str(video_folder), str(out), "--resolution", "16", "--workers", "0",
                     timeout=TIMEOUT)
    return result, out


@pytest.fixture(scope="module")
def train_run(video_folder: Path) -> subprocess.CompletedProcess:
    # One step whose batch holds every usable video once (one epoch), each from a random start: a clip of each.
    usable = len(VIDEO_CASES) + 1 - SKIPPED
    args = set_args([*TINY_VDM, f"train.batch_size={usable}", f"data.source={video_folder}"])
    return run_cli("train", "vdm-tiny", "--out", str(video_folder.parent / "run"), "--max-steps", "1", *args,
                   timeout=TIMEOUT)


@pytest.mark.parametrize("case", VIDEO_CASES, ids=[case.input for case in VIDEO_CASES])
def test_video_file(case: VideoCase, video_folder: Path, prepare_run: tuple) -> None:
    result, out = prepare_run
    assert_clean(result, 0)
    path = video_folder / case.file
    skip_lines = [line for line in result.stderr.splitlines() if line.startswith(f"skipped: {path} (")]
    with zipfile.ZipFile(out) as archive:
        meta = json.loads(archive.read("vidgen-prepared.json"))
    prepared = {video["name"]: video["frames"] for video in meta["videos"]}
    if case.outcome == "skip":
        assert len(skip_lines) == 1 and case.reason in skip_lines[0], result.stderr
        assert Path(case.file).stem not in prepared
    else:
        assert skip_lines == [] and prepared[Path(case.file).stem] == FRAMES
        full = read_video(path)  # every clip reads the frames a full decode gives, wherever it starts
        for start in range(FRAMES - 3):
            np.testing.assert_array_equal(read_video(path, start, 4), full[start:start + 4])


def test_training_on_the_folder_skips_bad_videos_with_one_warning(train_run: subprocess.CompletedProcess) -> None:
    assert_clean(train_run, 0)
    assert f"skipped {SKIPPED} videos:" in train_run.stderr
    assert f"{len(VIDEO_CASES) + 1 - SKIPPED} videos" in train_run.stderr  # the "Training ... N videos" line
    assert "failed to decode" not in train_run.stderr  # every usable video gave its clip


# ----------------------------------------------------------------------------------------------------------
# A zip of frame folders: a good folder, one missing a frame, one with a damaged member


def write_frames_zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for folder in ("good", "gap", "damaged"):
            for i, frame in enumerate(shapes(5)):
                if folder == "gap" and i == 5:
                    continue
                png = path.parent / "frame.png"
                write_png(png, frame)
                archive.write(png, f"{folder}/{i:04d}.png")
    with zipfile.ZipFile(path) as archive:  # zero 16 bytes inside one PNG: its CRC no longer matches
        member = archive.getinfo("damaged/0005.png")
    data = bytearray(path.read_bytes())
    start = member.header_offset + 30 + len(member.filename) + 8
    data[start:start + 16] = bytes(16)
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def zip_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path, Path]:
    root = tmp_path_factory.mktemp("zip")
    source, out = root / "frames.zip", root / "shards16"
    write_frames_zip(source)
    result = run_cli("data", "prepare", str(source), str(out), "--resolution", "16", "--workers", "0",
                     timeout=TIMEOUT)
    return result, source, out


@pytest.mark.parametrize("folder, reason", [
    ("gap", "frame numbering jumps from 0004 to 0006: a missing frame"),
    ("damaged", "damaged zip member (Bad CRC-32 for file 'damaged/0005.png')"),
], ids=["zip with a missing frame", "zip with a damaged frame"])
def test_zip_frame_folder(folder: str, reason: str, zip_run: tuple) -> None:
    result, source, out = zip_run
    assert_clean(result, 0)
    assert f"skipped: {source}/{folder} ({reason}" in result.stderr
    names = [video["name"] for video in json.loads((out / "vidgen-prepared.json").read_text())["videos"]]
    assert names == ["good"]


# ----------------------------------------------------------------------------------------------------------
# One error line: recipes, checkpoints, and a prepared dataset at the wrong resolution


def recipe_file(text: str) -> Callable[[Path, dict], list[str]]:
    def make(tmp_path: Path, datasets: dict) -> list[str]:
        path = tmp_path / "recipe.yaml"
        path.write_text(text)
        return ["train", str(path), "--out", str(tmp_path / "run")]

    return make


def newer_checkpoint(tmp_path: Path, datasets: dict) -> list[str]:
    """A run directory whose only checkpoint was written by a newer vidgen: resuming must refuse it, untouched."""
    import torch

    from vidgen.core.checkpoint import FORMAT_VERSION, checkpoint_path, save_checkpoint
    from vidgen.recipe import load_recipe

    recipe = load_recipe("vdm-tiny", TINY_VDM)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(recipe.to_yaml())
    path = checkpoint_path(run / "checkpoints", 5)
    save_checkpoint({"config": recipe.to_dict(), "step": 5}, path)
    state = torch.load(path, weights_only=True)
    torch.save({**state, "format_version": FORMAT_VERSION + 1, "vidgen_version": "9.0.0"}, path)
    return ["train", str(run)]


def prepared_at_16(tmp_path: Path, datasets: dict) -> list[str]:
    # The shards layout records its resolution the same way (tests/test_prepare.py checks both layouts).
    return ["train", "vdm-tiny", "--out", str(tmp_path / "run"), "--set", f"data.source={datasets['frames-zip']}",
            "--set", "data.workers=0"]  # vdm-tiny trains at 32 x 32


ERROR_CASES = {  # input: (make the input and the command, exit code, what the line says)
    "YAML with tabs": (recipe_file("run:\n\tname: t\nmodel: {name: vdm}\n"), 2,
                       "tab characters cannot indent YAML; use spaces at line 2"),
    "YAML with a duplicate key": (recipe_file("run:\n  name: a\n  name: b\nmodel: {name: vdm}\n"), 2,
                                  "duplicate key 'name' at line 3"),
    "negative learning rate": (recipe_file("run: {name: t}\nmodel: {name: vdm}\ntrain: {lr: -1.0e-3}\n"), 2,
                               "train.lr must be > 0, got -0.001"),
    "checkpoint from a newer vidgen": (newer_checkpoint, 1, "was written by a newer vidgen (9.0.0); upgrade vidgen"),
    "a prepared dataset at another resolution": (prepared_at_16, 2, "was prepared at 16x16 but data.resolution is 32; "
                                                 "set data.resolution=16, or prepare the videos again"),
}


@pytest.fixture(scope="module")
def datasets(prepare_run: tuple) -> dict[str, Path]:
    return {"frames-zip": prepare_run[1]}


@pytest.mark.parametrize("name", ERROR_CASES)
def test_one_error_line(name: str, tmp_path: Path, datasets: dict[str, Path]) -> None:
    make, code, message = ERROR_CASES[name]
    args = make(tmp_path, datasets)
    checkpoints = {path: path.read_bytes() for path in tmp_path.rglob("*.pt")}
    result = run_cli(*args, cwd=tmp_path, timeout=TIMEOUT)
    assert_one_error_line(result, code, message)
    for path, data in checkpoints.items():  # never a lost (or rewritten) checkpoint
        assert path.read_bytes() == data
    assert sorted(tmp_path.rglob("*.pt")) == sorted(checkpoints)
