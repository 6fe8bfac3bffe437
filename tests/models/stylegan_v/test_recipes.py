"""The shipped StyleGAN-V recipes load, round-trip and spell out the reference configuration."""

from __future__ import annotations

import pytest
import yaml

from vidgen.models.stylegan_v.config import StyleGANVConfig
from vidgen.recipe import RECIPES_DIR, load_recipe, recipe_from_dict

RECIPES = ("stylegan-v-tiny", "stylegan-v-sky-256")


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_loads_round_trips_and_comments_every_field(name):
    recipe = load_recipe(name)
    assert isinstance(recipe.model, StyleGANVConfig) and recipe.run.description
    assert recipe_from_dict(yaml.safe_load(recipe.to_yaml())) == recipe
    text = (RECIPES_DIR / f"{name}.yaml").read_text()
    model_keys = {line.split(":")[0].strip() for line in text.split("\nmodel:")[1].split("\ntrain:")[0].splitlines()
                  if line.startswith("  ") and not line.strip().startswith("#")}
    assert model_keys == set(StyleGANVConfig.__dataclass_fields__), "the recipe spells out every model field"


def test_sky_256_matches_the_reference_configuration():
    recipe = load_recipe("stylegan-v-sky-256")
    model = recipe.model
    assert (model.z_dim, model.w_dim, model.mapping_layers, model.channel_base, model.channel_max) == (
        512, 512, 2, 16384, 512)
    assert (model.motion_z_distance, model.motion_kernel_size, model.min_period, model.time_max_period) == (
        256, 11, 256.0, 1024.0)  # SkyTimelapse: motion_z_distance = min_period_len = 256 (the README's command)
    assert model.clip_distances == (2, 4, 8, 16, 32) and model.num_frames_per_clip == 3
    assert model.fp16_resolutions == 4 and model.conv_clamp == 256 and model.augment == "ada"
    assert model.resolved_r1_gamma(256, 64) == pytest.approx(model.r1_gamma)
    assert recipe.train.betas == (0.0, 0.99) and recipe.train.lr == 0.0025 and recipe.train.grad_clip is None


def test_motion_z_distance_defaults_to_16_for_the_other_datasets():
    assert StyleGANVConfig().motion_z_distance == 16 and StyleGANVConfig().min_period == 16.0
    tiny = load_recipe("stylegan-v-tiny").model
    assert (tiny.motion_z_distance, tiny.min_period) == (16, 16.0)
