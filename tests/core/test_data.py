"""Datasets from every source kind, clip choice, the resumable sampler and the loader, on real files."""

from __future__ import annotations

import pickle
import shutil
import zipfile
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
import torch

from vidgen.core.config import DataConfig
from vidgen.core.clips import ContiguousClips
from vidgen.core.data.dataset import build_dataset, resize_center_crop
from vidgen.core.data.info import dataset_info
from vidgen.core.data.loader import TrainSampler, make_train_loader, sample_key
from vidgen.core.data.sources import find_videos, summarize_skipped
from vidgen.core import layout
from vidgen.core.io import read_video, rgb_to_gray, write_mp4, write_png
from vidgen.core.synthetic import SceneStyle, render_video, video_seed
from vidgen.errors import UserError

CLIP = {"resolution": 16, "frames": 4, "frame_stride": 2, "workers": 0}  # a clip spans 7 source frames


def shapes(seed: int, frames: int, height: int, width: int) -> np.ndarray:
    """A synthetic video cropped to height x width (non-square sources exercise the resize and crop)."""
    return render_video(seed, np.arange(frames) / 8.0, max(height, width))[:, :height, :width]


@pytest.fixture(scope="module")
def video_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three good videos (one nested), a text file posing as a video, and a video too short for a clip."""
    root = tmp_path_factory.mktemp("videos")
    write_mp4(root / "a.mp4", shapes(0, 12, 24, 32), fps=8)
    write_mp4(root / "b.mp4", shapes(1, 10, 32, 32), fps=12)
    write_mp4(root / "nested" / "c.mp4", shapes(2, 9, 40, 24), fps=8)
    (root / "broken.mp4").write_text("not a video")
    write_mp4(root / "short.mp4", shapes(3, 5, 16, 16), fps=8)
    (root / "notes.txt").write_text("ignored: not a video extension")
    return root


@pytest.fixture(scope="module")
def frame_folders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("frames")
    for name, frames in (("clip_a", 9), ("clip_b", 12)):
        for i, frame in enumerate(shapes(len(name) + frames, frames, 20, 28)):
            write_png(root / name / f"{i:04d}.png", frame)
    return root


@pytest.fixture(scope="module")
def frames_zip(frame_folders: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("zip") / "frames.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for png in sorted(frame_folders.rglob("*.png")):
            archive.write(png, png.relative_to(frame_folders).as_posix())
    return path


def check_item(item: dict, frames: int = 4, stride: int = 2, resolution: int = 16, channels: int = 3) -> None:
    assert item["video"].dtype == torch.uint8
    assert item["video"].shape == (frames, resolution, resolution, channels)
    assert item["times"].dtype == torch.float32
    assert item["times"].tolist() == [float(i * stride) for i in range(frames)]


# ----------------------------------------------------------------------------------------------------------
# Sources


def test_video_folder_skips_bad_and_short_files(video_folder: Path) -> None:
    dataset = build_dataset(DataConfig(source=str(video_folder), **CLIP), seed=0)
    assert [Path(v.name).name for v in dataset.videos] == ["a.mp4", "b.mp4", "c.mp4"]
    skipped = dict(dataset.skipped)
    assert set(skipped) == {str(video_folder / "broken.mp4"), str(video_folder / "short.mp4")}
    assert "5 frames" in skipped[str(video_folder / "short.mp4")]
    summary = summarize_skipped(dataset.skipped)
    assert summary.startswith("skipped 2 videos") and "broken.mp4" in summary and "\n" not in summary
    for index in range(len(dataset)):
        item = dataset[(index, 7)]
        check_item(item)
        assert item["index"] == index


def test_clip_matches_the_source_frames(frame_folders: Path) -> None:
    dataset = build_dataset(DataConfig(source=str(frame_folders), resolution=20, frames=3, frame_stride=3), seed=0)
    item = dataset[(0, 11)]
    start = ContiguousClips(3, 3).choose(9, np.random.default_rng(11))[0]
    source = shapes(len("clip_a") + 9, 9, 20, 28)[start:start + 7:3, :, 4:24]  # centre 20 x 20 crop
    np.testing.assert_array_equal(item["video"].numpy(), source)


def test_frame_folders(frame_folders: Path) -> None:
    dataset = build_dataset(DataConfig(source=str(frame_folders), **CLIP), seed=0)
    assert [v.num_frames for v in dataset.videos] == [9, 12]
    check_item(dataset[(1, 3)])


def test_zip_of_frame_folders_equals_the_folders(frame_folders: Path, frames_zip: Path) -> None:
    from_zip = build_dataset(DataConfig(source=str(frames_zip), **CLIP), seed=0)
    from_folders = build_dataset(DataConfig(source=str(frame_folders), **CLIP), seed=0)
    assert len(from_zip) == 2
    for key in [(0, 1), (1, 2)]:
        check_item(from_zip[key])
        torch.testing.assert_close(from_zip[key]["video"], from_folders[key]["video"])
    # A pickled copy (what a spawned worker gets) reopens the archive itself instead of sharing a handle.
    copy = pickle.loads(pickle.dumps(from_zip))
    torch.testing.assert_close(copy[(0, 1)]["video"], from_zip[(0, 1)]["video"])


def test_synthetic_source() -> None:
    cfg = DataConfig(source="synthetic", synthetic_videos=5, synthetic_frames=10, fps=8.0, **CLIP)
    dataset = build_dataset(cfg, seed=3)
    assert len(dataset) == 5 and dataset.skipped == []
    item = dataset[(2, 9)]
    check_item(item)
    start = ContiguousClips(4, 2).choose(10, np.random.default_rng(9))[0]
    expected = render_video(video_seed(3, 2), (start + np.arange(0, 8, 2)) / 8.0, 16, cfg.synthetic_style)
    np.testing.assert_array_equal(item["video"].numpy(), expected)


@pytest.mark.parametrize("problem", ["missing", "empty", "all broken", "plain file", "bad zip", "too short"])
def test_unusable_sources_are_one_line_user_errors(tmp_path: Path, problem: str) -> None:
    source = tmp_path / "data"
    if problem == "empty":
        source.mkdir()
    elif problem == "all broken":
        source.mkdir()
        (source / "x.mp4").write_bytes(b"")
    elif problem == "plain file":
        source = tmp_path / "notes.txt"
        source.write_text("hi")
    elif problem == "bad zip":
        source = tmp_path / "frames.zip"
        source.write_text("not a zip")
    elif problem == "too short":
        write_mp4(source / "a.mp4", shapes(0, 5, 16, 16), fps=8)
    with pytest.raises(UserError) as caught:
        build_dataset(DataConfig(source=str(source), **CLIP), seed=0)
    assert str(source.name) in str(caught.value) and "\n" not in str(caught.value)


def test_synthetic_shorter_than_a_clip_is_a_user_error() -> None:
    with pytest.raises(UserError, match="synthetic_frames"):
        build_dataset(DataConfig(source="synthetic", synthetic_frames=6, **CLIP), seed=0)


def test_dataset_info(video_folder: Path, frame_folders: Path) -> None:
    info = dataset_info(video_folder, fps_default=30.0)
    assert info.num_videos == 4  # broken.mp4 is unreadable; short.mp4 still counts here
    assert [Path(p).name for p, _ in info.unreadable] == ["broken.mp4"]
    assert info.resolutions == {(32, 24): 1, (32, 32): 1, (24, 40): 1, (16, 16): 1}
    assert info.fps == {8.0: 3, 12.0: 1}
    assert (info.frames_min, info.frames_median, info.frames_max) == (5, 9.5, 12)
    folders = dataset_info(frame_folders, fps_default=30.0)
    assert folders.fps == {30.0: 2} and folders.resolutions == {(28, 20): 2}
    rows = dict(dataset_info(frame_folders).rows())
    assert rows["videos"] == "2" and rows["fps"] == "not stated (2)" and rows["resolutions (w x h)"] == "28x20 (2)"
    assert rows["frames min / median / max"] == "9 / 10.5 / 12"


def damage_zip_member(path: Path, member: str) -> None:
    """Zero 16 bytes inside a stored member: its CRC-32 no longer matches."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(member)
    data = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + 48  # into the PNG's data
    data[start:start + 16] = bytes(16)
    path.write_bytes(bytes(data))


