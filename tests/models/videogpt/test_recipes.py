"""The shipped VideoGPT recipes load, round-trip, spell out every model field and state the paper's settings; the
paper-size networks build from them (no training: that is for GPUs)."""

from __future__ import annotations

import pytest
import torch
import yaml

from vidgen.models.base import FrozenStage
from vidgen.models.registry import BACKENDS, build_backend
from vidgen.recipe import RECIPES_DIR, load_recipe, recipe_from_dict

RECIPES = ("videogpt-tiny-vqvae", "videogpt-tiny", "videogpt-bair-64-vqvae", "videogpt-bair-64",
           "videogpt-ucf101-128-vqvae", "videogpt-ucf101-128")


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_loads_round_trips_and_spells_out_every_model_field(name):
    recipe = load_recipe(name)
    assert recipe.run.description and recipe_from_dict(yaml.safe_load(recipe.to_yaml())) == recipe
    config_class = BACKENDS[recipe.model.name].config_class
    text = (RECIPES_DIR / f"{name}.yaml").read_text()
    model_keys = {line.split(":")[0].strip() for line in text.split("\nmodel:")[1].split("\ntrain:")[0].splitlines()
                  if line.startswith("  ") and not line.strip().startswith("#")}
    assert model_keys == set(config_class.__dataclass_fields__), "the recipe spells out every model field"


def test_each_prior_recipe_names_the_vqvae_recipe_it_is_trained_on():
    for prior in ("videogpt-tiny", "videogpt-bair-64", "videogpt-ucf101-128"):
        recipe, stage_one = load_recipe(prior), load_recipe(f"{prior}-vqvae")
        assert recipe.model.vqvae == f"runs/{stage_one.run.name}"
        assert (recipe.data.resolution, recipe.data.frames) == (stage_one.data.resolution, stage_one.data.frames)


@pytest.mark.parametrize("name, downsample, resolution", [("videogpt-bair-64", (4, 2, 2), 64),
                                                          ("videogpt-ucf101-128", (4, 4, 4), 128)])
def test_paper_recipes_build_the_paper_networks_over_4x32x32_codes(name, downsample, resolution):
    stage_one = load_recipe(f"{name}-vqvae")
    vq = stage_one.model
    assert (vq.n_codes, vq.embedding_dim, vq.n_hiddens, vq.n_res_layers, vq.downsample) == (
        2048, 256, 240, 4, downsample)
    assert stage_one.train.lr == 3e-4 and stage_one.data.resolution == resolution
    vqvae = build_backend(stage_one)
    frozen = FrozenStage(stage_one, dict(vqvae.networks), {"sha256": "-", "config": stage_one.to_dict()})
    recipe = load_recipe(name)
    prior = build_backend(recipe, frozen)
    config = prior.networks["prior"].config
    assert config.latent_shape == (4, 32, 32) and config.n_codes == 2048  # 4,096 tokens per clip
    assert (config.width, config.heads, config.layers, config.dropout, config.attn_dropout) == (576, 4, 8, 0.2, 0.3)
    assert recipe.train.lr_decay == "cosine" and recipe.train.grad_clip == 1.0
    trained = sum(p.numel() for p in prior.networks["prior"].parameters())
    assert 30e6 < trained < 60e6, f"{trained:,} parameters"  # 8 blocks of 576 (~32 M) + embeddings and head
    with torch.no_grad():
        codes = vqvae.encode_tokens(torch.zeros(1, 3, 16, resolution, resolution))
    assert codes.shape == (1, 4, 32, 32)
