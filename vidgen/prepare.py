"""`vidgen data prepare`: convert videos once into resized frames that are fast to read.

Training from raw videos decodes and resizes every clip it reads; at paper scale that is most of a CPU's work per
step. Preparing does it once. Every frame is resized (short side) and centre-cropped to R x R by the loader's own
`resize_center_crop`, so training at data.resolution = R on the prepared form sees the clips the raw videos would
give (the loader's resize becomes a no-op), only sooner. Two layouts:

- frames-zip: a .zip of frame folders, one folder of PNGs per video: StyleGAN-V's layout, lossless, read by
  vidgen.core.data.sources like any zip of frame folders;
- shards: uint8 arrays [N, R, R, 3] read through a memory map (vidgen.core.shards): no decoding at all, at the
  price of uncompressed size on disk.

Both hold RGB frames, whatever the data: a grayscale run (data.channels 1) converts them to luma as it reads them,
as it would the raw videos, so one prepared dataset serves either.

Conversion runs in worker processes, one video per task, and is resumable. Work happens in a hidden folder beside
OUT (`.OUT.prepare/`): each finished video is written there atomically and then recorded in its manifest, so
rerunning the same command after an interruption converts only what is missing. The dataset appears at OUT in one
rename, after its last video, and the work folder is removed. Unreadable videos are skipped, listed, and recorded
in the metadata.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import re
import shutil
import signal
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from rich.console import Console

from vidgen import __version__
from vidgen.core.data.dataset import resize_center_crop
from vidgen.core.data.labels import LABELS_FILE, labels_file
from vidgen.core.data.sources import VIDEO_EXTENSIONS, StoredVideo, find_videos, summarize_skipped
from vidgen.core.io import VideoReadError, write_png
from vidgen.core.progress import task_progress
from vidgen.core.shards import FORMAT, FORMAT_VERSION, META_NAME, read_metadata
from vidgen.errors import ConfigError, UserError

Layout = Literal["frames-zip", "shards"]
LAYOUTS: tuple[Layout, ...] = ("frames-zip", "shards")
_CHUNK_BYTES = 128 << 20
"""Source pixels decoded at once per video: bounds a worker's memory for long or high-resolution videos."""


@dataclass(frozen=True)
class PrepareConfig:
    resolution: int
    """Side of the square output frames: the short side is resized to it, then the centre is cropped."""
    layout: Layout = "frames-zip"
    """frames-zip (a .zip of PNG frame folders) or shards (uint8 arrays for memory-mapped reads)."""
    fps: float | None = None
    """Resample every video to this rate, keeping the nearest frame; None keeps every frame. Sources that state no
    rate (frame folders) are kept frame for frame."""
    shard_bytes: int = 256 << 20
    """Shards: videos are packed into files of at most this size (a longer video gets a file of its own)."""

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ConfigError(f"--format must be one of {', '.join(LAYOUTS)}; got '{self.layout}'")
        for name in ("resolution", "fps", "shard_bytes"):
            value = getattr(self, name)
            if value is not None and not 0 < value < math.inf:  # (NaN fails it too)
                raise ConfigError(f"--{name.replace('_', '-')} must be a finite number > 0, got {value}")

    def describe(self) -> str:
        rate = f", {self.fps:g} fps" if self.fps else ""
        return f"{self.layout} at {self.resolution}x{self.resolution}{rate}"


def layout_for(out: Path, layout: str | None) -> Layout:
    """The layout asked for, or the one OUT's name implies (a .zip is a frames zip, anything else a folder of
    shards); asking for one that OUT's name contradicts is a ConfigError."""
    is_zip = out.suffix.lower() == ".zip"
    chosen = layout or ("frames-zip" if is_zip else "shards")
    if chosen == "frames-zip" and not is_zip:
        raise ConfigError(f"--format frames-zip writes a zip file: give an OUT ending in .zip, not '{out}'")
    if chosen == "shards" and is_zip:
        raise ConfigError(f"--format shards writes a folder: give an OUT that does not end in .zip, not '{out}'")
    return chosen  # type: ignore[return-value]  (checked by PrepareConfig)


