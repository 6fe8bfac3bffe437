"""VideoGPT's two backends beyond the contract suite: the frozen stage-1 seam (vidgen/upstream.py), what a stage-2
checkpoint records, a VQ-VAE's reconstructions beside their originals, and the one-line errors of stage 2."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from rich.console import Console

from tests.conftest import run_cli, set_args, stage_one_overrides
from vidgen.core.checkpoint import load_checkpoint
from vidgen.core.files import sha256_file
from vidgen.core.frozen import Frozen
from vidgen.errors import ConfigError, UserError
from vidgen.metrics.quality import psnr, ssim
from vidgen.core import layout
from vidgen.models.registry import BACKENDS, build_backend
from vidgen.recipe import load_recipe
from vidgen.sample import load_for_sampling, sample
from vidgen.train import train
from vidgen.upstream import load_upstream

CPU = torch.device("cpu")
QUIET = Console(quiet=True)
PRIOR = BACKENDS["videogpt"]
VQVAE = BACKENDS["videogpt-vqvae"]


def prior_recipe(stage_one_runs, *extra: str):
    return load_recipe(PRIOR.tiny_recipe, [*stage_one_overrides(PRIOR, stage_one_runs), *extra])


def one_line_error(result) -> str:
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# ----------------------------------------------------------------------------------------------------------
# The frozen first stage


def test_the_frozen_vqvae_stays_in_eval_mode_and_gets_no_gradient(stage_one_runs):
    recipe = prior_recipe(stage_one_runs)
    backend = build_backend(recipe, load_upstream(recipe))
    frozen = backend.networks["vqvae"]
    assert isinstance(frozen, Frozen)
    backend.networks.train()  # what a training loop does to its networks
    assert not any(module.training for module in frozen.modules()), "BatchNorm and dropout must stay in eval mode"
    running = {name: b.clone() for name, b in frozen.named_buffers()}
    video = torch.rand(2, 3, recipe.data.frames, 16, 16) * 2 - 1
    loss, _ = backend.loss("main", {"video": video}, backend.networks, torch.Generator().manual_seed(0))
    loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in frozen.parameters())
    assert any(p.grad is not None for p in backend.networks["prior"].parameters())
    for name, buffer in frozen.named_buffers():
        assert torch.equal(buffer, running[name]), f"{name} moved during prior training"


def test_a_stage_two_checkpoint_records_and_embeds_its_vqvae_so_sampling_needs_only_it(stage_one_runs, tmp_path):
    vq_run = tmp_path / "vq"
    shutil.copytree(stage_one_runs["videogpt-vqvae"], vq_run)
    vq_checkpoint = sorted((vq_run / "checkpoints").glob("ckpt-*.pt"))[-1]
    digest = sha256_file(vq_checkpoint)
    result = train(prior_recipe(stage_one_runs, f"model.vqvae={vq_run}", "train.max_steps=2"), tmp_path / "gpt",
                   device="cpu", console=QUIET)
    saved = load_checkpoint(result.checkpoint)
    record = saved["upstream"]
    assert record["sha256"] == digest and record["checkpoint"] == str(vq_checkpoint)
    assert record["step"] == load_checkpoint(vq_checkpoint)["step"]
    assert record["config"]["model"]["name"] == "videogpt-vqvae"
    vq_weights = load_checkpoint(vq_checkpoint)["networks"]
    for name, tensor in vq_weights.items():  # the embedded copy is the stage-1 run's weights, untouched
        assert torch.equal(saved["networks"][f"vqvae.network.{name.removeprefix('vqvae.')}"], tensor), name

    _, backend = load_for_sampling(result.run_dir, CPU)
    with torch.no_grad():
        before = backend.sample(backend.networks, [0, 1], 4, CPU)
    shutil.rmtree(vq_run)  # the stage-1 run is gone: the stage-2 checkpoint suffices
    _, restored = load_for_sampling(result.run_dir, CPU)
    with torch.no_grad():
        assert torch.equal(restored.sample(restored.networks, [0, 1], 4, CPU), before)
    resumed = train(prior_recipe(stage_one_runs, f"model.vqvae={vq_run}", "train.max_steps=3"), tmp_path / "gpt",
                    device="cpu", console=QUIET)  # resuming uses the embedded copy too
    assert load_checkpoint(resumed.checkpoint)["upstream"]["sha256"] == digest


def test_a_longer_video_than_trained_samples_more_latent_frames(stage_one_runs, tmp_path):
    result = train(prior_recipe(stage_one_runs, "train.max_steps=1"), tmp_path / "gpt", device="cpu", console=QUIET)
    _, backend = load_for_sampling(result.run_dir, CPU)
    with torch.no_grad():
        videos = backend.sample(backend.networks, [0], 8, CPU)  # trained on 4 frames (2 latent frames)
    assert videos.shape == (1, 3, 8, 16, 16)


@pytest.mark.parametrize("override, message", [
    ("model.vqvae=missing-run", "model.vqvae: missing-run does not exist; train the stage-1 'videogpt-vqvae'"),
    ("data.frames=5", "data.frames 5 is not divisible by the VQ-VAE's downsampling factor 2 (downsample [2, 4, 4]); "
                      "use 4 or 6"),
    ("data.resolution=32", "data.resolution 32 differs from the VQ-VAE's (16"),
])
def test_a_stage_two_recipe_that_does_not_fit_its_vqvae_is_one_line(stage_one_runs, tmp_path, override, message):
    overrides = [*stage_one_overrides(PRIOR, stage_one_runs), override]
    result = run_cli("train", PRIOR.tiny_recipe, "--out", str(tmp_path / "gpt"), "--device", "cpu",
                     *set_args(overrides))
    assert message in one_line_error(result)


def test_a_stage_one_run_of_another_family_is_refused(stage_one_runs, tmp_path):
    vdm = BACKENDS["vdm"]
    train(load_recipe(vdm.tiny_recipe, [*vdm.test_overrides, "train.max_steps=1"]), tmp_path / "vdm", device="cpu",
          console=QUIET)
    with pytest.raises(ConfigError, match=r"model.vqvae: .*vdm is a 'vdm' run, not a 'videogpt-vqvae' run"):
        recipe = prior_recipe(stage_one_runs, f"model.vqvae={tmp_path / 'vdm'}")
        load_upstream(recipe)
    with pytest.raises(ConfigError, match="model.vqvae must name the stage-1 VQ-VAE run"):
        prior_recipe(stage_one_runs, "model.vqvae=")
    with pytest.raises(ValueError, match="is built on a 'videogpt-vqvae' run"):
        build_backend(prior_recipe(stage_one_runs))  # a bug, not a user error: the caller forgot the stage


def test_an_empty_stage_one_run_directory_is_one_line(stage_one_runs, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"model.vqvae: .*empty holds no checkpoints; train it first"):
        load_upstream(prior_recipe(stage_one_runs, f"model.vqvae={tmp_path / 'empty'}"))


# ----------------------------------------------------------------------------------------------------------
# Reconstructions


def test_a_vqvae_run_samples_reconstructions_beside_the_originals_with_psnr_and_ssim(stage_one_runs, tmp_path):
    run = stage_one_runs["videogpt-vqvae"]
    result = sample(run, tmp_path / "recon", {"num": 3, "seed": 5, "batch_size": 2}, device="cpu", console=QUIET)
    for seed in (5, 6, 7):
        assert (tmp_path / "recon" / f"sample-{seed:06d}.mp4").is_file()
        assert (tmp_path / "recon" / f"real-{seed:06d}.mp4").is_file()
    _, backend = load_for_sampling(run, CPU)
    with torch.no_grad():
        fake = layout.to_uint8(backend.sample(backend.networks, [5, 6, 7], 4, CPU))
        real = layout.to_uint8(backend.references([5, 6, 7], 4, CPU))
    x, y = layout.to_model(fake).double(), layout.to_model(real).double()
    assert result.reference_quality["videos"] == 3
    assert result.reference_quality["psnr"] == pytest.approx(psnr(x, y).mean().item(), rel=1e-9)
    assert result.reference_quality["ssim"] == pytest.approx(ssim(x, y).mean().item(), rel=1e-9)
    assert (tmp_path / "recon" / "samples.json").read_text().count("real-") == 0, "originals are not samples"


def test_reconstructing_another_dataset_and_refusing_the_option_elsewhere(stage_one_runs, tmp_path):
    run = stage_one_runs["videogpt-vqvae"]
    printed = run_cli("sample", str(run), "--out", str(tmp_path / "s"), "--num", "1", "--device", "cpu",
                      "--reconstruct", "synthetic", check=True)
    assert "PSNR" in printed.stdout and "SSIM" in printed.stdout
    prior = train(prior_recipe(stage_one_runs, "train.max_steps=1"), tmp_path / "gpt", device="cpu", console=QUIET)
    refused = run_cli("sample", str(prior.run_dir), "--out", str(tmp_path / "t"), "--reconstruct", "synthetic")
    assert "--reconstruct does not apply to a 'videogpt' model" in one_line_error(refused)


@pytest.mark.parametrize("flag, value, message", [
    ("--top-k", "0", "sample.top_k (--top-k) must be > 0"),
    ("--top-p", "1.5", "sample.top_p (--top-p) must lie in (0, 1]"),
    ("--top-p", "0", "sample.top_p (--top-p) must lie in (0, 1]"),
    ("--temperature", "0", "sample.temperature (--temperature) must be > 0"),
    ("--frames", "5", "--frames 5 is not divisible by the VQ-VAE's temporal downsampling 2; use 4 or 6"),
    ("--class", "1", "--class needs a class-conditional prior"),
    ("--context", "clip.mp4", "--context needs a frame-conditioned prior"),
])
def test_bad_sampling_options_are_one_line(stage_one_runs, tmp_path, flag, value, message):
    prior = train(prior_recipe(stage_one_runs, "train.max_steps=1"), tmp_path / "gpt", device="cpu", console=QUIET)
    result = run_cli("sample", str(prior.run_dir), "--out", str(tmp_path / "s"), "--device", "cpu", flag, value)
    assert message in one_line_error(result)


def test_a_frame_conditioned_prior_continues_real_clips_or_a_given_video(stage_one_runs, tmp_path):
    from vidgen.core.io import read_video, write_mp4

    prior = train(prior_recipe(stage_one_runs, "model.context_frames=1", "model.context_downsample=2",
                               "train.max_steps=1"), tmp_path / "gpt", device="cpu", console=QUIET)
    continued = sample(prior.run_dir, tmp_path / "s", {"num": 2}, device="cpu", console=QUIET)
    assert (tmp_path / "s" / "real-000001.mp4").is_file(), "the ground truth of each prediction is written too"
    assert continued.reference_quality["videos"] == 2
    clip = read_video(tmp_path / "s" / "real-000000.mp4")  # (4, 16, 16, 3)
    write_mp4(tmp_path / "context.mp4", clip, fps=8)
    given = sample(prior.run_dir, tmp_path / "c", {"num": 2, "context": str(tmp_path / "context.mp4")},
                   device="cpu", console=QUIET)
    assert given.reference_quality is None and len(given.videos) == 2
    _, backend = load_for_sampling(prior.run_dir, torch.device("cpu"))
    context = backend.dataset_clips(None, [5], 1, torch.device("cpu")).expand(2, -1, -1, -1, -1)
    with torch.no_grad():
        predicted = backend.predict(backend.networks, context, [0, 1], 4, torch.device("cpu")).videos
    assert torch.equal(predicted[:, :, :1], context), "a prediction starts with its context frame, unchanged"
    write_mp4(tmp_path / "small.mp4", clip[:, :8, :8], fps=8)
    result = run_cli("sample", str(prior.run_dir), "--out", str(tmp_path / "d"), "--device", "cpu", "--context",
                     str(tmp_path / "small.mp4"))
    assert "small.mp4 is 8x8 but the model makes 16x16 frames" in one_line_error(result)
    result = run_cli("sample", str(prior.run_dir), "--out", str(tmp_path / "e"), "--device", "cpu", "--context",
                     str(tmp_path / "context.mp4"), "--context-frames", "2")
    assert "is 2, but this prior conditions on exactly 1 (model.context_frames)" in one_line_error(result)
