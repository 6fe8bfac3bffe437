"""TGANv2Config: the reference defaults, strict building, and the cross-checks against the recipe."""

from __future__ import annotations

import pytest

from vidgen.core.config import DataConfig, Recipe, RunConfig, build_dataclass
from vidgen.errors import ConfigError
from vidgen.models.tganv2.config import TGANv2Config


def recipe(model: TGANv2Config | None = None, **data) -> Recipe:
    values = dict(frames=16, resolution=192)
    values.update(data)
    return Recipe(run=RunConfig(name="t"), data=DataConfig(**values), model=model or TGANv2Config())


def check_error(model: TGANv2Config, match: str, **data) -> str:
    with pytest.raises(ConfigError, match=match) as info:
        model.check_recipe(recipe(model, **data))
    message = str(info.value)
    assert "\n" not in message  # one line for the user
    return message


def test_the_reference_ucf101_192_setting_validates():
    cfg = TGANv2Config()
    assert (cfg.z_slow_dim, cfg.t_size, cfg.clstm_ch, cfg.clstm_layers) == (256, 3, 1024, 1)
    assert cfg.levels == 4 and cfg.abstract_blocks == 3 and cfg.resolution == 192 == 3 * 64
    assert cfg.frame_divisor == 8
    cfg.check_recipe(recipe())
    TGANv2Config(t_size=4).check_recipe(recipe(resolution=256))  # the reference's FaceForensics 256 setting
    for frames in (8, 24, 32):
        cfg.check_recipe(recipe(frames=frames))


def test_built_from_a_mapping_like_a_recipe_section():
    cfg = build_dataclass(TGANv2Config, {"name": "tganv2", "frame_factors": [2, 2], "batch_factors": "2,2",
                                         "t_size": "4", "g_channels": [64, 32, 16]}, "model")
    assert cfg.frame_factors == (2, 2) and cfg.batch_factors == (2, 2) and cfg.t_size == 4 and cfg.levels == 3
    with pytest.raises(ConfigError, match="unknown key 'model.ch'"):
        build_dataclass(TGANv2Config, {"ch": 32}, "model")


def test_a_clip_length_the_levels_cannot_split():
    message = check_error(TGANv2Config(), r"data.frames \(12\) must be divisible by 8", frames=12)
    assert "model.frame_factors: 2 x 2 x 2" in message and "8, 16, 24, 32" in message
    check_error(TGANv2Config(frame_factors=(3, 2), batch_factors=(1, 1)), "divisible by 6", frames=16)


def test_a_resolution_the_levels_cannot_render():
    message = check_error(TGANv2Config(), r"data.resolution \(256\)", resolution=256)
    assert "= 192" in message and "data.resolution: 192" in message and "model.t_size: 4" in message
    message = check_error(TGANv2Config(), r"data.resolution \(200\)", resolution=200)
    assert "data.resolution: 192" in message and "t_size:" not in message.split("set ")[1]


def test_subsampling_factors_and_level_counts():
    for bad in ((2, 0, 2), (-1, 2, 2)):
        with pytest.raises(ConfigError, match=r"model.frame_factors must be integers >= 1"):
            TGANv2Config(frame_factors=bad)
    with pytest.raises(ConfigError, match=r"model.batch_factors must be integers >= 1"):
        TGANv2Config(batch_factors=(0, 1, 1))
    with pytest.raises(ConfigError, match="one entry per level transition"):
        TGANv2Config(batch_factors=(2, 2))
    with pytest.raises(ConfigError, match="model.g_channels has 3 up-blocks but the 4 levels"):
        TGANv2Config(g_channels=(64, 32, 16))
    assert TGANv2Config(frame_factors=(1, 1, 1)).frame_divisor == 1  # factor 1: no subsampling, allowed


def test_labels_and_image_frames():
    check_error(TGANv2Config(num_classes=101), "data.labels is false", labels=False)
    check_error(TGANv2Config(), "model.num_classes is 0", labels=True)
    TGANv2Config(num_classes=101).check_recipe(recipe(TGANv2Config(num_classes=101), labels=True))
    check_error(TGANv2Config(), "data.image_frames", image_frames=4)
