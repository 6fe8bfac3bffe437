"""`vidgen data prepare SRC OUT --format tokens --vqvae RUN`: encode a dataset once to code grids.

A prior over a VQ-VAE's codes (VideoGPT's stage 2) would otherwise decode, resize and encode every clip at every
step. Here each video of SRC is cut into consecutive, non-overlapping clips of the VQ-VAE run's own data.frames at
its data.frame_stride and data.resolution (resized and centre-cropped as the training loader does), and each clip
is encoded by the run's VQ-VAE, in eval mode, in batches. The format is vidgen/core/data/tokens.py.

Resumable as the other prepared formats: shard k holds the clips of videos [k·V, (k+1)·V) of SRC in name order,
written atomically into a hidden work folder beside OUT (`.OUT.prepare/`) with the settings it was started with.
Rerunning the same command after an interruption encodes only the missing shards; OUT appears in one rename at the
end. Unreadable videos and videos shorter than one clip are skipped and listed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

from vidgen import __version__
from vidgen.core import layout
from vidgen.core.checkpoint import find_checkpoint, load_checkpoint
from vidgen.core.data.dataset import resize_center_crop
from vidgen.core.data.labels import read_labels
from vidgen.core.data.sources import StoredVideo, find_videos, summarize_skipped
from vidgen.core.data.tokens import TOKENS_FORMAT, TOKENS_META, TOKENS_VERSION, read_token_metadata
from vidgen.core.device import resolve_device
from vidgen.core.files import sha256_file
from vidgen.core.io import VideoReadError
from vidgen.core.progress import task_progress
from vidgen.errors import ConfigError, UserError
from vidgen.upstream import backend_from_checkpoint

VIDEOS_PER_SHARD = 256
"""Shard k holds the clips of videos [k·256, (k+1)·256): small enough to lose little to an interruption."""


@dataclass(frozen=True)
class TokensResult:
    out: Path
    videos: int
    clips: int
    latent_shape: tuple[int, int, int]
    skipped: list[tuple[str, str]]
    already_done: bool = False


def prepare_tokens(source: str | Path, out: str | Path, vqvae: str | Path, labels: bool = False,
                   batch_size: int = 16, device: str = "auto", console: Console | None = None) -> TokensResult:
    """Encode every clip of `source` with the tokenizer run `vqvae` (a run directory or checkpoint) into `out`."""
    source, out = Path(source).expanduser(), Path(out).expanduser()
    console = console or Console(stderr=True)
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
    checkpoint = find_checkpoint(Path(vqvae).expanduser())
    encoder = {"source": str(vqvae), "checkpoint": str(checkpoint), "sha256": sha256_file(checkpoint)}
    if out.exists():
        return _already_prepared(out, encoder, labels)

    # --- The tokenizer, and the clips it was trained on ---
    state = load_checkpoint(checkpoint)
    recipe, backend = backend_from_checkpoint(state, str(checkpoint))
    if not backend.makes_tokens:
        raise UserError(f"a '{recipe.model.name}' run does not encode videos to tokens; --vqvae needs a run of a "
                        "tokenizer such as videogpt-vqvae")
    dev = resolve_device(device)
    backend.networks.to(dev)
    clip = {"frames": recipe.data.frames, "frame_stride": recipe.data.frame_stride,
            "resolution": recipe.data.resolution}
    encoder.update(step=state["step"], model=recipe.model.name)
    videos, skipped = find_videos(source)
    span = (clip["frames"] - 1) * clip["frame_stride"] + 1
    skipped += [(v.name, f"{v.num_frames} frames, shorter than one clip of {span}") for v in videos
                if v.num_frames < span]
    videos = [v for v in videos if v.num_frames >= span]
    if not videos:
        raise UserError(f"no video of '{source}' holds a clip of {span} frames ({summarize_skipped(skipped)})")
    video_labels = read_labels(source, videos) if labels else None

    # --- Encode shard by shard into the work folder (shards finished by an interrupted call are kept) ---
    settings = {"source": str(source.resolve()), "encoder": encoder, "clip": clip, "labels": labels}
    work = _work_folder(out, settings)
    groups = [range(start, min(start + VIDEOS_PER_SHARD, len(videos)))
              for start in range(0, len(videos), VIDEOS_PER_SHARD)]
    with task_progress(console, "encode", total=len(videos)) as advance:
        for index, group in enumerate(groups):
            if (work / _shard_name(index)).is_file():
                advance(len(group))
                continue
            codes, clip_labels, failed = _encode(backend, [videos[i] for i in group], clip, batch_size, dev,
                                                 None if video_labels is None else [video_labels[i] for i in group],
                                                 advance)
            skipped += failed
            if labels:
                _save_atomically(work / _labels_name(index), clip_labels)
            _save_atomically(work / _shard_name(index), codes)  # last: it marks the shard done

    # --- Metadata, then OUT in one rename ---
    shards, clips, grid = [], 0, None
    for index in range(len(groups)):
        rows = np.load(work / _shard_name(index), mmap_mode="r")
        grid = grid or tuple(int(size) for size in rows.shape[1:])
        shards.append({"file": _shard_name(index), "clips": len(rows),
                       "labels": _labels_name(index) if labels else None})
        clips += len(rows)
    if not clips:
        raise UserError(f"no clip of '{source}' could be encoded ({summarize_skipped(skipped)})")
    meta = {"format": TOKENS_FORMAT, "version": TOKENS_VERSION, "vidgen_version": __version__,
            "source": str(source), "encoder": encoder, "clip": clip, "latent_shape": list(grid),
            "n_codes": int(backend.networks["vqvae"].codebook.n_codes), "labels": labels, "videos": len(videos),
            "clips": clips, "shards": shards, "skipped": [list(item) for item in skipped]}
    (work / TOKENS_META).write_text(json.dumps(meta, indent=1))
    os.replace(work, out)
    return TokensResult(out, len(videos), clips, grid, skipped)


def clip_starts(num_frames: int, frames: int, stride: int) -> range:
    """First frames of the consecutive, non-overlapping clips of `frames` frames at `stride` in a video."""
    span = (frames - 1) * stride + 1
    return range(0, num_frames - span + 1, frames * stride)


def _encode(backend: Any, videos: Sequence[StoredVideo], clip: dict[str, int], batch_size: int,
            device: torch.device, labels: Sequence[int] | None, advance: Any
            ) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
    """Code grids [N, T', H', W'] of every clip of `videos`, each clip's label (or -1), and the videos that failed
    to decode."""
    codes: list[np.ndarray] = []
    clip_labels: list[int] = []
    failed: list[tuple[str, str]] = []
    for batch, batch_labels in _clip_batches(videos, clip, batch_size, labels, failed, advance):
        with torch.no_grad():
            grids = backend.encode_tokens(layout.to_model(torch.stack(batch).to(device)))  # (B, T', H', W')
        codes.append(grids.cpu().numpy())
        clip_labels += batch_labels
    dtype = np.int16 if backend.networks["vqvae"].codebook.n_codes <= np.iinfo(np.int16).max else np.int32
    grid = codes[0].shape[1:] if codes else (0, 0, 0)
    stacked = np.concatenate(codes).astype(dtype) if codes else np.zeros((0, *grid), dtype)
    return stacked, np.array(clip_labels, dtype=np.int64), failed


def _clip_batches(videos: Sequence[StoredVideo], clip: dict[str, int], batch_size: int,
                  labels: Sequence[int] | None, failed: list[tuple[str, str]], advance: Any
                  ) -> Iterator[tuple[list[torch.Tensor], list[int]]]:
    """Batches of clips (uint8 [F, R, R, 3] each) and their labels, video after video."""
    batch: list[torch.Tensor] = []
    batch_labels: list[int] = []
    for i, video in enumerate(videos):
        starts = clip_starts(video.num_frames, clip["frames"], clip["frame_stride"])
        for start in starts:
            indices = start + np.arange(clip["frames"]) * clip["frame_stride"]
            try:
                pixels = video.read(indices)
            except VideoReadError as exc:
                failed.append((video.name, exc.reason))
                break
            batch.append(resize_center_crop(pixels, clip["resolution"]))
            batch_labels.append(-1 if labels is None else labels[i])
            if len(batch) == batch_size:
                yield batch, batch_labels
                batch, batch_labels = [], []
        advance(1)
    if batch:
        yield batch, batch_labels


def _work_folder(out: Path, settings: dict[str, Any]) -> Path:
    """The hidden folder beside OUT holding a preparation under way with these settings (created if need be)."""
    work = out.parent / f".{out.name}.prepare"
    file = work / "settings.json"
    try:
        work.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create {work}: {exc.strerror}; choose another OUT") from None
    if file.is_file():
        if json.loads(file.read_text()) != settings:
            raise UserError(f"{work} holds an unfinished preparation with other settings (source, VQ-VAE or "
                            "labels); rerun that command to finish it, or delete the folder")
    else:
        file.with_suffix(".tmp").write_text(json.dumps(settings))
        os.replace(file.with_suffix(".tmp"), file)
    return work


def _already_prepared(out: Path, encoder: dict[str, Any], labels: bool) -> TokensResult:
    if not (out / TOKENS_META).is_file():
        raise UserError(f"'{out}' already exists and is not a token dataset; choose another OUT")
    meta = read_token_metadata(out)
    if meta["encoder"]["sha256"] != encoder["sha256"] or bool(meta.get("labels")) != labels:
        raise UserError(f"'{out}' already holds tokens of another VQ-VAE ({meta['encoder']['checkpoint']}) or other "
                        "labels; delete it to prepare it again, or choose another OUT")
    return TokensResult(out, int(meta["videos"]), int(meta["clips"]), tuple(meta["latent_shape"]),
                        [tuple(item) for item in meta["skipped"]], already_done=True)


def _shard_name(index: int) -> str:
    return f"tokens-{index:05d}.npy"


def _labels_name(index: int) -> str:
    return f"labels-{index:05d}.npy"


def _save_atomically(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as file:
        np.save(file, array)
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)
