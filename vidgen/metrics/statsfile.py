"""Real-side statistics on disk: `--save-stats` files, `--real stats.npz`, and the automatic cache.

An .npz (read with allow_pickle=False: loading one never runs code) holding, per protocol, the mean and
covariance (Fréchet protocols) or the feature rows (kernel protocols), plus one JSON "meta" string recording
the protocol's exact settings, the detector's sha256, the sample count, the seed and the data fingerprint.
Statistics are used only for the same protocol settings and detector weights; anything else is a UserError.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vidgen import __version__
from vidgen.errors import UserError
from vidgen.metrics.protocols import Protocol

FORMAT = "vidgen-real-stats"
FORMAT_VERSION = 1


@dataclass
class RealStats:
    protocol: Protocol
    detector_sha256: str
    count: int
    """Real clips the statistics summarise."""
    too_short: int
    """Videos left out as shorter than one clip (nonzero only with allow_fewer)."""
    seed: int
    fingerprint: str
    mean: np.ndarray | None = None
    cov: np.ndarray | None = None
    features: np.ndarray | None = None

    def meta(self) -> dict[str, Any]:
        return {"protocol": dataclasses.asdict(self.protocol), "detector_sha256": self.detector_sha256,
                "count": self.count, "too_short": self.too_short, "seed": self.seed, "fingerprint": self.fingerprint}


def save_stats(path: Path, entries: Iterable[RealStats]) -> None:
    """Write the entries to one .npz, atomically."""
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {"format": FORMAT, "version": FORMAT_VERSION, "vidgen": __version__, "entries": {}}
    for entry in entries:
        name = entry.protocol.name
        meta["entries"][name] = entry.meta()
        for key in ("mean", "cov", "features"):
            value = getattr(entry, key)
            if value is not None:
                arrays[f"{name}/{key}"] = value
    arrays["meta"] = np.asarray(json.dumps(meta))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp.npz")
    os.close(fd)
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def load_stats(path: Path) -> dict[str, RealStats]:
    """All entries of a stats file by protocol name."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta.get("format") != FORMAT or meta.get("version") != FORMAT_VERSION:
                raise ValueError("not a vidgen stats file of this version")
            entries = {}
            for name, info in meta["entries"].items():
                arrays = {key: data[f"{name}/{key}"] for key in ("mean", "cov", "features") if f"{name}/{key}" in data}
                entries[name] = RealStats(
                    protocol=Protocol(**info["protocol"]), detector_sha256=info["detector_sha256"],
                    count=int(info["count"]), too_short=int(info["too_short"]), seed=int(info["seed"]),
                    fingerprint=info["fingerprint"], **arrays)
            return entries
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path} is not a readable vidgen stats file ({exc}); write one with --save-stats") from None


def pick_stats(entries: dict[str, RealStats], protocol: Protocol, detector_sha256: str, path: Path) -> RealStats:
    """The entry for `protocol` made with the same settings and detector weights, or a UserError saying why not."""
    entry = entries.get(protocol.name)
    if entry is None:
        raise UserError(f"{path} holds real statistics for {', '.join(entries) or 'nothing'}, not {protocol.name}; "
                        f"evaluate against the dataset itself, or save stats that include {protocol.name}")
    if entry.protocol != protocol:
        raise UserError(f"{path} holds {protocol.name} statistics made with other settings "
                        f"({entry.protocol}); recompute them from the dataset")
    if entry.detector_sha256 != detector_sha256:
        raise UserError(f"{path} holds {protocol.name} statistics from another detector (sha256 "
                        f"{entry.detector_sha256[:16]}..., this one is {detector_sha256[:16]}...); recompute them")
    return entry


def cache_path(cache_dir: Path, fingerprint: str, protocol: Protocol, detector_sha256: str, seed: int) -> Path:
    """Where the cache keeps the real statistics of (data, protocol settings, detector, seed)."""
    key = json.dumps({"data": fingerprint, "protocol": dataclasses.asdict(protocol), "detector": detector_sha256,
                      "seed": seed}, sort_keys=True)
    return Path(cache_dir) / f"{protocol.name}-{hashlib.sha256(key.encode()).hexdigest()[:24]}.npz"
