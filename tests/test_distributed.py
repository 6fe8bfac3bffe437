"""Distributed training: the loop's collectives, torchrun and --gpus, and what a 2-rank job adds beyond the backend
contract's two-rank test (tests/models/test_backend_contract.py): stopping and resuming, ADA statistics summed over
the ranks, and the in-training metric scored by every rank.

Each rank draws its training noise from its own stream (seed run.seed + rank), so the one-process reference is
`train(..., emulate_ranks=2)`: the same global batch per micro-batch, split into the two ranks' shards, each shard
with its rank's noise stream. The ranks' shards, gradient averaging, accumulation, EMA and checkpoints must then
give the same weights up to float summation order.
"""

import dataclasses
import os
import subprocess
import sys

import pytest
import torch
from rich.console import Console

from tests.conftest import TINY_SGV, TINY_VDM, run_cli, set_args
from vidgen.core import distributed
from vidgen.core.run_dir import read_metrics
from vidgen.errors import UserError
from vidgen.models.base import TrainingJob
from vidgen.models.registry import build_backend
from vidgen.recipe import load_recipe
from vidgen.train import train
from vidgen_cli import launch

QUIET = Console(quiet=True)

# StyleGAN-V: every phase, R1 every other step with the automatic gamma (which divides by the global batch), and
# ADA moving p after every step from D's signs summed over the ranks.
SGV_RUN = [*TINY_SGV, "train.grad_accum=2", "train.batch_size=2", "model.r1_every=2", "model.augment=ada",
           "model.augment_p=0.5", "model.ada_interval=1", "model.ada_speed_videos=100"]
# The 2-rank StyleGAN-V job also scores FVD on 4 videos at its last step, each rank generating 2 of them.
SGV_EVAL = ["train.eval_every=2", "train.eval_videos=4"]


def torchrun(recipe_name, run_dir, overrides, nproc=2, gpus_flag=False):
    """The job through torchrun, or through `vidgen train --gpus N --device cpu`, which relaunches itself so."""
    train_args = ["train", recipe_name, "--out", str(run_dir), "--device", "cpu", *set_args(overrides)]
    if gpus_flag:
        args = [sys.executable, "-m", "vidgen_cli", *train_args, "--gpus", str(nproc)]
    else:
        args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
                "-m", "vidgen_cli", *train_args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)


@pytest.fixture
def private_home(tmp_path, monkeypatch):
    """$VIDGEN_HOME with the real detectors and an empty statistics cache (inherited by subprocesses)."""
    from vidgen.metrics.detectors import default_detector_dir

    home = tmp_path / "home"
    home.mkdir()
    (home / "detectors").symlink_to(default_detector_dir())
    monkeypatch.setenv("VIDGEN_HOME", str(home))
    return home


