"""The robustness matrix: bad inputs met through the real command line (`python -m vidgen_cli` in a subprocess).

Every row ends in one of three outcomes, never a traceback, a hang (each command has a timeout) or a lost
checkpoint:
- skip: the input is left out, named in a warning line with the reason, and the command succeeds;
- error: one line on stderr saying what is wrong and how to fix it, and a non-zero exit code;
- ok: an unusual but valid input (variable frame rate, odd size, grey or alpha frames) that simply works.

The library-level behaviour of most of these inputs is tested beside its module (tests/core/test_io.py,
tests/test_recipe.py, tests/core/test_checkpoint.py, tests/test_prepare.py); this file checks what a user sees.
Rows that meet the same command share one run of it (module fixtures), to keep the matrix to a few dozen
subprocesses.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import zipfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Literal

import av
import numpy as np
import pytest

from tests.conftest import TINY_SGV, TINY_VDM, run_cli, set_args
from tests.core.test_io import write_faststart, write_jpeg
from tests.metrics.conftest import detector_dir, write_videos  # noqa: F401  (detector_dir is a fixture)
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


def copy_of_run(tmp_path: Path, datasets: dict) -> Path:
    """A private copy of the module's tiny trained run (checkpoints at steps 1 and 2)."""
    run = tmp_path / "run"
    shutil.copytree(datasets["run"], run)
    return run


def flip_a_byte(path: Path) -> None:
    """One bit flipped inside the first tensor's bytes: torch.load would read it without complaint."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        start = next(info for info in archive.infolist() if "/data/" in info.filename).header_offset
    name_length, extra_length = struct.unpack("<HH", data[start + 26:start + 30])  # the local file header's
    data[start + 30 + name_length + extra_length + 8] ^= 0x01
    path.write_bytes(data)


def damaged_config_without_checkpoint(tmp_path: Path, datasets: dict) -> list[str]:
    run = copy_of_run(tmp_path, datasets)
    shutil.rmtree(run / "checkpoints")
    (run / "config.yaml").write_text("")  # what a kill mid-write left before config.yaml was written atomically
    return ["train", str(run)]


def sample_a_damaged_checkpoint(tmp_path: Path, datasets: dict) -> list[str]:
    run = copy_of_run(tmp_path, datasets)
    flip_a_byte(run / "checkpoints" / "ckpt-00000002.pt")
    return ["sample", str(run / "checkpoints" / "ckpt-00000002.pt"), "--out", str(tmp_path / "s")]


def resume_with_every_checkpoint_damaged(tmp_path: Path, datasets: dict) -> list[str]:
    run = copy_of_run(tmp_path, datasets)
    for path in (run / "checkpoints").glob("*.pt"):
        flip_a_byte(path)
    return ["train", str(run), "--max-steps", "3"]


def text_as_checkpoint(tmp_path: Path, datasets: dict) -> list[str]:
    (tmp_path / "notes.pt").write_text("not a checkpoint\n")
    return ["sample", str(tmp_path / "notes.pt"), "--out", str(tmp_path / "s")]


def binary_as_recipe(tmp_path: Path, datasets: dict) -> list[str]:
    (tmp_path / "recipe.yaml").write_bytes(bytes(range(256)))
    return ["train", str(tmp_path / "recipe.yaml"), "--out", str(tmp_path / "run")]


def sample_with(*flags: str) -> Callable[[Path, dict], list[str]]:
    def make(tmp_path: Path, datasets: dict) -> list[str]:
        return ["sample", str(datasets["run"]), "--out", str(tmp_path / "s"), *flags]

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
    save_checkpoint({"config": recipe.to_dict(), "step": 5, "networks": {}, "ema": {}, "backend": {}}, path)
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
    # Nothing lost, nothing silent (run directories, checkpoints, finite numbers)
    "a damaged config.yaml and no checkpoint": (damaged_config_without_checkpoint, 1,
                                                "has no intact checkpoint to recover it from; start the run again"),
    "a checkpoint with a flipped bit": (sample_a_damaged_checkpoint, 1, "fails its CRC-32 check; use another"),
    "every checkpoint of a run damaged": (resume_with_every_checkpoint_damaged, 1,
                                          "is intact (all 2 fail their checks); start the run again"),
    "a text file as a checkpoint": (text_as_checkpoint, 1, "notes.pt is damaged: it is not an intact torch archive"),
    "a binary file as a recipe": (binary_as_recipe, 2, "recipe.yaml is not a text file; a recipe is YAML"),
    "an infinite learning rate": (recipe_file("run: {name: t}\nmodel: {name: vdm}\ntrain: {lr: .inf}\n"), 2,
                                  "'train.lr' must be a finite number, got inf"),
    "sample --fps nan": (sample_with("--fps", "nan"), 2, "'sample.fps' must be a finite number, got nan"),
    "sample --eta nan": (sample_with("--sampler", "ddim", "--eta", "nan"), 2, "'sample.eta' must be a finite number"),
    "sample --guidance-recon inf": (sample_with("--guidance-recon", "inf"), 2,
                                    "'sample.guidance_recon' must be a finite number"),
    "sample --guidance on a model without classes": (sample_with("--guidance", "1"), 2,
                                                     "--guidance needs a class-conditional model"),
    "sample --truncation on a diffusion run": (sample_with("--truncation", "nan"), 2,
                                               "--truncation does not apply to a 'vdm' model"),
    "data synth --fps nan": (lambda tmp_path, datasets: ["data", "synth", str(tmp_path / "d"), "--fps", "nan"], 1,
                             "--fps must be a finite number > 0, got nan"),
}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny diffusion run with checkpoints at steps 1 and 2."""
    run = tmp_path_factory.mktemp("tiny") / "run"
    result = run_cli("train", "vdm-tiny", "--out", str(run), *set_args([*TINY_VDM, "train.max_steps=2",
                                                                        "train.checkpoint_every=1"]),
                     timeout=TIMEOUT)
    assert_clean(result, 0)
    return run