@dataclass(frozen=True)
class PrepareResult:
    out: Path
    layout: Layout
    videos: int
    """Videos in the prepared dataset."""
    frames: int
    converted: int
    """Videos converted by this call (the others were finished by an earlier, interrupted call)."""
    skipped: list[tuple[str, str]]
    """(path, reason) of each video left out."""
    already_done: bool = False
    """OUT already held this dataset, prepared with the same settings: nothing was done."""


# ----------------------------------------------------------------------------------------------------------
# The conversion


def prepare_dataset(source: str | Path, out: str | Path, cfg: PrepareConfig, workers: int = 0,
                    console: Console | None = None) -> PrepareResult:
    """Convert the videos under `source` (anything vidgen.core.data.sources finds) into `out`, in `workers`
    processes (0: in this one). Resumes an interrupted call with the same settings; see the module docstring."""
    source, out = Path(source).expanduser(), Path(out).expanduser()
    console = console or Console(stderr=True)
    if workers < 0:
        raise ConfigError(f"--workers must be >= 0, got {workers}")
    existing = _finished_dataset(out, cfg)
    if existing is not None:
        return PrepareResult(out, cfg.layout, len(existing["videos"]), sum(v["frames"] for v in existing["videos"]),
                             0, [tuple(item) for item in existing["skipped"]], already_done=True)

    # --- Index the source; finished videos of an interrupted call are kept if their source is unchanged ---
    videos, skipped = find_videos(source)
    names = _output_names(videos, source)
    work = _Work.open(out, cfg, source)
    finished = work.finished()
    jobs = []
    for video, name in zip(videos, names, strict=True):
        fingerprint = video.fingerprint()
        if name not in finished or finished[name]["fingerprint"] != fingerprint:
            jobs.append(_Job(video, name, work.part(name), cfg, fingerprint))

    # --- Convert, one video per task; each result is recorded as it arrives ---
    failed: dict[str, str] = {}
    with task_progress(console, "prepare", total=len(jobs)) as advance:
        def record(outcome: _Outcome) -> None:
            if outcome.error is not None:
                failed[outcome.name] = outcome.error
            else:
                work.record(outcome)
            advance(1)

        _run(jobs, workers, record)

    # --- Assemble OUT from the finished parts, in name order, and drop the work folder ---
    finished = work.finished()
    entries = [finished[name] for name in sorted(set(finished) & set(names) - set(failed))]  # failed: stale parts
    sources = dict(zip(names, (video.name for video in videos), strict=True))
    skipped += [(sources[name], reason) for name, reason in sorted(failed.items())]
    if not entries:
        raise UserError(f"no video of '{source}' could be converted ({summarize_skipped(skipped)})")
    # Class labels from the source's dataset.json follow the videos to their new names (class sub-folders
    # need nothing: the names keep them).
    table = labels_file(source)
    labels = None if table is None else {name: table[video.relative_name(source)]
                                         for video, name in zip(videos, names, strict=True)
                                         if video.relative_name(source) in table}
    with task_progress(console, "pack", total=len(entries)) as advance:
        work.assemble(entries, skipped, source, labels, advance)
    work.remove()
    return PrepareResult(out, cfg.layout, len(entries), sum(e["frames"] for e in entries), len(jobs) - len(failed),
                         skipped)


def resample(num_frames: int, source_fps: float | None, target_fps: float | None) -> np.ndarray:
    """Source frame index of each output frame (T',): at output time k / target_fps the nearest source frame, over
    the video's duration num_frames / source_fps. Without both rates, every frame."""
    if target_fps is None or source_fps is None or target_fps == source_fps:
        return np.arange(num_frames)
    count = max(1, int(np.floor(num_frames * target_fps / source_fps + 1e-9)))
    nearest = np.floor(np.arange(count) * (source_fps / target_fps) + 0.5).astype(np.int64)
    return np.minimum(nearest, num_frames - 1)