def test_a_stopped_two_rank_job_resumes_and_its_ada_and_metric_match_one_process(tmp_path, private_home):
    """What the shared loop adds across ranks beyond the backend contract's two-rank test (which every family
    passes): a 2-rank job, launched by `vidgen train --gpus 2`, stops after step 1 and resumes (every rank loads
    the same checkpoint and takes back its own noise stream); StyleGAN-V's ADA moves p from both ranks' statistics;
    and the in-training metric, each rank generating half the videos, equals one process's score."""
    stopped = torchrun("stylegan-v-tiny", tmp_path / "ddp", [*SGV_RUN, "train.max_steps=1"], gpus_flag=True)
    assert stopped.returncode == 0, stopped.stderr[-3000:]
    overrides = [*SGV_RUN, "train.max_steps=2"]
    ranks = torchrun("stylegan-v-tiny", tmp_path / "ddp", [*overrides, *SGV_EVAL], gpus_flag=True)
    assert ranks.returncode == 0, ranks.stderr[-3000:]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each rank (OMP_NUM_THREADS=1): the same float summation order
    try:
        one = train(load_recipe("stylegan-v-tiny", overrides), tmp_path / "one", device="cpu", console=QUIET,
                    emulate_ranks=2)
    finally:
        torch.set_num_threads(threads)

    ddp = torch.load(tmp_path / "ddp" / "checkpoints" / "ckpt-00000002.pt", weights_only=True)
    ref = torch.load(one.checkpoint, weights_only=True)
    params = {name for name, _ in build_backend(load_recipe("stylegan-v-tiny", overrides)).networks.named_parameters()}
    for name in params:  # parameters only: each rank updates the w_avg buffer from its own shard
        torch.testing.assert_close(ddp["networks"][name], ref["networks"][name], rtol=0, atol=1e-5, msg=name)
        if name in ddp["ema"]:
            torch.testing.assert_close(ddp["ema"][name], ref["ema"][name], rtol=0, atol=1e-5, msg=name)
    assert len(ddp["rng"]["streams"]) == 2, "the checkpoint keeps every rank's noise stream"
    logged = read_metrics(tmp_path / "ddp" / "metrics.jsonl")
    assert [r["step"] for r in logged if "loss" in r] == [1, 2], "the resumed job continues the log"
    assert "x 2 ranks" in ranks.stderr and ranks.stderr.count("Training ") == 1, "rank 0 alone prints"
    _check_ada_and_metric(ddp, ref, logged, tmp_path / "ddp", overrides)


def _check_ada_and_metric(ddp, ref, logged, run_dir, overrides):
    from vidgen.evaluate import evaluate
    from vidgen.metrics.protocols import PROTOCOLS

    # ADA moved p by the same steps on both sides: the 2-rank job summed D's signs over the ranks.
    assert ddp["backend"]["augment_p"] == ref["backend"]["augment_p"] != 0.5
    # The metric logged by the job == one process scoring the saved EMA weights with the same seeds.
    scores = [r["eval/fvd2048_16f"] for r in logged if "eval/fvd2048_16f" in r]
    assert len(scores) == 1
    recipe = load_recipe("stylegan-v-tiny", overrides)
    protocol = dataclasses.replace(PROTOCOLS["fvd2048_16f"], num_videos=4)
    alone = evaluate("synthetic", run_dir, [protocol], seed=recipe.run.seed, device="cpu", allow_fewer=True,
                     console=QUIET)
    assert alone.metrics[0].real_stats == "cache", "the same real statistics as the job's"
    assert scores[0] == pytest.approx(alone.metrics[0].value, rel=1e-4)


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
    assert distributed.sum_over_ranks(single, [1, 2.5], cpu) == [1.0, 2.5]


def test_a_collective_whose_peer_died_is_one_line():
    rank1 = distributed.DistInfo(1, 2, 1)
    gloo = RuntimeError("[/src/gloo/transport/tcp/pair.cc:537] Read error [127.0.0.1]:4227: Connection reset by "
                        "peer. This is typically caused by a remote worker hanging.")
    with pytest.raises(UserError, match=r"^rank 1 lost contact with the other ranks \(Read error "
                                        r"\[127.0.0.1\]:4227: Connection reset by peer\); .* resume"):
        with distributed._peers(rank1):
            raise gloo
    with pytest.raises(RuntimeError, match="size mismatch"):  # anything else is a bug: its traceback stays
        with distributed._peers(rank1):
            raise RuntimeError("size mismatch")


