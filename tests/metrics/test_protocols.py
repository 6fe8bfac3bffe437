import numpy as np
import pytest

from vidgen.errors import ConfigError
from vidgen.metrics.gate import exceeded, parse_thresholds
from vidgen.metrics.protocols import PROTOCOLS, Protocol, get_protocols, select_fake_clips, select_real_clips


def test_registry_budgets():
    fvd = PROTOCOLS["fvd2048_16f"]
    assert (fvd.detector, fvd.statistic, fvd.num_videos, fvd.frames, fvd.stride, fvd.resolution) == \
        ("i3d", "frechet", 2048, 16, 1, 224)
    assert PROTOCOLS["fvd2048_128f"].span == 128
    sub = PROTOCOLS["fvd2048_128f_subsample8f"]
    assert (sub.frames, sub.stride, sub.span) == (16, 8, 121)
    assert PROTOCOLS["kvd2048_16f"].statistic == "kernel" and PROTOCOLS["kvd2048_16f"].clip_key == fvd.clip_key
    fid = PROTOCOLS["fid50k"]
    assert fid.num_videos * fid.frames == 50_000 and (fid.detector, fid.resolution) == ("inception", 299)


def test_unknown_metric_lists_the_known_ones():
    with pytest.raises(ConfigError, match="unknown metric 'fvd'; known metrics: fvd2048_16f, .*fid50k") as info:
        get_protocols("fvd2048_16f,fvd")
    assert info.value.exit_code == 2
    assert [p.name for p in get_protocols(" fid50k , kvd2048_16f")] == ["fid50k", "kvd2048_16f"]


def test_label_names_the_count_used():
    fvd = PROTOCOLS["fvd2048_16f"]
    assert fvd.label(2048) == "fvd2048_16f"
    assert fvd.label(37) == "fvd2048_16f (n=37)"


def test_real_clip_selection_is_deterministic_and_in_range():
    lengths = [40, 16, 15, 100, 64]
    protocol = Protocol("t", "i3d", "frechet", 10, 16)
    a = select_real_clips(lengths, protocol, seed=3)
    assert a == select_real_clips(lengths, protocol, seed=3)
    assert a.videos == (0, 1, 3, 4) and a.too_short == (2,)
    for video, start in zip(a.videos, a.starts, strict=True):
        assert 0 <= start <= lengths[video] - protocol.span
    assert a.starts[1] == 0  # exactly one clip long: only one start
    other = [select_real_clips(lengths, protocol, seed=s).starts for s in range(4, 10)]
    assert any(starts != a.starts for starts in other)


def test_real_clip_start_depends_only_on_seed_and_video():
    protocol = Protocol("t", "i3d", "frechet", 10, 8, stride=2)
    few = select_real_clips([50, 60], protocol, seed=0)
    more = select_real_clips([50, 60, 70, 5], protocol, seed=0)
    assert more.starts[:2] == few.starts


def test_real_clips_subsample_when_there_are_more_videos():
    protocol = Protocol("t", "i3d", "frechet", 5, 4)
    lengths = np.full(50, 20)
    a = select_real_clips(lengths, protocol, seed=1)
    assert len(a.videos) == 5 and list(a.videos) == sorted(a.videos)
    assert a.videos == select_real_clips(lengths, protocol, seed=1).videos
    assert a.videos != select_real_clips(lengths, protocol, seed=2).videos


def test_fake_clips_start_at_zero_in_order():
    protocol = Protocol("t", "i3d", "frechet", 2, 16)
    selection = select_fake_clips([20, 10, 16, 30], protocol)
    assert selection.videos == (0, 2) and selection.starts == (0, 0) and selection.too_short == (1,)


def test_protocol_settings_are_checked():
    with pytest.raises(ValueError):
        Protocol("t", "i3d", "frechet", 0, 16)
    with pytest.raises(ValueError, match="kernel"):
        Protocol("t", "i3d", "frechet", 10, 16, num_subsets=3)


def test_thresholds():
    assert parse_thresholds(["fvd2048_16f=300", "fid50k=12.5"], "fvd2048_16f,fid50k") == \
        {"fvd2048_16f": 300.0, "fid50k": 12.5}
    with pytest.raises(ConfigError, match="not among the metrics asked for"):
        parse_thresholds(["fid50k=10"], "fvd2048_16f")
    with pytest.raises(ConfigError, match="metric=number"):
        parse_thresholds(["fvd2048_16f"], "fvd2048_16f")
    with pytest.raises(ConfigError, match="metric=number"):
        parse_thresholds(["fvd2048_16f=abc"], "fvd2048_16f")
    assert exceeded({"a": 5.0, "b": 1.0}, {"a": 4.0, "b": 1.0}) == [("a", 5.0, 4.0)]
    assert exceeded({"a": float("nan")}, {"a": 4.0})[0][0] == "a"
