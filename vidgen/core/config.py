"""Typed recipes: frozen dataclasses per section, loaded strictly from YAML.

A recipe has five sections: run, data, model, train, sample. The model section is the chosen backend's own
config class (looked up by `model.name` in the registry). Loading is strict: an unknown key or a value of the
wrong type is a ConfigError naming the full dotted key and what would be valid. `--set a.b=value` overrides
are applied to the raw mapping before validation, so they go through the same checks and coercions.

No torch import here: the CLI loads recipes before it decides to import torch.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from vidgen.errors import ConfigError

if typing.TYPE_CHECKING:
    from vidgen.core.synthetic import SceneStyle

RECIPES_DIR = Path(__file__).resolve().parents[2] / "recipes"

Precision = Literal["fp32", "bf16", "fp16"]
LRDecay = Literal["none", "cosine"]


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

        return SceneStyle(self.synthetic_max_shapes, self.synthetic_colours, self.synthetic_textures)


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
    """After warm-up: "none" keeps lr; "cosine" decays it to 0 at max_steps (a run resumed with a larger
    max_steps continues on the stretched curve)."""
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
    """Diffusion: recompute each U-Net block's activations in the backward pass instead of storing them
    (much less activation memory for about a third more compute per step)."""
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

    def __post_init__(self) -> None:
        _check_positive(self, "train", ("max_steps", "batch_size", "grad_accum", "lr", "ema_halflife_videos",
                                        "log_every", "checkpoint_every", "keep_checkpoints", "eval_videos",
                                        "max_nonfinite_steps"))
        if self.eval_every:
            from vidgen.metrics.protocols import PROTOCOLS  # no torch

            if self.eval_metric not in PROTOCOLS:
                raise ConfigError(f"train.eval_metric '{self.eval_metric}' is unknown; known metrics: "
                                  f"{', '.join(PROTOCOLS)}")
        for name in ("warmup_steps", "weight_decay", "sample_every", "eval_every"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"train.betas must lie in [0, 1), got {list(self.betas)}")


@dataclass(frozen=True)
class SampleConfig:
    num: int = 8
    """Videos to generate."""
    frames: int | None = None
    """Frames per video (null: the training clip length)."""
    fps: float | None = None
    """Frame rate of the output (null: the dataset's fps)."""
    steps: int = 64
    """Sampler steps (diffusion)."""
    batch_size: int = 8
    """Videos generated at once; does not change the result (one random generator per seed)."""
    seed: int = 0
    """Video i uses seed + i."""

    def __post_init__(self) -> None:
        _check_positive(self, "sample", ("num", "frames", "fps", "steps", "batch_size"))


@dataclass(frozen=True)
class Recipe:
    run: RunConfig
    data: DataConfig = field(default_factory=DataConfig)
    model: Any = None
    """The backend's config dataclass; its `name` field picks the backend."""
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(dataclasses.asdict(self))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# ----------------------------------------------------------------------------------------------------------
# Loading


def builtin_recipes() -> dict[str, Path]:
    """Built-in recipe names (file stems in recipes/) to their paths."""
    return {p.stem: p for p in sorted(RECIPES_DIR.glob("*.yaml"))}


def resolve_recipe_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"recipe file {path} does not exist")
        return path
    recipes = builtin_recipes()
    if name_or_path not in recipes:
        raise ConfigError(f"unknown recipe '{name_or_path}'; built-in recipes: {', '.join(recipes)} "
                          "(or pass a path to a .yaml file)")
    return recipes[name_or_path]


def load_recipe(name_or_path: str | Path, overrides: typing.Sequence[str] = ()) -> Recipe:
    """Load a built-in recipe by name or a YAML file by path, apply `key.path=value` overrides, validate."""
    path = resolve_recipe_path(str(name_or_path))
    raw = read_yaml(path)
    for override in overrides:
        apply_override(raw, override)
    return recipe_from_dict(raw, source=str(path))


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read recipe {path}: {exc.strerror}") from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {_yaml_problem(exc)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of sections (run, data, model, train, sample)")
    return data


def apply_override(raw: dict[str, Any], override: str) -> None:
    """Apply one `a.b.c=value` override in place; the value is parsed as YAML (then type-checked later)."""
    key, sep, text = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override '{override}' must look like key.path=value, e.g. train.lr=1e-4")
    parts = key.strip().split(".")
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set '{key}': '{'.'.join(parts[:i + 1])}' is not a section")
        node = child
    try:
        node[parts[-1]] = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        node[parts[-1]] = text


def recipe_from_dict(raw: dict[str, Any], source: str = "recipe") -> Recipe:
    from vidgen.models.registry import model_config_class  # no torch: config classes only

    raw = dict(raw)
    model_raw = raw.pop("model", None)
    if not isinstance(model_raw, dict) or "name" not in model_raw:
        raise ConfigError(f"{source}: the 'model' section must name a backend, e.g. model: {{name: vdm}}")
    model_cls = model_config_class(str(model_raw["name"]))
    sections = {f.name for f in dataclasses.fields(Recipe)}
    unknown = set(raw) - sections
    if unknown:
        raise ConfigError(f"unknown section '{sorted(unknown)[0]}' in {source}; valid sections: "
                          f"{', '.join(f.name for f in dataclasses.fields(Recipe))}")
    if "run" not in raw:
        raise ConfigError(f"{source}: missing section 'run' (it needs at least run.name)")
    kwargs = {name: build_dataclass(_section_types()[name], raw[name], name)
              for name in ("run", "data", "train", "sample") if name in raw}
    kwargs["model"] = build_dataclass(model_cls, model_raw, "model")
    recipe = Recipe(**kwargs)
    _cross_check(recipe)
    return recipe


def _section_types() -> dict[str, type]:
    return {"run": RunConfig, "data": DataConfig, "train": TrainConfig, "sample": SampleConfig}


def _cross_check(recipe: Recipe) -> None:
    check = getattr(recipe.model, "check_recipe", None)
    if check is not None:
        check(recipe)


# ----------------------------------------------------------------------------------------------------------
# Strict dataclass building with coercion


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
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
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


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys instead of silently keeping the last one."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    mapping = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in mapping:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key '{key}'", key_node.start_mark)
        mapping[key] = loader.construct_object(value_node, deep=deep)
    return mapping


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if "\\t" in str(problem) or "tab" in str(problem):
        problem = "tab characters cannot indent YAML; use spaces"
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{where}"
