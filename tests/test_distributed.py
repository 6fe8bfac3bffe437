"""Distributed training: 2 ranks under torchrun (gloo, CPU) train exactly what one process does with the same
global batch, for both backends.

Each rank draws its training noise from its own stream (seed run.seed + rank), so the one-process reference is
`train(..., emulate_ranks=2)`: the same global batch per micro-batch, split into the two ranks' shards, each shard
with its rank's noise stream. The ranks' shards, gradient averaging, accumulation, EMA and checkpoints must then
give the same weights up to float summation order.
"""

import os
import subprocess
import sys

import pytest
import torch
from rich.console import Console

from tests.conftest import TINY_SGV, TINY_VDM, set_args
from vidgen.core import distributed
from vidgen.core.config import load_recipe
from vidgen.core.run_dir import read_metrics
from vidgen.errors import UserError
from vidgen.models.registry import build_backend
from vidgen.train import train

QUIET = Console(quiet=True)

# Per-rank batch 2 (global 4 with 2 ranks), 2 micro-batches per step: accumulation and its sync are exercised.
VDM_RUN = [*TINY_VDM, "train.grad_accum=2", "train.batch_size=2"]
# StyleGAN-V: every phase, with R1 every other step; r1_gamma set, as its heuristic reads the per-rank batch.
SGV_RUN = [*TINY_SGV, "train.grad_accum=2", "train.batch_size=2", "model.r1_every=2",
           "model.r1_gamma=0.1"]


def torchrun(recipe_name, run_dir, overrides, nproc=2):
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
            "-m", "vidgen_cli", "train", recipe_name, "--out", str(run_dir), "--device", "cpu",
            *set_args(overrides)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.parametrize("recipe_name, overrides, stop_at",
                         [("vdm-tiny", VDM_RUN, 1), ("stylegan-v-tiny", SGV_RUN, None)],
                         ids=["vdm-stopped-and-resumed", "stylegan-v"])
def test_two_ranks_train_the_same_weights_as_one_process(tmp_path, recipe_name, overrides, stop_at):
    """2 steps of 2 ranks == 2 steps of one process; for VDM the 2-rank job also stops after step 1 and resumes
    (every rank loads the same checkpoint and takes back its own noise stream)."""
    if stop_at is not None:
        stopped = torchrun(recipe_name, tmp_path / "ddp", [*overrides, f"train.max_steps={stop_at}"])
        assert stopped.returncode == 0, stopped.stderr[-3000:]
    overrides = [*overrides, "train.max_steps=2"]
    ranks = torchrun(recipe_name, tmp_path / "ddp", overrides)
    assert ranks.returncode == 0, ranks.stderr[-3000:]
    one = train(load_recipe(recipe_name, overrides), tmp_path / "one", device="cpu", console=QUIET,
                emulate_ranks=2)

    ddp = torch.load(tmp_path / "ddp" / "checkpoints" / "ckpt-00000002.pt", weights_only=True)
    ref = torch.load(one.checkpoint, weights_only=True)
    # Parameters only: a running-mean buffer (StyleGAN-V's w_avg) is updated by each rank from its own shard, and
    # the checkpoint keeps rank 0's, as DDP's broadcast_buffers would.
    params = {name for name, _ in build_backend(load_recipe(recipe_name, overrides)).networks.named_parameters()}
    assert params
    for name in params:
        torch.testing.assert_close(ddp["networks"][name], ref["networks"][name], rtol=0, atol=1e-5, msg=name)
        if name in ddp["ema"]:
            torch.testing.assert_close(ddp["ema"][name], ref["ema"][name], rtol=0, atol=1e-5, msg=name)
    assert ddp["step"] == 2 and ddp["data"]["samples_seen"] == ref["data"]["samples_seen"] == 2 * 2 * 2 * 2
    assert len(ddp["rng"]["streams"]) == 2, "the checkpoint keeps every rank's noise stream"

    # Rank 0 alone logs: one record per step, holding the mean over both ranks (= the reference's mean).
    logged = read_metrics(tmp_path / "ddp" / "metrics.jsonl")
    reference = read_metrics(tmp_path / "one" / "metrics.jsonl")
    assert [r["step"] for r in logged] == [1, 2]
    for got, want in zip(logged, reference):
        assert got["loss"] == pytest.approx(want["loss"], abs=1e-5)
    assert "x 2 ranks" in ranks.stderr and ranks.stderr.count("Training ") == 1, "rank 0 alone prints"


def test_emulating_one_rank_is_the_plain_loop(tmp_path):
    """emulate_ranks=1 (the default) is the single-process loop: stream 0 is the run seed's generator."""
    overrides = [*TINY_VDM, "train.max_steps=2"]
    plain = train(load_recipe("vdm-tiny", overrides), tmp_path / "a", device="cpu", console=QUIET)
    state = torch.load(plain.checkpoint, weights_only=True)
    assert len(state["rng"]["streams"]) == 1 and torch.equal(state["rng"]["streams"][0], state["rng"]["generator"])


def test_info_from_env():
    assert distributed.info_from_env({}) == distributed.DistInfo(0, 1, 0)
    info = distributed.info_from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert info == distributed.DistInfo(3, 4, 1) and info.active and not info.is_main
    with pytest.raises(UserError, match="RANK"):
        distributed.info_from_env({"WORLD_SIZE": "2"})
    with pytest.raises(UserError, match="outside"):
        distributed.info_from_env({"RANK": "2", "WORLD_SIZE": "2"})


def test_device_for_a_rank():
    rank1 = distributed.DistInfo(1, 2, 1)
    assert distributed.device_for(distributed.SINGLE_PROCESS, "cuda:1") == "cuda:1"
    assert distributed.device_for(rank1, "cuda") == "cuda:1"
    assert distributed.device_for(rank1, "cpu") == "cpu"
    with pytest.raises(UserError, match="LOCAL_RANK"):
        distributed.device_for(rank1, "cuda:0")


def test_collectives_are_no_ops_in_one_process():
    single = distributed.SINGLE_PROCESS
    cpu = torch.device("cpu")
    assert distributed.mean_of_logs(single, {"loss": 1.5}, cpu) == {"loss": 1.5}
    assert distributed.any_rank(single, True, cpu) and not distributed.any_rank(single, False, cpu)
    assert distributed.broadcast_object(single, "x") == "x" and distributed.all_gather_objects(single, 1) == [1]


def test_adaptive_augmentation_is_refused_with_several_ranks(tmp_path):
    ranks = torchrun("stylegan-v-tiny", tmp_path / "ddp", [*SGV_RUN, "train.max_steps=1", "model.augment=ada",
                                                          "model.augment_p=0.1"])
    assert ranks.returncode != 0 and "model.augment=ada is not supported with several ranks" in ranks.stderr
