"""`vidgen data prepare --format tokens` (vidgen/prepare_tokens.py) and the token dataset it writes
(vidgen/core/data/tokens.py): codes equal to the VQ-VAE's own, resumable, checked against the prior's VQ-VAE."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console

from tests.conftest import run_cli, set_args, stage_one_overrides
from vidgen.core import layout
from vidgen.core.data.dataset import build_dataset, resize_center_crop
from vidgen.core.data.sources import find_videos
from vidgen.core.data.tokens import TokenDataset
from vidgen.core.run_dir import read_metrics
from vidgen.core.synthetic import SceneStyle, write_synthetic_dataset
from vidgen.errors import ConfigError, UserError
from vidgen.models.registry import BACKENDS
from vidgen.prepare_tokens import VIDEOS_PER_SHARD, clip_starts, prepare_tokens
from vidgen.recipe import load_recipe
from vidgen.sample import load_for_sampling
from vidgen.train import train

CPU = torch.device("cpu")
QUIET = Console(quiet=True)
PRIOR = BACKENDS["videogpt"]


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """Six mp4 files of 10 frames at 16x16: two clips of 4 frames each (frames 8 and 9 are left over)."""
    folder = tmp_path_factory.mktemp("videos")
    write_synthetic_dataset(folder, num=6, frames=10, size=16, fps=8, seed=0, style=SceneStyle())
    return folder


def test_clips_are_consecutive_and_do_not_overlap():
    assert list(clip_starts(10, 4, 1)) == [0, 4]
    assert list(clip_starts(16, 4, 2)) == [0, 8]
    assert list(clip_starts(3, 4, 1)) == []


def test_tokens_are_the_vqvae_codes_of_every_clip_in_order(videos, stage_one_runs, tmp_path):
    run = stage_one_runs["videogpt-vqvae"]
    result = prepare_tokens(videos, tmp_path / "tokens", run, batch_size=3, device="cpu", console=QUIET)
    assert (result.videos, result.clips, result.latent_shape) == (6, 12, (2, 4, 4))
    meta = json.loads((tmp_path / "tokens" / "vidgen-tokens.json").read_text())
    assert meta["clip"] == {"frames": 4, "frame_stride": 1, "resolution": 16}
    codes = np.load(tmp_path / "tokens" / "tokens-00000.npy")
    assert codes.dtype == np.int16 and codes.shape == (12, 2, 4, 4)

    _, backend = load_for_sampling(run, CPU)
    stored, _ = find_videos(videos)
    clips = [resize_center_crop(video.read(np.arange(start, start + 4)), 16) for video in stored
             for start in (0, 4)]
    expected = backend.encode_tokens(layout.to_model(torch.stack(clips)))  # all at once: batch-independent
    np.testing.assert_array_equal(codes, expected.numpy())

    dataset = build_dataset(load_recipe(PRIOR.tiny_recipe, [*stage_one_overrides(PRIOR, stage_one_runs),
                                                            f"data.source={tmp_path / 'tokens'}"]).data, seed=0)
    assert isinstance(dataset, TokenDataset) and len(dataset) == 12
    assert torch.equal(dataset[(7, 123)]["codes"], torch.from_numpy(codes[7]).long())


def test_a_prior_trains_on_tokens_and_refuses_tokens_of_another_vqvae(videos, stage_one_runs, tmp_path):
    run = stage_one_runs["videogpt-vqvae"]
    prepare_tokens(videos, tmp_path / "tokens", run, device="cpu", console=QUIET)
    overrides = [*stage_one_overrides(PRIOR, stage_one_runs), f"data.source={tmp_path / 'tokens'}",
                 "train.max_steps=3"]
    result = train(load_recipe(PRIOR.tiny_recipe, overrides), tmp_path / "gpt", device="cpu", console=QUIET)
    assert [r["step"] for r in read_metrics(tmp_path / "gpt" / "metrics.jsonl")] == [1, 2, 3]
    assert result.step == 3

    other = tmp_path / "other-vq"
    shutil.copytree(run, other)
    vq = BACKENDS["videogpt-vqvae"]
    train(load_recipe(vq.tiny_recipe, [*vq.test_overrides, "train.max_steps=5"]), other, device="cpu",
          console=QUIET)  # trained on: another checkpoint, another hash
    refused = run_cli("train", PRIOR.tiny_recipe, "--out", str(tmp_path / "gpt2"), "--device", "cpu",
                      *set_args([*overrides, f"model.vqvae={other}"]))
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert f"was encoded by another VQ-VAE" in refused.stderr and f"--vqvae {other}" in refused.stderr

    with pytest.raises(ConfigError, match="holds tokens of clips with frames 4, but data.frames is 8"):
        build_dataset(load_recipe(PRIOR.tiny_recipe, [*overrides, "data.frames=8"]).data, seed=0)
    vdm = BACKENDS["vdm"]
    with pytest.raises(UserError, match="holds encoded tokens, which only a prior over them trains on"):
        train(load_recipe(vdm.tiny_recipe, [*vdm.test_overrides, f"data.source={tmp_path / 'tokens'}",
                                            "data.frames=4"]), tmp_path / "vdm", device="cpu", console=QUIET)


def test_an_interrupted_preparation_resumes_with_the_shards_it_finished(videos, stage_one_runs, tmp_path,
                                                                        monkeypatch):
    import vidgen.prepare_tokens as module

    run = stage_one_runs["videogpt-vqvae"]
    monkeypatch.setattr(module, "VIDEOS_PER_SHARD", 2)  # three shards of two videos
    calls = []
    original = module._encode

    def encode_then_stop(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # stopped while encoding the second shard
        return original(*args, **kwargs)

    monkeypatch.setattr(module, "_encode", encode_then_stop)
    with pytest.raises(KeyboardInterrupt):
        prepare_tokens(videos, tmp_path / "tokens", run, device="cpu", console=QUIET)
    assert not (tmp_path / "tokens").exists()
    work = tmp_path / ".tokens.prepare"
    assert sorted(p.name for p in work.glob("tokens-*.npy")) == ["tokens-00000.npy"]
    calls.clear()
    monkeypatch.setattr(module, "_encode", lambda *a, **k: (calls.append(1), original(*a, **k))[1])
    result = prepare_tokens(videos, tmp_path / "tokens", run, device="cpu", console=QUIET)
    assert len(calls) == 2, "only the two missing shards are encoded"
    assert result.clips == 12 and not work.exists()
    again = prepare_tokens(videos, tmp_path / "tokens", run, device="cpu", console=QUIET)
    assert again.already_done


def test_token_preparation_errors_are_one_line(videos, stage_one_runs, tmp_path):
    vdm = BACKENDS["vdm"]
    train(load_recipe(vdm.tiny_recipe, [*vdm.test_overrides, "train.max_steps=1"]), tmp_path / "vdm", device="cpu",
          console=QUIET)
    for args, message in [
        (["--format", "tokens", "--vqvae", str(tmp_path / "vdm")], "a 'vdm' run does not encode videos to tokens"),
        (["--format", "tokens"], "tokens are made with --format tokens --vqvae RUN"),
        (["--vqvae", str(stage_one_runs["videogpt-vqvae"]), "--resolution", "16"], "no --resolution or --fps"),
        (["--format", "tokens", "--vqvae", str(tmp_path / "missing")], "is neither a run directory nor a checkpoint"),
    ]:
        result = run_cli("data", "prepare", str(videos), str(tmp_path / "out"), "--device", "cpu", *args)
        lines = result.stderr.strip().splitlines()
        assert result.returncode != 0 and len(lines) == 1 and message in lines[0], result.stderr
