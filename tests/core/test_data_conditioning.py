"""Class labels and the image frames of joint image-video training, from every source kind, on real files."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from vidgen.core.config import DataConfig
from vidgen.core.data.dataset import build_dataset, resize_center_crop
from vidgen.core.data.loader import make_train_loader
from vidgen.core.io import read_video, write_mp4, write_png
from vidgen.core.synthetic import SHAPE_KINDS, SceneStyle, make_scene, render_video
from vidgen.errors import UserError

CLIP = {"resolution": 16, "frames": 4, "workers": 0}


@pytest.fixture(scope="module")
def class_folders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Videos in class sub-folders: cats/ (2 videos) and dogs/ (1, nested deeper)."""
    root = tmp_path_factory.mktemp("classes")
    write_mp4(root / "cats" / "a.mp4", render_video(0, np.arange(6) / 8, 16), fps=8)
    write_mp4(root / "cats" / "b.mp4", render_video(1, np.arange(6) / 8, 16), fps=8)
    write_mp4(root / "dogs" / "deep" / "c.mp4", render_video(2, np.arange(6) / 8, 16), fps=8)
    return root


def labels_of(source: str | Path, **data) -> dict[str, int]:
    dataset = build_dataset(DataConfig(source=str(source), labels=True, **{**CLIP, **data}), seed=0)
    return {Path(video.name).name: label for video, label in zip(dataset.videos, dataset.labels)}


def test_labels_from_class_sub_folders(class_folders: Path) -> None:
    assert labels_of(class_folders) == {"a.mp4": 0, "b.mp4": 0, "c.mp4": 1}  # sorted class names


def test_labels_from_dataset_json_win_over_folders(class_folders: Path, tmp_path: Path) -> None:
    root = tmp_path / "with_json"
    for video in class_folders.rglob("*.mp4"):
        target = root / video.relative_to(class_folders)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(video.read_bytes())
    (root / "dataset.json").write_text(json.dumps(
        {"labels": [["cats/a.mp4", 2], ["cats/b.mp4", 0], ["dogs/deep/c.mp4", 2]]}))
    assert labels_of(root) == {"a.mp4": 2, "b.mp4": 0, "c.mp4": 2}


def test_labels_of_a_zip_of_frame_folders_from_its_dataset_json(tmp_path: Path) -> None:
    path = tmp_path / "frames.zip"
    with zipfile.ZipFile(path, "w") as archive:  # the StyleGAN-V layout: one frame folder per video
        for name in ("v_one", "v_two"):
            for i in range(5):
                png = tmp_path / f"{name}{i}.png"
                write_png(png, render_video(len(name), np.array([i / 8]), 16)[0])
                archive.write(png, f"{name}/{i:03d}.png")
        archive.writestr("dataset.json", json.dumps({"labels": [["v_one", 1], ["v_two", 0]]}))
    dataset = build_dataset(DataConfig(source=str(path), labels=True, **CLIP), seed=0)
    assert [video.folder for video in dataset.videos] == ["v_one", "v_two"]
    assert dataset.labels == [1, 0] and dataset.num_classes == 2


def test_synthetic_label_is_the_shape_kind() -> None:
    dataset = build_dataset(DataConfig(labels=True, synthetic_videos=40, synthetic_max_shapes=1, **CLIP), seed=0)
    kinds = [make_scene(video.seed, SceneStyle(max_shapes=1)).shapes[0].kind for video in dataset.videos]
    assert dataset.labels == [SHAPE_KINDS.index(kind) for kind in kinds]
    assert set(dataset.labels) == set(range(len(SHAPE_KINDS)))


def test_batches_carry_labels(class_folders: Path) -> None:
    dataset = build_dataset(DataConfig(source=str(class_folders), labels=True, **CLIP), seed=0)
    batch = next(iter(make_train_loader(dataset, batch_size=3, seed=0, start_sample=0, workers=0)))
    assert batch["label"].dtype == torch.long
    assert batch["label"].tolist() == [dataset.labels[i] for i in batch["index"].tolist()]


@pytest.mark.parametrize("problem", ["flat", "json_missing", "json_broken"])
def test_unusable_labels_are_one_line_user_errors(tmp_path: Path, problem: str) -> None:
    write_mp4(tmp_path / "cats" / "a.mp4", render_video(0, np.arange(6) / 8, 16), fps=8)
    write_mp4(tmp_path / "b.mp4", render_video(1, np.arange(6) / 8, 16), fps=8)
    if problem == "json_missing":
        (tmp_path / "dataset.json").write_text(json.dumps({"labels": [["cats/a.mp4", 0]]}))
    elif problem == "json_broken":
        (tmp_path / "dataset.json").write_text("{labels")
    expected = {"flat": "not in a class sub-folder", "json_missing": "no label for 1 video",
                "json_broken": "cannot read the labels"}[problem]
    with pytest.raises(UserError, match=expected):
        labels_of(tmp_path)


def test_image_frames_come_from_other_videos(class_folders: Path) -> None:
    dataset = build_dataset(DataConfig(source=str(class_folders), image_frames=3, **CLIP), seed=0)
    all_frames = [resize_center_crop(read_video(video.name), 16) for video in dataset.videos]  # (T, 16, 16, 3)
    for key in [(0, 11), (1, 12), (2, 13)]:
        item = dataset[key]
        assert item["video"].shape == (4 + 3, 16, 16, 3) and item["times"].shape == (4,)
        for frame in item["video"][4:]:
            sources = [i for i, frames in enumerate(all_frames) if any(torch.equal(frame, f) for f in frames)]
            assert sources and key[0] not in sources  # a frame of a video, never of the clip's own
    assert torch.equal(dataset[(1, 5)]["video"], dataset[(1, 5)]["video"])  # a pure function of its key


def test_image_frames_from_a_folder_of_stills(tmp_path: Path) -> None:
    stills = [np.full((20, 30, 3), value, np.uint8) for value in (10, 120, 250)]
    for i, still in enumerate(stills):
        write_png(tmp_path / "stills" / f"{i}.png", still)
    cfg = DataConfig(image_frames=4, image_source=str(tmp_path / "stills"), synthetic_videos=4, **CLIP)
    video = build_dataset(cfg, seed=0)[(0, 7)]["video"]  # (8, 16, 16, 3)
    for frame in video[4:]:
        assert frame.unique().numel() == 1 and frame.unique().item() in (10, 120, 250)


def test_image_source_without_images_is_a_user_error(tmp_path: Path) -> None:
    cfg = DataConfig(image_frames=2, image_source=str(tmp_path), synthetic_videos=4, **CLIP)
    with pytest.raises(UserError, match="holds no .png/.jpg images"):
        build_dataset(cfg, seed=0)
