"""Progress display: a Rich bar on a terminal, plain log lines elsewhere (CI logs, pipes)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from rich.text import Text


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.2f} it/s" if speed else "-- it/s", style="cyan")


def _bar(console: Console, *extra: ProgressColumn) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), _RateColumn(),
                    *extra, TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=console)


class TrainingProgress:
    """Step, it/s, loss and ETA on a terminal; one line per metrics record otherwise."""

    def __init__(self, console: Console, progress: Progress | None = None, task: Any = None) -> None:
        self.console = console
        self.progress = progress
        self.task = task

    def advance(self, loss: float | None) -> None:
        if self.progress is not None:
            self.progress.update(self.task, advance=1, loss="" if loss is None else f"loss {loss:.4f}")

    def log_record(self, record: dict[str, Any]) -> None:
        if self.progress is None:
            values = "  ".join(f"{k} {v:.4g}" for k, v in record.items()
                               if k != "step" and isinstance(v, float))
            self.console.print(f"step {record['step']}  {values}", highlight=False, soft_wrap=True)


@contextlib.contextmanager
def training_progress(console: Console, total: int, completed: int) -> Iterator[TrainingProgress]:
    if not console.is_terminal:
        yield TrainingProgress(console)
        return
    with _bar(console, TextColumn("{task.fields[loss]}")) as progress:
        task = progress.add_task("train", total=total, completed=completed, loss="")
        yield TrainingProgress(console, progress, task)


class _PlainProgress:
    """One plain line each time another tenth of the work is done, for logs and pipes (where a bar prints
    nothing): a long evaluation in CI still shows that it moves, without flooding the log."""

    def __init__(self, console: Console, description: str, total: int, steps: int = 10) -> None:
        self.console, self.description, self.total, self.steps = console, description, total, steps
        self.done = 0
        self.shown = 0  # tenths already reported
        self.start = time.monotonic()

    def advance(self, n: int) -> None:
        self.done += n
        reached = self.done * self.steps // self.total if self.total > 0 else 0
        if reached > self.shown:  # one line, even when a batch crosses several tenths
            self.shown = reached
            elapsed = time.monotonic() - self.start
            rate = f"{self.done / elapsed:.2f} it/s" if elapsed > 0 else "-- it/s"
            self.console.print(f"{self.description}: {self.done}/{self.total} "
                               f"({100 * self.done // self.total}%), {rate}, {elapsed:.0f}s elapsed",
                               highlight=False, soft_wrap=True, markup=False)


@contextlib.contextmanager
def task_progress(console: Console, description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A bar for sampling and evaluation on a terminal, one line per tenth done elsewhere; yields advance(n)."""
    if not console.is_terminal:
        yield _PlainProgress(console, description, total).advance
        return
    with _bar(console) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.update(task, advance=n)