def test_dataset_info_reads_every_frame_and_names_the_damaged(frame_folders: Path, tmp_path: Path) -> None:
    root = tmp_path / "frames"
    shutil.copytree(frame_folders, root)
    frame = root / "clip_b" / "0005.png"
    data = bytearray(frame.read_bytes())
    data[60] ^= 1  # a flipped bit inside the image data: only the PNG's CRC shows it
    frame.write_bytes(bytes(data))
    (root / "clip_b" / "0007.png").write_bytes(b"")
    info = dataset_info(root)
    assert info.num_videos == 1
    assert info.unreadable == [(str(root / "clip_b"), "frame 0005.png: damaged PNG (its IDAT chunk fails its CRC "
                                                      "check); and 1 more damaged frame")]
    assert dict(info.rows())["unreadable"] == "1"
    # Indexing for training reads no frame: a damaged one is met (and replaced) when a clip decodes it.
    assert len(find_videos(root)[0]) == 2

    archive = tmp_path / "frames.zip"
    with zipfile.ZipFile(archive, "w") as writer:
        for png in sorted(frame_folders.rglob("*.png")):
            writer.write(png, png.relative_to(frame_folders).as_posix())
    damage_zip_member(archive, "clip_a/0003.png")
    info = dataset_info(archive)
    assert info.num_videos == 1
    assert info.unreadable == [(f"{archive}/clip_a", "frame 0003.png: damaged zip member (Bad CRC-32 for file "
                                                     "'clip_a/0003.png')")]


