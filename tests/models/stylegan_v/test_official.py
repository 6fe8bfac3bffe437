"""`vidgen import stylegan-v`: official snapshots read as data, renamed onto vidgen's networks, and checked against
outputs of the official code (fixtures/README.md says how they were made)."""

from __future__ import annotations

import builtins
import pickle
import sys
import types
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.conftest import run_cli
from vidgen.errors import UserError
from vidgen.import_official import import_official
from vidgen.models.stylegan_v.official_pickle import read_snapshot, state_dict
from vidgen.sample import load_for_sampling

FIXTURES = Path(__file__).parent / "fixtures"
SNAPSHOT = FIXTURES / "official_tiny.pkl"
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "official_tiny_outputs.npz") as data:
        return dict(data)


def official_frames(export: Path, reference: dict[str, np.ndarray], psi: float) -> np.ndarray:
    """The imported EMA generator's frames for the reference's z, times and motion noise: [B T, 3, H, W]."""
    _, backend = load_for_sampling(export, CPU)
    G = backend.networks["G"]
    with torch.no_grad():
        video = G(torch.from_numpy(reference["z"]), torch.from_numpy(reference["t"]).double(),
                  motion_z=torch.from_numpy(reference["motion_z"]), truncation=psi)  # [B, 3, T, H, W]
    return video.transpose(1, 2).flatten(0, 1).numpy()


def test_official_snapshot_reproduces_the_official_frames_and_logits(tmp_path, reference) -> None:
    out = tmp_path / "export"
    result = import_official("stylegan-v", SNAPSHOT, out)
    assert result.parameters == int(reference["g_ema_params"] + reference["d_params"])
    for psi, key in ((1.0, "frames_psi1"), (0.5, "frames_psi05")):  # 0.5 also checks the running w average
        ours = official_frames(out, reference, psi)
        assert np.abs(ours - reference[key]).max() < 1e-4 * np.abs(reference[key]).max()
    _, backend = load_for_sampling(out, CPU)
    clips = torch.from_numpy(reference["d_img"]).unflatten(0, (2, 3)).transpose(1, 2)  # [B, 3, k, H, W]
    with torch.no_grad():
        logits = backend.networks["D"](clips, torch.from_numpy(reference["d_t"]))
    np.testing.assert_allclose(logits.numpy(), reference["d_logits"], rtol=1e-4, atol=1e-5)
    assert backend.augment_p == pytest.approx(0.125)  # the snapshot's ADA probability


def test_derived_recipe_has_the_snapshot_settings(tmp_path) -> None:
    import yaml

    import_official("stylegan-v", SNAPSHOT, tmp_path / "export")
    config = yaml.safe_load((tmp_path / "export" / "config.yaml").read_text())
    model = config["model"]
    assert (config["data"]["resolution"], config["data"]["frames"], config["data"]["fps"]) == (16, 3, 25.0)
    assert (model["z_dim"], model["w_dim"], model["mapping_layers"]) == (12, 16, 2)
    assert (model["channel_base"], model["channel_max"], model["fp16_resolutions"], model["conv_clamp"]) == \
        (64, 16, 2, 256.0)
    # motion_z_distance is an interpolation in the official config (${model.generator.time_enc.min_period_len})
    assert (model["motion_z_dim"], model["motion_v_dim"], model["motion_z_distance"]) == (8, 16, 4)
    assert (model["motion_kernel_size"], model["time_min_period"], model["time_max_period"]) == (3, None, 64.0)
    assert (model["max_num_frames"], model["d_concat_resolution"], model["mbstd_group"]) == (40, 8, 2)


def test_unflipped_upsampling_kernels_would_not_reproduce_the_frames(tmp_path, reference, monkeypatch) -> None:
    """The flip is what makes the frames match: the official up-sampling convolutions are true convolutions."""
    import vidgen.models.stylegan_v.official as official

    monkeypatch.setattr(official, "flip_kernel", lambda weight: weight)
    import_official("stylegan-v", SNAPSHOT, tmp_path / "export")
    assert np.abs(official_frames(tmp_path / "export", reference, 1.0) - reference["frames_psi1"]).max() > 0.1


