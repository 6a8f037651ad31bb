"""A generic image-folder dataset: ROOT/train/<class>/, ROOT/test/<class>/, optional ROOT/val/<class>/.

For FER2013 or AffectNet exports and users' own data. Class order is alphabetical by
train folder name unless `class_names` fixes it (so label indices are stable across runs).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .errors import DatasetError
from .listing import (
    ImageRecord,
    SourceListing,
    check_no_empty_classes,
    describe_directory,
    list_class_folders,
    require_directory,
)

FOLDER_LAYOUT = "image-folder"


def list_image_folder(
    root: Path | str | None,
    *,
    class_names: Sequence[str] | None = None,
    dataset: str = "folder",
    layout: str = FOLDER_LAYOUT,
) -> SourceListing:
    root = require_directory(root)
    for required in ("train", "test"):
        if not (root / required).is_dir():
            raise DatasetError(
                f"data.root={root} has no {required}/ folder. Expected the image-folder layout "
                f"train/<class>/*.jpg, test/<class>/*.jpg (optional val/<class>/). Found: {describe_directory(root)}"
            )
    train_folders = sorted(p.name for p in (root / "train").iterdir() if p.is_dir() and not p.name.startswith("."))
    if not train_folders:
        raise DatasetError(
            f"{root / 'train'} has no class folders; expected train/<class>/*.jpg. "
            f"Found: {describe_directory(root / 'train')}"
        )
    if class_names is None:
        class_names = tuple(train_folders)
    else:
        class_names = tuple(class_names)
        if len(set(class_names)) != len(class_names):
            raise DatasetError(f"data.class_names has duplicates: {list(class_names)}")
    index = {name: i for i, name in enumerate(class_names)}

    def resolve(folder: str, where: str) -> int:
        if folder not in index:
            raise DatasetError(
                f"{where}: class folder {folder!r} is not one of the dataset's classes {list(class_names)} "
                "(classes come from train/ folder names, or data.class_names when set)"
            )
        return index[folder]

    ignored: list[Path] = []
    splits: dict[str, list[ImageRecord]] = {}
    for split in ("train", "val", "test"):
        if (root / split).is_dir():
            splits[split] = list_class_folders(root=root, split=split, resolve_label=resolve, ignored=ignored)
    check_no_empty_classes(records=splits["train"], class_names=class_names, where=str(root / "train"))
    return SourceListing(
        dataset=dataset,
        layout=layout,
        root=root,
        class_names=class_names,
        splits=splits,
        ignored=ignored,
    )
