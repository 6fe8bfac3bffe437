"""benchmarks/bench_tganv2.py at a tiny resolution on the CPU, so the script cannot rot while the TGANv2 backend,
the shared train step or the recipes change."""

from __future__ import annotations


import pytest
import torch

from tests.conftest import benchmark_module



@pytest.fixture(scope="module")
def bench():
    with benchmark_module("bench_tganv2") as module:
        yield module


def test_dense_is_the_sparse_network_with_every_frame_at_every_level(bench):
    sparse, dense = (bench.make_recipe(variant, 64, 4) for variant in ("sparse", "dense"))
    assert sparse.model.frame_factors == (2, 2, 2) and dense.model.frame_factors == (1, 1, 1)
    assert sparse.data.resolution == sparse.model.resolution == 64 and sparse.model.t_size == 4
    assert sparse.train.batch_size == dense.train.batch_size == 4
    assert bench.make_recipe("stylegan-v", 64, 4).data.resolution == 64


def test_a_resolution_the_generator_cannot_render_is_refused(bench, capsys):
    with pytest.raises(SystemExit, match="multiple of 16"):
        bench.main(["--resolutions", "40"])


def test_a_case_measures_one_training_step(bench):
    args = bench.parse_args(["--batch", "2", "--steps", "1", "--resolutions", "16"])
    result = bench.run_case("sparse", 16, args, torch.device("cpu"))
    assert result["frames"] == 16 and len(result["ms"]) == 1
    assert result["peak_mib"] > result["state_mib"] > 0  # a step needs more than the weights and Adam's moments
    assert set(result["params"]) == {"G", "D"}
