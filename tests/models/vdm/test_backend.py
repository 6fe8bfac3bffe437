from __future__ import annotations

import pytest
import torch

from vidgen.errors import ConfigError
from vidgen.models.registry import build_backend
from vidgen.models.vdm.backend import VDMBackend
from vidgen.models.vdm.config import VDMConfig


def test_one_phase_stepping_adamw_with_the_recipe_betas(tiny_recipe):
    backend = build_backend(tiny_recipe)
    assert isinstance(backend, VDMBackend)
    assert [p.name for p in backend.phases()] == ["main"] and backend.ema_networks == ("unet",)
    optimizer = backend.make_optimizers()["main"]
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.defaults["lr"] == tiny_recipe.train.lr and optimizer.defaults["betas"] == (0.9, 0.99)


def test_sample_steps_default_to_the_recipe(tiny_recipe, randomize_weights):
    backend = VDMBackend(tiny_recipe)
    nets = {"unet": randomize_weights(backend.networks["unet"])}
    cpu = torch.device("cpu")
    default = backend.sample(nets, [0], 2, cpu)
    explicit = backend.sample(nets, [0], 2, cpu, tiny_recipe.sample_options(steps=tiny_recipe.sample.steps))
    other = backend.sample(nets, [0], 2, cpu, tiny_recipe.sample_options(steps=2))
    assert torch.equal(default, explicit) and not torch.equal(default, other)


def test_sampler_gamma_outside_unit_interval_is_a_config_error():
    with pytest.raises(ConfigError, match="model.sampler_gamma"):
        VDMConfig(sampler_gamma=1.5)


def test_negative_ddim_eta_is_a_config_error():
    with pytest.raises(ConfigError, match="model.ddim_eta"):
        VDMConfig(ddim_eta=-0.1)
