"""Multi-process training under torchrun: the process group, and the few collectives the shared loop needs.

torchrun starts one process per GPU and tells each who it is through environment variables (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR, MASTER_PORT). `process_group()` reads them once and yields a `DistInfo` that the loop
passes on explicitly; without torchrun it yields the single-process DistInfo and no collective does anything.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as torch_dist

from vidgen.errors import UserError

COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=30)
"""How long a rank waits in a collective before giving up. Long enough for rank 0 to write a checkpoint, a
sample grid or compute the real statistics of an evaluation while the other ranks wait; short enough that a
rank whose peer died does not hang forever. It is the last resort: when a worker dies, torchrun sends SIGTERM to
the others and SIGKILL 30 s later, and gloo fails a collective as soon as a peer's connection drops."""


@dataclass(frozen=True)
class DistInfo:
    """Who this process is in the job. world_size 1: a plain single-process run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    """Index of this process on its machine: its GPU is cuda:local_rank."""

    @property
    def is_main(self) -> bool:
        """Rank 0 alone prints, logs and writes checkpoints and samples."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        """True when there are other ranks to talk to."""
        return self.world_size > 1


SINGLE_PROCESS = DistInfo()


def info_from_env(env: Mapping[str, str] = os.environ) -> DistInfo:
    """The DistInfo torchrun's environment variables describe (single-process when they are absent)."""
    if "WORLD_SIZE" not in env:
        return SINGLE_PROCESS
    try:
        info = DistInfo(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", env["RANK"])))
    except (KeyError, ValueError):
        raise UserError("WORLD_SIZE is set but RANK is missing or not a number; launch with "
                        "`torchrun --nproc-per-node N -m vidgen_cli train ...`") from None
    if not 0 <= info.rank < info.world_size:
        raise UserError(f"RANK={info.rank} is outside WORLD_SIZE={info.world_size}")
    return info


def device_for(info: DistInfo, spec: str) -> str:
    """The device this rank trains on: under torchrun, `auto` and `cuda` mean this rank's GPU, cuda:LOCAL_RANK."""
    if not info.active:
        return spec
    normalized = spec.strip().lower()
    if normalized == "cuda" or (normalized == "auto" and torch.cuda.is_available()):
        return f"cuda:{info.local_rank}"
    if normalized.startswith("cuda:"):
        raise UserError(f"--device {spec} names one GPU, but under torchrun each rank uses its own "
                        "(cuda:LOCAL_RANK); use --device cuda or auto")
    return "cpu" if normalized == "auto" else spec


@contextlib.contextmanager
def process_group(info: DistInfo, device: torch.device) -> Iterator[DistInfo]:
    """Join the job's process group (nccl on CUDA, gloo on CPU) for the duration of the block, then leave it,
    on success, error or Ctrl-C alike."""
    if not info.active:
        yield info
        return
    if device.type not in ("cuda", "cpu"):
        raise UserError(f"distributed training runs on CUDA or CPU, not {device.type}; use --device cuda or cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    torch_dist.init_process_group(backend, rank=info.rank, world_size=info.world_size,
                                  timeout=COLLECTIVE_TIMEOUT,
                                  device_id=device if device.type == "cuda" else None)
    try:
        yield info
    finally:
        torch_dist.destroy_process_group()


# ----------------------------------------------------------------------------------------------------------
# Collectives: each is a no-op in a single-process run. A collective that fails because a peer is gone is one
# line (`_peers`), not a traceback per surviving rank.


def barrier(info: DistInfo) -> None:
    if info.active:
        with _peers(info):
            torch_dist.barrier()


def broadcast_object(info: DistInfo, value: Any) -> Any:
    """Rank 0's `value`, on every rank."""
    if not info.active:
        return value
    box = [value]
    with _peers(info):
        torch_dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_objects(info: DistInfo, value: Any) -> list[Any]:
    """[value of rank 0, value of rank 1, ...] on every rank."""
    if not info.active:
        return [value]
    out: list[Any] = [None] * info.world_size
    with _peers(info):
        torch_dist.all_gather_object(out, value)
    return out


def any_rank(info: DistInfo, flag: bool, device: torch.device) -> bool:
    """True on every rank when `flag` is true on some rank (so all ranks stop at the same step)."""
    if not info.active:
        return flag
    value = torch.tensor([float(flag)], device=device)
    with _peers(info):
        torch_dist.all_reduce(value, op=torch_dist.ReduceOp.MAX)
    return bool(value.item())


def sum_over_ranks(info: DistInfo, values: Sequence[float], device: torch.device) -> list[float]:
    """Each value summed over the ranks, in float64 (exact for counts); one collective."""
    if not info.active:
        return [float(v) for v in values]
    total = torch.tensor(list(values), dtype=torch.float64, device=device)
    with _peers(info):
        torch_dist.all_reduce(total)
    return total.tolist()


def sum_tensor_over_ranks(info: DistInfo, value: torch.Tensor) -> torch.Tensor:
    """A tensor summed over the ranks (a new tensor; the input itself in one process); one collective."""
    if not info.active:
        return value
    total = value.clone()
    with _peers(info):
        torch_dist.all_reduce(total)
    return total


def mean_of_logs(info: DistInfo, logs: Mapping[str, float], device: torch.device) -> dict[str, float]:
    """Each logged value averaged over the ranks (every rank logs the same keys); one collective."""
    if not info.active or not logs:
        return dict(logs)
    keys = sorted(logs)
    totals = sum_over_ranks(info, [logs[key] for key in keys], device)
    return {key: total / info.world_size for key, total in zip(keys, totals)}


def average_gradients(info: DistInfo, params: list[torch.nn.Parameter]) -> None:
    """Replace each gradient by its mean over the ranks: one flat all-reduce per call (NVlabs/stylegan3's training
    loop does the same). Parameters without a gradient are left out, as the optimizer skips them; every rank runs
    the same phases on the same networks, so the ranks agree on which ones those are."""
    if not info.active:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.flatten() for g in grads])
    with _peers(info):
        torch_dist.all_reduce(flat)
    flat /= info.world_size
    for grad, chunk in zip(grads, flat.split([g.numel() for g in grads])):
        grad.copy_(chunk.view_as(grad))