def numbering_problem(video: StoredVideo) -> str | None:
    """Why a frame folder's numbered frames would play wrongly, or None.

    Frames are read in name order, so a missing frame is silently a jump in time, and unpadded numbers (img_10
    sorting before img_2) silently shuffle it. Frames numbered in steps (0, 2, 4, ...) are fine: only a step
    larger than the others is a gap.
    """
    stems = video.frame_names  # empty for a video file or a shard: nothing to check
    found = [re.search(r"(\d+)$", stem) for stem in stems]
    if len(found) < 3 or not all(found):
        return None
    numbers = np.array([int(match.group(1)) for match in found])
    steps = np.diff(numbers)
    if steps.min() <= 0:
        at = int(np.argmin(steps))
        return (f"frame {stems[at]} sorts before {stems[at + 1]} by name, so the frames would play out of order; "
                "zero-pad the numbers in the file names")
    if np.all(steps == steps.min()):
        return None
    at = int(np.argmax(steps > steps.min()))
    return (f"frame numbering jumps from {stems[at]} to {stems[at + 1]}: a missing frame; "
            "add it or remove the folder")


@dataclass(frozen=True)
class _Job:
    video: StoredVideo
    name: str
    part: Path
    cfg: PrepareConfig
    fingerprint: str


@dataclass(frozen=True)
class _Outcome:
    name: str
    part: str = ""
    frames: int = 0
    fps: float | None = None
    fingerprint: str = ""
    error: str | None = None
    """Why the video was skipped (None: it was converted)."""


def _convert(job: _Job) -> _Outcome:
    """Resize one video into its part file. An unreadable video is an outcome with a reason, not an exception."""
    video, cfg = job.video, job.cfg
    try:
        problem = numbering_problem(video)
        if problem is not None:
            return _Outcome(job.name, error=problem)
        indices = resample(video.num_frames, video.fps, cfg.fps)  # (T',) source frame of each output frame
        width, height = video.size()
        span = max(1, _CHUNK_BYTES // (width * height * 3))  # source frames decoded at once
        with _part_writer(job.part, cfg, job.name, len(indices)) as write:
            for group in _groups(indices, span):
                frames = video.read(group)  # (G, H, W, 3) uint8
                write(resize_center_crop(frames, cfg.resolution).numpy())  # (G, R, R, 3) uint8
    except VideoReadError as exc:
        return _Outcome(job.name, error=exc.reason)
    except (zipfile.BadZipFile, zlib.error) as exc:  # a damaged member of a zip of frame folders
        return _Outcome(job.name, error=f"damaged zip member ({exc})")
    fps = cfg.fps if cfg.fps and video.fps else video.fps
    return _Outcome(job.name, job.part.name, len(indices), fps, job.fingerprint)


def _groups(indices: np.ndarray, span: int) -> Iterator[np.ndarray]:
    """Consecutive runs of `indices` (increasing) that each cover at most `span` source frames."""
    start = 0
    while start < len(indices):
        end = int(np.searchsorted(indices, indices[start] + span, side="left"))
        yield indices[start:max(end, start + 1)]
        start = max(end, start + 1)


@contextmanager
def _part_writer(part: Path, cfg: PrepareConfig, name: str, total: int) -> Iterator[Callable[[np.ndarray], None]]:
    """Yields write(frames uint8 [G, R, R, 3]); the part appears at `part` only once all `total` frames are in."""
    tmp = part.with_name(f".{part.name}.{os.getpid()}.tmp")
    written = 0
    try:
        if cfg.layout == "shards":
            array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8,
                                              shape=(total, cfg.resolution, cfg.resolution, 3))

            def write(frames: np.ndarray) -> None:
                nonlocal written
                array[written:written + len(frames)] = frames
                written += len(frames)

            yield write
            array.flush()
            del array
        else:
            tmp.mkdir(parents=True, exist_ok=True)

            def write(frames: np.ndarray) -> None:
                nonlocal written
                for frame in frames:
                    write_png(tmp / f"{written:06d}.png", frame)
                    written += 1

            yield write
        if written != total:
            raise RuntimeError(f"{name}: wrote {written} of {total} frames")  # a bug in the chunking, not the data
        _remove(part)  # a part converted before an interruption but not yet recorded
        os.replace(tmp, part)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def _run(jobs: Sequence[_Job], workers: int, on_done: Callable[[_Outcome], Any]) -> None:
    """Convert every job, here (workers = 0) or in `workers` processes, calling on_done as each finishes."""
    if workers == 0 or len(jobs) <= 1:
        for job in jobs:
            on_done(_convert(job))
        return
    # spawn: a fresh interpreter per worker inherits no threads or locks of this one (Rich's refresh thread), so
    # no worker can start in a deadlock; the torch import it costs is paid once per worker.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=context, initializer=_init_worker) as pool:
        futures = {pool.submit(_convert, job): job for job in jobs}
        try:
            for future in as_completed(futures):
                on_done(future.result())
        except BrokenProcessPool:
            raise UserError("a worker process died (out of memory, or a crash inside the video decoder); the "
                            "finished videos are kept: run the same command again to resume, with --workers 0 "
                            "to see which file it is") from None
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)  # the with block then waits only for running videos
            raise


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)  # the parallelism is across processes
    # Ctrl-C reaches every process of the terminal's group: a worker just stops (its part is written atomically,
    # so nothing half-done is kept) and the main process reports the interruption once, without tracebacks.
    signal.signal(signal.SIGINT, lambda signum, frame: os._exit(128 + signum))


