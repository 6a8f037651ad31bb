"""Generic image-folder datasets (FER2013/AffectNet exports, users' own data)."""

from __future__ import annotations

from pathlib import Path

import pytest
from builders import build_class_folders, write_image

from faces import DatasetError, load_faces
from faces.folder import list_image_folder


def folder_cfg(root: Path, **extra) -> dict:
    return {"name": "folder", "root": str(root), "image_size": 16, **extra}


def test_any_class_names_alphabetical_order(tmp_path: Path, cache_dir: Path) -> None:
    names = ("neutral", "angry", "contempt")
    root = build_class_folders(
        tmp_path, counts={"train": (4, 3, 2), "test": (2, 1, 1)}, folder_names=names, suffix=".png"
    )
    data = load_faces(folder_cfg(root), cache_dir=cache_dir)
    assert data.class_names == ("angry", "contempt", "neutral")
    assert data.train.class_counts() == [3, 2, 4]
    assert data.test.class_counts() == [1, 1, 2]
    assert "val" not in data.splits  # carved from train instead
    fit, val = data.train_val()
    assert len(fit) + len(val) == 9 and val.class_counts() == [1, 1, 1]


def test_explicit_class_order_and_val_folder(tmp_path: Path, cache_dir: Path) -> None:
    names = ("happy", "sad")
    root = build_class_folders(tmp_path, counts={"train": (3, 2), "val": (1, 1), "test": (1, 2)}, folder_names=names)
    data = load_faces(folder_cfg(root, class_names=["sad", "happy"]), cache_dir=cache_dir, splits=("train",))
    assert data.class_names == ("sad", "happy")
    assert data.train.class_counts() == [2, 3]
    fit, val = data.train_val()  # the dataset's own val/ comes along with train
    assert fit is data.train and val.class_counts() == [1, 1]


def test_grayscale_and_non_square_images_become_square_rgb(tmp_path: Path, cache_dir: Path) -> None:
    from PIL import Image

    for split in ("train", "test"):
        path = tmp_path / split / "a" / "gray.png"
        path.parent.mkdir(parents=True)
        Image.new("L", (48, 30), color=128).save(path)
    data = load_faces(folder_cfg(tmp_path, image_size=20), cache_dir=cache_dir)
    assert data.train.images.shape == (1, 3, 20, 20)
    assert int(data.train.images.float().mean().round()) == 128


def test_test_folder_for_unknown_class(tmp_path: Path) -> None:
    root = build_class_folders(tmp_path, counts={"train": (2, 2), "test": (1, 1)}, folder_names=("a", "b"))
    write_image(root / "test" / "c" / "x.jpg", seed=3)
    with pytest.raises(
        DatasetError, match=r"test/c: class folder 'c' is not one of the dataset's classes \['a', 'b'\]"
    ):
        list_image_folder(root)


def test_missing_test_folder_says_what_was_expected(tmp_path: Path) -> None:
    build_class_folders(tmp_path, counts={"train": (2, 2)}, folder_names=("a", "b"))
    with pytest.raises(DatasetError, match="has no test/ folder.*train/<class>/.*Found: train/"):
        list_image_folder(tmp_path)


def test_empty_train_class(tmp_path: Path) -> None:
    root = build_class_folders(tmp_path, counts={"train": (2, 2), "test": (1, 1)}, folder_names=("a", "b"))
    (root / "train" / "c").mkdir()
    with pytest.raises(DatasetError, match="no training images for class.*c"):
        list_image_folder(root)


def test_non_image_files_are_reported_not_loaded(tmp_path: Path, cache_dir: Path, caplog) -> None:
    root = build_class_folders(tmp_path, counts={"train": (2, 2), "test": (1, 1)}, folder_names=("a", "b"))
    (root / "train" / "a" / "notes.txt").write_text("labels checked by hand")
    (root / "train" / "a" / ".DS_Store").write_bytes(b"\0")
    data = load_faces(folder_cfg(root), cache_dir=cache_dir)
    assert data.train.class_counts() == [2, 2]
    assert [p.name for p in data.ignored] == ["notes.txt"]
    assert "ignored 1 non-image" in caplog.text


def test_unknown_dataset_name_lists_choices(cache_dir: Path) -> None:
    with pytest.raises(
        DatasetError,
        match=r"data.name='affectnet' is not a known dataset; choose one of \['synthetic', 'rafdb', 'folder'\]",
    ):
        load_faces({"name": "affectnet", "root": "/x", "image_size": 64}, cache_dir=cache_dir)


@pytest.mark.parametrize("size", [8, 1000, "64"])
def test_bad_image_size(tmp_path: Path, cache_dir: Path, size) -> None:
    with pytest.raises(DatasetError, match=r"data.image_size=.* must be an integer in 16..512"):
        load_faces(folder_cfg(tmp_path, image_size=size), cache_dir=cache_dir)
