"""The shipped TGANv2 recipes: they load, round-trip and spell out every model field; the UCF-101 recipe is the
reference's run; the tiny recipe trains and samples through the real command line, longer than its clips."""

from __future__ import annotations

import pytest
import yaml

from tests.conftest import run_cli, set_args
from vidgen.core.io import read_video
from vidgen.models.registry import BACKENDS
from vidgen.models.tganv2.pyramid import PyramidSpec, level_frame_counts
from vidgen.recipe import RECIPES_DIR, load_recipe, recipe_from_dict

RECIPES = ("tganv2-tiny", "tganv2-ucf101-192")


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_loads_round_trips_and_spells_out_every_model_field(name):
    recipe = load_recipe(name)
    assert recipe.run.description and recipe_from_dict(yaml.safe_load(recipe.to_yaml())) == recipe
    text = (RECIPES_DIR / f"{name}.yaml").read_text()
    model_keys = {line.split(":")[0].strip() for line in text.split("\nmodel:")[1].split("\ntrain:")[0].splitlines()
                  if line.startswith("  ") and not line.strip().startswith("#")}
    assert model_keys == set(BACKENDS["tganv2"].config_class.__dataclass_fields__)


def test_the_ucf101_recipe_is_the_reference_run():
    recipe = load_recipe("tganv2-ucf101-192")
    model, train = recipe.model, recipe.train
    assert (recipe.data.resolution, recipe.data.frames) == (192, 16)
    assert PyramidSpec.from_config(model).resolutions == (24, 48, 96, 192)
    assert level_frame_counts(16, model.frame_factors) == (16, 8, 4, 2)
    assert (model.clstm_ch, model.clstm_layers, model.t_size, model.batch_factors) == (1024, 1, 3, (1, 1, 1))
    assert (model.gp_lambda, model.n_dis, model.num_classes) == (0.5, 1, 0)
    assert (train.lr, train.betas, train.lr_decay, train.grad_clip) == (1e-4, (0.0, 0.9), "linear", None)
    assert (train.batch_size, train.max_steps, train.precision) == (32, 100_000, "fp32")


def test_the_tiny_recipe_trains_and_samples_videos_longer_than_its_clips_and_refuses_other_options(tmp_path):
    recipe = load_recipe("tganv2-tiny")
    assert PyramidSpec.from_config(recipe.model).resolution == recipe.data.resolution
    run = tmp_path / "run"
    run_cli("train", "tganv2-tiny", "--out", str(run), "--max-steps", "2", "--device", "cpu",
            *set_args(["train.checkpoint_every=2", "train.log_every=1"]), check=True)
    frames = 3 * recipe.data.frames - 5  # any length: not a multiple of the frame factors either
    run_cli("sample", str(run), "--out", str(tmp_path / "samples"), "--num", "2", "--frames", str(frames),
            "--device", "cpu", check=True)
    video = read_video(tmp_path / "samples" / "sample-000001.mp4")
    assert video.shape == (frames, recipe.data.resolution, recipe.data.resolution, 3)
    assert (video[1:].astype(int) - video[:-1]).any()  # the ConvLSTM moves on from frame to frame
    # Another family's option on a TGANv2 run: one line naming TGANv2's own options, no traceback.
    refused = run_cli("sample", str(run), "--out", str(tmp_path / "other"), "--temperature", "0.5")
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert refused.stderr.strip() == ("error: --temperature does not apply to a 'tganv2' model; its own options "
                                      "are --class")