# ----------------------------------------------------------------------------------------------------------
# Names and the work folder


def _output_names(videos: Sequence[StoredVideo], root: Path) -> list[str]:
    """Each video's folder name in the output: its path under `root`, without a video extension (kept where two
    videos would otherwise share a name, as a.mp4 and a.webm)."""
    prefix = f"{root}/"
    relative = [video.name[len(prefix):] if video.name.startswith(prefix) else Path(video.name).name
                for video in videos]
    relative = [name.strip("/") or root.stem for name in relative]
    stems = [name[:name.rindex(".")] if name.lower().endswith(VIDEO_EXTENSIONS) else name for name in relative]
    counts = Counter(stems)
    return [stem if counts[stem] == 1 else name for stem, name in zip(stems, relative, strict=True)]


def _finished_dataset(out: Path, cfg: PrepareConfig) -> dict[str, Any] | None:
    """The metadata of the dataset at OUT when it was prepared with `cfg`; None when OUT is free to write."""
    if not out.exists():
        return None
    meta = read_metadata(out)
    if meta is None:
        if out.is_dir() and not any(out.iterdir()):
            return None
        raise UserError(f"'{out}' already exists and is not a dataset prepared by vidgen; choose another OUT")
    theirs = PrepareConfig(meta["resolution"], meta["layout"], meta.get("fps"), cfg.shard_bytes)
    if theirs != cfg:
        raise UserError(f"'{out}' already holds a dataset prepared as {theirs.describe()}; delete it to prepare "
                        f"{cfg.describe()}, or choose another OUT")
    return meta


