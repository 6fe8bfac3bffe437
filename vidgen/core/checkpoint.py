"""Checkpoints: plain data (state dicts, config, step, RNG states), written atomically, verified, loaded safely.

A checkpoint is never code: it is loaded with `torch.load(weights_only=True)`, so a file from elsewhere cannot
execute anything. Writes go to a temporary file that is fsynced and then renamed over the final name, so a
crash mid-write never leaves a half-written file where the last good checkpoint is expected. Damage after the
write (a flipped bit on disk, a truncated copy) is detected before use: torch.save writes a zip archive that
records a CRC-32 of every record (the pickled structure and each tensor's bytes), and every load checks them all.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import IO, Any

import torch

from vidgen import __version__
from vidgen.core.atomic import atomic_file
from vidgen.errors import UserError

FORMAT = "vidgen-checkpoint"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("config", "step", "networks", "ema", "backend")
"""What sampling and resuming read from every checkpoint."""
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


def find_checkpoint(run_or_checkpoint: Path) -> Path:
    """A checkpoint file, the latest checkpoint of a run directory (its checkpoints/ folder), or an export
    directory itself (`vidgen export`: load it with load_export, not load_checkpoint)."""
    if run_or_checkpoint.is_file():
        return run_or_checkpoint
    if is_export(run_or_checkpoint):
        return run_or_checkpoint
    if run_or_checkpoint.is_dir():
        latest = latest_checkpoint(run_or_checkpoint / "checkpoints")
        if latest is None:
            raise UserError(f"{run_or_checkpoint} holds no checkpoints; train it first (vidgen train ...)")
        return latest
    raise UserError(f"{run_or_checkpoint} is neither a run directory nor a checkpoint file")


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Atomically write `state` (plus format markers) to `path` (vidgen.core.atomic)."""
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "vidgen_version": __version__, **state}
    with atomic_file(path) as handle:
        writer = _KeepWriteErrors(handle)
        try:
            torch.save(payload, writer)
        except RuntimeError:
            if writer.error is None:
                raise
            raise writer.error from None  # e.g. ENOSPC: the caller can say what happened in one line


class _KeepWriteErrors:
    """A file wrapper that keeps the OSError a write raised: torch.save reports a failed write (a full disk) as
    a RuntimeError of its zip writer ("unexpected pos ..."), without the reason."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle = handle
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self.handle.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.handle.flush()


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


class DamagedCheckpoint(UserError):
    """A checkpoint file that is not an intact torch archive: damaged on disk, truncated, or another file."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"checkpoint {path} is damaged: {reason}; use another checkpoint of the same run")
        self.path = path
        self.reason = reason


def verify_checkpoint(path: Path) -> None:
    """Check the CRC-32 of every record of the archive (reading it once; the page cache then serves the load).
    A file that is not a zip archive at all (a text file, a legacy pickle) or whose records fail their checks
    raises DamagedCheckpoint."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, EOFError, ValueError) as exc:  # not an archive, or its directory is damaged
        raise DamagedCheckpoint(path, f"it is not an intact torch archive ({_first_line(exc)})") from None
    except OSError as exc:
        raise UserError(f"cannot read checkpoint {path}: {exc.strerror}") from None
    if bad is not None:
        raise DamagedCheckpoint(path, f"its record '{bad}' fails its CRC-32 check")


def load_checkpoint(path: Path, expected_model: str | None = None) -> dict[str, Any]:
    """Load a vidgen checkpoint on the CPU after verifying it; a damaged, foreign or too-new file is a one-line
    UserError (DamagedCheckpoint when the file itself is damaged)."""
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    verify_checkpoint(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # weights_only refused an object: the file would run code to load
        raise UserError(f"{path} holds objects other than tensors and plain data, which vidgen never loads "
                        "(loading them could run code); it is not a vidgen checkpoint") from None
    except (RuntimeError, EOFError, ValueError, KeyError, IndexError, OSError) as exc:
        raise DamagedCheckpoint(path, f"torch cannot read it ({_first_line(exc)})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"{path} is not a vidgen checkpoint")
    if state.get("format_version", 0) > FORMAT_VERSION:
        raise UserError(f"checkpoint {path} was written by a newer vidgen ({state.get('vidgen_version')}); "
                        f"upgrade vidgen (this is {__version__}) to load it")
    missing = [key for key in REQUIRED_KEYS if key not in state]
    if missing:
        raise UserError(f"{path} is not a complete vidgen checkpoint (it has no '{missing[0]}')")
    model = state.get("config", {}).get("model", {}).get("name")
    if expected_model is not None and model != expected_model:
        raise UserError(f"checkpoint {path} holds a '{model}' model, not '{expected_model}'")
    return state


def load_weights(module: torch.nn.Module, weights: dict[str, Any], source: str | Path) -> None:
    """module.load_state_dict(weights), strictly; weights that do not fit the network the checkpoint's own config
    builds (another vidgen version's layout, an edited file) are a one-line UserError."""
    try:
        module.load_state_dict(weights)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())
        raise UserError(f"the weights in {source} do not fit the network its config describes ({detail[:200]}); "
                        "it was written by another version of vidgen or altered") from None


# --- Exports (`vidgen export`): sampling weights as safetensors, beside the resolved recipe as YAML ---

EXPORT_WEIGHTS = "model.safetensors"
"""The sampling weights (EMA copies where the backend has them): the state dict of the backend's networks."""
EXPORT_CONFIG = "config.yaml"
"""The resolved recipe (Recipe.to_dict())."""
EXPORT_STAGE1 = "stage1.yaml"
"""A two-stage family's record of its frozen first stage (its config, where it came from); its weights are in
EXPORT_WEIGHTS with the rest of the networks."""
EXPORT_FORMAT = "vidgen-export"


def is_export(path: Path) -> bool:
    """A directory written by `vidgen export` (model.safetensors beside config.yaml)."""
    return path.is_dir() and (path / EXPORT_WEIGHTS).is_file() and (path / EXPORT_CONFIG).is_file()


def load_export(path: Path) -> dict[str, Any]:
    """An export directory as the parts of a checkpoint that sampling reads (config, step, networks, ema,
    backend, upstream). Nothing is unpickled: the weights are safetensors, the rest YAML and JSON."""
    import json

    import yaml
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    weights_path = path / EXPORT_WEIGHTS
    try:
        with safe_open(str(weights_path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        weights = load_file(str(weights_path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"{weights_path} is damaged or not a safetensors file ({_first_line(exc)}); "
                        "export the run again") from None
    if metadata.get("format") != EXPORT_FORMAT:
        raise UserError(f"{weights_path} was not written by vidgen export")
    config = _read_plain_yaml(path / EXPORT_CONFIG, yaml)
    stage1 = path / EXPORT_STAGE1
    upstream = _read_plain_yaml(stage1, yaml) if stage1.is_file() else None
    return {"config": config, "step": int(metadata.get("step", 0)), "networks": weights, "ema": {},
            "backend": json.loads(metadata.get("backend", "{}")), "upstream": upstream}


def _read_plain_yaml(path: Path, yaml: Any) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"cannot read {path} ({_first_line(exc)}); export the run again") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} is not a mapping; export the run again")
    return data


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:120] if text else type(exc).__name__
