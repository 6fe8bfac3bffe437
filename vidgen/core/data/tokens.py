"""Token datasets: clips encoded once to integer code grids by a stage-1 model (`vidgen data prepare --format
tokens`, vidgen/prepare_tokens.py), so that a prior over the codes (VideoGPT's stage 2) trains on integers instead
of decoding and encoding videos every step.

    OUT/vidgen-tokens.json   metadata: the encoder run (source, checkpoint, step, sha256), the clips (frames,
                             frame stride, resolution, channels: 3 when absent), the code grid (T', H', W') and
                             codebook size, the shards
    OUT/tokens-00000.npy     int16 or int32 [N, T', H', W']: the code grids of N clips
    OUT/labels-00000.npy     int64 [N]: each clip's class (only when prepared with --labels)

A dataset item is one clip: {"codes": long [T', H', W'], "index", and "label" with data.labels}.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from vidgen.core.config import DataConfig
from vidgen.core.files import LazyFile
from vidgen.errors import ConfigError, UserError

TOKENS_META = "vidgen-tokens.json"
TOKENS_FORMAT = "vidgen-tokens"
TOKENS_VERSION = 1
_HINT = "prepare it again with `vidgen data prepare SRC OUT --format tokens --vqvae RUN`"


def is_token_dir(path: str | Path) -> bool:
    return Path(path).expanduser().is_dir() and (Path(path).expanduser() / TOKENS_META).is_file()


def read_token_metadata(path: Path) -> dict[str, Any]:
    """The metadata of a token dataset; a damaged or foreign file is a one-line UserError."""
    try:
        meta = json.loads((path / TOKENS_META).read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path / TOKENS_META} cannot be read ({exc}); {_HINT}") from None
    if not isinstance(meta, dict) or meta.get("format") != TOKENS_FORMAT:
        raise UserError(f"{path / TOKENS_META} is not vidgen's token metadata; {_HINT}")
    if meta.get("version", 0) > TOKENS_VERSION:
        raise UserError(f"{path} was prepared by a newer vidgen (token format {meta.get('version')}); upgrade vidgen")
    try:
        for key in ("frames", "frame_stride", "resolution"):
            int(meta["clip"][key])
        [int(size) for size in meta["latent_shape"]]
        [(str(shard["file"]), int(shard["clips"])) for shard in meta["shards"]]
        meta["encoder"]["sha256"]
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{path / TOKENS_META} is damaged (no clip settings, code grid, shards or encoder); "
                        f"{_HINT}") from None
    return meta


@dataclass(frozen=True)
class _Shard:
    tokens: LazyFile[np.ndarray]
    labels: np.ndarray | None
    first: int
    """Index of the shard's first clip in the dataset."""
    clips: int


class TokenDataset(Dataset):
    """The clips of a token dataset, addressed like VideoDataset by (clip index, seed); the seed is unused (a clip's
    codes are fixed)."""

    skipped: list[tuple[str, str]] = []
    """Nothing is left out at training time (preparing reported what it skipped)."""

    def __init__(self, path: Path, meta: dict[str, Any], shards: list[_Shard], labels: bool) -> None:
        self.path, self.meta, self._shards, self._labels = path, meta, shards, labels
        self._starts = np.array([shard.first for shard in shards])

    @classmethod
    def open(cls, cfg: DataConfig) -> TokenDataset:
        """The token dataset at cfg.source, checked against the recipe's clips: the same frames, stride,
        resolution and channels it was encoded with, and class labels if data.labels asks for them."""
        path = Path(cfg.source).expanduser()
        meta = read_token_metadata(path)
        clip = {"channels": 3, **meta["clip"]}  # token datasets from before data.channels hold RGB clips
        for key in ("frames", "frame_stride", "resolution", "channels"):
            if getattr(cfg, key) != clip[key]:
                raise ConfigError(f"'{cfg.source}' holds tokens of clips with {key} {clip[key]}, but data.{key} is "
                                  f"{getattr(cfg, key)}; set data.{key}: {clip[key]}, or {_HINT}")
        if cfg.labels and not meta.get("labels"):
            raise ConfigError(f"data.labels is true but '{cfg.source}' was prepared without class labels; prepare "
                              "it again with --labels")
        shards, first = [], 0
        grid = tuple(int(size) for size in meta["latent_shape"])
        for entry in meta["shards"]:
            tokens = LazyFile(path / entry["file"], _open_tokens)
            rows = _open_tokens(tokens.path)
            if rows.shape != (int(entry["clips"]), *grid):
                raise UserError(f"{tokens.path} holds {rows.shape}, not the {entry['clips']} code grids {grid} that "
                                f"{TOKENS_META} lists; {_HINT}")
            labels = np.load(path / entry["labels"]) if cfg.labels else None
            shards.append(_Shard(tokens, labels, first, int(entry["clips"])))
            first += int(entry["clips"])
        if not first:
            raise UserError(f"'{cfg.source}' holds no clips; {_HINT}")
        return cls(path, meta, shards, cfg.labels)

    @property
    def encoder_sha256(self) -> str:
        """sha256 of the checkpoint file of the run that encoded the clips."""
        return self.meta["encoder"]["sha256"]

    @property
    def num_classes(self) -> int:
        if not self._labels:
            return 0
        return 1 + max(int(shard.labels.max()) for shard in self._shards)

    def __len__(self) -> int:
        return int(self._starts[-1]) + self._shards[-1].clips

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor | int]:
        index, _ = key
        shard = self._shards[int(np.searchsorted(self._starts, index, side="right")) - 1]
        row = index - shard.first
        item: dict[str, torch.Tensor | int] = {
            "codes": torch.from_numpy(np.asarray(shard.tokens.get()[row], dtype=np.int64)),  # (T', H', W')
            "index": index}
        if shard.labels is not None:
            item["label"] = int(shard.labels[row])
        return item


def _open_tokens(path: Path) -> np.ndarray:
    try:
        array = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as exc:
        reason = "missing" if not path.exists() else f"damaged ({exc})"
        raise UserError(f"token shard {path} is {reason}; {_HINT}") from None
    if array.dtype not in (np.int16, np.int32) or array.ndim != 4:
        raise UserError(f"token shard {path} holds {array.dtype} {array.shape}, not code grids; {_HINT}")
    return array
