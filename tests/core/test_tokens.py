"""Token datasets are checked against the recipe's clips, channels included."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vidgen.core.config import DataConfig
from vidgen.core.data.tokens import TOKENS_FORMAT, TOKENS_META, TOKENS_VERSION, TokenDataset
from vidgen.errors import ConfigError


def _token_dir(path: Path, clip: dict) -> Path:
    path.mkdir()
    np.save(path / "tokens-00000.npy", np.zeros((3, 2, 4, 4), np.int16))
    meta = {"format": TOKENS_FORMAT, "version": TOKENS_VERSION, "clip": clip, "latent_shape": [2, 4, 4],
            "encoder": {"sha256": "0" * 64}, "shards": [{"file": "tokens-00000.npy", "clips": 3}]}
    (path / TOKENS_META).write_text(json.dumps(meta))
    return path


def test_token_clips_must_have_the_recipes_channels(tmp_path: Path) -> None:
    clip = {"frames": 4, "frame_stride": 1, "resolution": 16}
    rgb = _token_dir(tmp_path / "rgb", clip)  # written before data.channels: RGB clips
    settings = {"frames": 4, "frame_stride": 1, "resolution": 16}
    assert len(TokenDataset.open(DataConfig(source=str(rgb), **settings))) == 3
    with pytest.raises(ConfigError, match="channels 3, but data.channels is 1; set data.channels: 3"):
        TokenDataset.open(DataConfig(source=str(rgb), channels=1, **settings))
    gray = _token_dir(tmp_path / "gray", {**clip, "channels": 1})
    assert len(TokenDataset.open(DataConfig(source=str(gray), channels=1, **settings))) == 3
    with pytest.raises(ConfigError, match="channels 1, but data.channels is 3"):
        TokenDataset.open(DataConfig(source=str(gray), **settings))
