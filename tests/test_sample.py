"""`vidgen.sample.sample` as a library: seeds made batch by batch (memory does not grow with `num` before the first
video), the manifest's seed range, and IO errors while writing as one line that says how far sampling got."""

from __future__ import annotations

import errno
import json
import os
import tracemalloc
from pathlib import Path

import pytest
from rich.console import Console

from tests.conftest import TINY_VDM
from vidgen.errors import UserError
from vidgen.sample import sample

QUIET = Console(quiet=True)
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
