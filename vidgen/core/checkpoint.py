"""Checkpoints: plain data (state dicts, config, step, RNG states), written atomically, loaded safely.

A checkpoint is never code: it is loaded with `torch.load(weights_only=True)`, so a file from elsewhere cannot
execute anything. Writes go to a temporary file that is fsynced and then renamed over the final name, so a
crash mid-write never leaves a half-written file where the last good checkpoint is expected.
"""

from __future__ import annotations

import os
import pickle
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from vidgen import __version__
from vidgen.errors import UserError

FORMAT = "vidgen-checkpoint"
FORMAT_VERSION = 1
_NAME = re.compile(r"^ckpt-(\d+)\.pt$")
_TEMP = re.compile(r"^\..+\.pt\..*\.tmp$")
"""Temporary files of save_checkpoint (".ckpt-00000200.pt.k3j9x.tmp", ".best.pt.k3j9x.tmp")."""


def checkpoint_path(directory: Path, step: int) -> Path:
    return directory / f"ckpt-{step:08d}.pt"


def list_checkpoints(directory: Path) -> list[Path]:
    """Complete checkpoints in `directory`, oldest first (temporary files are ignored)."""
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(directory: Path) -> Path | None:
    found = list_checkpoints(directory)
    return found[-1] if found else None


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Atomically write `state` (plus format markers) to `path`: temp file, fsync, rename, fsync the dir."""
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "vidgen_version": __version__, **state}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def remove_stale_temp_files(directory: Path) -> list[Path]:
    """Delete what a save that died mid-write left behind (it never replaced a checkpoint: see save_checkpoint).
    Call it only while no save is running, as a run starts; returns the files deleted."""
    if not directory.is_dir():
        return []
    stale = [p for p in directory.iterdir() if _TEMP.match(p.name) and p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def prune_checkpoints(directory: Path, keep: int) -> None:
    """Delete all but the newest `keep` checkpoints."""
    for old in list_checkpoints(directory)[:-keep]:
        old.unlink(missing_ok=True)


def load_checkpoint(path: Path, expected_model: str | None = None) -> dict[str, Any]:
    """Load a vidgen checkpoint on the CPU; a damaged, foreign or too-new file is a one-line UserError."""
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, ValueError, OSError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"checkpoint {path} is damaged or not a torch file ({reason[:120]}); "
                        "use an earlier checkpoint from the same run") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"{path} is not a vidgen checkpoint")
    if state.get("format_version", 0) > FORMAT_VERSION:
        raise UserError(f"checkpoint {path} was written by a newer vidgen ({state.get('vidgen_version')}); "
                        f"upgrade vidgen (this is {__version__}) to load it")
    model = state.get("config", {}).get("model", {}).get("name")
    if expected_model is not None and model != expected_model:
        raise UserError(f"checkpoint {path} holds a '{model}' model, not '{expected_model}'")
    return state


def _fsync_dir(directory: Path) -> None:
    # The rename itself is only durable once the directory entry is on disk.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
