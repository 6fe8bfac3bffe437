"""Typed recipes: frozen dataclasses per section, built strictly from plain mappings.

A recipe has five sections: run, data, model, train, sample. The model section is the chosen backend's own
config class, and the sample section the backend's own subclass of SampleConfig (its sampling options beside the
common ones). Building is strict: an unknown key, a value of the wrong type or a non-finite number is a
ConfigError naming the full dotted key and what would be valid. Reading YAML files, overrides and the registry
lookup live in vidgen/recipe.py; this module knows nothing of the model families.

No torch import here: the CLI loads recipes before it decides to import torch.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from vidgen.errors import ConfigError

if typing.TYPE_CHECKING:
    from vidgen.core.synthetic import SceneStyle

Precision = Literal["fp32", "bf16", "fp16"]
LRDecay = Literal["none", "cosine", "linear"]
KNOWN_LOGGERS = ("jsonl", "tensorboard", "wandb")
"""The names train.loggers accepts (vidgen/core/loggers.py)."""


@dataclass(frozen=True)
class RunConfig:
    name: str
    """Run name; the default run directory is runs/<name>."""
    description: str = ""
    """One line shown by `vidgen recipes`."""
    seed: int = 0
    """Seeds model init, data order and training noise: a CPU run is bit-reproducible from it."""


@dataclass(frozen=True)
class DataConfig:
    source: str = "synthetic"
    """`synthetic` (built-in procedural shapes), or a path: a folder of videos, a folder of frame folders,
    or a zip of frame folders."""
    resolution: int = 64
    """Frames are resized (short side) and centre-cropped to resolution x resolution."""
    frames: int = 16
    """Frames per training clip."""
    frame_stride: int = 1
    """Step between consecutive clip frames, in source frames."""
    fps: float = 8.0
    """Frame rate of the dataset's videos (synthetic: the rate it is rendered at; files: used when a file
    does not state one)."""
    workers: int = 2
    """DataLoader worker processes (0 loads in the training process)."""
    channels: int = 3
    """Colour channels the model sees: 3 (RGB) or 1 (grayscale, e.g. KTH; frames are converted as they are
    read, and written back to mp4 as gray RGB)."""
    synthetic_videos: int = 512
    """Synthetic only: number of distinct videos (each a seed of the procedural generator)."""
    synthetic_frames: int = 64
    """Synthetic only: length of each synthetic video in frames."""
    synthetic_max_shapes: int = 3
    """Synthetic only: each video shows 1..this many shapes."""
    synthetic_colours: int = 7
    """Synthetic only: shapes and background tints use the first this many of the 7 palette colours."""
    synthetic_textures: bool = True
    """Synthetic only: shapes are solid, striped or checkered (false: solid only)."""
    synthetic_action_changes: bool = False
    """Synthetic only: every shape keeps one action (a straight path, no spin), then at a random time in the middle
    half of its video changes it (a new direction, or it starts to spin): scenes for video prediction, where an
    action change is what a model's trigger (DVG) should detect. False: the usual scenes, unchanged."""
    labels: bool = False
    """Give every clip a class label (for class-conditional models): from `dataset.json` at the root of a
    folder or zip ({"labels": [[video name, class], ...]}, the StyleGAN-V layout), else from the first
    sub-folder name of each video under the root (sorted names -> 0, 1, ...); synthetic: the shape kind."""
    image_frames: int = 0
    """Joint image-video training (Ho et al. 2022 §3.1): append this many independent frames, each from a
    random other video (or from image_source), to every clip; the model lets each attend only to itself."""
    image_source: str | None = None
    """A folder of still images (.png/.jpg, searched recursively) to draw the image_frames from instead of
    the videos (null: frames of other videos)."""

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ConfigError(f"data.channels must be 1 (grayscale) or 3 (RGB), got {self.channels}")
        _check_positive(self, "data", ("resolution", "frames", "frame_stride", "fps", "synthetic_videos",
                                       "synthetic_frames", "synthetic_max_shapes"))
        from vidgen.core.synthetic import check_colours  # imported late, like SceneStyle in synthetic_style
        check_colours(self.synthetic_colours, "data.synthetic_colours")
        if self.workers < 0:
            raise ConfigError(f"data.workers must be >= 0, got {self.workers}")
        if self.image_frames < 0:
            raise ConfigError(f"data.image_frames must be >= 0, got {self.image_frames}")
        if self.image_source is not None and not self.image_frames:
            raise ConfigError("data.image_source is set but data.image_frames is 0; set data.image_frames to "
                              "the number of image frames per clip")

    @property
    def synthetic_style(self) -> SceneStyle:
        from vidgen.core.synthetic import SceneStyle  # imported late: recipes load without numpy or PyAV

        # The duration places the action changes (the middle half of each video); without them it is unused.
        duration = self.synthetic_frames / self.fps if self.synthetic_action_changes else None
        return SceneStyle(self.synthetic_max_shapes, self.synthetic_colours, self.synthetic_textures,
                          self.synthetic_action_changes, duration)


