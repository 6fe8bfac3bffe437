"""The files that data sources read from: opened once per process (LazyFile), fingerprinted by size and time."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

Handle = TypeVar("Handle")


class LazyFile(Generic[Handle]):
    """`opener(path)`, called on first use in each process: a zip archive, a memory-mapped shard.

    An open file must not cross into another process. Forked DataLoader workers would share its OS file handle,
    and with it the read position (corrupting each other's reads), and a pickled memory map carries its whole
    array (what a spawned worker receives). So the handle is dropped when pickled and reopened when the process
    id changes. `opener` is pickled by name: a class or a module-level function.
    """

    def __init__(self, path: Path, opener: Callable[[Path], Handle]) -> None:
        self.path = path
        self._opener = opener
        self._handle: Handle | None = None
        self._pid: int | None = None

    def get(self) -> Handle:
        """This process's open file."""
        if self._handle is None or self._pid != os.getpid():
            self._handle, self._pid = self._opener(self.path), os.getpid()
        return self._handle

    def __getstate__(self) -> dict[str, object]:
        return {**self.__dict__, "_handle": None, "_pid": None}


def file_fingerprint(path: Path, num_frames: int) -> str:
    """"frames:size:mtime" of a video and the file it is read from (0:0 when the file is gone): changes when the
    file is replaced or touched."""
    stat = path.stat() if path.exists() else None
    return f"{num_frames}:{stat.st_size if stat else 0}:{stat.st_mtime_ns if stat else 0}"


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
