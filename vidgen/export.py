"""`vidgen export`: a run's sampling weights as a standalone folder to share, laid out like a Hugging Face model
repository, which `vidgen sample` and `vidgen eval --fake` take as they take a run.

    DIR/model.safetensors   the sampling weights (EMA copies where the backend has them), safetensors
    DIR/config.yaml         the resolved recipe
    DIR/stage1.yaml         a two-stage family only: the record of its frozen first stage (its weights are in
                            model.safetensors)
    DIR/README.md           a model card
    DIR/preview.mp4         the run's latest training preview, when it has one

Nothing in an export is a pickle: loading one (vidgen.core.checkpoint.load_export) never runs code.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from vidgen.core.checkpoint import (EXPORT_CONFIG, EXPORT_FORMAT, EXPORT_STAGE1, EXPORT_WEIGHTS, find_checkpoint,
                                    load_checkpoint)
from vidgen.core.run_dir import RunDir, read_metrics
from vidgen.errors import UserError
from vidgen.models.registry import get_backend_spec
from vidgen.upstream import backend_from_checkpoint

PREVIEW = "preview.mp4"


@dataclass(frozen=True)
class ExportResult:
    out_dir: Path
    checkpoint: Path
    step: int
    parameters: int


def resolve_checkpoint(run: Path, which: str) -> Path:
    """--checkpoint: latest (the run's newest), best (checkpoints/best.pt) or a checkpoint file's path."""
    if which == "latest":
        return find_checkpoint(run)
    if which == "best":
        best = RunDir(run).checkpoints / "best.pt"
        if not best.is_file():
            raise UserError(f"{run} has no best checkpoint (checkpoints/best.pt is written when train.eval_metric "
                            "is set); use --checkpoint latest")
        return best
    path = Path(which).expanduser()
    if not path.is_file():
        raise UserError(f"--checkpoint {which} is not latest, best or a checkpoint file")
    return path


def export(run: Path, out_dir: Path, checkpoint: str = "latest") -> ExportResult:
    """Write the export of `run`'s chosen checkpoint into `out_dir` (which must not exist or be empty)."""
    if not run.exists():
        raise UserError(f"{run} does not exist; give a run directory")
    check_out_dir(out_dir)
    path = resolve_checkpoint(run, checkpoint)
    state = load_checkpoint(path)
    recipe, backend = backend_from_checkpoint(state, str(path))
    if not is_plain_data(state["backend"]):
        raise UserError(f"{path}: the backend's extra state is not plain data; it cannot be exported")
    # Exactly what sampling loads into backend.networks.
    weights = dict(backend.networks.state_dict())
    parameters = sum(p.numel() for p in backend.networks.parameters())
    run_dir = _run_dir_of(run, path)
    preview = _latest_preview(run_dir)
    card = model_card(recipe, state, parameters, run_dir, out_dir, preview is not None)
    write_export(out_dir, recipe, weights, int(state["step"]), state["backend"], card, upstream=state.get("upstream"),
                 preview=preview)
    return ExportResult(out_dir, path, int(state["step"]), parameters)


def check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise UserError(f"--out {out_dir} is not an empty folder; choose a new one or empty it")


def is_plain_data(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def write_export(out_dir: Path, recipe: Any, weights: dict[str, Any], step: int, backend_state: dict[str, Any],
                 card: str, upstream: dict[str, Any] | None = None, preview: Path | None = None) -> None:
    """The export folder: weights, resolved recipe, stage-1 record, preview and model card."""
    from safetensors.torch import save_file

    # Cloned, so no two tensors share storage (safetensors refuses shared storage) and each is contiguous.
    tensors = {name: value.detach().cpu().contiguous().clone() for name, value in weights.items()}
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(out_dir / EXPORT_WEIGHTS),
                  metadata={"format": EXPORT_FORMAT, "step": str(step), "backend": json.dumps(backend_state)})
        (out_dir / EXPORT_CONFIG).write_text(recipe.to_yaml())
        if upstream is not None:
            (out_dir / EXPORT_STAGE1).write_text(yaml.safe_dump(dict(upstream), sort_keys=False))
        if preview is not None:
            shutil.copyfile(preview, out_dir / PREVIEW)
        (out_dir / "README.md").write_text(card)
    except OSError as exc:
        raise UserError(f"cannot write the export to {out_dir}: {exc.strerror or exc}; choose another --out") from None


def _run_dir_of(run: Path, checkpoint: Path) -> Path | None:
    """The run directory whose metrics and previews describe the checkpoint (RUN, or RUN/checkpoints/..)."""
    for candidate in (run, checkpoint.parent.parent):
        if candidate.is_dir() and (candidate / "checkpoints").is_dir():
            return candidate
    return None


def _latest_preview(run_dir: Path | None) -> Path | None:
    if run_dir is None:
        return None
    previews = sorted(RunDir(run_dir).samples.glob("step-*.mp4"))
    return previews[-1] if previews else None


def eval_metrics(run_dir: Path | None, step: int) -> list[tuple[str, float, int]]:
    """(protocol, value, step) of every eval/ record in the run's metrics.jsonl up to the exported step."""
    if run_dir is None or not RunDir(run_dir).metrics.is_file():
        return []
    found = []
    for record in read_metrics(RunDir(run_dir).metrics):
        if record.get("step", 0) > step:
            continue
        for key, value in record.items():
            if key.startswith("eval/"):
                found.append((key[len("eval/"):], value, record.get("step", 0)))
    return found


def model_card(recipe: Any, state: dict[str, Any], parameters: int, run_dir: Path | None, out_dir: Path,
               has_preview: bool) -> str:
    """README.md: what the model is, how far it was trained, on what, how it scores and how to sample it."""
    spec = get_backend_spec(recipe.model.name)
    step = int(state["step"])
    seen = state.get("data", {}).get("samples_seen")
    if seen is None:
        seen = step * recipe.train.batch_size * recipe.train.grad_accum
    data = state.get("data", {})
    fingerprint = data.get("fingerprint") or "not recorded"
    lines = ["---", "library_name: vidgen", "tags:", "- vidgen", "- video-generation", f"- {recipe.model.name}", "---",
             "", f"# {recipe.run.name}", "", f"{spec.description}.", ""]
    if recipe.run.description:
        lines += [recipe.run.description, ""]
    lines += ["| | |", "|---|---|", f"| family | `{recipe.model.name}` |", f"| recipe / run | `{recipe.run.name}` |",
              f"| parameters | {parameters:,} |", f"| training step | {step:,} |", f"| videos seen | {seen:,} |",
              f"| training data | `{recipe.data.source}` |", f"| data fingerprint | {fingerprint} |", ""]
    if state.get("upstream") is not None:
        lines += [f"Built on a frozen `{spec.upstream.family}` first stage (step {state['upstream'].get('step')}), "
                  f"recorded in `{EXPORT_STAGE1}`; its weights are in `{EXPORT_WEIGHTS}` and count in the "
                  "parameters above.", ""]
    metrics = eval_metrics(run_dir, step)
    lines += ["## Evaluation", ""]
    if metrics:
        lines += ["| protocol | value | step |", "|---|---|---|"]
        lines += [f"| `{name}` | {value:.4g} | {at:,} |" if isinstance(value, (int, float)) else
                  f"| `{name}` | {value} | {at:,} |" for name, value, at in metrics]
    else:
        lines.append("No evaluation recorded during training.")
    lines += ["", "## Sampling", "", "```bash", f"vidgen sample {out_dir} --out samples --num 8", "```", "",
              f"`{EXPORT_WEIGHTS}` holds the sampling weights (EMA where the model keeps them); `{EXPORT_CONFIG}` the "
              "resolved recipe. Loading never unpickles anything.", ""]
    if has_preview:
        lines += ["## Preview", "", f"[Latest training preview]({PREVIEW})", ""]
    return "\n".join(lines)