@dataclass(frozen=True)
class TrainConfig:
    max_steps: int = 1000
    """Optimizer steps to train for (a resumed run continues up to this count)."""
    batch_size: int = 8
    """Videos per micro-batch (per device)."""
    grad_accum: int = 1
    """Micro-batches accumulated per optimizer step; global batch = batch_size x grad_accum x ranks."""
    lr: float = 3e-4
    """Peak learning rate (Adam)."""
    betas: tuple[float, float] = (0.9, 0.99)
    """Adam betas (the VDM paper uses beta2 = 0.99)."""
    weight_decay: float = 0.0
    warmup_steps: int = 0
    """Linear learning-rate warm-up from 0 over this many steps."""
    lr_decay: LRDecay = "none"
    """After warm-up: "none" keeps lr; "cosine" decays it to 0 at max_steps, "linear" likewise on a straight line
    (TGANv2's linear_decay). A run resumed with a larger max_steps continues on the stretched curve."""
    grad_clip: float | None = 1.0
    """Clip the global gradient norm to this value; null disables."""
    ema_halflife_videos: float = 10_000.0
    """EMA half-life counted in training videos seen (independent of batch size and GPU count)."""
    ema_rampup: float | None = None
    """If set, the half-life is at most ema_rampup x videos seen so far (the StyleGAN ramp), so early EMA
    weights follow the model quickly."""
    precision: Precision = "fp32"
    """fp32, bf16 (autocast) or fp16 (autocast + gradient scaling)."""
    grad_checkpointing: bool = False
    """Recompute each block's activations (the diffusion U-Net's, VideoGPT's prior's) in the backward pass
    instead of storing them: much less activation memory for about a third more compute per step."""
    compile: bool = False
    """Run the networks the losses call through torch.compile (the first steps are slow while it compiles;
    checkpoints and EMA keep the plain modules)."""
    log_every: int = 10
    """Write a metrics.jsonl record every N steps."""
    checkpoint_every: int = 200
    """Save a checkpoint every N steps (and at the end, and on Ctrl-C)."""
    keep_checkpoints: int = 3
    """Keep the last K checkpoints."""
    sample_every: int = 0
    """Write a sample grid to samples/ every N steps (0: never during training)."""
    eval_every: int = 0
    """Score the EMA model with eval_metric every N steps (0: never); logged to metrics.jsonl, and the best
    checkpoint by it is kept as checkpoints/best.pt."""
    eval_metric: str = "fvd2048_16f"
    """The metric (a protocol name, see `vidgen eval --help`) scored during training."""
    eval_real: str | None = None
    """Real data for that metric (null: data.source; for synthetic data, this recipe's synthetic set). Its
    statistics are computed once and then read from the cache."""
    eval_videos: int | None = None
    """Score with this many videos per side instead of the protocol's count (labelled with the count);
    null: the protocol's."""
    max_nonfinite_steps: int = 10
    """A step whose loss is NaN or infinite on any rank is skipped (no optimizer step, no EMA update) and
    counted in metrics.jsonl; this many skipped steps in a row stop the run with an error (fp16 steps whose
    gradients overflow are the grad scaler's business and do not count)."""
    loggers: tuple[str, ...] = ("jsonl", "tensorboard")
    """Where the training scalars (and the preview images) go: jsonl (metrics.jsonl, always written),
    tensorboard (event files in RUN_DIR/tensorboard/), wandb (Weights & Biases; WANDB_MODE=offline keeps it
    local). A viewer whose package is missing is named once at start-up and left out."""

    def __post_init__(self) -> None:
        _check_positive(self, "train", ("max_steps", "batch_size", "grad_accum", "lr", "ema_halflife_videos",
                                        "log_every", "checkpoint_every", "keep_checkpoints", "eval_videos",
                                        "max_nonfinite_steps"))
        for name in ("warmup_steps", "weight_decay", "sample_every", "eval_every"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"train.betas must lie in [0, 1), got {list(self.betas)}")
        for name in self.loggers:
            if name not in KNOWN_LOGGERS:
                raise ConfigError(f"train.loggers: unknown logger '{name}'; known: {', '.join(KNOWN_LOGGERS)}")


