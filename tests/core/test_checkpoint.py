import os

import pytest
import torch

from vidgen.core.checkpoint import (checkpoint_path, latest_checkpoint, list_checkpoints, load_checkpoint,
                                    prune_checkpoints, save_checkpoint)
from vidgen.errors import UserError

STATE = {"config": {"model": {"name": "vdm"}}, "step": 3, "networks": {"w": torch.arange(4.0)}}


def test_round_trip_and_listing(tmp_path):
    for step in (20, 3, 100):
        save_checkpoint({**STATE, "step": step}, checkpoint_path(tmp_path, step))
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt-00000003.pt", "ckpt-00000020.pt",
                                                           "ckpt-00000100.pt"]
    state = load_checkpoint(latest_checkpoint(tmp_path), expected_model="vdm")
    assert state["step"] == 100 and torch.equal(state["networks"]["w"], torch.arange(4.0))
    prune_checkpoints(tmp_path, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt-00000020.pt", "ckpt-00000100.pt"]


def test_failed_write_keeps_previous_checkpoint_and_leaves_no_temp_file(tmp_path, monkeypatch):
    path = checkpoint_path(tmp_path, 1)
    save_checkpoint(STATE, path)
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError):
        save_checkpoint({**STATE, "step": 99}, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_damaged_foreign_and_other_model_files_are_user_errors(tmp_path):
    path = checkpoint_path(tmp_path, 1)
    save_checkpoint(STATE, path)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(UserError, match="damaged"):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(UserError, match="not a vidgen checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(UserError, match="holds a 'vdm' model, not 'stylegan-v'"):
        load_checkpoint(path, expected_model="stylegan-v")
    with pytest.raises(UserError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_checkpoints_with_code_are_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"format": "vidgen-checkpoint", "x": Payload()}, path)
    with pytest.raises(UserError, match="damaged or not a torch file"):
        load_checkpoint(path)


def test_newer_format_is_refused(tmp_path):
    path = checkpoint_path(tmp_path, 1)
    save_checkpoint(STATE, path)
    state = torch.load(path, weights_only=True)
    state["format_version"] = 99
    torch.save(state, path)
    with pytest.raises(UserError, match="newer vidgen"):
        load_checkpoint(path)
