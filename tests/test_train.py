"""The shared training loop: a stopped or killed run resumes exactly as if it had never stopped."""

import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from rich.console import Console

from tests.conftest import TINY_VDM, set_args
from vidgen.core.checkpoint import list_checkpoints
from vidgen.core.run_dir import read_metrics
from vidgen.recipe import load_recipe
from vidgen.train import train

QUIET = Console(quiet=True)

# Wide enough that a step takes tens of milliseconds, so the kill lands between two checkpoints.
RESUME_RUN = ["train.max_steps=24", "train.checkpoint_every=5", "train.keep_checkpoints=2",
              "model.channels=16", "train.batch_size=4"]


def start_training(run_dir, overrides):
    args = [sys.executable, "-m", "vidgen_cli", "train", "vdm-tiny", "--out", str(run_dir),
            *set_args(overrides)]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_sigkill_between_checkpoints_then_resume_matches_uninterrupted_run(tmp_path, tiny_vdm):
    # Reference: one uninterrupted run.
    reference = start_training(tmp_path / "reference", tiny_vdm + RESUME_RUN)
    assert reference.wait(timeout=300) == 0, reference.stderr.read()
    expected = {r["step"]: r["loss"] for r in read_metrics(tmp_path / "reference" / "metrics.jsonl")}
    assert len(expected) == 24

    # Killed run: SIGKILL once step 7 is logged (after the step-5 checkpoint, before step 10's).
    run_dir = tmp_path / "killed"
    proc = start_training(run_dir, tiny_vdm + RESUME_RUN)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        metrics = run_dir / "metrics.jsonl"
        if metrics.exists() and any(r["step"] >= 7 for r in read_metrics(metrics)):
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    steps_logged = max(r["step"] for r in read_metrics(run_dir / "metrics.jsonl"))
    last_checkpoint = int(list_checkpoints(run_dir / "checkpoints")[-1].stem.split("-")[1])
    assert last_checkpoint < steps_logged, "the kill should land between checkpoints"

    # Resume with the same command; the log is rewound to the checkpoint and continued.
    resumed = start_training(run_dir, tiny_vdm + RESUME_RUN)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    got = {r["step"]: r["loss"] for r in read_metrics(run_dir / "metrics.jsonl")}
    assert got == expected


def test_ctrl_c_saves_a_checkpoint_and_exits_130(tmp_path, tiny_vdm):
    run_dir = tmp_path / "run"
    proc = start_training(run_dir, tiny_vdm + ["train.max_steps=100000", "train.sample_every=2",
                                               "train.checkpoint_every=1000"])
    deadline = time.monotonic() + 300
    metrics = run_dir / "metrics.jsonl"
    while time.monotonic() < deadline and not (metrics.exists() and len(read_metrics(metrics)) >= 3):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130
    assert "Interrupted: saved step" in proc.stderr.read()
    steps = [r["step"] for r in read_metrics(metrics)]
    saved = list_checkpoints(run_dir / "checkpoints")
    assert len(saved) == 1 and int(saved[0].stem.split("-")[1]) >= max(steps)
    assert list((run_dir / "samples").glob("step-*.mp4")), "sample grids every train.sample_every steps"


def test_metric_during_training_is_logged_and_keeps_the_best_checkpoint(tmp_path, monkeypatch):
    from vidgen.metrics.detectors import default_detector_dir

    home = tmp_path / "home"
    home.mkdir()
    (home / "detectors").symlink_to(default_detector_dir())  # the real detectors, a private stats cache
    monkeypatch.setenv("VIDGEN_HOME", str(home))
    recipe = load_recipe("vdm-tiny", [*TINY_VDM, "train.max_steps=4", "train.eval_every=2", "train.eval_videos=3"])
    train(recipe, tmp_path / "run", device="cpu", console=QUIET)

    scores = {r["step"]: r["eval/fvd2048_16f"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl")
              if "eval/fvd2048_16f" in r}
    assert sorted(scores) == [2, 4] and all(math.isfinite(v) and v > 0 for v in scores.values())
    best = torch.load(tmp_path / "run" / "checkpoints" / "best.pt", weights_only=True)
    assert best["best_score"] == min(scores.values()) and scores[best["step"]] == best["best_score"]
    assert len(list((home / "stats").iterdir())) == 1, "the real side is computed once, then read from the cache"


def test_compile_wraps_what_the_losses_call_and_checkpoints_keep_plain_modules(tmp_path, tiny_vdm, monkeypatch):
    compiled = []

    def fake_compile(module):  # torch.compile's own cost has no place in a unit test: record the call instead
        compiled.append(module)
        return torch.nn.Module.__call__.__get__(module)  # a callable wrapper sharing the parameters

    monkeypatch.setattr(torch, "compile", fake_compile)
    recipe = load_recipe("vdm-tiny", [*tiny_vdm, "train.max_steps=2", "train.compile=true"])
    result = train(recipe, tmp_path / "run", device="cpu", console=QUIET)
    assert [type(m).__name__ for m in compiled] == ["UNet3D"]
    state = torch.load(result.checkpoint, weights_only=True)
    assert all(not key.startswith("_orig_mod") for key in state["networks"])


def test_a_failing_torch_compile_is_one_line(tmp_path, tiny_vdm, monkeypatch):
    from torch._dynamo.exc import BackendCompilerFailed

    from vidgen.errors import UserError

    def broken(*args, **kwargs):  # what inductor raises when its C++ toolchain fails
        raise BackendCompilerFailed(broken, RuntimeError("C++ compile error"), None)

    monkeypatch.setattr(torch, "compile", lambda module: broken)
    recipe = load_recipe("vdm-tiny", [*tiny_vdm, "train.max_steps=1", "train.compile=true"])
    with pytest.raises(UserError, match=r"torch.compile failed .*--set train.compile=false"):
        train(recipe, tmp_path / "run", device="cpu", console=QUIET)


@pytest.mark.parametrize("decay, after_warm_up", [
    ("cosine", lambda k: 0.5e-3 * (1 + math.cos(math.pi * k / 4))),
    ("linear", lambda k: 1e-3 * (1 - k / 4)),
])
def test_lr_decay_follows_its_closed_form_after_warm_up(tmp_path, decay, after_warm_up):
    overrides = [*TINY_VDM, "train.max_steps=6", "train.warmup_steps=2", f"train.lr_decay={decay}", "train.lr=1e-3"]
    train(load_recipe("vdm-tiny", overrides), tmp_path / "run", device="cpu", console=QUIET)
    logged = [r["lr"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl")]
    # Steps 0, 1 warm up linearly; steps 2..5 follow the decay at k = 0..3 of 4 (0 would come at step 6).
    expected = [0.5e-3, 1e-3] + [after_warm_up(k) for k in range(4)]
    assert logged == pytest.approx(expected, rel=1e-9)
