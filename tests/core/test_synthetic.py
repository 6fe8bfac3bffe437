"""The procedural dataset: closed-form motion, determinism, continuity (its speed: benchmarks/bench_synthetic.py)."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest

from vidgen.core.config import DataConfig
from vidgen.core.io import probe_video, read_video
from vidgen.core.synthetic import (PALETTE, SceneStyle, Shape, bounce, centre_path, make_scene, render_scene,
                                   render_video, rotation, video_seed, write_synthetic_dataset)

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


def _checksum(style: SceneStyle) -> str:
    digest = hashlib.sha256()
    for seed in range(8):
        digest.update(render_video(seed, TIMES, 32, style).tobytes())
    return digest.hexdigest()


def test_scenes_without_action_changes_are_unchanged_bit_for_bit() -> None:
    # Rendered before action changes existed: cached real statistics and every synthetic run depend on these pixels.
    assert _checksum(SceneStyle()) == "f623a05aa32088d69a23a6ac4c531a891746b88afd8d095d87c9d00ad9b7e09e"
    assert _checksum(SceneStyle(max_shapes=2, colours=1, textured=False)) == (
        "0abe6b7b7be5a6f36d64832c654dd822d50d2e27866558c80907da46fe83f6cc")
    assert DataConfig().synthetic_style == SceneStyle()  # off by default, with no duration to tell scenes apart


# ----------------------------------------------------------------------------------------------------------
# Action changes

DURATION = 8.0  # 64 frames at 8 fps, the synthetic default
CHANGING = SceneStyle(action_changes=True, duration=DURATION)


def _changing_shapes(count: int = 60) -> list[tuple[int, Shape]]:
    return [(seed, shape) for seed in range(count) for shape in make_scene(seed, CHANGING).shapes]


def _velocity(shape: Shape, t: float, side: int, dt: float = 1e-6) -> np.ndarray:
    """One-sided finite-difference velocity of the centre at t (side -1: just before, +1: just after)."""
    times = np.array([t, t + dt]) if side > 0 else np.array([t - dt, t])
    x, y = centre_path(shape, times)
    return np.array([x[1] - x[0], y[1] - y[0]]) / dt


def test_action_changes_need_the_duration_and_come_from_the_data_config() -> None:
    with pytest.raises(ValueError, match="duration"):
        SceneStyle(action_changes=True)
    style = DataConfig(synthetic_action_changes=True, synthetic_frames=48, fps=12.0).synthetic_style
    assert style.action_changes and style.duration == 4.0


def test_each_shape_changes_once_in_the_middle_half() -> None:
    shapes = _changing_shapes()
    for seed, shape in shapes:
        assert DURATION / 4 <= shape.change_time <= 3 * DURATION / 4
        assert shape.spin == 0.0  # no spin before the change
        assert (shape.turn != 0.0) != (shape.spin_after is not None)  # exactly one new action
        if shape.kind in ("circle", "ring"):
            assert shape.spin_after is None  # a spinning circle would look the same
    assert len({shape.change_time for _, shape in shapes}) == len(shapes)  # drawn per shape
    assert {shape.spin_after is not None for _, shape in shapes} == {True, False}  # both actions occur


def test_the_scene_is_the_one_without_changes_up_to_its_actions() -> None:
    for seed in range(20):
        plain, changing = make_scene(seed), make_scene(seed, CHANGING)
        assert plain.background == changing.background
        assert [(s.kind, s.colour, s.texture, s.radius, s.position, s.velocity, s.angle) for s in plain.shapes] == [
            (s.kind, s.colour, s.texture, s.radius, s.position, s.velocity, s.angle) for s in changing.shapes]
    np.testing.assert_array_equal(render_video(3, TIMES, 32, CHANGING), render_video(3, TIMES, 32, CHANGING))


def test_a_turn_keeps_the_path_continuous_and_turns_the_heading_by_the_drawn_angle() -> None:
    turning = [shape for _, shape in _changing_shapes() if shape.turn != 0.0]
    assert len(turning) > 30
    for shape in turning:
        t = shape.change_time
        assert np.pi / 3 <= abs(shape.turn) <= np.pi
        x, y = centre_path(shape, np.array([t - 1e-9, t, t + 1e-9]))
        assert np.ptp(x) < 1e-8 and np.ptp(y) < 1e-8  # no jump at the change
        before, after = _velocity(shape, t, -1), _velocity(shape, t, +1)
        np.testing.assert_allclose(np.linalg.norm(after), np.linalg.norm(before), rtol=1e-5)  # same speed
        # Signed angle from the heading before to the heading after (positive: clockwise on screen, y down).
        angle = np.arctan2(before[0] * after[1] - before[1] * after[0], before @ after)
        if abs(abs(shape.turn) - np.pi) > 1e-3:  # a half turn's sign is moot
            assert angle == pytest.approx(shape.turn, abs=1e-4)
        else:
            assert abs(angle) == pytest.approx(np.pi, abs=1e-3)
        r = shape.radius
        later = centre_path(shape, np.linspace(t, DURATION, 400))
        assert min(map(np.min, later)) >= r - 1e-12 and max(map(np.max, later)) <= 1 - r + 1e-12  # walls hold


def test_a_spin_change_starts_spinning_at_the_change() -> None:
    spinning = [shape for _, shape in _changing_shapes() if shape.spin_after is not None]
    assert len(spinning) > 5
    for shape in spinning:
        t = shape.change_time
        assert shape.kind in ("square", "triangle") and 1.0 <= abs(shape.spin_after) <= 2.0
        before = rotation(shape, np.linspace(0.0, t, 50))
        assert np.all(before == shape.angle)  # still until the change
        after = rotation(shape, np.array([t, t + 0.5]))
        assert after[0] == pytest.approx(shape.angle)  # continuous
        assert (after[1] - after[0]) / 0.5 == pytest.approx(shape.spin_after)
        x, y = centre_path(shape, np.array([t - 0.1, t, t + 0.1]))  # its path goes straight on
        plain = centre_path(dataclasses.replace(shape, spin_after=None), np.array([t - 0.1, t, t + 0.1]))
        np.testing.assert_array_equal(x, plain[0])
        np.testing.assert_array_equal(y, plain[1])


def _centroid(frame: np.ndarray) -> np.ndarray:
    """(x, y) in frame units of the pixels brighter than the dark background."""
    ys, xs = np.nonzero(frame.max(axis=-1) > 100)
    return (np.array([xs.mean(), ys.mean()]) + 0.5) / frame.shape[0]


def test_a_rendered_clip_across_the_change_shows_the_turn() -> None:
    # One solid shape; a scene whose turn is sharp and whose walls are out of reach around the change.
    style = SceneStyle(max_shapes=1, colours=1, textured=False, action_changes=True, duration=DURATION)
    window = 0.5
    for seed in range(200):
        scene = make_scene(seed, style)
        shape = scene.shapes[0]
        t = shape.change_time
        if shape.turn == 0.0 or abs(shape.turn) < np.pi / 2 or abs(shape.turn) > 0.8 * np.pi:
            continue
        steps = [_velocity(shape, s, +1) for s in np.linspace(t - window, t + window, 41)]
        if len({tuple(np.round(v, 6)) for v in steps}) == 2:  # only the turn: no wall within the window
            break
    else:
        pytest.fail("no suitable scene")
    size = 96
    before = render_scene(scene, np.linspace(t - window, t, 5), size)
    after = render_scene(scene, np.linspace(t, t + window, 5), size)
    moved_before = _centroid(before[-1]) - _centroid(before[0])
    moved_after = _centroid(after[-1]) - _centroid(after[0])
    cosine = moved_before @ moved_after / np.linalg.norm(moved_before) / np.linalg.norm(moved_after)
    turned = np.degrees(np.arccos(np.clip(cosine, -1, 1)))
    assert turned > 60  # a real change of direction in the pixels
    assert turned == pytest.approx(np.degrees(abs(shape.turn)), abs=10)  # by the drawn angle