@pytest.fixture(scope="module")
def datasets(prepare_run: tuple, tiny_run: Path) -> dict[str, Path]:
    return {"frames-zip": prepare_run[1], "run": tiny_run}


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


# ----------------------------------------------------------------------------------------------------------
# Run directories: a lost config.yaml or a damaged checkpoint is recovered from; one writer per run


def test_a_config_emptied_by_a_kill_is_recovered_from_the_checkpoint(tmp_path: Path, tiny_run: Path) -> None:
    run = copy_of_run(tmp_path, {"run": tiny_run})
    (run / "config.yaml").write_text("")
    result = run_cli("train", str(run), "--max-steps", "3", timeout=TIMEOUT)
    assert_clean(result, 0)
    assert result.stderr.count("resuming with the config stored in ckpt-00000002.pt") == 1, result.stderr
    assert "Resuming" in result.stderr and "(step 3)" in result.stdout
    assert (run / "config.yaml").read_text() == (tiny_run / "config.yaml").read_text().replace(
        "max_steps: 2", "max_steps: 3"), "rewritten from the checkpoint's config"


def test_a_damaged_newest_checkpoint_is_passed_over_with_a_notice(tmp_path: Path, tiny_run: Path) -> None:
    run = copy_of_run(tmp_path, {"run": tiny_run})
    flip_a_byte(run / "checkpoints" / "ckpt-00000002.pt")
    result = run_cli("train", str(run), "--max-steps", "3", timeout=TIMEOUT)
    assert_clean(result, 0)
    assert "ckpt-00000002.pt is damaged (its record 'archive/data/0' fails its CRC-32 check); resuming from " \
           "ckpt-00000001.pt" in result.stderr, result.stderr
    assert "from step 1 (ckpt-00000001.pt)" in result.stderr


