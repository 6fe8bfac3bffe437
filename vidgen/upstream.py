"""Backends from checkpoints, and the frozen first stage that two-stage families build on.

A two-stage family (VideoGPT's prior on a VQ-VAE; a latent diffusion model on an autoencoder) names its stage-1
run in a model field (its registry entry's `upstream`). When stage-2 training starts, that run's newest intact
checkpoint is loaded here: checked to be of the right family, hashed, its sampling weights loaded, frozen. The
stage-2 backend keeps those networks inside its own (core.frozen.Frozen), so every stage-2 checkpoint embeds them
and records where they came from ("upstream": source, checkpoint, step, sha256, config). Resuming and sampling
then rebuild the first stage from that record, never from the stage-1 run, which may have moved on or gone.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from vidgen.core.checkpoint import find_checkpoint, load_checkpoint, load_weights
from vidgen.core.config import Recipe
from vidgen.core.files import sha256_file
from vidgen.errors import ConfigError, UserError
from vidgen.models.base import Backend, FrozenStage
from vidgen.models.registry import build_backend, get_backend_spec
from vidgen.recipe import recipe_from_dict


def backend_from_checkpoint(state: Mapping[str, Any], source: str) -> tuple[Recipe, Backend]:
    """Rebuild the backend of a loaded checkpoint from its own config, with its sampling weights (the EMA copies
    replace the raw weights of the networks that have one) and extra state, on the CPU in eval mode."""
    recipe = recipe_from_dict(state["config"], source=source, saved=True)
    backend = build_backend(recipe, load_upstream(recipe, state, source))
    weights = dict(state["networks"])
    weights.update(state["ema"])
    load_weights(backend.networks, weights, source)
    backend.load_extra_state(state["backend"])
    backend.networks.eval()
    return recipe, backend


def load_upstream(recipe: Recipe, saved: Mapping[str, Any] | None = None, source: str = "checkpoint"
                  ) -> FrozenStage | None:
    """The frozen first stage of the recipe's backend (None for a one-stage family).

    `saved`: a checkpoint of this backend, when resuming or sampling. Its stage 1 is rebuilt from the recorded
    config, with initial weights: the checkpoint's own networks, which embed the trained ones, replace them.
    Without it (a stage-2 run starting), the run the model field names is loaded, with its weights."""
    spec = get_backend_spec(recipe.model.name).upstream
    if spec is None:
        return None
    if saved is not None:
        record = saved.get("upstream")
        if not isinstance(record, dict) or "config" not in record:
            raise UserError(f"{source} does not record its stage-1 '{spec.family}' run; it is not a complete "
                            f"'{recipe.model.name}' checkpoint")
        stage_recipe = recipe_from_dict(record["config"], source=f"{source} (stage 1)", saved=True)
        return _frozen(stage_recipe, build_backend(stage_recipe), dict(record))

    named = getattr(recipe.model, spec.field)
    field = f"model.{spec.field}"
    path = Path(named).expanduser()
    if not path.exists():
        raise ConfigError(f"{field}: {named} does not exist; train the stage-1 '{spec.family}' run first, or point "
                          f"{field} at its run directory or checkpoint")
    try:
        checkpoint = find_checkpoint(path)
        state = load_checkpoint(checkpoint)
    except UserError as exc:
        raise UserError(f"{field}: {exc}") from None
    family = state["config"]["model"]["name"]
    if family != spec.family:
        raise ConfigError(f"{field}: {named} is a '{family}' run, not a '{spec.family}' run; point {field} at a "
                          f"'{spec.family}' run")
    stage_recipe, stage_backend = backend_from_checkpoint(state, str(checkpoint))
    record = {"source": named, "checkpoint": str(checkpoint), "step": state["step"],
              "sha256": sha256_file(checkpoint), "config": state["config"]}
    return _frozen(stage_recipe, stage_backend, record)


def _frozen(recipe: Recipe, backend: Backend, record: dict[str, Any]) -> FrozenStage:
    networks: dict[str, nn.Module] = {}
    for name, network in backend.networks.items():
        networks[name] = network.eval().requires_grad_(False)
    return FrozenStage(recipe, networks, record)
