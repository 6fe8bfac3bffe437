"""The built-in procedural dataset: textured shapes moving over a dark background.

A seed fixes a scene (background, 1..max_shapes shapes, their colours, textures, sizes, trajectories); the
scene is then a closed-form function of continuous time, so one video renders at any resolution, frame rate
or set of fractional times (StyleGAN-V trains on sparse, irregular frame times). Coordinates are in frame
units: the frame is the unit square, x to the right, y down.

Scenes are deliberately simple (saturated colours on a plain dark background, shapes a quarter to a third
of the frame, motion that crosses much of the frame in two seconds) so that a tiny model trained for minutes
learns recognisable moving shapes.

With action changes (SceneStyle.action_changes, for video prediction) every shape keeps one action and changes it
once, at a time drawn from the scene seed: it turns onto a new heading, or (squares and triangles) starts to spin.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from vidgen.errors import ConfigError

ShapeKind = Literal["circle", "square", "triangle", "ring"]
Texture = Literal["solid", "stripes", "checker"]

SHAPE_KINDS: tuple[ShapeKind, ...] = ("circle", "square", "triangle", "ring")
TEXTURES: tuple[Texture, ...] = ("solid", "stripes", "checker")
PALETTE = np.array([  # saturated and far apart in hue, so every shape stands out from the others
    [1.00, 0.20, 0.15],  # red
    [1.00, 0.60, 0.05],  # orange
    [1.00, 0.92, 0.15],  # yellow
    [0.20, 0.90, 0.25],  # green
    [0.10, 0.85, 0.95],  # cyan
    [0.25, 0.40, 1.00],  # blue
    [0.90, 0.25, 0.95],  # magenta
], dtype=np.float32)
_TEXTURE_SHADE = 0.45
"""A textured shape alternates between its colour and its colour times this."""
_CIRCUMRADIUS_SCALE: dict[str, float] = {"circle": 1.0, "ring": 1.0, "square": 1.1, "triangle": 1.25}
"""Pointy shapes fill less of their circumcircle; larger circumradii give every kind a similar area."""


@dataclass(frozen=True)
class Shape:
    kind: ShapeKind
    colour: tuple[float, float, float]
    """RGB in [0, 1]."""
    texture: Texture
    radius: float
    """Circumradius in frame units; the shape's centre stays at least this far from every wall."""
    position: tuple[float, float]
    """Centre (x, y) at time 0."""
    velocity: tuple[float, float]
    """Frame units per second, reflected at the walls."""
    angle: float
    """Rotation at time 0, radians."""
    spin: float
    """Radians per second (before change_time)."""
    change_time: float = math.inf
    """When the shape changes its action, seconds (inf: never; only with SceneStyle.action_changes)."""
    turn: float = 0.0
    """At change_time the heading it is moving on (walls reflected) turns by this many radians, at the same speed,
    from the position it has reached: the path is continuous. Positive turns clockwise on screen (y points down)."""
    spin_after: float | None = None
    """Its spin from change_time on, radians per second (None: `spin` throughout)."""


def check_colours(value: int, name: str, error: type[Exception] = ConfigError) -> None:
    """The range of every setting that picks a number of palette colours: `error` naming the setting (its recipe
    key or option, e.g. data.synthetic_colours or --colours) unless `value` lies in 1..len(PALETTE)."""
    if not 1 <= value <= len(PALETTE):
        raise error(f"{name} must lie in 1..{len(PALETTE)} (the palette), got {value}")


@dataclass(frozen=True)
class SceneStyle:
    """How varied the scenes are. The default is the full variety; a tiny model trained for a few CPU minutes
    learns moving shapes well only with less of it (one colour, solid shapes)."""

    max_shapes: int = 3
    """Each scene shows 1..max_shapes shapes."""
    colours: int = len(PALETTE)
    """Shapes and background tints take the first this many palette colours (1..7)."""
    textured: bool = True
    """Shapes are solid, striped or checkered; false: solid only."""
    action_changes: bool = False
    """Every shape keeps one action (a straight path, no spin), then changes it once at a time uniform over the
    middle half of `duration`: a new heading, 60 to 180 degrees from the old one, or (squares and triangles, one
    in two) it starts to spin. False: the scenes of a style without this option, bit for bit."""
    duration: float | None = None
    """Seconds the videos last (frames / fps), which places the middle half; required by action_changes and
    unused without it (so leave it None then)."""

    def __post_init__(self) -> None:
        # A ValueError: settings are checked where the user gives them (ConfigError), so a bad style is a bug.
        if self.max_shapes < 1:
            raise ValueError(f"need max_shapes >= 1, got {self}")
        check_colours(self.colours, "colours", ValueError)
        if self.action_changes and not (self.duration is not None and 0 < self.duration < math.inf):
            raise ValueError(f"action_changes needs the videos' duration in seconds, got {self}")


@dataclass(frozen=True)
class Scene:
    background: tuple[tuple[float, float, float], tuple[float, float, float]]
    """RGB at the top and bottom edge (a gentle vertical gradient)."""
    shapes: tuple[Shape, ...]
    """Drawn in order: later shapes cover earlier ones."""