@dataclass(frozen=True)
class _Work:
    """The hidden folder beside OUT: settings.json, manifest.jsonl (one line per finished video), parts/."""

    root: Path
    out: Path
    cfg: PrepareConfig

    @classmethod
    def open(cls, out: Path, cfg: PrepareConfig, source: Path) -> _Work:
        work = cls(out.parent / f".{out.name}.prepare", out, cfg)
        settings = {"source": str(source.resolve()), **asdict(cfg)}
        try:
            (work.root / "parts").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create {work.root}: {exc.strerror}; choose another OUT") from None
        file = work.root / "settings.json"
        if file.is_file():
            before = json.loads(file.read_text())
            if before != settings:
                raise UserError(f"{work.root} holds an unfinished preparation of {before.get('source')} with other "
                                "settings; rerun that command to finish it, or delete the folder")
        else:
            file.with_suffix(".tmp").write_text(json.dumps(settings))
            os.replace(file.with_suffix(".tmp"), file)  # whole or absent, even if interrupted right here
        return work

    def part(self, name: str) -> Path:
        # A flat, fixed-length file name per video: names may hold '/' and nest inside each other.
        return self.root / "parts" / (hashlib.sha1(name.encode()).hexdigest()[:20]
                                      + (".npy" if self.cfg.layout == "shards" else ""))

    def record(self, outcome: _Outcome) -> None:
        entry = {"name": outcome.name, "part": outcome.part, "frames": outcome.frames, "fps": outcome.fps,
                 "fingerprint": outcome.fingerprint}
        with open(self.root / "manifest.jsonl", "a") as manifest:  # one process writes it: this one
            manifest.write(json.dumps(entry) + "\n")

    def finished(self) -> dict[str, dict[str, Any]]:
        """Name -> manifest entry of each video whose part is in place (later lines win)."""
        entries = {}
        manifest = self.root / "manifest.jsonl"
        lines = manifest.read_text().splitlines() if manifest.is_file() else []
        for line in lines:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by the interruption: that video is converted again
            if (self.root / "parts" / entry["part"]).exists():
                entries[entry["name"]] = entry
        return entries

    def assemble(self, entries: list[dict[str, Any]], skipped: list[tuple[str, str]], source: Path,
                 labels: dict[str, int] | None, advance: Callable[[int], None]) -> None:
        """Write the dataset in the work folder (with a dataset.json of `labels`, by output name, if given),
        then rename it onto OUT."""
        labels_json = None if labels is None else json.dumps(
            {"labels": [[entry["name"], labels[entry["name"]]] for entry in entries if entry["name"] in labels]})
        parts = self.root / "parts"
        meta = {"format": FORMAT, "version": FORMAT_VERSION, "layout": self.cfg.layout,
                "resolution": self.cfg.resolution, "fps": self.cfg.fps, "source": str(source),
                "vidgen_version": __version__, "videos": [], "skipped": [list(item) for item in skipped]}
        staged = self.root / ("dataset.zip" if self.cfg.layout == "frames-zip" else "dataset")
        _remove(staged)  # left by an interrupted assembly
        if self.cfg.layout == "frames-zip":
            # PNGs are compressed already: store them, so a frame reads without inflating.
            with zipfile.ZipFile(staged, "w", zipfile.ZIP_STORED) as archive:
                for entry in entries:
                    for i in range(entry["frames"]):
                        archive.write(parts / entry["part"] / f"{i:06d}.png", f"{entry['name']}/{i:06d}.png")
                    meta["videos"].append({key: entry[key] for key in ("name", "frames", "fps")})
                    advance(1)
                if labels_json is not None:
                    archive.writestr(LABELS_FILE, labels_json)
                archive.writestr(META_NAME, json.dumps(meta, indent=1))
        else:
            staged.mkdir()
            for index, group in enumerate(_pack(entries, self.cfg.shard_bytes, self.cfg.resolution)):
                shard = f"shard-{index:05d}.npy"
                rows = sum(entry["frames"] for entry in group)
                array = np.lib.format.open_memmap(staged / shard, mode="w+", dtype=np.uint8,
                                                  shape=(rows, self.cfg.resolution, self.cfg.resolution, 3))
                offset = 0
                for entry in group:
                    array[offset:offset + entry["frames"]] = np.load(parts / entry["part"], mmap_mode="r")
                    meta["videos"].append({"name": entry["name"], "frames": entry["frames"], "fps": entry["fps"],
                                           "shard": shard, "offset": offset})
                    offset += entry["frames"]
                    advance(1)
                array.flush()
                del array
            if labels_json is not None:
                (staged / LABELS_FILE).write_text(labels_json)
            (staged / META_NAME).write_text(json.dumps(meta, indent=1))  # last: it marks the folder complete
        if self.out.is_dir():
            self.out.rmdir()  # an empty folder (checked by _finished_dataset): the rename needs it gone
        os.replace(staged, self.out)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _pack(entries: list[dict[str, Any]], shard_bytes: int, resolution: int) -> Iterator[list[dict[str, Any]]]:
    """Consecutive groups of videos of at most `shard_bytes` each (a longer video gets a shard of its own)."""
    group: list[dict[str, Any]] = []
    size = 0
    frame_bytes = resolution * resolution * 3
    for entry in entries:
        if group and size + entry["frames"] * frame_bytes > shard_bytes:
            yield group
            group, size = [], 0
        group.append(entry)
        size += entry["frames"] * frame_bytes
    if group:
        yield group


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