# ----------------------------------------------------------------------------------------------------------
# Pickles built here, in the persistence layout (torch_utils/persistence.py of stylegan2-ada-pytorch)


def _fake_persistence(monkeypatch: pytest.MonkeyPatch, package: str = "torch_utils") -> Any:
    """Register a stand-in for `<package>.persistence` so that pickle writes the official global name; the
    function never runs here (reading goes through vidgen's unpickler)."""
    module = types.ModuleType(f"{package}.persistence")

    def _reconstruct_persistent_obj(meta):  # pragma: no cover - written by reference only
        raise AssertionError("never called")

    _reconstruct_persistent_obj.__module__ = module.__name__
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    module._reconstruct_persistent_obj = _reconstruct_persistent_obj
    monkeypatch.setitem(sys.modules, package, types.ModuleType(package))
    monkeypatch.setitem(sys.modules, module.__name__, module)
    return _reconstruct_persistent_obj


OFFICIAL_BUFFERS = ("resample_filter", "w_avg", "freqs", "phase_scales", "fourier_coefs")
"""The official networks' buffers (register_buffer); every other tensor is a parameter."""


class PersistentNet:
    """Pickles as the persistence module pickles a network: _reconstruct_persistent_obj(meta)."""

    def __init__(self, reconstruct: Any, class_name: str, state: dict[str, Any], source: str) -> None:
        self.reconstruct, self.class_name, self.state, self.source = reconstruct, class_name, state, source

    def __reduce__(self):
        meta = dict(type="class", version=6, module_src=self.source, class_name=self.class_name, state=self.state)
        return self.reconstruct, (meta,)


def network(reconstruct: Any, class_name: str, tensors: dict[str, torch.Tensor], extra: dict[str, Any],
            source: str = "raise SystemExit('the embedded source ran')\n") -> PersistentNet:
    """A persistent network whose submodules and tensors are laid out by the dotted names of a state dict."""
    def empty() -> dict[str, Any]:
        return {"training": False, "_parameters": OrderedDict(), "_buffers": OrderedDict(), "_modules": OrderedDict()}

    root = empty()
    for name, tensor in tensors.items():
        *path, leaf = name.split(".")
        node = root
        for part in path:
            node = node["_modules"].setdefault(part, empty())
        if leaf in OFFICIAL_BUFFERS:
            node["_buffers"][leaf] = tensor.clone()
        else:
            node["_parameters"][leaf] = torch.nn.Parameter(tensor.clone(), requires_grad=False)

    def build(state: dict[str, Any], name: str) -> PersistentNet:
        state["_modules"] = OrderedDict((k, build(v, k)) for k, v in state["_modules"].items())
        return PersistentNet(reconstruct, name, state, source)

    root.update(extra)
    return build(root, class_name)


@pytest.fixture(scope="module")
def known() -> dict[str, Any]:
    """The fixture snapshot's state dicts and settings, as plain data: what a test builds its pickles from."""
    snapshot = read_snapshot(SNAPSHOT)
    generator_cfg = {
        "z_dim": 12, "use_noise": False, "input": {"type": "temporal"}, "c_dim": 0,
        "motion": {"z_dim": 8, "v_dim": 16, "motion_z_distance": 4, "kernel_size": 3, "gen_strategy": "conv",
                   "fourier": True},
        "time_enc": {"cond_type": "concat_const", "dim": 8, "min_period_len": 4, "max_period_len": 64},
        "sampling": {"type": "random", "num_frames_per_video": 3, "max_num_frames": 40, "max_dist": 32, "fps": 25},
    }
    return {
        "G_ema": state_dict(snapshot["G_ema"]), "D": state_dict(snapshot["D"]), "g_cfg": generator_cfg,
        "g_kwargs": {"w_dim": 16, "c_dim": 0, "img_resolution": 16, "img_channels": 3,
                     "mapping_kwargs": {"num_layers": 2},
                     "synthesis_kwargs": {"channel_base": 64, "channel_max": 16, "num_fp16_res": 2,
                                          "conv_clamp": 256}},
        "d_cfg": {"concat_res": 8, "num_frames_div_factor": 2, "dummy_c": False},
        "d_kwargs": {"channel_base": 64, "channel_max": 16, "epilogue_kwargs": {"mbstd_group_size": 2}},
    }