def test_a_second_writer_is_one_line_and_a_killed_writer_leaves_no_lock(tmp_path: Path, tiny_run: Path) -> None:
    run = copy_of_run(tmp_path, {"run": tiny_run})
    first = subprocess.Popen([sys.executable, "-m", "vidgen_cli", "train", str(run), "--max-steps", "100000"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + TIMEOUT
        while first.poll() is None and time.monotonic() < deadline and "Resuming" not in _log_so_far(run):
            time.sleep(0.1)
        assert first.poll() is None, first.stderr.read()
        second = run_cli("train", str(run), "--max-steps", "3", timeout=TIMEOUT)
        assert_one_error_line(second, 1, f"{run} is being trained by another process (PID {first.pid})")
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=60)
    third = run_cli("train", str(run), "--max-steps", "3", timeout=TIMEOUT)
    assert_clean(third, 0)


def _log_so_far(run: Path) -> str:
    """The first writer is training once its metrics log has a record past the checkpoint it resumed."""
    metrics = run / "metrics.jsonl"
    records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()] \
        if metrics.exists() else []
    return "Resuming" if any(r.get("step", 0) > 2 for r in records) else ""


# ----------------------------------------------------------------------------------------------------------
# Damage that `data info` and training name: damaged frame images, zip members with bad CRCs, cut-off mp4s
# (one warning line each), never a raw Python warning each time a clip reaches past the cut

DAMAGED = 5  # the frame each damaged folder has damaged
CUT_REASON = r"not a readable video \(truncated: [\d,]+ of at least [\d,]+ bytes, losing {lost}\); re-download or " \
             r"re-encode it"
LOST_FRAMES = r"\d+ of its 12 frames"


def frame_folder(folder: Path, damage: Callable[[bytes], bytes] = lambda data: data, ext: str = "png") -> None:
    """One image per frame; frame DAMAGED's bytes pass through `damage`."""
    folder.mkdir(parents=True)
    for i, frame in enumerate(shapes(3)):
        path = folder / f"{i:04d}.{ext}"
        if ext == "png":
            write_png(path, frame)
        else:
            write_jpeg(path, frame)
        if i == DAMAGED:
            path.write_bytes(damage(path.read_bytes()))


def flip_bit(data: bytes) -> bytes:
    return data[:60] + bytes([data[60] ^ 1]) + data[61:]  # inside a PNG's first IDAT chunk


def cut(data: bytes) -> bytes:
    return data[:len(data) * 6 // 10]


def cut_mp4(write: Callable[..., None]) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        write(path, shapes(4), fps=8)
        path.write_bytes(cut(path.read_bytes()))

    return make


@dataclass(frozen=True)
class DamageCase:
    input: str
    name: str
    """The file or folder the warning line names."""
    write: Callable[[Path], None]
    reason: str
    """A regular expression for the reason the line gives."""


INFO_CASES = [
    DamageCase("frame folder with a bit-flipped PNG", "flipped", lambda p: frame_folder(p, flip_bit),
               re.escape("frame 0005.png: damaged PNG (its IDAT chunk fails its CRC check)")),
    DamageCase("frame folder with a cut-off PNG", "cut_png", lambda p: frame_folder(p, cut),
               re.escape("frame 0005.png: truncated PNG (it ends before its IEND chunk)")),
    DamageCase("frame folder with a cut-off JPEG", "cut_jpeg", lambda p: frame_folder(p, cut, "jpg"),
               re.escape("frame 0005.jpg: truncated JPEG (no end-of-image marker)")),
    DamageCase("frame folder with a text file named .png", "text_png",
               lambda p: frame_folder(p, lambda data: b"a shopping list\n"),
               re.escape("frame 0005.png: not a readable image (") + ".+"),
    DamageCase("mp4 cut to 60% (index at the end)", "cut_index_last.mp4", cut_mp4(write_mp4),
               CUT_REASON.format(lost="its index, the 'moov' box")),
    DamageCase("mp4 cut to 60% (index first)", "cut_index_first.mp4", cut_mp4(write_faststart),
               CUT_REASON.format(lost=LOST_FRAMES)),
]


def unreadable_lines(result: subprocess.CompletedProcess, name: Path) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith(f"unreadable: {name} (")]


def table_row(result: subprocess.CompletedProcess, key: str) -> str:
    row = next(line for line in result.stdout.splitlines() if f" {key} " in line)
    return row.split("│")[-2].strip()


# ----------------------------------------------------------------------------------------------------------
# data info on a folder: two good videos (a frame folder, an mp4) beside every damaged one


