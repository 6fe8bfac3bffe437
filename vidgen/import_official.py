"""`vidgen import FAMILY FILE --out DIR`: a checkpoint of a family's reference implementation as a vidgen export.

The family converts the file (its registry entry's import_official: settings -> recipe, tensors -> its networks'
names); here the recipe is checked like any recipe, the weights are loaded into the backend it builds (so they
fit), and the export is written (vidgen/export.py), which `vidgen sample` and `vidgen eval --fake` take as a run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vidgen.core.checkpoint import EXPORT_CONFIG, EXPORT_WEIGHTS, load_weights
from vidgen.core.files import sha256_file
from vidgen.errors import UserError
from vidgen.export import check_out_dir, is_plain_data, write_export
from vidgen.models.base import OfficialImport
from vidgen.models.registry import BACKENDS, build_backend, get_backend_spec
from vidgen.recipe import recipe_from_dict


@dataclass(frozen=True)
class ImportResult:
    out_dir: Path
    family: str
    parameters: int


def importable_families() -> list[str]:
    return [name for name, spec in BACKENDS.items() if spec.import_official is not None]


def import_official(family: str, path: Path, out_dir: Path) -> ImportResult:
    """Convert `path` (a checkpoint of `family`'s reference code) and write it as an export into `out_dir`."""
    known = importable_families()
    if family not in known:
        raise UserError(f"vidgen cannot import '{family}' checkpoints; it imports {', '.join(known)}")
    if not path.is_file():
        raise UserError(f"{path} is not a file; give the checkpoint to import")
    check_out_dir(out_dir)
    converted = get_backend_spec(family).import_official(path)
    if not is_plain_data(converted.backend_state):
        raise ValueError(f"the '{family}' importer returned extra state that is not plain data")
    recipe = recipe_from_dict(converted.recipe, source=f"the settings of {path}")
    backend = build_backend(recipe)
    load_weights(backend.networks, converted.networks, str(path))
    backend.load_extra_state(converted.backend_state)
    parameters = sum(p.numel() for p in backend.networks.parameters())
    card = model_card(recipe, converted, path, out_dir, parameters)
    write_export(out_dir, recipe, dict(backend.networks.state_dict()), 0, backend.extra_state(), card)
    return ImportResult(out_dir, family, parameters)


def model_card(recipe: object, converted: OfficialImport, path: Path, out_dir: Path, parameters: int) -> str:
    """README.md of an imported model: where it came from, what it is, how to sample and score it."""
    spec = get_backend_spec(recipe.model.name)  # type: ignore[attr-defined]
    digest = sha256_file(path)
    lines = ["---", "library_name: vidgen", "tags:", "- vidgen", "- video-generation", f"- {spec.name}", "---", "",
             f"# {recipe.run.name}", "", f"{spec.description}.", "",  # type: ignore[attr-defined]
             f"Imported from the {converted.description} `{path.name}` (sha256 `{digest}`) by `vidgen import "
             f"{spec.name}`, which reads its tensors and settings as data: no code from the file ran.", "",
             "| | |", "|---|---|", f"| family | `{spec.name}` |", f"| parameters (all networks) | {parameters:,} |"]
    lines += [f"| {what} | {value} |" for what, value in converted.details]
    lines += ["", "## Evaluation", "", "Not scored by vidgen yet. Score it against the real data the original was "
              "trained on, e.g.:", "", "```bash", f"vidgen eval --real DATA.zip --fake {out_dir} --metrics fvd2048_16f",
              "```", "", "## Sampling", "", "```bash", f"vidgen sample {out_dir} --out samples --num 8", "```", "",
              f"`{EXPORT_WEIGHTS}` holds the networks' sampling weights (EMA copies where the family keeps them); "
              f"`{EXPORT_CONFIG}` the recipe derived from the checkpoint's settings.", ""]
    return "\n".join(lines)
