"""Faults during training: a rank killed mid-run, a process killed mid-save, a full or read-only disk, NaN losses.

Each must end in one readable line (or a clean exit) and leave a run that `vidgen train RUN_DIR` resumes.
"""

import errno
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest
import torch
from rich.console import Console

from tests.conftest import TINY_VDM, set_args
from vidgen.core import atomic
from vidgen.core.checkpoint import list_checkpoints, load_checkpoint
from vidgen.core.run_dir import read_metrics
from vidgen.errors import UserError
from vidgen.recipe import load_recipe
from vidgen.train import resolve_run, train

QUIET = Console(quiet=True)

# Rank 1's third loss call (step 3) is NaN; rank 0's losses are all finite.
NAN_ON_RANK_1 = textwrap.dedent("""
    import os, sys
    from vidgen.models.vdm.backend import VDMBackend

    original, calls = VDMBackend.loss, [0]

    def loss(self, phase, batch, nets, generator):
        value, logs = original(self, phase, batch, nets, generator)
        calls[0] += 1
        if os.environ["RANK"] == "1" and calls[0] == 3:
            value = value * float("nan")
        return value, logs

    VDMBackend.loss = loss
    from vidgen_cli.main import main
    main()  # sys.argv: train vdm-tiny --out ...
""")


def children(pid):
    """{RANK: pid} of the worker processes torchrun started."""
    found = {}
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
            if parent != pid:
                continue
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = dict(item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item)
        except (OSError, ValueError):  # not a process, or gone meanwhile
            continue
        if b"RANK" in env:
            found[int(env[b"RANK"])] = int(entry)
    return found


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="finds torchrun's workers through /proc")
def test_two_rank_job_skips_a_nan_on_one_rank_then_a_killed_rank_ends_it_and_one_process_resumes(tmp_path):
    run_dir = tmp_path / "run"
    overrides = [*TINY_VDM, "train.max_steps=40", "train.checkpoint_every=4", "train.keep_checkpoints=10"]
    script = tmp_path / "nan_on_rank_1.py"
    script.write_text(NAN_ON_RANK_1)
    job = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                            str(script), "train", "vdm-tiny", "--out", str(run_dir), "--device", "cpu",
                            *set_args(overrides)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                           env={**os.environ, "OMP_NUM_THREADS": "1"})

    # --- SIGKILL rank 1 once step 6 is logged (after the step-4 checkpoint) ---
    metrics = run_dir / "metrics.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and job.poll() is None:
        if metrics.exists() and any(r["step"] >= 6 for r in read_metrics(metrics)):
            os.kill(children(job.pid)[1], signal.SIGKILL)
            break
        time.sleep(0.005)
    # The surviving rank must not wait for its dead peer (gloo fails the collective, torchrun stops the job):
    # the timeout below only guards against a hang, the 30-minute collective timeout is never reached.
    stderr = job.communicate(timeout=120)[1]
    assert job.returncode not in (0, None), "the job ended before rank 1 was killed"
    assert "exitcode  : -9" in stderr, stderr[-3000:]  # torchrun's report names the killed rank
    assert "rank 0 lost contact with the other ranks" in stderr and "[rank0]: Traceback" not in stderr, \
        stderr[-3000:]

    # --- The NaN on rank 1 skipped step 3 on both ranks (rank 0's own loss was finite) ---
    records = {r["step"]: r for r in read_metrics(metrics) if "loss" in r}
    assert records[2]["nonfinite_steps"] == 0 and records[3]["nonfinite_steps"] == 1
    assert records[max(records)]["nonfinite_steps"] == 1

    # --- One process resumes from the last complete checkpoint and reaches max_steps ---
    last_saved = load_checkpoint(list_checkpoints(run_dir / "checkpoints")[-1])
    recipe, resumed_dir = resolve_run(str(run_dir), None, [])
    console = Console(record=True, width=200, file=open(os.devnull, "w"))
    result = train(recipe, resumed_dir, device="cpu", console=console)
    printed = console.export_text()
    assert result.step == 40
    assert f"Resuming {run_dir} from step {last_saved['step']}" in printed and "another number of ranks" in printed
    steps = [r["step"] for r in read_metrics(metrics) if "loss" in r]
    assert steps == list(range(1, 41)), "the log is rewound to the checkpoint and continued"
    final = load_checkpoint(result.checkpoint)
    # The data stream goes on where the 2-rank job stopped: 4 videos a step there, 2 here.
    assert final["data"]["samples_seen"] == last_saved["step"] * 4 + (40 - last_saved["step"]) * 2
    assert final["nonfinite_steps"] == 1