@pytest.fixture(scope="module")
def info_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("damaged")
    frame_folder(root / "good")
    write_mp4(root / "good.mp4", shapes(0), fps=8)
    for case in INFO_CASES:
        case.write(root / case.name)
    return root


@pytest.fixture(scope="module")
def info_run(info_folder: Path) -> subprocess.CompletedProcess:
    return run_cli("data", "info", str(info_folder), timeout=TIMEOUT)


@pytest.mark.parametrize("case", INFO_CASES, ids=[f"data info: {case.input}" for case in INFO_CASES])
def test_data_info_names_the_damage(case: DamageCase, info_folder: Path, info_run: subprocess.CompletedProcess) -> None:
    assert_clean(info_run, 0)
    lines = unreadable_lines(info_run, info_folder / case.name)
    assert len(lines) == 1, info_run.stderr
    assert re.fullmatch(rf"unreadable: {re.escape(str(info_folder / case.name))} \({case.reason}\)", lines[0]), lines


def test_data_info_counts_only_whole_videos(info_run: subprocess.CompletedProcess) -> None:
    assert_clean(info_run, 0)
    assert table_row(info_run, "videos") == "2" and table_row(info_run, "unreadable") == str(len(INFO_CASES))
    assert all(line.startswith("unreadable: ") for line in info_run.stderr.splitlines()), info_run.stderr


# ----------------------------------------------------------------------------------------------------------
# data info on a zip of frame folders: a good folder, a member with a bad CRC, a PNG cut off before it was zipped


ZIP_CASES = {  # folder: reason
    "damaged": "frame 0005.png: damaged zip member (Bad CRC-32 for file 'damaged/0005.png')",
    "cut": "frame 0005.png: truncated PNG (it ends before its IEND chunk)",
}


@pytest.fixture(scope="module")
def zip_info(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path]:
    root = tmp_path_factory.mktemp("zip")
    for folder, damage in (("good", lambda data: data), ("damaged", lambda data: data), ("cut", cut)):
        frame_folder(root / "frames" / folder, damage)
    path = root / "frames.zip"
    with zipfile.ZipFile(path, "w") as archive:  # stored: the zeroed bytes below land in the PNG itself
        for png in sorted((root / "frames").rglob("*.png")):
            archive.write(png, png.relative_to(root / "frames").as_posix())
        member = archive.getinfo(f"damaged/{DAMAGED:04d}.png")
    data = bytearray(path.read_bytes())
    start = member.header_offset + 30 + len(member.filename) + 48  # past the local header, into the PNG's data
    data[start:start + 16] = bytes(16)
    path.write_bytes(bytes(data))
    return run_cli("data", "info", str(path), timeout=TIMEOUT), path


@pytest.mark.parametrize("folder", ZIP_CASES, ids=["data info: zip member with a bad CRC",
                                                   "data info: zip member holding a cut-off PNG"])
def test_data_info_names_damaged_zip_members(folder: str, zip_info: tuple) -> None:
    result, path = zip_info
    assert_clean(result, 0)
    assert unreadable_lines(result, Path(f"{path}/{folder}")) == [f"unreadable: {path}/{folder} ({ZIP_CASES[folder]})"]
    assert table_row(result, "videos") == "1" and table_row(result, "unreadable") == "2"


# ----------------------------------------------------------------------------------------------------------
# Training beside a cut-off mp4 whose index survived: it probes fine, but clips past the cut fail to decode


def test_training_names_a_cut_off_mp4_once(tmp_path: Path) -> None:
    videos = tmp_path / "v"
    videos.mkdir()
    write_mp4(videos / "good.mp4", shapes(0), fps=8)
    cut_mp4(write_faststart)(videos / "cut.mp4")
    result = run_cli("train", "vdm-tiny", "--out", str(tmp_path / "run"), "--max-steps", "2",
                     *set_args([*TINY_VDM, "train.batch_size=2", f"data.source={videos}"]), timeout=TIMEOUT)
    assert_clean(result, 0)
    text = " ".join(result.stderr.split())  # rich wraps long lines at the terminal's width
    skipped = rf"skipped 1 video: {re.escape(str(videos / 'cut.mp4'))} \({CUT_REASON.format(lost=LOST_FRAMES)}\)"
    assert re.search(skipped, text) and text.count("cut.mp4") == 1, result.stderr  # named once, before training
    assert "Warning" not in result.stderr, result.stderr


