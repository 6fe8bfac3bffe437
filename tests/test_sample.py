"""`vidgen.sample.sample` as a library: seeds made batch by batch (memory does not grow with `num` before the first
video), the manifest's seed range, IO errors while writing as one line that says how far sampling got, and
predictions from a --context clip (K seeds, K futures of it) with the one-line errors of a clip that does not fit."""

from __future__ import annotations

import errno
import json
import os
import re
import tracemalloc
from pathlib import Path

import pytest
import torch
from rich.console import Console

from tests.conftest import TINY_SGV, TINY_VDM, run_cli
from vidgen.errors import UserError
from vidgen.sample import sample

QUIET = Console(quiet=True)
CPU = torch.device("cpu")
FAST = {"frames": 2, "steps": 2, "batch_size": 2}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vidgen.recipe import load_recipe
    from vidgen.train import train

    root = tmp_path_factory.mktemp("sample")
    train(load_recipe("vdm-tiny", [*TINY_VDM, "train.max_steps=1"]), root / "run", device="cpu", console=QUIET)
    return root / "run"


def _failing_after(written: int, error: int):  # noqa: ANN202 - a stand-in for vidgen.core.io.write_mp4
    from vidgen.core import io

    real, calls = io.write_mp4, []

    def write_mp4(path, frames, fps, crf=18):  # noqa: ANN001, ANN202
        calls.append(path)
        if len(calls) > written:
            raise OSError(error, os.strerror(error))
        real(path, frames, fps, crf)

    return write_mp4


def test_a_billion_videos_start_at_once_and_a_full_disk_says_how_far(run, tmp_path, monkeypatch):
    monkeypatch.setattr("vidgen.core.io.write_mp4", _failing_after(2, errno.ENOSPC))
    tracemalloc.start()
    try:
        with pytest.raises(UserError) as caught:
            sample(run, tmp_path / "s", {"num": 10**9, **FAST}, device="cpu", console=QUIET)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(caught.value) == (f"cannot write {tmp_path / 's' / 'sample-000002.mp4'}: No space left on device; "
                                 f"2 of 1000000000 videos were written to {tmp_path / 's'}; free some space or "
                                 "choose another --out, then sample again")
    assert peak < 64 * 2**20  # a list of 10^9 seeds alone is 8 GB of pointers
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["sample-000000.mp4", "sample-000001.mp4"]


def test_the_manifest_stores_the_seed_range_and_eval_reads_it(run, tmp_path):
    from vidgen.metrics.sources import index_videos

    result = sample(run, tmp_path / "s", {"num": 3, "seed": 5, **FAST}, device="cpu", console=QUIET)
    manifest = json.loads((tmp_path / "s" / "samples.json").read_text())
    assert manifest["seeds"] == {"start": 5, "count": 3}
    assert manifest["videos"] == ["sample-000005.mp4", "sample-000006.mp4", "sample-000007.mp4"]
    assert [Path(v.name).name for v in index_videos(tmp_path / "s", "FAKE")] == manifest["videos"]  # not the grid
    assert result.videos == [tmp_path / "s" / name for name in manifest["videos"]]


def test_a_write_error_after_the_videos_names_the_file(run, tmp_path, monkeypatch):
    def read_only(path, image):  # noqa: ANN001, ANN202
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr("vidgen.core.io.write_png", read_only)  # the contact sheet is a PNG
    with pytest.raises(UserError, match=r"cannot write .*contact_sheet.png: Read-only file system; 3 of 3 videos "
                                        r"were written to"):
        sample(run, tmp_path / "s", {"num": 3, **FAST}, device="cpu", console=QUIET)


# ----------------------------------------------------------------------------------------------------------
# Prediction: --context


@pytest.fixture(scope="module")
def context_clip(run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six frames of the run's own data, written as an mp4 (16x16, the tiny model's size)."""
    from vidgen.core import layout
    from vidgen.core.io import write_mp4
    from vidgen.sample import load_for_sampling

    _, backend = load_for_sampling(run, CPU)
    clip = layout.to_uint8(backend.dataset_clips(None, [3], 6, CPU))[0].numpy()  # (6, 16, 16, 3)
    path = tmp_path_factory.mktemp("context") / "clip.mp4"
    write_mp4(path, clip, fps=8)
    return path


def test_k_seeds_give_k_futures_of_one_context_each_starting_with_it(run, context_clip, tmp_path):
    from vidgen.core.io import read_video

    result = sample(run, tmp_path / "s", {"num": 3, "context": str(context_clip), "context_frames": 2,
                                          "frames": 5, "steps": 2}, device="cpu", console=QUIET)
    videos = [read_video(path).astype(int) for path in result.videos]  # (5, 16, 16, 3) each
    context = read_video(context_clip).astype(int)
    for video in videos:  # both through the codec once more: equal up to its rounding
        assert abs(video[:2] - context[:2]).mean() < 3
    assert abs(videos[0][2:] - videos[1][2:]).mean() > 3, "different seeds, different futures"
    manifest = json.loads((tmp_path / "s" / "samples.json").read_text())
    assert manifest["options"]["context"] == str(context_clip) and manifest["options"]["context_frames"] == 2


@pytest.mark.parametrize("options, message", [
    ({"context_frames": 7, "frames": 9}, "has 6 frames, fewer than the 7 context frames; give a longer clip or "
                                         "--context-frames 6"),
    ({"context_frames": 4, "frames": 4}, "--frames 4 must exceed the 4 context frames"),
    ({"context_frames": 0}, "sample.context_frames (--context-frames) must be > 0"),
])
def test_a_context_that_does_not_fit_is_one_line(run, context_clip, tmp_path, options, message):
    from vidgen.errors import ConfigError

    with pytest.raises((UserError, ConfigError), match=re.escape(message)):
        sample(run, tmp_path / "s", {"context": str(context_clip), **options}, device="cpu", console=QUIET)


def test_a_context_at_another_size_says_how_to_resize_it(run, tmp_path):
    import numpy as np

    from vidgen.core.io import write_mp4

    write_mp4(tmp_path / "big.mp4", np.zeros((4, 32, 32, 3), np.uint8), fps=8)
    result = run_cli("sample", str(run), "--out", str(tmp_path / "s"), "--device", "cpu", "--context",
                     str(tmp_path / "big.mp4"), "--frames", "6")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (f"error: --context {tmp_path / 'big.mp4'} is 32x32 but the model makes 16x16 "
                                     "frames; resize it first (e.g. ffmpeg -i IN -vf scale=16:16 OUT.mp4)")


def test_context_on_a_family_that_cannot_predict_is_one_line(tmp_path, context_clip):
    from vidgen.recipe import load_recipe
    from vidgen.train import train

    train(load_recipe("stylegan-v-tiny", [*TINY_SGV, "train.max_steps=1"]), tmp_path / "run", device="cpu",
          console=QUIET)
    result = run_cli("sample", str(tmp_path / "run"), "--out", str(tmp_path / "s"), "--context", str(context_clip))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--context does not apply to a 'stylegan-v' model" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
