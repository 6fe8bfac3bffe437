"""Every sampler of vidgen.models.vdm.sampler on models whose denoiser is known in closed form."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from tests.conftest import run_cli, set_args
from vidgen.errors import ConfigError
from vidgen.models.vdm import diffusion
from vidgen.models.vdm.sampler import HEUN_SIGMA_MAX, SAMPLERS, per_video_noise

# name -> method-specific options; the deterministic samplers draw no noise after the start.
OPTIONS = {"ancestral": {"gamma": 0.3}, "pc": {"gamma": 0.3}, "ddim": {}, "ddim_eta1": {"eta": 1.0}, "heun": {}}
DETERMINISTIC = ("ddim", "heun")


def run_sampler(name: str, denoise, seeds, shape, steps: int) -> torch.Tensor:
    fn = SAMPLERS[name.removesuffix("_eta1")]
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    noise = per_video_noise(generators, shape, torch.device("cpu"), torch.float64)
    return fn(denoise, noise, schedule(steps), generators, **OPTIONS[name])


def schedule(steps: int) -> torch.Tensor:
    return diffusion.logsnr_schedule_cosine(torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64), -20.0, 20.0)


def point_denoiser(x0: torch.Tensor):
    """Data = the single video x0: x̂ = x0 whatever z and λ."""
    return lambda z, logsnr: x0.expand_as(z)


def gaussian_denoiser(mean: float, std: float):
    """E[x | z_t] for x ~ N(mean, std²) per pixel: mean + α std² (z − α mean) / (α² std² + σ²)."""

    def denoise(z, logsnr):
        alpha, sigma = (diffusion.broadcast_to(c, z) for c in diffusion.alpha_sigma(logsnr))
        return mean + alpha * std**2 * (z - alpha * mean) / (alpha**2 * std**2 + sigma**2)

    return denoise


def test_registry_names_the_four_samplers():
    assert set(SAMPLERS) == {"ancestral", "pc", "ddim", "heun"}


@pytest.mark.parametrize("name", OPTIONS)
def test_every_sampler_reaches_the_single_data_point(name):
    x0 = torch.rand(3, 2, 4, 4, dtype=torch.float64) * 1.8 - 0.9
    out = run_sampler(name, point_denoiser(x0), [0, 1], x0.shape, steps=8)
    torch.testing.assert_close(out, x0.expand_as(out), rtol=0, atol=1e-6)


# 4 videos x 1000 values = 4000 samples of N(0.1, 0.2²); the sampling error of the std is ~1%.
MEAN, STD = 0.1, 0.2


@pytest.mark.parametrize("name, steps, std_tol", [("ddim", 128, 0.04), ("heun", 32, 0.04),
                                                  ("ancestral", 128, 0.08), ("pc", 128, 0.08)])
def test_samples_a_gaussian_with_the_right_moments(name, steps, std_tol):
    out = run_sampler(name, gaussian_denoiser(MEAN, STD), range(4), (1000,), steps)
    assert abs(out.mean().item() - MEAN) < 0.015
    assert abs(out.std().item() / STD - 1) < std_tol


def test_ancestral_reaches_the_data_point_through_the_v_network():
    # Data = one video x0: the optimal v-network is known in closed form, and x̂ from it is x0 at every step.
    x0 = torch.rand(3, 4, 8, 8, dtype=torch.float64) * 1.8 - 0.9

    def denoise(z, logsnr):
        alpha, sigma = (diffusion.broadcast_to(c, z) for c in diffusion.alpha_sigma(logsnr))
        v = diffusion.v_from_x_eps(x0, diffusion.eps_from_z_x(z, x0, alpha, sigma), alpha, sigma)
        return diffusion.x_from_z_v(z, v, alpha, sigma)

    out = run_sampler("ancestral", denoise, [0, 1], x0.shape, steps=16)
    torch.testing.assert_close(out, x0.expand_as(out), rtol=0, atol=1e-6)


def test_ancestral_with_many_steps_samples_a_gaussian_closely():
    # With the exact denoiser the sampler is exact as steps -> infinity; few steps lose some variance.
    out = run_sampler("ancestral", gaussian_denoiser(MEAN, STD), range(4), (1, 16, 32, 32), steps=256)
    assert abs(out.mean().item() - MEAN) < 0.005
    assert abs(out.std().item() / STD - 1) < 0.03


def test_deterministic_samplers_converge_to_the_probability_flow_map_at_their_order():
    # For Gaussian data the probability-flow ODE maps z at λ = −20 (≈ pure noise n) to mean + std · n, up to
    # e^−10 terms. Doubling the steps halves DDIM's error (first order) and cuts Heun's about fourfold.
    def error(name, steps):
        seeds = range(4)
        generators = [torch.Generator().manual_seed(s) for s in seeds]
        noise = per_video_noise(generators, (250,), torch.device("cpu"), torch.float64)
        out = SAMPLERS[name](gaussian_denoiser(MEAN, STD), noise, schedule(steps), generators)
        if name == "heun":  # it starts at EDM's σ_max = 80 (λ = −8.76): the flow map of x = z / α from there
            sigma = HEUN_SIGMA_MAX
            x = noise * math.sqrt(1 + sigma**2)  # z / α with α = (1 + σ²)^(−1/2)
            return (out - (MEAN + STD * (x - MEAN) / math.sqrt(STD**2 + sigma**2))).abs().max().item()
        return (out - (MEAN + STD * noise)).abs().max().item()

    ddim = [error("ddim", steps) for steps in (16, 32, 64)]
    heun = [error("heun", steps) for steps in (16, 32, 64)]
    assert 1.7 < ddim[0] / ddim[1] < 2.3 and 1.7 < ddim[1] / ddim[2] < 2.3, ddim
    assert heun[0] / heun[1] > 3.5 and heun[1] / heun[2] > 3.5, heun  # second order: 3.75, 3.95 measured
    assert heun[2] < ddim[2] / 2


@pytest.mark.parametrize("name", OPTIONS)
def test_a_video_does_not_depend_on_its_batch(name):
    seeds = [7, 8, 9]
    denoise = gaussian_denoiser(0.0, 0.5)
    together = run_sampler(name, denoise, seeds, (3, 2, 4, 4), steps=8)
    alone = run_sampler(name, denoise, [8], (3, 2, 4, 4), steps=8)
    torch.testing.assert_close(together[1:2], alone, rtol=0, atol=1e-12)
    again = run_sampler(name, denoise, seeds, (3, 2, 4, 4), steps=8)
    assert torch.equal(together, again)


def test_ddim_with_eta_adds_noise_and_without_does_not():
    denoise = gaussian_denoiser(0.0, 0.5)
    deterministic = run_sampler("ddim", denoise, [0], (64,), steps=8)
    stochastic = run_sampler("ddim_eta1", denoise, [0], (64,), steps=8)
    assert not torch.allclose(deterministic, stochastic)


def test_ddim_at_eta_1_is_the_ancestral_sampler_at_gamma_0():
    # Eq. 12 with c² = the posterior variance puts z_s at the posterior mean, plus noise drawn in the same
    # order, so the two walks agree step for step.
    denoise = gaussian_denoiser(0.3, 0.5)

    def walk(name: str, **options) -> torch.Tensor:
        generators = [torch.Generator().manual_seed(seed) for seed in (0, 1)]
        noise = per_video_noise(generators, (64,), torch.device("cpu"), torch.float64)
        return SAMPLERS[name](denoise, noise, schedule(8), generators, **options)

    ddim = walk("ddim", eta=1.0)
    torch.testing.assert_close(ddim, walk("ancestral", gamma=0.0), rtol=0, atol=1e-12)
    assert not torch.allclose(ddim, walk("ancestral", gamma=0.3))


@pytest.mark.parametrize("name", SAMPLERS)
def test_every_sampler_needs_one_generator_per_video(name):
    with pytest.raises(ValueError, match="one generator per video"):
        SAMPLERS[name](gaussian_denoiser(0.0, 1.0), torch.zeros(2, 1), schedule(4), [torch.Generator()],
                       **({"gamma": 0.3} if name in ("ancestral", "pc") else {}))


def test_backend_samples_with_each_sampler(tiny_recipe, randomize_weights):
    from typing import get_args

    from vidgen.models.vdm.backend import VDMBackend
    from vidgen.models.vdm.config import SamplerName

    assert set(get_args(SamplerName)) == set(SAMPLERS), "the config's sampler names are the registry's"
    backend = VDMBackend(tiny_recipe)
    nets = {"unet": randomize_weights(backend.networks["unet"])}
    cpu = torch.device("cpu")
    videos = {name: backend.sample(nets, [1], 2, cpu, tiny_recipe.sample_options(steps=3, sampler=name))
              for name in SAMPLERS}
    for video in videos.values():
        assert video.shape == (1, 3, 2, 16, 16) and video.min() >= -1 and video.max() <= 1
    assert torch.equal(videos["ancestral"], backend.sample(nets, [1], 2, cpu, tiny_recipe.sample_options(steps=3)))
    assert not torch.allclose(videos["ddim"], videos["heun"])
    with pytest.raises(ConfigError, match="'sample.sampler' must be one of ancestral, pc, ddim, heun"):
        tiny_recipe.sample_options(sampler="nope")


def test_cli_sampler_option(tmp_path, tiny_vdm):
    run = tmp_path / "run"
    run_cli("train", "vdm-tiny", "--out", str(run), "--max-steps", "1", *set_args(tiny_vdm), check=True)
    bad = run_cli("sample", str(run), "--out", str(tmp_path / "bad"), "--sampler", "nope")
    assert bad.returncode == 2, bad.stderr
    assert "'sample.sampler' must be one of ancestral, pc, ddim, heun; got 'nope'" in bad.stderr
    assert "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    run_cli("sample", str(run), "--out", str(tmp_path / "s"), "--num", "1", "--frames", "2", "--steps", "2",
            "--sampler", "ddim", check=True)
    assert (tmp_path / "s" / "sample-000000.mp4").is_file()
    manifest = json.loads((tmp_path / "s" / "samples.json").read_text())
    assert "ddim" in json.dumps(manifest)
    run_cli("sample", str(run), "--out", str(tmp_path / "eta"), "--num", "1", "--frames", "2", "--steps", "2",
            "--sampler", "ddim", "--eta", "1", check=True)
    assert json.loads((tmp_path / "eta" / "samples.json").read_text())["options"]["eta"] == 1.0
    for flags, message in ((["--sampler", "heun", "--eta", "0.5"], "not apply to --sampler heun; add --sampler ddim"),
                           (["--sampler", "ddim", "--eta", "-1"], "sample.eta (--eta) must be >= 0")):
        bad = run_cli("sample", str(run), "--out", str(tmp_path / "bad"), "--num", "1", "--frames", "2", *flags)
        assert bad.returncode != 0 and message in bad.stderr, bad.stderr
        assert "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1, bad.stderr


def test_ddim_eta_from_the_recipe_adds_seeded_noise_per_video(tiny_recipe, randomize_weights):
    from vidgen.models.vdm.backend import VDMBackend

    backend = VDMBackend(tiny_recipe)
    nets = {"unet": randomize_weights(backend.networks["unet"])}
    cpu = torch.device("cpu")

    def ddim(seeds: list[int], eta: float) -> torch.Tensor:
        backend.config = dataclasses.replace(backend.config, ddim_eta=eta)
        return backend.sample(nets, seeds, 3, cpu, tiny_recipe.sample_options(sampler="ddim", steps=4))

    deterministic, noisy = ddim([1, 2], 0.0), ddim([1, 2], 1.0)
    assert not torch.allclose(deterministic, noisy, atol=1e-3)
    torch.testing.assert_close(ddim([2], 1.0), noisy[1:], rtol=0, atol=1e-5)  # the seed's own noise, any batch
