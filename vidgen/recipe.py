"""Recipe assembly: a built-in name or a YAML file, `--set` overrides, the registry's section classes, the
cross-checks between sections.

The typed sections themselves are plain dataclasses in vidgen/core/config.py; this module joins them to the
model registry (which backend's model and sample classes a recipe uses) and to the metric protocols (which
metric train.eval_metric may name). Overrides are applied to the raw mapping before validation, so they go
through the same checks and coercions as the file. No torch import: the CLI loads recipes before it decides to
import torch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from vidgen.core.config import DataConfig, Recipe, RunConfig, TrainConfig, build_dataclass
from vidgen.errors import ConfigError
from vidgen.metrics.protocols import PROTOCOLS
from vidgen.models.registry import get_backend_spec

RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"
SECTIONS = tuple(f.name for f in dataclasses.fields(Recipe))


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


def load_recipe(name_or_path: str | Path, overrides: Sequence[str] = (), saved: bool = False) -> Recipe:
    """Load a built-in recipe by name or a YAML file by path, apply `key.path=value` overrides, validate.
    `saved`: the file is a run's own config.yaml (written by an earlier version, perhaps; see recipe_from_dict)."""
    path = resolve_recipe_path(str(name_or_path))
    raw = read_yaml(path)
    for override in overrides:
        apply_override(raw, override)
    return recipe_from_dict(raw, source=str(path), saved=saved)


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read recipe {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a text file; a recipe is YAML (see recipes/ for examples)") from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {_yaml_problem(exc)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of sections ({', '.join(SECTIONS)})")
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


def recipe_from_dict(raw: dict[str, Any], source: str = "recipe", saved: bool = False) -> Recipe:
    """Build and cross-check a recipe from its plain mapping. The model section's `name` picks the backend,
    whose registry entry gives the classes of the model and sample sections. `saved`: the mapping was written by
    vidgen into a run or checkpoint, perhaps by an earlier version, whose layout is upgraded first."""
    raw = dict(raw)
    model_raw = raw.pop("model", None)
    if not isinstance(model_raw, dict) or "name" not in model_raw:
        raise ConfigError(f"{source}: the 'model' section must name a backend, e.g. model: {{name: vdm}}")
    spec = get_backend_spec(str(model_raw["name"]))
    unknown = set(raw) - set(SECTIONS)
    if unknown:
        raise ConfigError(f"unknown section '{sorted(unknown)[0]}' in {source}; valid sections: "
                          f"{', '.join(SECTIONS)}")
    if "run" not in raw:
        raise ConfigError(f"{source}: missing section 'run' (it needs at least run.name)")
    if saved:
        raw = _upgrade_saved(raw, spec.sample_class)
    classes = {"run": RunConfig, "data": DataConfig, "train": TrainConfig, "sample": spec.sample_class}
    kwargs = {name: build_dataclass(cls, raw.get(name), name) for name, cls in classes.items()
              if name in raw or name == "sample"}
    recipe = Recipe(model=build_dataclass(spec.config_class, model_raw, "model"), **kwargs)
    _cross_check(recipe)
    return recipe


def _upgrade_saved(raw: dict[str, Any], sample_class: type) -> dict[str, Any]:
    """Configs saved before sampling options were typed per backend carry sample.steps for every backend; a
    backend without that option (a GAN) ignored it, so it is dropped."""
    sample = raw.get("sample")
    options = {f.name for f in dataclasses.fields(sample_class)}
    if isinstance(sample, dict) and "steps" in sample and "steps" not in options:
        raw = {**raw, "sample": {k: v for k, v in sample.items() if k != "steps"}}
    return raw


def _cross_check(recipe: Recipe) -> None:
    check = getattr(recipe.model, "check_recipe", None)
    if check is not None:
        check(recipe)
    recipe.sample.check_recipe(recipe)
    train = recipe.train
    if train.eval_every and train.eval_metric not in PROTOCOLS:
        raise ConfigError(f"train.eval_metric '{train.eval_metric}' is unknown; known metrics: "
                          f"{', '.join(PROTOCOLS)}")


# ----------------------------------------------------------------------------------------------------------
# Strict YAML


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