@dataclass(frozen=True)
class SampleConfig:
    """The sampling options every backend takes. A backend with options of its own (a sampler, a truncation)
    subclasses this (BackendSpec.sample_class), so a recipe's sample section and `vidgen sample`'s options are
    one typed, checked set per backend."""

    num: int = 8
    """Videos to generate."""
    frames: int | None = None
    """Frames per video (null: the training clip length)."""
    fps: float | None = None
    """Frame rate of the output (null: the dataset's fps)."""
    batch_size: int = 8
    """Videos generated at once; does not change the result (one random generator per seed)."""
    seed: int = 0
    """Video i uses seed + i."""

    def __post_init__(self) -> None:
        for name in ("num", "frames", "fps", "batch_size"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"{self.key(name)} must be > 0, got {value}")

    @classmethod
    def key(cls, name: str) -> str:
        """How errors name an option: by its recipe key and its `vidgen sample` flag, e.g. sample.eta (--eta)."""
        option = next(f for f in dataclasses.fields(cls) if f.name == name)
        return f"sample.{name} ({option_flag(option)})"

    def check_recipe(self, recipe: Recipe) -> None:
        """Cross-checks against the model and data sections (e.g. a class index against the model's classes),
        run when a recipe is loaded and when sampling options are applied."""
        del recipe


@dataclass(frozen=True)
class PredictionSampleConfig(SampleConfig):
    """The sample section of a family that continues given frames (Backend.predicts): `--context` and
    `--context-frames` on top of the common options. --frames counts the whole output, context included."""

    context: str | None = None
    """A video file: every sample continues its first context_frames frames (K seeds: K futures of it)."""
    context_frames: int | None = None
    """Frames of --context that condition the samples (null: the model's own count)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.context_frames is not None and self.context_frames <= 0:
            raise ConfigError(f"{self.key('context_frames')} must be > 0, got {self.context_frames}")


def option_flag(option: dataclasses.Field) -> str:
    """The `vidgen sample` flag of a sample option: --name-with-dashes, unless the field names another."""
    return option.metadata.get("flag", "--" + option.name.replace("_", "-"))


def _flag_of(name: str) -> str:
    """The flag of an option that some backend's sample section has (for the error of one that lacks it)."""
    classes, seen = [SampleConfig], []
    while classes:  # every subclass, however deep (PredictionSampleConfig's own are two levels down)
        cls = classes.pop()
        seen.append(cls)
        classes.extend(cls.__subclasses__())
    for cls in seen:
        for option in dataclasses.fields(cls):
            if option.name == name:
                return option_flag(option)
    return "--" + name.replace("_", "-")


@dataclass(frozen=True)
class Recipe:
    run: RunConfig
    data: DataConfig = field(default_factory=DataConfig)
    model: Any = None
    """The backend's config dataclass; its `name` field picks the backend."""
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    """The backend's SampleConfig (sub)class."""

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(dataclasses.asdict(self))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def output_fps(self, sample: SampleConfig | None = None) -> float:
        """Frame rate of sampled videos: the sample section's fps, else the dataset's."""
        return (sample or self.sample).fps or self.data.fps

    def output_frames(self, sample: SampleConfig | None = None) -> int:
        """Length of sampled videos: the sample section's frames, else a training clip's."""
        return (sample or self.sample).frames or self.data.frames

    def sample_options(self, **given: Any) -> SampleConfig:
        """The sample section with `given` options in place of its values (e.g. from `vidgen sample`'s flags),
        coerced and checked exactly as a recipe's sample section is. An option this backend does not take is one
        line naming the backend and the options it does take."""
        cls = type(self.sample)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for name in given:
            if name not in fields:
                own = [option_flag(f) for f in fields.values() if f.name not in _COMMON_SAMPLE_OPTIONS]
                takes = f"its own options are {', '.join(own)}" if own else "it takes only the common ones"
                raise ConfigError(f"{_flag_of(name)} does not apply to a '{self.model.name}' model; {takes}")
        sample = build_dataclass(cls, {**dataclasses.asdict(self.sample), **given}, "sample")
        sample.check_recipe(self)
        return sample