# ----------------------------------------------------------------------------------------------------------
# Outputs and eval: an output path that cannot be written is one line before the work, an IO error after the
# work keeps the scores, a huge --num does not build its seed list, eval says what it skipped and how far it got

EVAL = ("--device", "cpu", "--workers", "0")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("outputs")


@pytest.fixture(scope="module")
def run(tiny_run: Path) -> Path:
    return tiny_run


@pytest.fixture(scope="module")
def real_videos(root: Path) -> Path:
    """Three readable 16-frame videos and one that is not a video."""
    folder = root / "real"
    folder.mkdir()
    write_videos(folder, num=3, frames=16, size=16)
    (folder / "broken.mp4").write_text("not a video\n")
    return folder


@pytest.fixture(scope="module")
def regular_file(root: Path) -> Path:
    """A file where a folder is expected: creating anything under it fails (ENOTDIR), even for root, which a
    chmod'ed folder does not stop."""
    path = root / "a-file"
    path.write_text("")
    return path


# ----------------------------------------------------------------------------------------------------------
# One error line before any work: output paths, and --num out of range


def _eval(*args: str) -> list[str]:
    return ["eval", "--real", "real-unused", "--fake", "fake-unused", *args, *EVAL]


OUTPUT_ERROR_CASES: dict[str, tuple[Callable[[Path, Path, Path], list[str]], int, str]] = {
    # input: (the command, from (tmp_path, run, regular_file); exit code; what the line says, {tmp}: tmp_path)
    "sample --out under a regular file": (
        lambda tmp, run, blocker: ["sample", str(run), "--out", str(blocker / "samples")], 1,
        "cannot create output folder"),
    "eval --json is a folder": (
        lambda tmp, run, blocker: _eval("--json", str(tmp)), 1,
        "--json {tmp} is a folder; give a file path, such as {tmp}/results.json"),
    "eval --json under a regular file": (
        lambda tmp, run, blocker: _eval("--json", str(blocker / "result.json")), 1,
        "cannot create the folder of --json"),
    "eval --save-stats is a folder": (
        lambda tmp, run, blocker: _eval("--save-stats", str(tmp)), 1,
        "--save-stats {tmp} is a folder; give a file path, such as {tmp}/real-stats.npz"),
    "eval --num 1": (lambda tmp, run, blocker: _eval("--num", "1"), 2, "--num must be >= 2"),
    "eval --num above the protocol's count": (
        lambda tmp, run, blocker: _eval("--num", "4096"), 2,
        "--num 4096 is more than the 2048 videos of fvd2048_16f; give at most 2048"),
    "detectors install into an unusable VIDGEN_HOME": (
        lambda tmp, run, blocker: ["detectors", "install"], 1,
        "cannot create the detector folder"),
}


@pytest.mark.parametrize("name", OUTPUT_ERROR_CASES)
def test_one_error_line_before_the_work(name: str, tmp_path: Path, run: Path, regular_file: Path) -> None:
    make, code, message = OUTPUT_ERROR_CASES[name]
    # VIDGEN_HOME under a regular file: nothing may be written there (detectors install must not call pip).
    result = run_cli(*make(tmp_path, run, regular_file), cwd=tmp_path, timeout=TIMEOUT,
                     env={"VIDGEN_HOME": str(regular_file / "home")})
    assert_one_error_line(result, code, message.format(tmp=tmp_path))
    assert not list(tmp_path.iterdir())  # nothing written


# ----------------------------------------------------------------------------------------------------------
# sample: --num 1000000000 into a folder where the second video cannot be written