# ----------------------------------------------------------------------------------------------------------
# Clips, resizing, sampling order, loader


def test_clip_choice_is_seeded_and_covers_every_start() -> None:
    clips = ContiguousClips(frames=4, stride=3)  # span 10
    first = clips.choose(30, np.random.default_rng(5))
    np.testing.assert_array_equal(first, clips.choose(30, np.random.default_rng(5)))
    np.testing.assert_array_equal(np.diff(first), [3, 3, 3])
    starts = {int(clips.choose(30, np.random.default_rng(seed))[0]) for seed in range(2000)}
    assert starts == set(range(21))  # uniform over all 30 - 10 + 1 valid starts


def test_different_clip_seeds_pick_different_clips(video_folder: Path) -> None:
    dataset = build_dataset(DataConfig(source=str(video_folder), **CLIP), seed=0)
    torch.testing.assert_close(dataset[(0, 1)]["video"], dataset[(0, 1)]["video"])
    clips = [dataset[(0, seed)]["video"] for seed in range(8)]
    assert any(not torch.equal(clips[0], clip) for clip in clips[1:])


def test_resize_center_crop() -> None:
    frames = np.zeros((2, 20, 40, 3), np.uint8)
    frames[:, :, 10:30] = (250, 10, 60)  # the centred square is one colour; the sides are cut away
    out = resize_center_crop(frames, 8)
    assert out.shape == (2, 8, 8, 3) and out.dtype == torch.uint8
    assert (out == torch.tensor([250, 10, 60], dtype=torch.uint8)).all()


def test_sampler_visits_every_video_once_per_epoch() -> None:
    keys = list(islice(iter(TrainSampler(7, seed=0)), 21))
    for epoch in range(3):
        assert sorted(video for video, _ in keys[epoch * 7:(epoch + 1) * 7]) == list(range(7))
    assert keys[:7] != keys[7:14]  # a new order every epoch
    assert len({seed for _, seed in keys}) == 21


def test_sampler_resumes_exactly() -> None:
    full = list(islice(iter(TrainSampler(5, seed=9)), 40))
    resumed = list(islice(iter(TrainSampler(5, seed=9, start=13)), 27))
    assert resumed == full[13:]
    assert full[13] == sample_key(9, 5, 13)
    assert list(islice(iter(TrainSampler(5, seed=10)), 40)) != full


