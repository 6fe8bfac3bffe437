"""benchmarks/bench_dvg.py on the tiny recipe, so the script cannot rot while the DVG backend or its recipes
change."""

from __future__ import annotations

from tests.conftest import benchmark_module


def test_the_benchmark_prints_a_row_per_trigger_and_the_gp_cost(capsys):
    with benchmark_module("bench_dvg") as bench:
        bench.main(["--recipe", "dvg-tiny", "--quick", "--device", "cpu"])
    printed = capsys.readouterr().out
    rows = [line for line in printed.splitlines() if line.startswith("| ") and "trigger" not in line]
    assert [row.split("|")[1].strip() for row in rows] == ["none", "every:10", "gp"]
    assert "10.0%" in rows[1], "every:10 fires on 2 of 20 predicted frames"
    assert "GP layer alone" in printed and "ms per frame step" in printed
