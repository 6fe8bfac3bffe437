"""`vidgen train --gpus N`: the same training command relaunched under torchrun, one process per GPU of this
machine (`torchrun --standalone`: one node, a free port picked by torchrun). Several machines: run torchrun on
each yourself (README, "Several GPUs or machines").
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import NoReturn

from vidgen.errors import UserError


def check_gpus(gpus: int, device: str, env: Mapping[str, str] = os.environ) -> None:
    """Fail with one line unless this machine can run `gpus` training processes on `device`. --device cpu runs
    that many CPU processes over gloo (how the tests exercise the launcher); auto and cuda need that many GPUs."""
    if gpus < 1:
        raise UserError(f"--gpus must be >= 1, got {gpus}")
    if "WORLD_SIZE" in env:
        raise UserError("--gpus starts torchrun itself; under torchrun leave it out (--nproc-per-node sets the "
                        "number of processes)")
    spec = device.strip().lower()
    if spec == "cpu":
        return
    if spec not in ("auto", "cuda"):
        raise UserError(f"--gpus gives each process its own GPU, so --device must be auto or cuda (or cpu for "
                        f"{gpus} CPU processes), not '{device}'")
    import torch

    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if available == 0:
        raise UserError(f"--gpus {gpus} needs CUDA GPUs, but CUDA is not available here (no GPU, or a CPU-only "
                        f"torch build); add --device cpu to train with {gpus} CPU processes instead")
    if gpus > available:
        raise UserError(f"--gpus {gpus} asks for more GPUs than this machine has ({available}); use --gpus "
                        f"{available}, and raise train.grad_accum to keep the global batch")


def torchrun_command(gpus: int, train_args: Sequence[str], python: str = sys.executable) -> list[str]:
    """The torchrun command line that runs `vidgen train TRAIN_ARGS` as `gpus` processes on this machine."""
    return [python, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(gpus),
            "-m", "vidgen_cli", "train", *train_args]


def exec_torchrun(gpus: int, train_args: Sequence[str]) -> NoReturn:
    """Replace this process by torchrun, so that signals (Ctrl-C, a scheduler's SIGTERM) and the exit status
    are torchrun's, with nothing in between."""
    command = torchrun_command(gpus, train_args)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(command[0], command)
