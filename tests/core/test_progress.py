"""Progress off a terminal: plain lines, one per tenth of the work, so a piped evaluation still shows it moves."""

from __future__ import annotations

import io

from rich.console import Console

from vidgen.core.progress import task_progress


def _console() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=False, width=200), buffer


def test_one_line_per_tenth_when_not_a_terminal():
    console, buffer = _console()
    with task_progress(console, "fake fvd2048_16f", total=20) as advance:
        for _ in range(20):
            advance(1)
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 10
    assert lines[0].startswith("fake fvd2048_16f: 2/20 (10%), ") and "it/s" in lines[0]
    assert lines[-1].startswith("fake fvd2048_16f: 20/20 (100%), ")


def test_a_batch_crossing_several_tenths_is_one_line():
    console, buffer = _console()
    with task_progress(console, "sample", total=100) as advance:
        advance(35)  # 10%, 20% and 30% at once
        advance(1)
        advance(64)
    assert [line.split(",")[0] for line in buffer.getvalue().splitlines()] == [
        "sample: 35/100 (35%)", "sample: 100/100 (100%)"]


def test_nothing_before_the_first_tenth_and_nothing_for_an_empty_task():
    console, buffer = _console()
    with task_progress(console, "sample", total=1_000_000_000) as advance:
        advance(2)
    with task_progress(console, "real", total=0) as advance:
        pass
    assert buffer.getvalue() == ""
