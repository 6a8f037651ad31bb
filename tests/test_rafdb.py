"""RAF-DB loader: both layouts, label mapping, official counts, and every bad input."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from builders import RAFDB_DIGIT_FOLDERS, RAFDB_NAME_FOLDERS, build_class_folders, build_rafdb_official, write_image

from faces import RAFDB_CLASSES, RAFDB_OFFICIAL_COUNTS, DatasetError, load_faces
from faces.rafdb import OFFICIAL_LAYOUT, REPACKAGED_LAYOUT, list_rafdb

TRAIN = (3, 2, 2, 5, 3, 2, 4)
TEST = (2, 1, 1, 3, 2, 1, 2)


def rafdb_cfg(root: Path, **extra) -> dict:
    return {"name": "rafdb", "root": str(root), "image_size": 16, **extra}


def test_official_layout_counts_labels_and_split(tmp_path: Path, cache_dir: Path) -> None:
    root = build_rafdb_official(tmp_path / "basic", train_counts=TRAIN, test_counts=TEST)
    listing = list_rafdb(root)
    assert listing.layout == OFFICIAL_LAYOUT
    assert listing.class_names == RAFDB_CLASSES
    assert listing.class_counts("train") == list(TRAIN)
    assert listing.class_counts("test") == list(TEST)
    # Label 1 in the file is Surprise (index 0); the split comes from the filename prefix.
    first = listing.records("train")[0]
    assert first.sample_id == "Image/aligned/train_00001_aligned.jpg" and first.label == 0
    assert all(r.sample_id.split("/")[-1].startswith("test_") for r in listing.records("test"))

    data = load_faces(rafdb_cfg(root), cache_dir=cache_dir)
    assert data.train.images.shape == (sum(TRAIN), 3, 16, 16)
    assert data.train.images.dtype == torch.uint8
    assert data.test.class_counts() == list(TEST)
    assert not data.train.is_synthetic.any()


@pytest.mark.parametrize("folders", [RAFDB_DIGIT_FOLDERS, RAFDB_NAME_FOLDERS, tuple(RAFDB_CLASSES)])
def test_repackaged_layout_digits_or_names(tmp_path: Path, folders: tuple[str, ...]) -> None:
    root = build_class_folders(tmp_path / "raf", counts={"train": TRAIN, "test": TEST}, folder_names=folders)
    listing = list_rafdb(root)
    assert listing.layout == REPACKAGED_LAYOUT
    assert listing.class_counts("train") == list(TRAIN)
    assert listing.class_counts("test") == list(TEST)
    fear = [r for r in listing.records("train") if r.label == 1]
    assert all(f"/{folders[1]}/" in r.sample_id for r in fear)


def test_complete_copy_reports_exactly_the_official_counts(tmp_path: Path) -> None:
    """A full-size official tree (15,339 hard links to one JPEG) lists RAF-DB's exact counts."""
    root = tmp_path / "basic"
    image = write_image(tmp_path / "one.jpg", seed=0, size=8)
    (root / "Image" / "aligned").mkdir(parents=True)
    lines = []
    for split, digits in (("train", 5), ("test", 4)):
        number = 1
        for label, count in enumerate(RAFDB_OFFICIAL_COUNTS[split], start=1):
            for _ in range(count):
                os.link(image, root / "Image" / "aligned" / f"{split}_{number:0{digits}d}_aligned.jpg")
                lines.append(f"{split}_{number:0{digits}d}.jpg {label}")
                number += 1
    (root / "EmoLabel").mkdir()
    (root / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    listing = list_rafdb(root)
    assert listing.class_counts("train") == list(RAFDB_OFFICIAL_COUNTS["train"])
    assert listing.class_counts("test") == list(RAFDB_OFFICIAL_COUNTS["test"])
    assert sum(listing.class_counts("train")) == 12271 and sum(listing.class_counts("test")) == 3068


# --- bad input: each error names the path / line / value -------------------------------------


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        list_rafdb(tmp_path / "nope")


def test_unset_root() -> None:
    with pytest.raises(DatasetError, match="data.root is not set"):
        list_rafdb("???")


def test_unknown_layout_says_what_was_tried_and_found(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "readme.txt").write_text("hi")
    with pytest.raises(DatasetError) as error:
        list_rafdb(tmp_path)
    message = str(error.value)
    assert "list_patition_label.txt" in message and "train/<1..7" in message
    assert "images/" in message and "readme.txt" in message


def test_nested_root_gets_a_hint(tmp_path: Path) -> None:
    build_rafdb_official(tmp_path / "basic", train_counts=TRAIN, test_counts=TEST)
    with pytest.raises(DatasetError, match=r"Did you mean data.root=.*basic"):
        list_rafdb(tmp_path)


def test_missing_label_file(tmp_path: Path) -> None:
    root = build_rafdb_official(tmp_path, train_counts=TRAIN, test_counts=TEST)
    (root / "EmoLabel" / "list_patition_label.txt").unlink()
    with pytest.raises(DatasetError, match="label file .*list_patition_label.txt is missing"):
        list_rafdb(root)


def _edit_label_file(root: Path, lineno: int, new: str | None = None, append: str | None = None) -> Path:
    path = root / "EmoLabel" / "list_patition_label.txt"
    lines = path.read_text().splitlines()
    if new is not None:
        lines[lineno - 1] = new
    if append is not None:
        lines.append(append)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_unparseable_line_names_file_and_line(tmp_path: Path) -> None:
    root = build_rafdb_official(tmp_path, train_counts=TRAIN, test_counts=TEST)
    _edit_label_file(root, 3, new="train_00003.jpg")
    with pytest.raises(DatasetError, match=r"list_patition_label.txt:3: cannot parse 'train_00003.jpg'"):
        list_rafdb(root)


@pytest.mark.parametrize("bad", ["0", "8", "x"])
def test_label_outside_range(tmp_path: Path, bad: str) -> None:
    root = build_rafdb_official(tmp_path, train_counts=TRAIN, test_counts=TEST)
    _edit_label_file(root, 2, new=f"train_00002.jpg {bad}")
    with pytest.raises(
        DatasetError, match=rf"list_patition_label.txt:2: label '{bad}' for train_00002.jpg is outside 1..7"
    ):
        list_rafdb(root)


def test_listed_image_missing(tmp_path: Path) -> None:
    root = build_rafdb_official(tmp_path, train_counts=TRAIN, test_counts=TEST)
    (root / "Image" / "aligned" / "train_00004_aligned.jpg").unlink()
    with pytest.raises(DatasetError, match=r"(?s)1 image\(s\) that do not exist.*train_00004_aligned.jpg \(line 4\)"):
        list_rafdb(root)


def test_duplicate_entries(tmp_path: Path) -> None:
    root = build_rafdb_official(tmp_path, train_counts=TRAIN, test_counts=TEST)
    path = _edit_label_file(root, 0, append="train_00002.jpg 4")
    n = len(path.read_text().splitlines())
    with pytest.raises(DatasetError, match=rf":{n}: duplicate entry train_00002.jpg \(first listed on line 2\)"):
        list_rafdb(root)


def test_class_without_training_images(tmp_path: Path) -> None:
    root = build_rafdb_official(tmp_path, train_counts=(3, 0, 2, 5, 3, 2, 4), test_counts=TEST)
    with pytest.raises(DatasetError, match="no training images for class.*Fear"):
        list_rafdb(root)


def test_class_without_training_images_repackaged(tmp_path: Path) -> None:
    root = build_class_folders(
        tmp_path, counts={"train": (3, 2, 2, 5, 3, 0, 4), "test": TEST}, folder_names=RAFDB_DIGIT_FOLDERS
    )
    with pytest.raises(DatasetError, match="no training images for class.*Anger"):
        list_rafdb(root)


@pytest.mark.parametrize("damage", ["truncated", "not_an_image"])
def test_unreadable_image_names_the_file(tmp_path: Path, cache_dir: Path, damage: str) -> None:
    root = build_rafdb_official(tmp_path / "basic", train_counts=TRAIN, test_counts=TEST)
    victim = root / "Image" / "aligned" / "train_00005_aligned.jpg"
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"this is not a jpeg")
    with pytest.raises(DatasetError, match=r"(?s)1 of 21 image\(s\) could not be read.*train_00005_aligned.jpg"):
        load_faces(rafdb_cfg(root), cache_dir=cache_dir)
    # The explicit option skips it and reports the count.
    data = load_faces(rafdb_cfg(root, skip_unreadable=True), cache_dir=cache_dir)
    assert len(data.train) == sum(TRAIN) - 1
    assert data.train.skipped == ("Image/aligned/train_00005_aligned.jpg",)


