"""`vidgen data prepare` (vidgen.prepare) and reading its output (vidgen.core.shards), on real tiny files."""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.core.test_data import shapes
from vidgen import prepare as prepare_module
from vidgen.core.config import DataConfig
from vidgen.core.data.dataset import build_dataset, resize_center_crop
from vidgen.core.data.loader import make_train_loader
from vidgen.core.data.sources import find_videos
from vidgen.core.io import read_image, read_video, write_mp4, write_png
from vidgen.prepare import PrepareConfig, layout_for, numbering_problem, prepare_dataset, resample
from vidgen.core.shards import META_NAME, check_resolution, read_metadata
from vidgen.errors import ConfigError, UserError

R = 16


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two videos (one nested, non-square both ways), a frame folder, and a text file posing as a video."""
    root = tmp_path_factory.mktemp("source")
    write_mp4(root / "a.mp4", shapes(0, 10, 24, 32), fps=8)
    write_mp4(root / "nested" / "b.mp4", shapes(1, 9, 32, 24), fps=8)
    for i, frame in enumerate(shapes(2, 7, 20, 28)):
        write_png(root / "clip_c" / f"{i:04d}.png", frame)
    (root / "broken.mp4").write_text("not a video")
    return root


def source_frames(source: Path) -> dict[str, np.ndarray]:
    """What each prepared video must hold: the loader's own resize of the decoded source."""
    frames = {"a": read_video(source / "a.mp4"), "nested/b": read_video(source / "nested" / "b.mp4"),
              "clip_c": np.stack([read_image(p) for p in sorted((source / "clip_c").glob("*.png"))])}
    return {name: resize_center_crop(video, R).numpy() for name, video in frames.items()}


def prepared_frames(path: Path) -> dict[str, np.ndarray]:
    """name -> all frames of each video of a prepared dataset, read back through vidgen.core.data.dataset."""
    videos, skipped = find_videos(path)
    assert skipped == []
    return {video.name[len(f"{path}/"):]: video.read(np.arange(video.num_frames)) for video in videos}