_COMMON_SAMPLE_OPTIONS = frozenset(f.name for f in dataclasses.fields(SampleConfig))


# ----------------------------------------------------------------------------------------------------------
# Strict dataclass building with coercion


def check_rgb(recipe: Recipe) -> None:
    """For a family whose networks make RGB only: a grayscale recipe (data.channels 1) is a ConfigError."""
    if recipe.data.channels != 3:
        raise ConfigError(f"data.channels is {recipe.data.channels}, but a '{recipe.model.name}' model makes RGB "
                          "video; set data.channels: 3 (grayscale videos are then read as gray RGB)")


def check_class_labels(num_classes: int, labels: bool) -> None:
    """A class-conditional model (model.num_classes > 0) needs labelled clips (data.labels), and labelled clips a
    class-conditional model: a ConfigError for either one alone."""
    if num_classes and not labels:
        raise ConfigError(f"model.num_classes is {num_classes} but data.labels is false; set data.labels: true so "
                          "that clips come with their class")
    if labels and not num_classes:
        raise ConfigError("data.labels is true but model.num_classes is 0; set model.num_classes to the number of "
                          "classes, or data.labels: false")


def build_dataclass(cls: type, raw: Any, prefix: str) -> Any:
    """Build dataclass `cls` from a mapping, rejecting unknown keys and coercing values to field types."""
    if isinstance(raw, cls):
        return raw
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"'{prefix}' must be a mapping of keys, got {_describe(raw)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            raise ConfigError(f"unknown key '{prefix}.{key}'; valid keys in '{prefix}': {', '.join(fields)}")
    kwargs = {}
    for name, f in fields.items():
        key = f"{prefix}.{name}"
        if name in raw:
            kwargs[name] = coerce(raw[name], hints[name], key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing key '{key}' ({_type_name(hints[name])})")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"'{prefix}': {exc}") from None


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Return `value` as type `tp`, converting strings (from --set or YAML's 1e-4) where unambiguous."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("null", "none")):
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(exc)
        if len(errors) == 1:  # X or null: X's own error says more (e.g. that a number must be finite)
            raise errors[0]
        raise ConfigError(f"'{key}' expects {_type_name(tp)}, got {_describe(value)}")
    if origin is Literal:
        if value in args:
            return value
        raise ConfigError(f"'{key}' must be one of {', '.join(map(str, args))}; got {_describe(value)}")
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.replace("(", "").replace(")", "").split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"'{key}' expects a list ({_type_name(tp)}), got {_describe(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"'{key}' expects {len(args)} values, got {len(value)}")
        return tuple(coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if dataclasses.is_dataclass(tp):
        return build_dataclass(tp, value, key)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.replace("_", ""))
            except ValueError:
                pass
    elif tp is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                pass
        if number is not None:
            if not math.isfinite(number):  # NaN or inf would train NaN weights or write black videos
                raise ConfigError(f"'{key}' must be a finite number, got {value!r}")
            return number
    elif tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
    elif tp is Any:
        return value
    raise ConfigError(f"'{key}' expects {_type_name(tp)}, got {_describe(value)}")


def _check_positive(obj: Any, section: str, names: typing.Iterable[str]) -> None:
    for name in names:
        value = getattr(obj, name)
        if value is not None and value <= 0:
            raise ConfigError(f"{section}.{name} must be > 0, got {value}")


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(map(str, args))
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_type_name(args[0])}"
        return f"a list of {len(args)} values"
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(tp, str(tp))


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _to_plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    return obj