def test_repackaged_unknown_folder(tmp_path: Path) -> None:
    root = build_class_folders(tmp_path, counts={"train": TRAIN, "test": TEST}, folder_names=RAFDB_DIGIT_FOLDERS)
    (root / "train" / "contempt").mkdir()
    with pytest.raises(DatasetError, match=r"train/contempt: unknown RAF-DB class folder 'contempt'"):
        list_rafdb(root)


def test_zero_based_folders_get_a_hint(tmp_path: Path) -> None:
    root = build_class_folders(tmp_path, counts={"train": TRAIN, "test": TEST}, folder_names=RAFDB_DIGIT_FOLDERS)
    (root / "train" / "0").mkdir()
    with pytest.raises(DatasetError, match="0-based export"):
        list_rafdb(root)


def test_two_folders_for_one_class(tmp_path: Path) -> None:
    root = build_class_folders(tmp_path, counts={"train": TRAIN, "test": TEST}, folder_names=RAFDB_DIGIT_FOLDERS)
    write_image(root / "train" / "happy" / "x.jpg", seed=1)
    with pytest.raises(DatasetError, match="folders '4' and 'happy' both name class 4"):
        list_rafdb(root)


def test_repackaged_without_test(tmp_path: Path) -> None:
    root = build_class_folders(tmp_path, counts={"train": TRAIN}, folder_names=RAFDB_DIGIT_FOLDERS)
    with pytest.raises(DatasetError, match="has train/ but no test/"):
        list_rafdb(root)