@pytest.fixture(scope="module")
def prepared(source: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("prepared")
    paths = {"frames-zip": out / "data.zip", "shards": out / "shards"}
    for layout, path in paths.items():
        # A tiny shard size: the three videos land in several shards.
        prepare_dataset(source, path, PrepareConfig(R, layout, shard_bytes=12 * R * R * 3))
    return paths


@pytest.mark.parametrize("layout", ["frames-zip", "shards"])
def test_prepared_frames_equal_the_loaders_resize_of_the_source(source: Path, prepared: dict[str, Path],
                                                                 layout: str) -> None:
    expected = source_frames(source)
    got = prepared_frames(prepared[layout])
    assert sorted(got) == sorted(expected)  # video extensions dropped, nesting kept
    for name, frames in expected.items():
        np.testing.assert_array_equal(got[name], frames)  # lossless in both layouts

    meta = read_metadata(prepared[layout])
    assert (meta["layout"], meta["resolution"]) == (layout, R)
    assert [Path(path).name for path, _ in meta["skipped"]] == ["broken.mp4"]
    assert not (prepared[layout].parent / f".{prepared[layout].name}.prepare").exists()  # work folder removed
    if layout == "shards":
        assert len({video["shard"] for video in meta["videos"]}) == 3
    else:
        with zipfile.ZipFile(prepared[layout]) as archive:  # StyleGAN-V's layout: <video>/<frame>.png
            assert "a/000000.png" in archive.namelist() and META_NAME in archive.namelist()


def test_training_on_prepared_shards_gives_the_clips_of_the_raw_videos(source: Path, prepared: dict[str, Path]) -> None:
    cfg = DataConfig(source=str(prepared["shards"]), resolution=R, frames=4, workers=0)
    dataset = build_dataset(cfg, seed=0)
    raw = build_dataset(DataConfig(source=str(source), resolution=R, frames=4, workers=0), seed=0)
    assert len(dataset) == len(raw) == 3
    for key in [(0, 5), (2, 9)]:  # same clips as the raw videos give
        torch.testing.assert_close(dataset[key]["video"], raw[key]["video"])
    batch = next(iter(make_train_loader(dataset, batch_size=2, seed=0, start_sample=0, workers=0)))
    assert batch["video"].shape == (2, 4, R, R, 3) and batch["video"].dtype == torch.uint8
    # A spawned worker gets the videos pickled: the memory map must not travel with them.
    assert len(pickle.dumps(dataset.videos)) < 2000


def test_a_prepared_dataset_at_another_resolution_is_a_config_error(prepared: dict[str, Path]) -> None:
    for path in prepared.values():
        check_resolution(path, R)
        with pytest.raises(ConfigError, match=f"prepared at {R}x{R} but data.resolution is 32") as caught:
            build_dataset(DataConfig(source=str(path), resolution=32, frames=4), seed=0)
        assert "\n" not in str(caught.value)


def test_a_missing_shard_is_one_line(prepared: dict[str, Path], tmp_path: Path) -> None:
    copy = tmp_path / "shards"
    copy.mkdir()
    for file in prepared["shards"].iterdir():
        (copy / file.name).write_bytes(file.read_bytes())
    (copy / "shard-00001.npy").unlink()
    with pytest.raises(UserError, match=r"shard .*shard-00001\.npy is missing; run `vidgen data prepare` again"):
        find_videos(copy)


def test_fps_resampling_keeps_the_nearest_frame(source: Path, tmp_path: Path) -> None:
    assert resample(30, 30.0, 10.0).tolist() == list(range(0, 30, 3))
    assert resample(5, 8.0, None).tolist() == resample(5, None, 4.0).tolist() == [0, 1, 2, 3, 4]
    assert resample(4, 8.0, 16.0).tolist() == [0, 1, 1, 2, 2, 3, 3, 3]  # upsampling repeats frames
    assert resample(1, 30.0, 1.0).tolist() == [0]  # never empty

    prepare_dataset(source, tmp_path / "half", PrepareConfig(R, "shards", fps=4.0))
    meta = read_metadata(tmp_path / "half")
    rates = {video["name"]: (video["frames"], video["fps"]) for video in meta["videos"]}
    assert rates == {"a": (5, 4.0), "nested/b": (4, 4.0), "clip_c": (7, None)}  # frame folders state no rate
    np.testing.assert_array_equal(prepared_frames(tmp_path / "half")["a"], source_frames(source)["a"][::2])


def test_an_interrupted_run_resumes_where_it_stopped(source: Path, prepared: dict[str, Path], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    convert = prepare_module._convert
    converted: list[str] = []

    def stop_at_the_second_video(job):  # noqa: ANN001, ANN202
        if converted:
            raise KeyboardInterrupt
        converted.append(job.name)
        return convert(job)

    out = tmp_path / "data.zip"
    monkeypatch.setattr(prepare_module, "_convert", stop_at_the_second_video)
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset(source, out, PrepareConfig(R))
    assert not out.exists() and converted == ["a"]

    monkeypatch.setattr(prepare_module, "_convert", lambda job: (converted.append(job.name), convert(job))[1])
    result = prepare_dataset(source, out, PrepareConfig(R))
    assert converted == ["a", "clip_c", "nested/b"]  # "a" was not converted again
    assert (result.videos, result.converted) == (3, 2)
    expected = prepared_frames(prepared["frames-zip"])
    for name, frames in prepared_frames(out).items():
        np.testing.assert_array_equal(frames, expected[name])


def test_rerunning_a_finished_preparation(source: Path, prepared: dict[str, Path], tmp_path: Path) -> None:
    before = prepared["frames-zip"].read_bytes()
    result = prepare_dataset(source, prepared["frames-zip"], PrepareConfig(R))
    assert result.already_done and result.videos == 3 and prepared["frames-zip"].read_bytes() == before
    with pytest.raises(UserError, match="already holds a dataset prepared as frames-zip at 16x16; delete it"):
        prepare_dataset(source, prepared["frames-zip"], PrepareConfig(32))
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="already exists and is not a dataset prepared by vidgen"):
        prepare_dataset(source, tmp_path / "taken", PrepareConfig(R, "shards"))


def test_layout_follows_the_output_name() -> None:
    assert layout_for(Path("x.zip"), None) == "frames-zip" and layout_for(Path("x"), None) == "shards"
    with pytest.raises(ConfigError, match="give an OUT ending in .zip"):
        layout_for(Path("x"), "frames-zip")
    with pytest.raises(ConfigError, match="--format must be one of frames-zip, shards"):
        PrepareConfig(R, "tfrecord")  # type: ignore[arg-type]
    for fps in (0.0, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="--fps must be a finite number > 0"):
            PrepareConfig(R, fps=fps)


def test_frame_numbering_problems(tmp_path: Path) -> None:
    from vidgen.core.data.sources import FrameFolder

    def folder(names: list[str]) -> FrameFolder:
        return FrameFolder("f", tuple(tmp_path / f"{name}.png" for name in sorted(names)))  # name order, as indexed

    assert numbering_problem(folder([f"frame_{n:04d}" for n in (0, 1, 2, 3)])) is None
    assert numbering_problem(folder([f"frame_{n:04d}" for n in (0, 2, 4, 6)])) is None  # every other, consistently
    assert numbering_problem(folder(["a", "b", "c"])) is None  # not numbered: nothing to check
    gap = numbering_problem(folder([f"frame_{n:04d}" for n in (0, 1, 3, 4)]))
    assert "jumps from frame_0001 to frame_0003: a missing frame" in gap
    shuffled = numbering_problem(folder([f"img_{n}" for n in range(1, 12)]))  # img_10 sorts before img_2
    assert "frame img_11 sorts before img_2 by name" in shuffled and "zero-pad" in shuffled


def test_worker_processes_give_the_same_dataset(source: Path, prepared: dict[str, Path], tmp_path: Path) -> None:
    result = prepare_dataset(source, tmp_path / "shards", PrepareConfig(R, "shards"), workers=2)
    assert result.converted == 3
    expected = prepared_frames(prepared["shards"])
    for name, frames in prepared_frames(tmp_path / "shards").items():
        np.testing.assert_array_equal(frames, expected[name])
    meta = json.loads((tmp_path / "shards" / META_NAME).read_text())
    assert [video["name"] for video in meta["videos"]] == ["a", "clip_c", "nested/b"]


@pytest.mark.parametrize("layout, name", [("frames-zip", "data.zip"), ("shards", "shards")])
def test_labels_of_dataset_json_follow_the_videos(tmp_path: Path, layout: str, name: str) -> None:
    source = tmp_path / "labelled"
    write_mp4(source / "a.mp4", shapes(0, 6, 16, 16), fps=8)
    write_mp4(source / "nested" / "b.mp4", shapes(1, 6, 16, 16), fps=8)
    (source / "dataset.json").write_text(json.dumps({"labels": [["a.mp4", 3], ["nested/b.mp4", 1]]}))
    out = tmp_path / name
    prepare_dataset(source, out, PrepareConfig(R, layout))
    dataset = build_dataset(DataConfig(source=str(out), resolution=R, frames=4, workers=0, labels=True), seed=0)
    named = {video.name[len(f"{out}/"):]: label for video, label in zip(dataset.videos, dataset.labels)}
    assert named == {"a": 3, "nested/b": 1}
