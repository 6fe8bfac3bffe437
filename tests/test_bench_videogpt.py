"""benchmarks/bench_videogpt.py at tiny sizes on the CPU, so the script cannot rot while the VideoGPT modules
change: the sampling clock of part (a) and vidgen's train-step cases of part (b). The official code is not
needed here (the benchmark imports it only from --official)."""

from __future__ import annotations

import argparse

import pytest
import torch

from tests.conftest import benchmark_module



@pytest.fixture(scope="module")
def bench():
    with benchmark_module("bench_videogpt") as module:
        yield module


def tiny_sizes(bench):
    return bench.Sizes(frames=4, resolution=8, n_hiddens=8, n_res_layers=1, n_codes=16, embedding_dim=4,
                       downsample=(2, 2, 2), width=12, heads=2, layers=1, batch=2)


@pytest.mark.parametrize("use_cache", [True, False])
@pytest.mark.parametrize("limit", [4, 16])
def test_seconds_per_token_times_a_prefix_or_the_whole_grid(bench, use_cache, limit):
    config = bench.PriorConfig(n_codes=16, latent_shape=(1, 4, 4), width=12, heads=2, layers=1)  # 16 tokens
    prior = bench.VideoGPTPrior(config).eval()
    seconds = bench.seconds_per_token(prior, 1, 2, use_cache, limit, torch.device("cpu"))
    assert seconds > 0
    assert not prior.head._forward_hooks  # the prefix clock removes its hook


@pytest.mark.parametrize("case", ["time/vqvae", "time/prior", "memory-vidgen/vqvae", "memory-vidgen/prior"])
def test_vidgen_train_step_cases_measure(bench, case):
    args = argparse.Namespace(official=None, warmup=1, steps=2)
    result = bench.run_case(case, args, tiny_sizes(bench), torch.device("cpu"))
    if case.startswith("time"):
        impls = ["vidgen", "vidgen-checkpointed"] if case.endswith("prior") else ["vidgen"]
        assert list(result["ms"]) == impls and all(len(result["ms"][impl]) == 2 for impl in impls)
        assert all(ms > 0 for impl in impls for ms in result["ms"][impl])
    else:
        assert result["peak_mib"] > 0 and result["params"] > 0
