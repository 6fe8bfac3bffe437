"""The layout of a run directory, and its metrics log.

    RUN_DIR/config.yaml      the resolved recipe (also stored in every checkpoint)
    RUN_DIR/checkpoints/     ckpt-<step>.pt, the last K kept
    RUN_DIR/metrics.jsonl    one JSON record per logged step
    RUN_DIR/samples/         sample grids written during training
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def ensure_writable_dir(path: Path) -> None:
    """Create `path` or fail with one line (for output folders such as `vidgen sample --out`)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create output folder {path}: {exc.strerror}") from None
    if not os.access(path, os.W_OK):
        raise UserError(f"output folder {path} is not writable; choose another --out")


class MetricsLog:
    """Append-only JSON-lines log. On resume, records after the resumed step are dropped, so the log always
    describes the run that produced the current weights."""

    def __init__(self, path: Path, resume_step: int | None = None) -> None:
        self.path = path
        if resume_step is None:
            path.write_text("")
        elif path.exists():
            kept = [line for line in path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= resume_step]
            path.write_text("".join(line + "\n" for line in kept))

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
