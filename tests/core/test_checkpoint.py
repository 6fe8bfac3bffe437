import os

import pytest
import torch

from vidgen.core.checkpoint import (DamagedCheckpoint, checkpoint_path, latest_checkpoint, list_checkpoints,
                                    load_checkpoint, prune_checkpoints, save_checkpoint, verify_checkpoint)
from vidgen.errors import UserError

STATE = {"config": {"model": {"name": "vdm"}}, "step": 3, "networks": {"w": torch.arange(4.0)}, "ema": {},
         "backend": {}}


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
    with pytest.raises(DamagedCheckpoint, match="is damaged: it is not an intact torch archive"):
        load_checkpoint(truncated)
    text = tmp_path / "notes.pt"
    text.write_text("hello\n")  # torch.load's legacy path fails with a KeyError on it
    with pytest.raises(DamagedCheckpoint, match="is damaged: it is not an intact torch archive"):
        load_checkpoint(text)
    partial = tmp_path / "partial.pt"
    save_checkpoint({"config": STATE["config"], "step": 1}, partial)
    with pytest.raises(UserError, match="not a complete vidgen checkpoint \\(it has no 'networks'\\)"):
        load_checkpoint(partial)
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
    with pytest.raises(UserError, match="holds objects other than tensors and plain data"):
        load_checkpoint(path)


def test_newer_format_is_refused(tmp_path):
    path = checkpoint_path(tmp_path, 1)
    save_checkpoint(STATE, path)
    state = torch.load(path, weights_only=True)
    state["format_version"] = 99
    torch.save(state, path)
    with pytest.raises(UserError, match="newer vidgen"):
        load_checkpoint(path)


def test_a_flipped_byte_in_any_record_is_detected(tmp_path):
    """torch.load reads a flipped tensor byte without complaint; the CRC-32 of every record catches it, in the
    tensors and in the pickled structure alike."""
    path = checkpoint_path(tmp_path, 1)
    save_checkpoint({**STATE, "networks": {"w": torch.randn(256, 256)}}, path)
    data = path.read_bytes()
    tensor_at = data.index(torch.load(path, weights_only=True)["networks"]["w"].numpy().tobytes()[:64])

    def flip(position: int) -> None:
        damaged = bytearray(data)
        damaged[position] ^= 0x01
        path.write_bytes(damaged)

    flip(tensor_at + 1000)
    assert torch.load(path, weights_only=True)["step"] == 3  # silently wrong weights
    with pytest.raises(DamagedCheckpoint, match="record '.*/data/0' fails its CRC-32 check"):
        load_checkpoint(path)
    flip(data.index(b"networks") + 2)
    with pytest.raises(DamagedCheckpoint, match="record '.*/data.pkl' fails its CRC-32 check"):
        verify_checkpoint(path)
    path.write_bytes(data)
    verify_checkpoint(path)
