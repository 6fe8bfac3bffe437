"""Class labels of a dataset (data.labels): from its dataset.json, its class sub-folders, or a synthetic scene."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Sequence
from pathlib import Path

from vidgen.core.data.sources import StoredVideo, SyntheticVideo
from vidgen.core.synthetic import SHAPE_KINDS, make_scene
from vidgen.errors import UserError

LABELS_FILE = "dataset.json"
"""Class labels of a folder or zip: {"labels": [[video name relative to the root, class], ...]}."""


def check_label_range(dataset_classes: int, model_classes: int) -> None:
    """A UserError when a dataset's labels (0 .. dataset_classes - 1) exceed what a model's class embedding holds."""
    if dataset_classes > model_classes:
        raise UserError(f"the dataset has labels 0..{dataset_classes - 1} but model.num_classes is {model_classes}; "
                        f"set model.num_classes: {dataset_classes}")


def synthetic_label(video: SyntheticVideo) -> int:
    """The class of a synthetic video: the kind of its first shape (circle, square, triangle, ring)."""
    return SHAPE_KINDS.index(make_scene(video.seed, video.style).shapes[0].kind)


def read_labels(root: Path, videos: Sequence[StoredVideo]) -> list[int]:
    """The class of each video: from dataset.json in the root (folder or zip) when there is one, else from
    the first sub-folder of each video's path under the root (class names sorted -> 0, 1, ...)."""
    names = [video.relative_name(root) for video in videos]
    table = labels_file(root)
    if table is not None:
        missing = [name for name in names if name not in table]
        if missing:
            raise UserError(f"{root}/{LABELS_FILE} gives no label for {len(missing)} video(s), e.g. "
                            f"'{missing[0]}'; list every video (its path relative to the root)")
        return [table[name] for name in names]
    if any("/" not in name for name in names):
        flat = next(name for name in names if "/" not in name)
        raise UserError(f"data.labels is true but '{root}' has no {LABELS_FILE} and '{flat}' is not in a class "
                        f"sub-folder; add {LABELS_FILE} or put each video under a folder named after its class")
    classes = sorted({name.split("/")[0] for name in names})
    return [classes.index(name.split("/")[0]) for name in names]


def labels_file(root: Path) -> dict[str, int] | None:
    """The labels of dataset.json in a folder or zip, by video name; None when there is no such file."""
    try:
        if root.is_file():
            with zipfile.ZipFile(root) as archive:
                if LABELS_FILE not in archive.namelist():
                    return None
                text = archive.read(LABELS_FILE).decode()
        elif (root / LABELS_FILE).is_file():
            text = (root / LABELS_FILE).read_text()
        else:
            return None
        entries = json.loads(text)["labels"]
        return {str(name): int(label) for name, label in entries}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"cannot read the labels in {root}/{LABELS_FILE} ({exc}); it should hold "
                        '{"labels": [["video name", class], ...]}') from None
