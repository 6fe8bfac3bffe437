"""The shared training loop: a killed run resumes and continues exactly as if it had never stopped."""

import os
import signal
import subprocess
import sys
import time

from tests.conftest import set_args
from vidgen.core.checkpoint import list_checkpoints
from vidgen.core.run_dir import read_metrics

# Wide enough that a step takes tens of milliseconds, so the kill lands between two checkpoints.
RESUME_RUN = ["train.max_steps=24", "train.checkpoint_every=5", "train.keep_checkpoints=2",
              "model.channels=16", "train.batch_size=4"]


def start_training(run_dir, tiny_vdm):
    args = [sys.executable, "-m", "vidgen_cli", "train", "vdm-tiny", "--out", str(run_dir),
            *set_args(tiny_vdm + RESUME_RUN)]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_sigkill_between_checkpoints_then_resume_matches_uninterrupted_run(tmp_path, tiny_vdm):
    # Reference: one uninterrupted run.
    reference = start_training(tmp_path / "reference", tiny_vdm)
    assert reference.wait(timeout=300) == 0, reference.stderr.read()
    expected = {r["step"]: r["loss"] for r in read_metrics(tmp_path / "reference" / "metrics.jsonl")}
    assert len(expected) == 24

    # Killed run: SIGKILL once step 7 is logged (after the step-5 checkpoint, before step 10's).
    run_dir = tmp_path / "killed"
    proc = start_training(run_dir, tiny_vdm)
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
    resumed = start_training(run_dir, tiny_vdm)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    got = {r["step"]: r["loss"] for r in read_metrics(run_dir / "metrics.jsonl")}
    assert got == expected
