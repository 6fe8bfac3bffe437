"""The shipped DVG recipes: they load, round-trip and spell out every model and sample field; the KTH recipe is the
released code's run, the BAIR recipe SVG's VGG networks, and the tiny one trains on scenes that change action."""

from __future__ import annotations

import pytest
import yaml

from vidgen.models.registry import BACKENDS
from vidgen.recipe import RECIPES_DIR, load_recipe, recipe_from_dict

RECIPES = ("dvg-tiny", "dvg-kth-64", "dvg-bair-64")


def section_keys(text: str, section: str, following: str | None) -> set[str]:
    body = text.split(f"\n{section}:")[1]
    if following:
        body = body.split(f"\n{following}:")[0]
    return {line.split(":")[0].strip() for line in body.splitlines()
            if line.startswith("  ") and not line.strip().startswith("#") and ":" in line}


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_loads_round_trips_and_spells_out_every_model_and_sample_field(name):
    recipe = load_recipe(name)
    assert recipe.run.description and recipe_from_dict(yaml.safe_load(recipe.to_yaml())) == recipe
    spec = BACKENDS["dvg"]
    assert type(recipe.model) is spec.config_class and type(recipe.sample) is spec.sample_class
    text = (RECIPES_DIR / f"{name}.yaml").read_text()
    assert section_keys(text, "model", "train") == set(spec.config_class.__dataclass_fields__)
    assert section_keys(text, "sample", None) == set(spec.sample_class.__dataclass_fields__)
    assert recipe.train.grad_clip is None  # the reference clips nothing
    assert (recipe.sample.trigger, recipe.sample.trigger_window) == ("gp", 12)


def test_the_kth_recipe_is_the_released_run():
    recipe = load_recipe("dvg-kth-64")
    data, model, train = recipe.data, recipe.model, recipe.train
    assert (data.channels, data.resolution, data.frames) == (1, 64, 15)
    assert (model.architecture, model.width, model.g_dim) == ("dcgan", 64, 90)
    assert (model.rnn_size, model.rnn_layers, model.inducing_points, model.context_frames) == (256, 2, 40, 5)
    assert (model.recon_weight, model.gp_recon_weight, model.elbo_weight) == (1000.0, 1.0, 1.0)
    assert (train.batch_size, train.lr, train.betas, train.max_steps) == (50, 2e-3, (0.9, 0.999), 601 * 300)
    assert recipe.output_frames() == 105 and recipe.sample.context_frames is None
    assert data.source != "synthetic"


def test_the_bair_recipe_uses_svgs_vgg_networks_in_colour():
    recipe = load_recipe("dvg-bair-64")
    assert (recipe.data.channels, recipe.data.resolution, recipe.data.frames) == (3, 64, 15)
    assert (recipe.model.architecture, recipe.model.g_dim, recipe.model.width) == ("vgg", 128, 64)
    assert recipe.output_frames() == 105


def test_the_tiny_recipe_trains_on_scenes_that_change_action():
    recipe = load_recipe("dvg-tiny")
    data = recipe.data
    assert data.source == "synthetic" and data.synthetic_action_changes
    assert (data.synthetic_max_shapes, data.synthetic_colours, data.synthetic_textures) == (1, 1, False)
    assert (data.resolution, data.channels, data.synthetic_frames) == (32, 3, 32)
    assert data.frames > recipe.model.context_frames
    assert recipe.output_frames() == 40 and recipe.sample.context_frames is None