def write_snapshot(path: Path, reconstruct: Any, known: dict[str, Any], g_kwargs: dict | None = None,
                   with_motion: bool = True, source: str = "raise SystemExit('the embedded source ran')\n") -> Path:
    g_tensors = {k: v for k, v in known["G_ema"].items() if with_motion or "motion_encoder" not in k}
    g_extra = {"_init_args": (), "_init_kwargs": g_kwargs or known["g_kwargs"]}
    if with_motion:
        g_extra["cfg"] = known["g_cfg"]
    d_extra = {"_init_args": (), "_init_kwargs": known["d_kwargs"], "cfg": known["d_cfg"]}
    G = network(reconstruct, "Generator", g_tensors, g_extra, source)
    snapshot = {"training_set_kwargs": {"path": "data/known.zip"}, "G": G, "G_ema": G,
                "D": network(reconstruct, "Discriminator", known["D"], d_extra, source), "augment_pipe": None}
    path.write_bytes(pickle.dumps(snapshot))
    return path


def test_snapshot_built_from_a_known_state_dict_reproduces_the_official_frames(tmp_path, monkeypatch, known,
                                                                                reference) -> None:
    """The official layout built here from the known official state dict (stylegan2-ada's own module path,
    plain-dict settings): its conversion reproduces the frames the official code computed from those tensors."""
    reconstruct = _fake_persistence(monkeypatch)
    path = write_snapshot(tmp_path / "network-snapshot-000640.pkl", reconstruct, known)
    import_official("stylegan-v", path, tmp_path / "export")
    ours = official_frames(tmp_path / "export", reference, 1.0)
    assert np.abs(ours - reference["frames_psi1"]).max() < 1e-4 * np.abs(reference["frames_psi1"]).max()
    card = (tmp_path / "export" / "README.md").read_text()
    assert "| training kimg | 640 |" in card and "no code from the file ran" in card


def test_embedded_module_source_never_runs(tmp_path, monkeypatch, known) -> None:
    reconstruct = _fake_persistence(monkeypatch, package="src.torch_utils")
    monkeypatch.setitem(sys.modules, "src", types.ModuleType("src"))
    marker = tmp_path / "ran.txt"
    source = f"open({str(marker)!r}, 'w').write('the embedded source ran')\n"
    path = write_snapshot(tmp_path / "snapshot.pkl", reconstruct, known, source=source)
    import_official("stylegan-v", path, tmp_path / "export")
    assert not marker.exists()


class RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return builtins.exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",)


def test_a_pickle_that_would_run_code_is_refused_and_nothing_runs(tmp_path) -> None:
    marker = tmp_path / "pwned.txt"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"G_ema": RunsCode(marker), "augment_pipe": None}))
    with pytest.raises(UserError, match=r"would run code when loaded \(it calls builtins\.exec\)"):
        import_official("stylegan-v", evil, tmp_path / "out")
    assert not marker.exists() and not (tmp_path / "out").exists()
    result = run_cli("import", "stylegan-v", str(evil), "--out", str(tmp_path / "out"))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "would run code" in result.stderr and not marker.exists()