def test_sampler_shards_across_ranks() -> None:
    full = list(islice(iter(TrainSampler(6, seed=1, start=4)), 30))
    ranks = [list(islice(iter(TrainSampler(6, seed=1, start=4, rank=r, world_size=3)), 10)) for r in range(3)]
    # Rank r takes the samples k = r (mod 3): 6, 9, ... for rank 0; 4, 7, ... for rank 1; 5, 8, ... for rank 2.
    assert ranks[1][:2] == [full[0], full[3]] and ranks[2][0] == full[1] and ranks[0][0] == full[2]
    assert sorted(ranks[0][:9] + ranks[1][:10] + ranks[2][:10]) == sorted(full[:29])


@pytest.mark.parametrize("source", ["videos", "zip"])
def test_loader_is_the_same_for_any_number_of_workers(source: str, video_folder: Path, frames_zip: Path) -> None:
    path = video_folder if source == "videos" else frames_zip
    dataset = build_dataset(DataConfig(source=str(path), **CLIP), seed=0)
    dataset[(0, 0)]  # opens the zip in this process first: forked workers must not share that handle

    def batches(workers: int) -> list[dict]:
        loader = make_train_loader(dataset, batch_size=3, seed=4, start_sample=2, workers=workers)
        return list(islice(iter(loader), 3))

    serial, parallel = batches(0), batches(2)
    batch = serial[0]
    assert batch["video"].shape == (3, 4, 16, 16, 3) and batch["video"].dtype == torch.uint8
    assert batch["times"].shape == (3, 4) and batch["times"].dtype == torch.float32
    assert batch["index"].dtype == torch.long
    assert batch["index"].tolist() == [sample_key(4, len(dataset), k)[0] for k in (2, 3, 4)]
    for a, b in zip(serial, parallel, strict=True):
        for key in ("video", "times", "index"):
            torch.testing.assert_close(a[key], b[key])


def test_a_video_that_fails_to_decode_mid_run_is_replaced_by_the_next_and_named_once(capfd, recwarn) -> None:
    from vidgen.core.io import VideoReadError

    dataset = build_dataset(DataConfig(source="synthetic", resolution=16, frames=4, synthetic_videos=3), seed=0)

    class Damaged:  # probes fine, fails to decode: damage past the file's header
        name, num_frames, fps = "damaged.mp4", 64, 8.0

        def read(self, frames):
            raise VideoReadError(self.name, "not a readable video (corrupt data)")

    dataset.videos[1] = Damaged()
    for clip_seed in range(5):
        item = dataset[(1, clip_seed)]
        assert item["index"] == 2 and item["video"].shape == (4, 16, 16, 3)
        # deterministic: the next video, same clip seed
        assert torch.equal(item["video"], dataset[(2, clip_seed)]["video"])
    assert capfd.readouterr().err.splitlines() == [
        "warning: skipping a video that failed to decode: damaged.mp4: not a readable video (corrupt data); the "
        "clips that need it come from other videos"], "named once, not for every clip that meets it"
    assert not recwarn.list, "vidgen's own line, not a Python warning"


# ----------------------------------------------------------------------------------------------------------
# Grayscale (data.channels 1)