def broadcast_module(info: DistInfo, module: torch.nn.Module) -> None:
    """Rank 0's parameters and buffers, on every rank (a guard: every rank builds them from the same seed)."""
    if not info.active:
        return
    with _peers(info):
        for tensor in [*module.parameters(), *module.buffers()]:
            torch_dist.broadcast(tensor.data, src=0)


_LOST_PEER = ("connection reset", "connection closed", "broken pipe", "timed out", "timeout")
"""Phrases of gloo's errors (plain RuntimeErrors) when a peer's socket drops or a collective times out."""


@contextlib.contextmanager
def _peers(info: DistInfo) -> Iterator[None]:
    """Turn the failure of a collective whose peer died (or whose network broke) into one line: the first failure,
    the dead rank's, is what the user needs to read, and the remedy is always to resume. NCCL's errors and
    timeouts are DistErrors; gloo's are RuntimeErrors recognised by their text. Anything else is a bug and keeps
    its traceback."""
    try:
        yield
    except RuntimeError as exc:
        text = str(exc).strip()
        if not isinstance(exc, torch_dist.DistError) and not any(p in text.lower() for p in _LOST_PEER):
            raise
        # gloo's first sentence, without its source location ("[/path/pair.cc:537] Read error ...: Connection
        # reset by peer. This is typically caused by ..."), says what happened.
        first = re.sub(r"^\[[^\]]*\]\s*", "", text.splitlines()[0]).split(". ")[0] if text else ""
        reason = first[:200] or type(exc).__name__
        raise UserError(f"rank {info.rank} lost contact with the other ranks ({reason}); another rank probably "
                        "failed first (see its error above): run the same command again to resume from the last "
                        "checkpoint") from None
