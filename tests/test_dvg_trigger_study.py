"""benchmarks/dvg_trigger_study.py: its counting against hand-made cases, and the script on a 2-step DVG run, so
it cannot rot while the DVG backend changes."""

from __future__ import annotations

import numpy as np
from rich.console import Console

from tests.conftest import benchmark_module
from vidgen.models.registry import BACKENDS
from vidgen.recipe import load_recipe
from vidgen.train import train


def test_near_share_counts_events_within_the_window_and_the_chance_of_it():
    with benchmark_module("dvg_trigger_study") as study:
        marks = np.zeros((1, 10), bool)
        marks[0, 4] = True  # frames 4 .. 6 are within 2 frames after the mark; 2 .. 6 within 2 either side
        events = np.zeros((1, 10), bool)
        events[0, [3, 6, 9]] = True
        assert study.near_share(events, marks, 0, 2) == (1 / 3, 0.3)
        assert study.near_share(events, marks, 2, 2) == (2 / 3, 0.5)


def test_heading_changes_finds_a_right_angle_but_not_a_jump_on_a_straight_path():
    with benchmark_module("dvg_trigger_study") as study:
        straight = np.stack([np.arange(12.0), np.zeros(12)], axis=-1)[None]  # [1, 12, 2], 1 px a frame along x
        corner = np.concatenate([straight[:, :6], np.stack([np.full(6, 5.0), np.arange(1.0, 7)], -1)[None]], 1)
        jumped = straight.copy()
        jumped[0, 6:, 1] += 5.0  # a 5 px jump into frame 6, then straight on
        assert not study.heading_changes(straight)[0].any()
        changed, jump = study.heading_changes(corner)
        assert changed[0, 5:8].all() and not changed[0, :4].any()  # the corner is at frame 5
        changed, jump = study.heading_changes(jumped)
        assert not changed[0, 6] and jump[0, 6] > 5.0 and jump[0, 1] == 1.0


def test_the_study_prints_both_tables(tmp_path, capsys):
    run = tmp_path / "run"
    recipe = load_recipe("dvg-tiny", [*BACKENDS["dvg"].test_overrides, "train.max_steps=2"])
    train(recipe, run, device="cpu", console=Console(quiet=True))
    with benchmark_module("dvg_trigger_study") as study:
        study.main([str(run), "--videos", "2", "--futures", "2", "--frames", "8"])
    printed = capsys.readouterr().out
    assert "firings within 2 frames of the change" in printed and "heading change > 60 deg" in printed
