"""The procedural dataset: closed-form motion, determinism, continuity (its speed: benchmarks/bench_synthetic.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vidgen.core.io import probe_video, read_video
from vidgen.core.synthetic import (PALETTE, SceneStyle, bounce, make_scene, render_video, video_seed,
                                   write_synthetic_dataset)

TIMES = np.arange(16) / 8.0  # 16 frames at 8 fps


def test_bounce_matches_hand_computed_reflections() -> None:
    # Walls at 0.1 and 0.9 (width 0.8), start 0.2, speed 1: hits 0.9 at t = 0.7, comes back to 0.1 at t = 1.5.
    positions = bounce(0.2, 1.0, np.array([0.0, 0.5, 0.8, 1.0, 1.5, 1.6]), 0.1, 0.9)
    np.testing.assert_allclose(positions, [0.2, 0.7, 0.8, 0.6, 0.1, 0.2], atol=1e-12)
    np.testing.assert_allclose(bounce(0.2, -1.0, np.array([0.1, 0.3]), 0.1, 0.9), [0.1, 0.3], atol=1e-12)


def test_bounce_stays_between_walls_and_never_jumps() -> None:
    times = np.linspace(0.0, 20.0, 20001)
    positions = bounce(0.5, 0.73, times, 0.15, 0.85)
    assert positions.min() >= 0.15 - 1e-12 and positions.max() <= 0.85 + 1e-12
    assert np.abs(np.diff(positions)).max() <= 0.73 * 1e-3 + 1e-12  # |velocity| x time step


def test_render_is_deterministic_per_seed() -> None:
    video = render_video(3, TIMES, 32)
    assert video.shape == (16, 32, 32, 3) and video.dtype == np.uint8
    np.testing.assert_array_equal(video, render_video(3, TIMES, 32))
    assert not np.array_equal(video, render_video(4, TIMES, 32))


def test_shapes_move_visibly() -> None:
    for seed in range(5):
        video = render_video(seed, TIMES, 32).astype(float)
        steps = np.abs(np.diff(video, axis=0)).mean(axis=(1, 2, 3))
        assert (steps > 0).all()  # every frame differs from the one before
        assert np.abs(video[-1] - video[0]).mean() > 3.0  # and two seconds move the scene a lot


def test_fractional_times_are_continuous() -> None:
    times = np.array([0.37, 0.37 + 1e-5, 1.91, 1.91 + 1e-5])
    video = render_video(7, times, 64).astype(int)
    assert np.abs(video[1] - video[0]).max() <= 1  # at most a rounding step
    assert np.abs(video[3] - video[2]).max() <= 1


def test_any_frame_rate_samples_the_same_scene() -> None:
    at_8fps = render_video(5, np.arange(9) / 8.0, 24)
    sparse = render_video(5, np.array([0.0, 0.5, 1.0]), 24)
    np.testing.assert_array_equal(sparse, at_8fps[[0, 4, 8]])


@pytest.mark.parametrize("size", [17, 32, 96])
def test_any_resolution(size: int) -> None:
    assert render_video(1, TIMES[:2], size).shape == (2, size, size, 3)


def test_scenes_are_simple_and_readable() -> None:
    for seed in range(20):
        scene = make_scene(seed, SceneStyle(max_shapes=3))
        assert 1 <= len(scene.shapes) <= 3
        assert len({shape.colour for shape in scene.shapes}) == len(scene.shapes)  # distinct colours
        assert all(0.12 <= shape.radius <= 0.25 for shape in scene.shapes)  # a quarter to a third of the frame
        assert max(scene.background[0]) < 0.25  # dark background
    video = render_video(0, TIMES, 32)
    assert video.max() > 200  # saturated shapes


def test_write_synthetic_dataset(tmp_path: Path) -> None:
    paths = write_synthetic_dataset(tmp_path / "shapes", num=2, frames=12, size=32, fps=8.0, seed=1,
                                    style=SceneStyle(max_shapes=2))
    assert [p.name for p in paths] == ["000000.mp4", "000001.mp4"]
    info = probe_video(paths[1])
    assert (info.num_frames, info.fps, info.width, info.height) == (12, 8.0, 32, 32)
    decoded = read_video(paths[1]).astype(float)
    expected = render_video(video_seed(1, 1), np.arange(12) / 8.0, 32, SceneStyle(max_shapes=2))
    other = render_video(video_seed(1, 0), np.arange(12) / 8.0, 32, SceneStyle(max_shapes=2))
    # Saturated edges at 32 px lose some chroma to 4:2:0; the file still holds this scene and not another.
    assert np.abs(decoded - expected).mean() < 8.0 < np.abs(decoded - other).mean()



def test_the_default_style_keeps_its_scenes() -> None:
    # The demo's reference statistics and every run on synthetic data depend on these exact scenes.
    scene = make_scene(video_seed(0, 0))
    assert scene == make_scene(video_seed(0, 0), SceneStyle(max_shapes=3, colours=7, textured=True))
    assert [(s.kind, s.texture) for s in scene.shapes] == [("triangle", "checker"), ("triangle", "stripes"),
                                                         ("triangle", "solid")]


def test_a_plain_style_has_one_colour_and_solid_shapes() -> None:
    style = SceneStyle(max_shapes=3, colours=1, textured=False)
    for seed in range(30):
        scene = make_scene(seed, style)
        assert len(scene.shapes) == 1  # one colour leaves room for one shape only (colours are distinct)
        assert scene.shapes[0].colour == tuple(float(c) for c in PALETTE[0])
        assert scene.shapes[0].texture == "solid"
    varied = {make_scene(seed, SceneStyle(colours=3)).shapes[0].colour for seed in range(30)}
    assert varied == {tuple(float(c) for c in PALETTE[i]) for i in range(3)}
    with pytest.raises(ValueError, match="colours must lie in 1..7"):
        SceneStyle(colours=0)