def video_seed(run_seed: int, index: int) -> int:
    """The scene seed of synthetic video `index` in a run seeded `run_seed` (independent streams per pair)."""
    return int(np.random.SeedSequence([run_seed, index]).generate_state(1, np.uint64)[0])


def make_scene(seed: int, style: SceneStyle = SceneStyle()) -> Scene:
    """Draw a scene: 1..style.max_shapes shapes with distinct colours (as many as the style has), random
    textures and trajectories (with style.action_changes: and one change of action each)."""
    rng = np.random.default_rng(seed)
    hue_colour = PALETTE[rng.integers(style.colours)]
    top = tuple(float(c) for c in 0.10 + 0.08 * hue_colour)  # dark, faintly tinted
    bottom = tuple(float(c) for c in 0.04 + 0.04 * hue_colour)
    count = int(rng.integers(1, style.max_shapes + 1))
    colours = rng.choice(style.colours, size=min(count, style.colours), replace=False)
    shapes = []
    for colour in colours:
        kind = SHAPE_KINDS[rng.integers(len(SHAPE_KINDS))]
        radius = float(rng.uniform(0.14, 0.18) * _CIRCUMRADIUS_SCALE[kind])
        speed, heading = rng.uniform(0.30, 0.60), rng.uniform(0.0, 2 * np.pi)
        shapes.append(Shape(
            kind=kind,
            colour=tuple(float(c) for c in PALETTE[colour]),
            texture=TEXTURES[rng.integers(len(TEXTURES))] if style.textured else "solid",
            radius=radius,
            position=tuple(float(p) for p in rng.uniform(radius, 1.0 - radius, size=2)),
            velocity=(float(speed * np.cos(heading)), float(speed * np.sin(heading))),
            angle=float(rng.uniform(0.0, 2 * np.pi)),
            spin=float(rng.uniform(-1.5, 1.5)),
        ))
    if style.action_changes:
        # The changes come from a stream of their own, after every draw above: the scene is the one without
        # action changes (same shapes, colours, starts and headings) up to each shape's change.
        changes = np.random.default_rng([seed, 1])
        shapes = [_with_action_change(shape, changes, style.duration) for shape in shapes]
    return Scene(background=(top, bottom), shapes=tuple(shapes))


def _with_action_change(shape: Shape, rng: np.random.Generator, duration: float) -> Shape:
    """`shape` moving without spin until a time uniform over the middle half of the video, then either turning
    by 60-180 degrees (either way) or, for a square or triangle in one case of two, starting to spin at 1-2
    radians per second (either way). Four draws per shape, whichever action it takes."""
    change_time = float(rng.uniform(0.25 * duration, 0.75 * duration))
    spins = bool(rng.random() < 0.5) and shape.kind in ("square", "triangle")  # circles show no spin
    turn = float(rng.uniform(np.pi / 3, np.pi) * rng.choice([-1.0, 1.0]))
    spin = float(rng.uniform(1.0, 2.0) * rng.choice([-1.0, 1.0]))
    return dataclasses.replace(shape, spin=0.0, change_time=change_time, turn=0.0 if spins else turn,
                               spin_after=spin if spins else None)


def bounce(start: float, velocity: float, times: np.ndarray, low: float, high: float) -> np.ndarray:
    """Position at `times` of a point moving at `velocity` between walls `low` and `high`, reflecting
    elastically: the unfolded straight-line path folded back into the interval (a triangle wave)."""
    width = high - low
    unfolded = np.mod(start - low + velocity * np.asarray(times, dtype=np.float64), 2.0 * width)
    return low + np.where(unfolded > width, 2.0 * width - unfolded, unfolded)


def heading_at(start: float, velocity: float, time: float, low: float, high: float) -> float:
    """The velocity of `bounce` at `time`: `velocity`, or its reverse after an odd number of reflections."""
    unfolded = np.mod(start - low + velocity * time, 2.0 * (high - low))
    return -velocity if unfolded > high - low else velocity


