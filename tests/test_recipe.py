from pathlib import Path

import pytest
import yaml

from vidgen.core.config import Recipe, TrainConfig
from vidgen.recipe import RECIPES_DIR, builtin_recipes, load_recipe, recipe_from_dict
from vidgen.errors import ConfigError

MINIMAL = {"run": {"name": "t"}, "model": {"name": "vdm", "channel_mults": [1, 2]}}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("path", sorted(RECIPES_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_recipe_loads_and_round_trips(path):
    recipe = load_recipe(path)
    assert isinstance(recipe, Recipe)
    assert recipe.run.description, "each recipe needs a one-line description for `vidgen recipes`"
    assert recipe_from_dict(yaml.safe_load(recipe.to_yaml())) == recipe


def test_builtin_recipes_are_found_by_name():
    assert {"vdm-tiny", "vdm-ucf101-64"} <= set(builtin_recipes())
    assert load_recipe("vdm-tiny").run.name == "vdm-tiny"


def test_overrides_are_coerced_to_field_types():
    recipe = load_recipe("vdm-tiny", ["train.lr=1e-4", "train.max_steps=7", "model.channel_mults=1,2",
                                      "train.grad_clip=null", "model.temporal_attention=false",
                                      "train.betas=[0.5, 0.9]"])
    assert recipe.train.lr == 1e-4 and isinstance(recipe.train.lr, float)
    assert recipe.train.max_steps == 7
    assert recipe.model.channel_mults == (1, 2)
    assert recipe.train.grad_clip is None
    assert recipe.model.temporal_attention is False
    assert recipe.train.betas == (0.5, 0.9)


def test_yaml_float_strings_like_1e_minus_4_are_floats(tmp_path):
    recipe = load_recipe(write(tmp_path, "run: {name: t}\nmodel: {name: vdm}\ntrain: {lr: 1e-4}\n"))
    assert recipe.train.lr == pytest.approx(1e-4)


@pytest.mark.parametrize("override, message", [
    ("train.lrr=1", "unknown key 'train.lrr'; valid keys in 'train': max_steps"),
    ("train.max_steps=abc", "'train.max_steps' expects an integer, got 'abc'"),
    ("train.precision=fp8", "'train.precision' must be one of fp32, bf16, fp16"),
    ("model.prediction=x0", "'model.prediction' must be one of v, eps"),
    ("model.name=gan", "unknown model 'gan'; known models: vdm, stylegan-v"),
    ("train.lr=-1", "train.lr must be > 0"),
    ("trian.lr=1", "unknown section 'trian'"),
    ("data.resolution=30", "not divisible by 4"),
    ("lr", "must look like key.path=value"),
    ("data.synthetic_colours=8", "data.synthetic_colours must lie in 1..7 (the palette), got 8"),
    ("model.noise_correlation=-0.5", "model.noise_correlation must lie in [0, 1), got -0.5"),
])
def test_config_errors_name_the_dotted_key(override, message):
    with pytest.raises(ConfigError) as info:
        load_recipe("vdm-tiny", [override])
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_recipe_lists_builtin_ones():
    with pytest.raises(ConfigError, match="unknown recipe 'nope'; built-in recipes: .*vdm-tiny"):
        load_recipe("nope")


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_recipe(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="tab characters"):
        load_recipe(write(tmp_path, "run:\n\tname: t\n"))
    with pytest.raises(ConfigError, match="duplicate key 'name'"):
        load_recipe(write(tmp_path, "run:\n  name: a\n  name: b\nmodel: {name: vdm}\n"))
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_recipe(write(tmp_path, "- 1\n- 2\n"))


def test_missing_sections_and_keys():
    with pytest.raises(ConfigError, match="must name a backend"):
        recipe_from_dict({"run": {"name": "t"}})
    with pytest.raises(ConfigError, match="missing key 'run.name'"):
        recipe_from_dict({"run": {}, "model": {"name": "vdm"}})


def test_configs_are_frozen():
    recipe = recipe_from_dict(MINIMAL)
    with pytest.raises(AttributeError):
        recipe.train.lr = 1.0  # type: ignore[misc]
    assert recipe.train == TrainConfig()


@pytest.mark.parametrize("recipe", ["stylegan-v-tiny", "tganv2-tiny", "videogpt-tiny-vqvae"])
def test_a_family_that_makes_rgb_only_refuses_grayscale_data_in_one_line(recipe):
    with pytest.raises(ConfigError, match=r"data.channels is 1, but a '[a-z2-]+' model makes RGB video; set "
                                          r"data.channels: 3"):
        load_recipe(recipe, ["data.channels=1"])


def test_video_diffusion_trains_and_samples_grayscale():
    import torch

    from tests.conftest import TINY_VDM
    from vidgen.models.registry import build_backend

    recipe = load_recipe("vdm-tiny", [*TINY_VDM, "data.channels=1"])
    backend = build_backend(recipe)
    with torch.no_grad():
        videos = backend.sample(backend.networks, [0], 3, torch.device("cpu"))
    assert videos.shape == (1, 1, 3, 16, 16)