def test_type_annotations_in_settings_are_read_as_their_names(tmp_path) -> None:
    """OmegaConf's metadata may name annotations (Dict[str, Any], Optional[int]), which pickle as calls of
    operator.getitem and type(None): read as text, not refused and not called."""
    import typing

    path = tmp_path / "annotations.pkl"
    path.write_bytes(pickle.dumps({"a": typing.Dict[str, typing.Any], "b": typing.Optional[int]}))
    assert read_snapshot(path) == {"a": "typing.Dict[('builtins.str', 'typing.Any')]",
                                   "b": "typing.Union[('builtins.int', 'builtins.NoneType')]"}


@pytest.mark.parametrize("case", ["text", "zip", "truncated", "not_a_snapshot"])
def test_a_file_that_is_not_a_snapshot_is_one_line(tmp_path, case) -> None:
    path = tmp_path / "file.pkl"
    if case == "text":
        path.write_text("hello, not a pickle\n")
    elif case == "zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("data.pkl", b"")
    elif case == "truncated":
        path.write_bytes(SNAPSHOT.read_bytes()[:5000])
    else:
        path.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    expected = {"text": "is not a pickle, or is damaged", "zip": "is a zip archive",
                "truncated": "is not a pickle, or is damaged", "not_a_snapshot": "is not a StyleGAN-V network snapshot"}
    with pytest.raises(UserError, match=expected[case]):
        import_official("stylegan-v", path, tmp_path / "out")


def test_a_stylegan2_image_snapshot_is_named_as_such(tmp_path, monkeypatch, known) -> None:
    reconstruct = _fake_persistence(monkeypatch)
    path = write_snapshot(tmp_path / "snapshot.pkl", reconstruct, known, with_motion=False)
    with pytest.raises(UserError, match="StyleGAN2 image-generator snapshot"):
        import_official("stylegan-v", path, tmp_path / "out")


def test_an_unknown_resolution_is_one_line(tmp_path, monkeypatch, known) -> None:
    reconstruct = _fake_persistence(monkeypatch)
    path = write_snapshot(tmp_path / "snapshot.pkl", reconstruct, known,
                          g_kwargs={**known["g_kwargs"], "img_resolution": 48})
    with pytest.raises(UserError, match="unknown resolution 48"):
        import_official("stylegan-v", path, tmp_path / "out")


def test_unreadable_settings_are_one_line(tmp_path, monkeypatch, known) -> None:
    reconstruct = _fake_persistence(monkeypatch)
    known = {**known, "g_cfg": {**known["g_cfg"], "time_enc": {**known["g_cfg"]["time_enc"], "dim": None}}}
    path = write_snapshot(tmp_path / "snapshot.pkl", reconstruct, known)
    with pytest.raises(UserError, match="its network settings could not be read"):
        import_official("stylegan-v", path, tmp_path / "out")


def test_cli_imports_and_the_export_samples(tmp_path) -> None:
    out = tmp_path / "export"
    result = run_cli("import", "stylegan-v", str(SNAPSHOT), "--out", str(out), check=True)
    assert "39,165 parameters" in result.stdout
    run_cli("sample", str(out), "--out", str(tmp_path / "samples"), "--num", "2", "--frames", "6", check=True)
    assert len(list((tmp_path / "samples").glob("sample-*.mp4"))) == 2
    scored = run_cli("eval", "--real", "synthetic:videos=4,frames=16,resolution=16", "--fake", str(out), "--num", "4",
                     "--allow-fewer", "--metrics", "fvd2048_16f", "--device", "cpu", "--workers", "0", check=True)
    assert "fvd2048_16f (n=4)" in scored.stdout
    again = run_cli("import", "stylegan-v", str(SNAPSHOT), "--out", str(out))
    assert again.returncode != 0 and "not an empty folder" in again.stderr
    other = run_cli("import", "tganv2", str(SNAPSHOT), "--out", str(tmp_path / "other"))
    assert other.returncode != 0 and "imports stylegan-v" in other.stderr