def centre_path(shape: Shape, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The shape's centre (x, y) at `times` (seconds), each float64 (T,): straight lines reflected at the walls
    (its circumradius in from the frame's edges); with a change of heading, the path from the point reached at
    change_time goes on along the turned velocity."""
    r = shape.radius
    times = np.asarray(times, dtype=np.float64)
    (x0, y0), (vx, vy) = shape.position, shape.velocity
    x, y = bounce(x0, vx, times, r, 1.0 - r), bounce(y0, vy, times, r, 1.0 - r)
    if shape.turn == 0.0:
        return x, y
    t = shape.change_time
    # The velocity it moves with just before the change (walls reflected), turned: a rotation of the screen
    # vector, clockwise for a positive turn since y points down.
    wx, wy = heading_at(x0, vx, t, r, 1.0 - r), heading_at(y0, vy, t, r, 1.0 - r)
    cos, sin = np.cos(shape.turn), np.sin(shape.turn)
    ux, uy = cos * wx - sin * wy, sin * wx + cos * wy
    xc, yc = bounce(x0, vx, t, r, 1.0 - r), bounce(y0, vy, t, r, 1.0 - r)  # where the turn starts
    after = times >= t
    x = np.where(after, bounce(float(xc), ux, times - t, r, 1.0 - r), x)
    y = np.where(after, bounce(float(yc), uy, times - t, r, 1.0 - r), y)
    return x, y


def rotation(shape: Shape, times: np.ndarray) -> np.ndarray:
    """The shape's rotation at `times`, radians (T,): `spin` until change_time, then spin_after if it has one
    (continuous at the change)."""
    times = np.asarray(times, dtype=np.float64)
    if shape.spin_after is None:
        return shape.angle + shape.spin * times
    before = np.minimum(times, shape.change_time)
    return shape.angle + shape.spin * before + shape.spin_after * (times - before)


def render_video(seed: int, times: np.ndarray, size: int, style: SceneStyle = SceneStyle()) -> np.ndarray:
    """Render the scene of `seed` at `times` (seconds, any real values) as uint8 [T, size, size, 3]."""
    return render_scene(make_scene(seed, style), times, size)


def render_scene(scene: Scene, times: np.ndarray, size: int) -> np.ndarray:
    """Rasterise a scene at `times` (seconds) as uint8 [T, size, size, 3], all frames at once."""
    times = np.atleast_1d(np.asarray(times, dtype=np.float64))
    centres = (np.arange(size, dtype=np.float32) + 0.5) / size  # pixel centres in frame units
    top, bottom = (np.asarray(c, np.float32) for c in scene.background)
    column = top + centres[:, None] * (bottom - top)  # (H, 3)
    image = np.broadcast_to(column[None, :, None, :], (len(times), size, size, 3)).copy()  # (T, H, W, 3)
    for shape in scene.shapes:
        coverage, shade = _rasterise(shape, times, centres, size)  # (T, H, W), (T, H, W) or None
        colour = np.asarray(shape.colour, np.float32)
        paint = colour if shade is None else colour * (1.0 - (1.0 - _TEXTURE_SHADE) * shade[..., None])
        alpha = coverage[..., None]
        image += alpha * (paint - image)  # "over" compositing with straight alpha
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def _rasterise(shape: Shape, times: np.ndarray, centres: np.ndarray,
               size: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Anti-aliased coverage of `shape` per pixel and frame, and its texture's dark-stripe weight.

    Coverage comes from a signed distance d to the outline (negative inside): a pixel half covered sits on
    the outline, so coverage = clip(0.5 - d * size, 0, 1) ramps over one pixel, like a box filter.
    """
    r = shape.radius
    cx, cy = (c.astype(np.float32) for c in centre_path(shape, times))
    angle = rotation(shape, times)
    cos, sin = (np.asarray(f(angle), np.float32)[:, None, None] for f in (np.cos, np.sin))  # (T, 1, 1)
    dx = centres[None, None, :] - cx[:, None, None]  # (T, 1, W)
    dy = centres[None, :, None] - cy[:, None, None]  # (T, H, 1)
    u = cos * dx + sin * dy  # (T, H, W): the shape's own frame, so outline and texture turn with it
    v = cos * dy - sin * dx

    if shape.kind == "circle":
        distance = np.sqrt(u * u + v * v) - 0.85 * r
    elif shape.kind == "ring":
        distance = np.abs(np.sqrt(u * u + v * v) - 0.65 * r) - 0.25 * r
    elif shape.kind == "square":
        half = r / np.sqrt(2.0)  # corners on the circumcircle
        distance = np.maximum(np.abs(u), np.abs(v)) - half
    else:  # triangle: the outermost of three edge half-planes, each at the apothem r * cos(60 deg)
        normals = [np.pi / 2 + k * 2 * np.pi / 3 for k in range(3)]
        distance = np.max([np.cos(a) * u + np.sin(a) * v for a in normals], axis=0) - 0.5 * r
    coverage = np.clip(0.5 - distance * size, 0.0, 1.0)

    if shape.texture == "solid":
        return coverage, None
    period = 0.9 * r
    wave = np.sin((2 * np.pi / period) * u)
    if shape.texture == "checker":
        wave = wave * np.sin((2 * np.pi / period) * v)
    # Near a zero crossing, wave * period * size / (2 pi) is the distance in pixels to the stripe edge:
    # the same one-pixel ramp as the outline; at small sizes it fades to soft stripes instead of aliasing.
    shade = np.clip(0.5 + wave * (period * size / (2 * np.pi)), 0.0, 1.0)
    return coverage, shade


def write_synthetic_dataset(out_dir: str | Path, num: int, frames: int, size: int, fps: float, seed: int,
                            style: SceneStyle = SceneStyle()) -> list[Path]:
    """Render videos 0..num-1 (video i from video_seed(seed, i)) to out_dir/000000.mp4, ... and return the paths."""
    from vidgen.core.io import write_mp4  # PyAV only when writing: recipes check colours with this module

    out_dir = Path(out_dir)
    times = np.arange(frames) / fps
    paths = []
    for index in range(num):
        path = out_dir / f"{index:06d}.mp4"
        write_mp4(path, render_video(video_seed(seed, index), times, size, style), fps)
        paths.append(path)
    return paths

