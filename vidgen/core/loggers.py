"""Training logs in the standard viewers: TensorBoard and Weights & Biases, beside metrics.jsonl.

metrics.jsonl (vidgen.core.run_dir.MetricsLog) is always written and stays the record of a run; the loggers here
mirror its scalars (same names, same steps) and the preview images to a viewer. Each viewer's package is an
optional extra: one that is missing is named once at start-up and training goes on without it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from vidgen.core.io import make_grid

if TYPE_CHECKING:
    from vidgen.core.config import Recipe


class Logger(Protocol):
    """A viewer of the training run. Only rank 0 has loggers."""

    def log_scalars(self, step: int, scalars: Mapping[str, float]) -> None: ...

    def log_image(self, step: int, tag: str, image: np.ndarray) -> None:
        """`image`: uint8 [H, W, 3]."""

    def close(self) -> None: ...


class TensorBoardLogger:
    """Event files in `log_dir` (RUN_DIR/tensorboard/): `tensorboard --logdir runs` shows every run."""

    def __init__(self, log_dir: Path, resume_step: int | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter  # ImportError when the tensorboard package is missing

        # On resume, drop the events after the resumed step, as metrics.jsonl drops its records after it.
        purge_step = resume_step + 1 if resume_step is not None else None
        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)

    def log_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        for name, value in scalars.items():
            self.writer.add_scalar(name, value, step)

    def log_image(self, step: int, tag: str, image: np.ndarray) -> None:
        self.writer.add_image(tag, image, step, dataformats="HWC")

    def close(self) -> None:
        self.writer.close()


class WandbLogger:
    """A Weights & Biases run stored under RUN_DIR/wandb/. The mode (online, offline, disabled) and the project
    come from wandb's own environment variables (WANDB_MODE, WANDB_PROJECT; project default: vidgen).

    The W&B run id is kept in RUN_DIR/wandb/run-id, so a resumed training run continues the same W&B run
    (offline runs of one id merge when synced) instead of starting another."""

    def __init__(self, run_dir: Path, name: str, config: dict[str, Any]) -> None:
        import wandb  # ImportError when the wandb package is missing

        self.wandb = wandb
        id_file = run_dir / "wandb" / "run-id"
        run_id = id_file.read_text().strip() if id_file.is_file() else secrets.token_hex(4)
        id_file.parent.mkdir(parents=True, exist_ok=True)
        id_file.write_text(run_id + "\n")
        self.run = wandb.init(dir=str(run_dir), project=os.environ.get("WANDB_PROJECT", "vidgen"), name=name,
                              config=config, id=run_id, resume="allow")

    def log_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        self.run.log(dict(scalars), step=step)

    def log_image(self, step: int, tag: str, image: np.ndarray) -> None:
        self.run.log({tag: self.wandb.Image(image)}, step=step)

    def close(self) -> None:
        self.run.finish()


@contextlib.contextmanager
def make_loggers(names: Sequence[str], run_dir: Path, recipe: Recipe, is_main: bool, warn: Callable[[str], None],
                 resume_step: int | None = None) -> Iterator[list[Logger]]:
    """The viewers named in train.loggers (jsonl is metrics.jsonl, written by the loop itself), open for the
    duration of the block and closed however it ends. None (an empty list) on ranks other than 0."""
    loggers: list[Logger] = []
    with contextlib.ExitStack() as closing:
        for name in dict.fromkeys(names) if is_main else ():  # each once, in order
            if name == "jsonl":
                continue
            try:
                if name == "tensorboard":
                    logger: Logger = TensorBoardLogger(run_dir / "tensorboard", resume_step)
                elif name == "wandb":
                    logger = WandbLogger(run_dir, recipe.run.name, recipe.to_dict())
                else:  # TrainConfig rejects other names
                    raise ValueError(f"unknown logger {name!r}")
            except ImportError:
                warn(f"{name} logging is off: its package is missing; pip install 'vidgen[{name}]'")
                continue
            closing.callback(logger.close)
            loggers.append(logger)
        yield loggers


def scalars_of(record: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of a metrics.jsonl record, by name (not its step; None, e.g. the CPU's peak memory, left out)."""
    return {name: float(value) for name, value in record.items()
            if name != "step" and isinstance(value, (int, float)) and not isinstance(value, bool)}


def preview_still(grid: np.ndarray) -> np.ndarray:
    """A preview grid video uint8 [T, H, W, 3] as one image [H', W', 3]: its first, middle and last frame side by
    side (the viewers show images, not videos)."""
    frames = [grid[[i]] for i in (0, len(grid) // 2, len(grid) - 1)]  # each [1, H, W, 3]
    return make_grid(frames, columns=3)[0]


def log_scalars(loggers: Sequence[Logger], record: Mapping[str, Any]) -> None:
    """A metrics.jsonl record to every logger, at its step."""
    if loggers:
        scalars = scalars_of(record)
        for logger in loggers:
            logger.log_scalars(int(record["step"]), scalars)


def log_image(loggers: Sequence[Logger], step: int, tag: str, image: np.ndarray) -> None:
    for logger in loggers:
        logger.log_image(step, tag, image)