@pytest.fixture(scope="module")
def shards(frame_folders: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vidgen.prepare import PrepareConfig, prepare_dataset

    out = tmp_path_factory.mktemp("prepared") / "shards"
    prepare_dataset(frame_folders, out, PrepareConfig(16, "shards"))
    return out


@pytest.mark.parametrize("kind", ["videos", "frame folders", "zip", "shards", "synthetic"])
def test_grayscale_clips_from_every_source_kind(kind: str, request: pytest.FixtureRequest) -> None:
    fixture = {"videos": "video_folder", "frame folders": "frame_folders", "zip": "frames_zip", "shards": "shards"}
    source = str(request.getfixturevalue(fixture[kind])) if kind in fixture else "synthetic"
    settings = {**CLIP, "source": source, "synthetic_videos": 3, "synthetic_frames": 10}
    rgb = build_dataset(DataConfig(**settings), seed=0)
    gray = build_dataset(DataConfig(**settings, channels=1), seed=0)
    for key in [(0, 5), (1, 8)]:
        item = gray[key]
        check_item(item, channels=1)
        # The luma is taken as frames are read, before the resize: at most a rounding step from the luma after it.
        expected = rgb_to_gray(rgb[key]["video"].numpy()).astype(int)
        assert np.abs(item["video"].numpy().astype(int) - expected).max() <= 1
        assert item["index"] == rgb[key]["index"] and torch.equal(item["times"], rgb[key]["times"])


def test_grayscale_clips_of_colour_videos_are_their_luma(tmp_path: Path) -> None:
    frames = render_video(4, np.arange(10) / 8, 16)  # colour, already 16 x 16: no resize
    write_mp4(tmp_path / "colour.mp4", frames, fps=8)
    dataset = build_dataset(DataConfig(source=str(tmp_path), channels=1, **CLIP), seed=0)
    item = dataset[(0, 3)]
    check_item(item, channels=1)
    chosen = ContiguousClips(4, 2).choose(10, np.random.default_rng(3))
    np.testing.assert_array_equal(item["video"].numpy(), rgb_to_gray(read_video(tmp_path / "colour.mp4")[chosen]))
    # ... and the BT.601 luma of the frames written, within the codec's loss
    assert np.abs(item["video"].numpy().astype(int) - rgb_to_gray(frames[chosen])).mean() < 3.0


def test_grayscale_synthetic_clips_and_batches() -> None:
    cfg = DataConfig(source="synthetic", channels=1, synthetic_videos=4, synthetic_frames=10, fps=8.0,
                     image_frames=2, **CLIP)
    dataset = build_dataset(cfg, seed=3)
    item = dataset[(2, 9)]
    assert item["video"].shape == (4 + 2, 16, 16, 1)  # the clip, then two image frames
    start = ContiguousClips(4, 2).choose(10, np.random.default_rng(9))[0]
    expected = render_video(video_seed(3, 2), (start + np.arange(0, 8, 2)) / 8.0, 16, cfg.synthetic_style)
    np.testing.assert_array_equal(item["video"][:4].numpy(), rgb_to_gray(expected))
    batch = next(iter(make_train_loader(dataset, batch_size=2, seed=0, start_sample=0, workers=0)))
    assert batch["video"].shape == (2, 6, 16, 16, 1)
    assert layout.to_model(batch["video"]).shape == (2, 1, 6, 16, 16)  # [B, 1, T, H, W] in the model


def test_grayscale_image_frames_from_stills(tmp_path: Path) -> None:
    write_png(tmp_path / "stills" / "a.png", np.full((20, 20, 3), (200, 40, 90), np.uint8))
    cfg = DataConfig(source="synthetic", channels=1, synthetic_videos=2, synthetic_frames=10, image_frames=1,
                     image_source=str(tmp_path / "stills"), **CLIP)
    item = build_dataset(cfg, seed=0)[(0, 1)]
    assert item["video"].shape == (5, 16, 16, 1)
    assert (item["video"][4] == int(rgb_to_gray(np.array([200, 40, 90], np.uint8))[0])).all()


def test_action_change_scenes_reach_the_dataset() -> None:
    cfg = DataConfig(source="synthetic", synthetic_action_changes=True, synthetic_videos=2, synthetic_frames=16,
                     fps=8.0, **CLIP)
    assert cfg.synthetic_style == SceneStyle(action_changes=True, duration=2.0)
    dataset = build_dataset(cfg, seed=1)
    start = ContiguousClips(4, 2).choose(16, np.random.default_rng(5))[0]
    expected = render_video(video_seed(1, 0), (start + np.arange(0, 8, 2)) / 8.0, 16, cfg.synthetic_style)
    np.testing.assert_array_equal(dataset[(0, 5)]["video"].numpy(), expected)
    assert not np.array_equal(expected, render_video(video_seed(1, 0), (start + np.arange(0, 8, 2)) / 8.0, 16))
