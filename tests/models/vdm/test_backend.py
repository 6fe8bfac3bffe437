from __future__ import annotations

import math

import pytest
import torch

from vidgen.errors import ConfigError
from vidgen.models.registry import build_backend
from vidgen.models.vdm.backend import VDMBackend
from vidgen.models.vdm.config import VDMConfig


def smooth_videos(count: int, frames: int, size: int) -> torch.Tensor:
    """Fixed travelling waves, one direction and colour phase per video: float (N, 3, T, H, W) in [-0.8, 0.8]."""
    t, y, x = torch.meshgrid(torch.arange(frames), torch.arange(size), torch.arange(size), indexing="ij")
    videos = []
    for i in range(count):
        angle = 2 * math.pi * i / count
        wave = (math.cos(angle) * x + math.sin(angle) * y) / size + t / frames
        videos.append(torch.stack([0.8 * torch.sin(2 * math.pi * wave + c) for c in range(3)]))
    return torch.stack(videos).float()


def test_registry_builds_the_backend(tiny_recipe):
    backend = build_backend(tiny_recipe)
    assert isinstance(backend, VDMBackend)
    assert [p.name for p in backend.phases()] == ["main"] and backend.ema_networks == ("unet",)
    optimizer = backend.make_optimizers()["main"]
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.defaults["lr"] == tiny_recipe.train.lr and optimizer.defaults["betas"] == (0.9, 0.99)


def test_initialisation_follows_the_run_seed_without_touching_global_rng(tiny_recipe):
    state = torch.random.get_rng_state()
    a, b = VDMBackend(tiny_recipe), VDMBackend(tiny_recipe)
    assert torch.equal(torch.random.get_rng_state(), state)
    for pa, pb in zip(a.networks.parameters(), b.networks.parameters()):
        assert torch.equal(pa, pb)


def test_sample_shape_range_determinism_and_batch_independence(tiny_recipe, randomize_weights):
    backend = VDMBackend(tiny_recipe)
    nets = {"unet": randomize_weights(backend.networks["unet"])}
    cpu = torch.device("cpu")
    together = backend.sample(nets, seeds=[3, 4, 5], frames=5, fps=8.0, device=cpu)
    assert together.shape == (3, 3, 5, 16, 16)
    assert together.min() >= -1 and together.max() <= 1
    again = backend.sample(nets, seeds=[3, 4, 5], frames=5, fps=8.0, device=cpu)
    assert torch.equal(together, again)
    alone = backend.sample(nets, seeds=[4], frames=5, fps=8.0, device=cpu)
    torch.testing.assert_close(alone, together[1:2], rtol=0, atol=1e-5)
    assert not torch.allclose(together[0], together[1])


def test_sample_steps_default_to_the_recipe(tiny_recipe, randomize_weights):
    backend = VDMBackend(tiny_recipe)
    nets = {"unet": randomize_weights(backend.networks["unet"])}
    cpu = torch.device("cpu")
    default = backend.sample(nets, seeds=[0], frames=2, fps=8.0, device=cpu)
    explicit = backend.sample(nets, seeds=[0], frames=2, fps=8.0, device=cpu, steps=tiny_recipe.sample.steps)
    other = backend.sample(nets, seeds=[0], frames=2, fps=8.0, device=cpu, steps=2)
    assert torch.equal(default, explicit) and not torch.equal(default, other)


def test_short_training_run_lowers_the_loss(tiny_recipe):
    backend = VDMBackend(tiny_recipe)
    optimizer = backend.make_optimizers()["main"]
    data = smooth_videos(count=4, frames=4, size=16)
    generator = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(60):
        batch = {"video": data}
        loss, logs = backend.loss("main", batch, backend.networks, generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(logs["loss"])
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.7 * first, f"loss went from {first:.4f} to {last:.4f}"


def test_sampler_gamma_outside_unit_interval_is_a_config_error():
    with pytest.raises(ConfigError, match="model.sampler_gamma"):
        VDMConfig(sampler_gamma=1.5)


def test_negative_ddim_eta_is_a_config_error():
    with pytest.raises(ConfigError, match="model.ddim_eta"):
        VDMConfig(ddim_eta=-0.1)
