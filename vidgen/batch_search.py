"""`vidgen train RECIPE --max-batch-search`: the largest per-GPU batch whose training step fits in memory.

Each candidate batch runs one real training step of the recipe (vidgen.step.train_step, as the training loop:
every phase, forward, loss, backward, optimizer step, at the recipe's precision and gradient checkpointing) on a
batch from its own dataset. Doubling finds a
batch that does not fit, bisection the boundary; a CUDA out-of-memory error means "does not fit". Memory is
only the limit on GPUs, so the search refuses other devices.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from vidgen.core.config import Recipe
from vidgen.core.data.loader import make_train_loader
from vidgen.core.device import check_precision
from vidgen.errors import UserError
from vidgen.step import StepContext, TrainState, batch_to_device, train_step


@dataclass(frozen=True)
class BatchSearchResult:
    batch_size: int
    """The largest batch that fits (per GPU)."""
    tried: dict[int, bool]
    """Every batch size tried and whether it fitted, in the order tried."""


def largest_fitting(fits: Callable[[int], bool], limit: int) -> tuple[int, dict[int, bool]]:
    """The largest b in [1, limit] with fits(b), for a monotone `fits` (b fits => smaller batches fit): double
    from 1 until a batch does not fit (or the limit), then bisect. Returns (b, every size tried -> result);
    b = 0 when not even 1 fits."""
    tried: dict[int, bool] = {}

    def check(b: int) -> bool:
        tried[b] = fits(b)
        return tried[b]

    good, bad = 0, None
    b = 1
    while b <= limit:
        if not check(b):
            bad = b
            break
        good, b = b, 2 * b
    if bad is None:  # everything up to the last doubling fitted: bisect towards the limit
        bad = limit + 1
    while bad - good > 1:
        middle = (good + bad) // 2
        if check(middle):
            good = middle
        else:
            bad = middle
    return good, tried


def find_max_batch(recipe: Recipe, device: torch.device, limit: int = 1024) -> BatchSearchResult:
    """Search the recipe's per-GPU batch on `device` (a CUDA device)."""
    from vidgen.models.registry import build_backend
    from vidgen.upstream import load_upstream

    if device.type != "cuda":
        raise UserError(f"--max-batch-search needs a CUDA device (memory is what limits the batch there); got "
                        f"{device}. Pass --device cuda")
    check_precision(recipe.train.precision, device)
    backend = build_backend(recipe, load_upstream(recipe))
    backend.networks.to(device).train()
    # The training state of a run (EMA copies and optimizer moments count against memory too), stepped by the
    # training loop's own step function.
    state = TrainState.create(backend, recipe.train.precision, device, [torch.Generator(device).manual_seed(0)])
    context = StepContext(recipe.train, device, backend.networks)
    dataset = backend.training_dataset()

    def fits(batch_size: int) -> bool:
        loader = make_train_loader(dataset, batch_size=batch_size, seed=recipe.run.seed, start_sample=0, workers=0)
        batch = batch_to_device(next(iter(loader)), device)
        try:
            train_step(state, [batch], context)  # every phase, as the first step of a run does
            torch.cuda.synchronize(device)
            return True
        except torch.cuda.OutOfMemoryError:
            return False
        finally:
            del batch
            for optimizer in state.optimizers.values():
                optimizer.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()

    best, tried = largest_fitting(fits, limit)
    if best == 0:
        raise UserError(f"not even a batch of 1 fits on {device}; lower data.resolution or data.frames, set "
                        "train.grad_checkpointing: true, or use train.precision: bf16")
    return BatchSearchResult(best, tried)
