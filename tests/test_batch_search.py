from __future__ import annotations

import pytest
import torch

from vidgen.batch_search import find_max_batch, largest_fitting
from vidgen.errors import UserError
from vidgen.recipe import load_recipe


@pytest.mark.parametrize("threshold", [0, 1, 2, 3, 5, 64, 100, 1000, 1024])
def test_largest_fitting_finds_the_boundary(threshold):
    calls = []

    def fits(b: int) -> bool:
        calls.append(b)
        return b <= threshold

    best, tried = largest_fitting(fits, limit=1024)
    assert best == threshold
    assert list(tried) == calls and len(set(calls)) == len(calls)  # no size tried twice
    assert len(calls) <= 2 * 11  # doubling then bisection: logarithmic in the limit


def test_largest_fitting_stops_at_the_limit():
    best, tried = largest_fitting(lambda b: True, limit=40)
    assert best == 40 and max(tried) == 40


def test_batch_search_needs_a_gpu():
    with pytest.raises(UserError, match="needs a CUDA device"):
        find_max_batch(load_recipe("vdm-tiny"), torch.device("cpu"))


def test_cli_batch_search_on_cpu_is_one_line():
    from tests.conftest import run_cli

    result = run_cli("train", "vdm-tiny", "--max-batch-search", "--device", "cpu")
    assert result.returncode == 1 and "--max-batch-search needs a CUDA device" in result.stderr
    assert "Traceback" not in result.stderr
