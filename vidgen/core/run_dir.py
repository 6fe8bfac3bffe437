"""The layout of a run directory, its one-writer lock, and its metrics log.

    RUN_DIR/config.yaml      the resolved recipe (also stored in every checkpoint), written atomically
    RUN_DIR/checkpoints/     ckpt-<step>.pt, the last K kept
    RUN_DIR/metrics.jsonl    one JSON record per logged step
    RUN_DIR/samples/         sample grids written during training
    RUN_DIR/.lock            held (flock) by the process training the run; holds its PID
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidgen.core.atomic import atomic_file
from vidgen.errors import UserError


@dataclass(frozen=True)
class RunDir:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def samples(self) -> Path:
        return self.root / "samples"

    def create(self) -> None:
        """Create the folders, or fail with one line if the location is not writable."""
        try:
            for folder in (self.root, self.checkpoints, self.samples):
                folder.mkdir(parents=True, exist_ok=True)
            probe = self.root / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise UserError(f"cannot write to run directory {self.root}: {exc.strerror}; "
                            "choose another --out") from None

    def write_config(self, text: str) -> None:
        """config.yaml := text, atomically and only when it changes: a process killed meanwhile leaves the old
        file or the new one, never an empty one."""
        if self.config.is_file() and self.config.read_text(errors="replace") == text:
            return
        write_atomically(self.config, text)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run for one writer: an exclusive flock on RUN_DIR/.lock for as long as the context lasts. The
        OS releases it when the process ends, however it ends, so a killed run leaves no stale lock. A second
        writer gets one line naming the run and the holder's PID. (flock is advisory and local: it does not guard
        a run directory shared over NFS by two machines.)"""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as handle:  # "a+": no truncation before the lock is ours
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "unknown"
                raise UserError(f"{self.root} is being trained by another process (PID {holder}); wait for it to "
                                "finish or stop it, or train into another --out") from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def write_atomically(path: Path, text: str) -> None:
    with atomic_file(path, "w") as handle:
        handle.write(text)


def ensure_writable_dir(path: Path) -> None:
    """Create `path` or fail with one line (for output folders such as `vidgen sample --out`)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create output folder {path}: {_mkdir_problem(exc)}") from None
    if not os.access(path, os.W_OK):
        raise UserError(f"output folder {path} is not writable; choose another --out")


def check_output_file(path: Path, option: str, example: str) -> None:
    """Fail before any work with one line if `path` cannot take an output file: it is a folder, or its folder
    cannot be created or written (the folder is created here, as the write would). `example`: a file name to
    suggest in place of a folder."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{option} {path} is a folder; give a file path, such as {path / example}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the folder of {option} {path}: {_mkdir_problem(exc)}; choose another "
                        "path") from None
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UserError(f"{option} {path} is not writable; choose another path")


def _mkdir_problem(exc: OSError) -> str:
    # mkdir(exist_ok=True) says "File exists" when a regular file stands where a folder of the path should be.
    return "Not a directory" if isinstance(exc, FileExistsError) else str(exc.strerror)


class MetricsLog:
    """Append-only JSON-lines log. On resume, records after the resumed step are dropped, so the log always
    describes the run that produced the current weights."""

    def __init__(self, path: Path, resume_step: int | None = None) -> None:
        self.path = path
        if resume_step is None:
            write_atomically(path, "")
        elif path.exists():
            kept = [line for line in path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= resume_step]
            write_atomically(path, "".join(line + "\n" for line in kept))

    def write(self, record: dict[str, Any]) -> None:
        try:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as exc:  # a full disk is the user's to fix, not a traceback
            raise UserError(f"cannot append to {self.path}: {exc.strerror}; free some space or make the run "
                            "directory writable, then run the same command again to resume") from None


SAMPLES_MANIFEST = "samples.json"
"""Written by `vidgen sample` beside its videos: which files are samples (not the grid preview) and where
they came from, so `vidgen eval --fake FOLDER` scores exactly the samples."""


def write_samples_manifest(folder: Path, videos: list[Path], **provenance: Any) -> None:
    record = {"videos": [video.name for video in videos], **provenance}
    (folder / SAMPLES_MANIFEST).write_text(json.dumps(record, indent=2) + "\n")


def manifest_videos(folder: Path) -> set[str] | None:
    """File names of the samples listed in `folder`'s manifest (None when it has none)."""
    manifest = folder / SAMPLES_MANIFEST
    if not manifest.is_file():
        return None
    try:
        return set(json.loads(manifest.read_text())["videos"])
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{manifest} is damaged; delete it to score every video in {folder}") from None


def read_metrics(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
