import os

import pytest

from vidgen.core.config import DataConfig
from vidgen.errors import ConfigError
from vidgen.metrics.sources import SyntheticSpec, folder_fingerprint, is_run, parse_synthetic


def test_synthetic_settings_override_the_defaults():
    defaults = SyntheticSpec.from_data(DataConfig(), seed=0)
    assert parse_synthetic("synthetic", defaults) == defaults
    spec = parse_synthetic("synthetic:videos=3,frames=9,seed=5", defaults)
    assert (spec.videos, spec.frames, spec.seed, spec.resolution) == (3, 9, 5, defaults.resolution)
    assert len(spec.make_videos()) == 3 and spec.fingerprint() != defaults.fingerprint()
    assert parse_synthetic("data/videos", defaults) is None
    with pytest.raises(ConfigError, match="bad synthetic setting 'size=3'"):
        parse_synthetic("synthetic:size=3", defaults)
    with pytest.raises(ConfigError, match="synthetic.videos"):
        parse_synthetic("synthetic:videos=many", defaults)


def test_synthetic_style_settings_reach_the_videos():
    data = DataConfig(synthetic_colours=1, synthetic_textures=False)
    spec = parse_synthetic("synthetic:videos=2", SyntheticSpec.from_data(data, seed=0))
    assert spec.make_videos()[0].style == data.synthetic_style
    assert parse_synthetic("synthetic:colours=7,textured=true", spec).style == DataConfig().synthetic_style
    with pytest.raises(ConfigError, match=r"synthetic.colours must lie in 1..7 \(the palette\), got 8"):
        parse_synthetic("synthetic:colours=8", spec)


def test_fingerprint_follows_paths_sizes_and_mtimes(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"1234")
    (tmp_path / "notes.txt").write_text("not data")
    first = folder_fingerprint(tmp_path)
    assert folder_fingerprint(tmp_path) == first
    (tmp_path / "notes.txt").write_text("still not data")
    assert folder_fingerprint(tmp_path) == first
    os.utime(tmp_path / "a.mp4", ns=(1, 1))
    touched = folder_fingerprint(tmp_path)
    assert touched != first
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.mp4").write_bytes(b"5")
    assert folder_fingerprint(tmp_path) != touched


def test_run_or_folder(tmp_path):
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "videos").mkdir()
    assert is_run(tmp_path / "run") and not is_run(tmp_path / "videos")