def test_ada_statistics_are_summed_over_the_ranks():
    """Under the loop, a D step's signs from every micro-batch are summed over the ranks before p moves; a step
    skipped for a non-finite loss drops them."""
    from vidgen.models.stylegan_v.backend import StyleGANVBackend

    recipe = load_recipe("stylegan-v-tiny", [*TINY_SGV, "model.augment=ada", "model.augment_p=0.5",
                                             "model.ada_interval=1", "model.ada_speed_videos=100"])
    backend = StyleGANVBackend(recipe)
    seen = []

    def other_rank_rejects_every_real(values):  # this rank's [sign sum, count] + a rank with all signs -1
        seen.append(list(values))
        return [values[0] - values[1], 2 * values[1]]

    backend.bind_loop(TrainingJob(global_batch=8, sum_over_ranks=other_rank_rejects_every_real))
    generator = torch.Generator().manual_seed(0)
    batch = {"video": torch.rand(4, 3, 3, 16, 16, generator=generator) * 2 - 1,  # [B, C, k, H, W]
             "times": torch.tensor([[0.0, 1.0, 3.0]]).expand(4, -1)}
    for _ in range(2):  # two micro-batches of one step
        backend.loss("D_main", batch, backend.networks, generator)
    assert backend.augment_p == 0.5, "p moves once the step is over"
    backend.end_step(applied=True)
    assert seen[0][1] == 8 and abs(seen[0][0]) <= 8
    # r_t = (s - 8) / 16 <= 0 < target whatever this rank saw: p falls by 16 videos / 100.
    assert backend.augment_p == pytest.approx(0.5 - 0.16) and backend.ada.p == backend.augment_p
    backend.loss("D_main", batch, backend.networks, generator)
    backend.end_step(applied=False)
    assert len(seen) == 1 and backend.augment_p == pytest.approx(0.34)


def test_automatic_r1_gamma_divides_by_the_global_batch(tmp_path, monkeypatch):
    """0.0002 x resolution^2 / (batch_size x grad_accum x ranks), as stylegan2-ada's, so a recipe's R1 is the same
    on any number of GPUs; an explicit model.r1_gamma is kept."""
    from vidgen.models.stylegan_v.backend import StyleGANVBackend

    overrides = [*TINY_SGV, "model.r1_gamma=null", "train.batch_size=2", "train.grad_accum=2", "train.max_steps=1"]
    backend = StyleGANVBackend(load_recipe("stylegan-v-tiny", overrides))
    assert backend.r1_gamma == pytest.approx(0.0002 * 16 ** 2 / 4), "on its own: one process's batch"
    backend.bind_loop(TrainingJob(8, lambda values: values))
    assert backend.r1_gamma == pytest.approx(0.0002 * 16 ** 2 / 8)
    fixed = StyleGANVBackend(load_recipe("stylegan-v-tiny", [*overrides, "model.r1_gamma=0.3"]))
    fixed.bind_loop(TrainingJob(8, lambda values: values))
    assert fixed.r1_gamma == 0.3

    # The loop binds it with the global batch: 2 videos x 2 micro-batches x 2 (emulated) ranks.
    bound, bind_loop = [], StyleGANVBackend.bind_loop

    def spy(self, job):
        bound.append(job.global_batch)
        bind_loop(self, job)

    monkeypatch.setattr(StyleGANVBackend, "bind_loop", spy)
    train(load_recipe("stylegan-v-tiny", overrides), tmp_path / "run", device="cpu", console=QUIET, emulate_ranks=2)
    assert bound == [8]


def test_gpus_flag_checks_the_machine_first(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    launch.check_gpus(3, "cpu")  # N CPU processes: always possible
    with pytest.raises(UserError, match="under torchrun leave it out"):
        launch.check_gpus(2, "auto", env={"WORLD_SIZE": "2"})
    with pytest.raises(UserError, match="not 'cuda:1'"):
        launch.check_gpus(2, "cuda:1")
    with pytest.raises(UserError, match="must be >= 1"):
        launch.check_gpus(0, "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    launch.check_gpus(2, "cuda")
    with pytest.raises(UserError, match="more GPUs than this machine has \\(2\\)"):
        launch.check_gpus(4, "auto")
    assert launch.torchrun_command(2, ["vdm-tiny", "--out", "runs/x"], python="py") == [
        "py", "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "vidgen_cli", "train",
        "vdm-tiny", "--out", "runs/x"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_gpus_flag_without_cuda_is_one_line(tmp_path):
    result = run_cli("train", "vdm-tiny", "--out", str(tmp_path / "run"), "--gpus", "2", cwd=tmp_path)
    assert result.returncode == 1 and "--gpus 2 needs CUDA GPUs" in result.stderr and "--device cpu" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