@pytest.fixture(scope="module")
def huge_sample(root: Path, run: Path) -> tuple[subprocess.CompletedProcess, Path]:
    out = root / "samples"
    (out / "sample-000001.mp4").mkdir(parents=True)  # a folder in the way of the second video: EISDIR
    result = run_cli("sample", str(run), "--out", str(out), "--num", "1000000000", "--batch-size", "2",
                     "--frames", "2", "--steps", "2", timeout=TIMEOUT)
    return result, out


def test_sample_num_1e9_makes_its_seeds_batch_by_batch(huge_sample: tuple) -> None:
    result, out = huge_sample
    assert_clean(result, 1)  # a list of 10^9 seeds up front would have run out of memory before any video
    assert (out / "sample-000000.mp4").is_file()


def test_sample_write_error_names_the_file_and_the_videos_written(huge_sample: tuple) -> None:
    result, out = huge_sample
    assert_one_error_line(result, 1, f"cannot write {out / 'sample-000001.mp4'}: Is a directory; 1 of 1000000000 "
                                     f"videos were written to {out}")


# ----------------------------------------------------------------------------------------------------------
# eval of a run with --num, against a folder holding an unreadable video, with an unusable VIDGEN_HOME, piped


@pytest.fixture(scope="module")
def eval_of_run(run: Path, real_videos: Path, regular_file: Path, detector_dir: Path) -> subprocess.CompletedProcess:
    return run_cli("eval", "--real", str(real_videos), "--fake", str(run), "--num", "2", "--steps", "2",
                   "--allow-fewer", "--detector-dir", str(detector_dir), *EVAL, timeout=TIMEOUT,
                   env={"VIDGEN_HOME": str(regular_file)})


def _lines(text: str, pattern: str) -> list[str]:
    return [line for line in text.splitlines() if re.search(pattern, line)]


def test_eval_fake_run_generates_the_videos_asked_for(eval_of_run: subprocess.CompletedProcess) -> None:
    assert_clean(eval_of_run, 0)
    # label, value, real, fake: 3 real clips, 2 generated videos (not the protocol's 2,048)
    assert _lines(eval_of_run.stdout, r"fvd2048_16f \(n=2\) .*│ 3 +│ 2 +│ computed"), eval_of_run.stdout


def test_eval_real_lists_unreadable_videos(eval_of_run: subprocess.CompletedProcess, real_videos: Path) -> None:
    assert_clean(eval_of_run, 0)
    lines = _lines(eval_of_run.stderr, "skipped")
    assert len(lines) == 1, eval_of_run.stderr
    assert f"REAL data '{real_videos}': skipped 1 video: {real_videos / 'broken.mp4'} (not a readable video" in lines[0]


def test_eval_with_an_unusable_vidgen_home_skips_the_cache(eval_of_run: subprocess.CompletedProcess) -> None:
    assert_clean(eval_of_run, 0)
    lines = _lines(eval_of_run.stderr, "statistics cache")
    assert len(lines) == 1 and "cannot write the statistics cache" in lines[0], eval_of_run.stderr
    assert "set VIDGEN_HOME to a writable folder, or pass --no-cache" in lines[0]


def test_eval_shows_progress_when_piped(eval_of_run: subprocess.CompletedProcess) -> None:
    assert_clean(eval_of_run, 0)
    assert _lines(eval_of_run.stderr, r"^real fvd2048_16f: 3/3 \(100%\)"), eval_of_run.stderr
    assert _lines(eval_of_run.stderr, r"^fake fvd2048_16f: 2/2 \(100%\)"), eval_of_run.stderr


# ----------------------------------------------------------------------------------------------------------
# eval: --save-stats that cannot be written once the scores exist


