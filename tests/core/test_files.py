"""LazyFile (an open file per process, never pickled) and file_fingerprint, on real files."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import pytest

from vidgen.core.files import LazyFile, file_fingerprint


def test_a_lazy_file_opens_once_per_process_and_never_travels_in_a_pickle(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "frames.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a/0.png", b"frame")
    lazy = LazyFile(path, zipfile.ZipFile)
    first = lazy.get()
    assert lazy.get() is first and first.read("a/0.png") == b"frame"
    # An open ZipFile cannot be pickled at all: the copy (what a spawned worker gets) opens its own.
    copy = pickle.loads(pickle.dumps(lazy))
    assert copy.path == path and copy.get() is not first and copy.get().read("a/0.png") == b"frame"
    # A forked worker inherits the object with its parent's handle: another process id opens a new one.
    monkeypatch.setattr(os, "getpid", lambda: -1)
    assert lazy.get() is not first


def test_a_file_fingerprint_changes_with_its_file(tmp_path: Path) -> None:
    path = tmp_path / "video.mp4"
    path.write_bytes(b"12345")
    stat = path.stat()
    assert file_fingerprint(path, 9) == f"9:5:{stat.st_mtime_ns}"  # the form prepared datasets record
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1000))
    assert file_fingerprint(path, 9) == f"9:5:{stat.st_mtime_ns + 1000}"
    assert file_fingerprint(tmp_path / "gone.mp4", 9) == "9:0:0"