DIE_WHILE_SAVING = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    import torch
    from vidgen.core.checkpoint import load_checkpoint, save_checkpoint

    path = Path(sys.argv[1])
    state = load_checkpoint(path)

    def dying_save(obj, f):  # part of the file reaches the disk, then the process is killed
        f.write(b"PK" + bytes(4096))
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    torch.save = dying_save
    save_checkpoint({key: value for key, value in state.items() if key != "format"}, path)
""")


def test_a_process_killed_while_saving_never_replaces_the_last_checkpoint(tmp_path):
    overrides = [*TINY_VDM, "train.checkpoint_every=2"]
    train(load_recipe("vdm-tiny", [*overrides, "train.max_steps=2"]), tmp_path / "run", device="cpu", console=QUIET)
    good = tmp_path / "run" / "checkpoints" / "ckpt-00000002.pt"
    before = good.read_bytes()

    # Overwrite the very same checkpoint from a process that dies mid-write.
    script = tmp_path / "die.py"
    script.write_text(DIE_WHILE_SAVING)
    dead = subprocess.run([sys.executable, str(script), str(good)], capture_output=True, timeout=120)
    assert dead.returncode == -signal.SIGKILL, dead.stderr
    assert good.read_bytes() == before
    left = [p.name for p in good.parent.iterdir() if p.name.endswith(".tmp")]
    assert len(left) == 1 and left[0].startswith(".ckpt-00000002.pt."), left
    assert list_checkpoints(good.parent) == [good], "the temporary file is not a checkpoint"

    # Resuming ignores it, then deletes it.
    console = Console(record=True, width=200, file=open(os.devnull, "w"))
    result = train(load_recipe("vdm-tiny", [*overrides, "train.max_steps=4"]), tmp_path / "run", device="cpu",
                   console=console)
    printed = console.export_text()
    assert result.step == 4 and "from step 2" in printed and f"Removed {left[0]}" in printed
    assert not [p for p in good.parent.iterdir() if p.name.endswith(".tmp")]


def _fail_second_save(monkeypatch, error):
    """The step-4 checkpoint's file fails partway with `error`, as a disk filling up does: the real torch.save then
    raises its own RuntimeError ("unexpected pos ..."), which hides the reason unless vidgen keeps it."""
    real_mkstemp, real_fdopen, names = tempfile.mkstemp, os.fdopen, {}

    class FillsUp:
        def __init__(self, handle):
            self.handle, self.written = handle, 0

        def write(self, data):
            if self.written + len(data) > 4096:
                raise error
            self.written += len(data)
            return self.handle.write(data)

        def __getattr__(self, name):
            return getattr(self.handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.handle.__exit__(*exc)

    def mkstemp(*args, **kwargs):
        fd, name = real_mkstemp(*args, **kwargs)
        names[fd] = name
        return fd, name

    def fdopen(fd, *args, **kwargs):
        handle = real_fdopen(fd, *args, **kwargs)
        return FillsUp(handle) if ".ckpt-00000004.pt." in names.get(fd, "") else handle

    monkeypatch.setattr(atomic.tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(atomic.os, "fdopen", fdopen)


def _make_read_only(directory, monkeypatch):
    """chmod a-w; as root (who writes anyway) a file system that refuses new files there instead."""
    if os.geteuid() != 0:
        directory.chmod(0o555)
        return
    mkstemp = tempfile.mkstemp

    def refuse(*args, dir=None, **kwargs):
        if dir is not None and os.path.samefile(dir, directory):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(directory))
        return mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(atomic.tempfile, "mkstemp", refuse)


@pytest.mark.parametrize("fault", ["disk-full", "read-only"])
def test_a_failed_save_is_one_line_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch, fault):
    overrides = [*TINY_VDM, "train.checkpoint_every=2"]
    run_dir = tmp_path / "run"
    if fault == "disk-full":
        _fail_second_save(monkeypatch, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
        recipe = load_recipe("vdm-tiny", [*overrides, "train.max_steps=4"])
    else:
        train(load_recipe("vdm-tiny", [*overrides, "train.max_steps=2"]), run_dir, device="cpu", console=QUIET)
        _make_read_only(run_dir / "checkpoints", monkeypatch)
        recipe = load_recipe("vdm-tiny", [*overrides, "train.max_steps=4"])
    try:
        with pytest.raises(UserError) as failure:
            train(recipe, run_dir, device="cpu", console=QUIET)
    finally:
        (run_dir / "checkpoints").chmod(0o755)
    message = str(failure.value)
    assert "\n" not in message and "ckpt-00000004.pt" in message and "previous checkpoint is kept" in message
    assert os.strerror(errno.ENOSPC if fault == "disk-full" else errno.EROFS) in message or \
        os.strerror(errno.EACCES) in message
    names = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert names == ["ckpt-00000002.pt"], "no partial file, no pruning"
    assert load_checkpoint(run_dir / "checkpoints" / names[0])["step"] == 2


def _nan_at(monkeypatch, steps):
    """The VDM loss is NaN at the given (1-based) steps of a one-phase, one-micro-batch run."""
    from vidgen.models.vdm.backend import VDMBackend

    original, calls = VDMBackend.loss, []

    def loss(self, phase, batch, nets, generator):
        value, logs = original(self, phase, batch, nets, generator)
        calls.append(1)
        return (value * float("nan"), logs) if len(calls) in steps else (value, logs)

    monkeypatch.setattr(VDMBackend, "loss", loss)


def test_a_nonfinite_loss_skips_the_step_and_is_counted(tmp_path, monkeypatch):
    _nan_at(monkeypatch, {2, 3})
    recipe = load_recipe("vdm-tiny", [*TINY_VDM, "train.max_steps=5", "train.checkpoint_every=1",
                                      "train.keep_checkpoints=10"])
    result = train(recipe, tmp_path / "run", device="cpu", console=QUIET)
    assert result.step == 5
    records = {r["step"]: r for r in read_metrics(tmp_path / "run" / "metrics.jsonl")}
    assert [records[s]["nonfinite_steps"] for s in range(1, 6)] == [0, 1, 2, 2, 2]
    saved = {s: load_checkpoint(tmp_path / "run" / "checkpoints" / f"ckpt-{s:08d}.pt") for s in (1, 3, 4)}
    for part in ("networks", "ema"):  # steps 2 and 3 changed neither the weights nor their EMA
        for name, tensor in saved[1][part].items():
            assert torch.equal(tensor, saved[3][part][name]), name
    assert any(not torch.equal(t, saved[4]["networks"][n]) for n, t in saved[3]["networks"].items())
    assert saved[3]["optimizers"]["main"]["state"][0]["step"] == 1, "no optimizer step either"


def test_too_many_nonfinite_steps_in_a_row_stop_the_run(tmp_path, monkeypatch):
    _nan_at(monkeypatch, set(range(3, 100)))
    recipe = load_recipe("vdm-tiny", [*TINY_VDM, "train.max_steps=50", "train.checkpoint_every=2",
                                      "train.max_nonfinite_steps=4"])
    with pytest.raises(UserError, match="stopped at step 6: the loss was NaN or infinite in 4 steps in a row") \
            as failure:
        train(recipe, tmp_path / "run", device="cpu", console=QUIET)
    # Steps 3-6 changed nothing: the step-4 checkpoint holds step 2's weights, at step 4's place in the data.
    assert "ckpt-00000004.pt holds the last saved weights" in str(failure.value)
    assert [p.name for p in list_checkpoints(tmp_path / "run" / "checkpoints")] == ["ckpt-00000002.pt",
                                                                                 "ckpt-00000004.pt"]
    assert read_metrics(tmp_path / "run" / "metrics.jsonl")[-1]["nonfinite_steps"] == 4


def test_a_metrics_log_that_cannot_be_written_is_one_line(tmp_path):
    from vidgen.core.run_dir import MetricsLog

    log = MetricsLog(tmp_path / "metrics.jsonl")
    (tmp_path / "metrics.jsonl").unlink()
    tmp_path.joinpath("metrics.jsonl").mkdir()  # appending now fails, as on a full or read-only disk
    with pytest.raises(UserError, match="cannot append to .*metrics.jsonl: Is a directory"):
        log.write({"step": 1})