def test_eval_save_stats_failing_after_scoring_keeps_the_scores(root: Path, real_videos: Path, tmp_path: Path,
                                                                detector_dir: Path) -> None:
    fake = tmp_path / "fake"
    fake.mkdir()
    write_videos(fake, num=2, frames=16, size=16, seed=7)
    home, out = tmp_path / "home", tmp_path / "result.json"
    # $VIDGEN_HOME/stats does not exist when the path is checked; the statistics cache then makes it a folder,
    # so writing the stats file there fails after the scoring (EISDIR), as a full disk would.
    result = run_cli("eval", "--real", str(real_videos), "--fake", str(fake), "--allow-fewer", "--save-stats",
                     str(home / "stats"), "--json", str(out), "--detector-dir", str(detector_dir), *EVAL,
                     timeout=TIMEOUT, env={"VIDGEN_HOME": str(home)})
    assert_clean(result, 1)
    assert "fvd2048_16f (n=2)" in result.stdout  # the table of scores
    errors = _lines(result.stderr, "^error:")
    assert errors == [result.stderr.strip().splitlines()[-1]], result.stderr
    assert f"could not write --save-stats {home / 'stats'} (Is a directory); the scores are in the table " \
           "above" in errors[0]
    data = json.loads(out.read_text())  # the other output still holds the scores
    assert data["metrics"]["fvd2048_16f"]["num_fake"] == 2 and data["saved_stats"] is None

# ----------------------------------------------------------------------------------------------------------
# Memory that does not grow with the wrong thing: `vidgen sample --time-offset X` on StyleGAN-V renders a window
# far along the time axis. Before, sampling drew motion noise for the whole range [0, X]: 3 GB at X = 1e8 with the
# tiny model, out of memory at 1e12. Each offset runs in its own process, whose peak resident set size the kernel
# reports when it is reaped (os.wait4); a timeout stops a regression before it fills the machine.

LINUX_ONLY = pytest.mark.skipif(sys.platform != "linux", reason="reads ru_maxrss in kilobytes (Linux)")
SAMPLING_TIMEOUT = 60  # seconds; sampling 2 x 16 tiny frames takes a few (before the fix: 3 GB in 15 s at 1e8)
NOISE_MB = 64  # peak RSS varies this much between runs of the same command


@pytest.fixture(scope="module")
def sgv_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("sgv") / "run"
    run_cli("train", "stylegan-v-tiny", "--out", str(run), "--max-steps", "2", *set_args(TINY_SGV), check=True)
    return run


def sample_at(run: Path, out: Path, offset: str) -> tuple[int, str, float]:
    """(exit code, stderr, peak RSS in MB) of `vidgen sample --num 2 --frames 16 --time-offset offset` on the CPU."""
    out.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "vidgen_cli", "sample", str(run), "--out", str(out / "videos"), "--num", "2",
               "--frames", "16", "--time-offset", offset, "--device", "cpu"]
    with open(out / "stderr.txt", "w") as stderr:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr,
                                env={**os.environ, "COLUMNS": "200"})
        timer = threading.Timer(SAMPLING_TIMEOUT, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage (Popen.wait would discard it)
        finally:
            timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, (out / "stderr.txt").read_text(), usage.ru_maxrss / 1024


@pytest.fixture(scope="module")
def peaks(sgv_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, str, float, Path]]:
    """One sampling process per offset, shared by the rows."""
    results = {}
    for offset in ("0", "1e8", "1e12"):
        out = tmp_path_factory.mktemp(f"offset-{offset}")
        results[offset] = (*sample_at(sgv_run, out, offset), out / "videos")
    return results


@LINUX_ONLY
@pytest.mark.parametrize("offset", ["0", "1e8", "1e12"])
def test_sampling_far_along_the_time_axis_works(offset: str, peaks: dict) -> None:
    code, stderr, _, videos = peaks[offset]
    assert code == 0 and "Traceback" not in stderr, stderr
    manifest = json.loads((videos / "samples.json").read_text())
    assert manifest["options"]["time_offset"] == float(offset)
    assert sorted(p.name for p in videos.glob("sample-*.mp4")) == ["sample-000000.mp4", "sample-000001.mp4"]


@LINUX_ONLY
@pytest.mark.parametrize("offset", ["1e8", "1e12"])
def test_sampling_memory_does_not_grow_with_the_time_offset(offset: str, peaks: dict) -> None:
    at_zero, far = peaks["0"][2], peaks[offset][2]
    assert peaks[offset][0] == 0, peaks[offset][1]
    assert far <= at_zero + NOISE_MB, f"peak RSS {far:.0f} MB at --time-offset {offset}, {at_zero:.0f} MB at 0"
