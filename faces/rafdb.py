"""RAF-DB (basic expression set) in its official layout or the common re-packaged one.

Official:     ROOT/EmoLabel/list_patition_label.txt  (sic, "patition")
              ROOT/Image/aligned/train_00001_aligned.jpg
Re-packaged:  ROOT/train/<1..7 or class name>/*.jpg, ROOT/test/<1..7 or class name>/*.jpg
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from .classes import RAFDB_CLASSES, rafdb_label_from_folder
from .errors import DatasetError
from .listing import (
    ImageRecord,
    SourceListing,
    check_no_empty_classes,
    describe_directory,
    list_class_folders,
    require_directory,
)

LABEL_FILE = Path("EmoLabel") / "list_patition_label.txt"
ALIGNED_DIR = Path("Image") / "aligned"
OFFICIAL_LAYOUT = "rafdb-official"
REPACKAGED_LAYOUT = "rafdb-repackaged"
_LINE = re.compile(r"^(?P<name>(?P<split>train|test)_\d+\.jpg)\s+(?P<label>\S+)$")
_TRIED = (
    f"official ({LABEL_FILE.as_posix()} + {ALIGNED_DIR.as_posix()}/*_aligned.jpg), "
    "re-packaged (train/<1..7 or class name>/*.jpg and test/<1..7 or class name>/*.jpg)"
)


def detect_rafdb_layout(root: Path) -> str:
    """Which RAF-DB layout `root` holds; a DatasetError saying what was tried and found if none."""
    if (root / "EmoLabel").exists() or (root / ALIGNED_DIR).exists():
        return OFFICIAL_LAYOUT
    if (root / "train").is_dir():
        return REPACKAGED_LAYOUT
    hint = ""
    for child in sorted(p for p in root.iterdir() if p.is_dir()):
        if (child / "EmoLabel").exists() or (child / "train").is_dir():
            hint = f" Did you mean data.root={child}?"
            break
    raise DatasetError(
        f"data.root={root} matches no known RAF-DB layout. Tried: {_TRIED}. Found: {describe_directory(root)}.{hint}"
    )


def list_rafdb(root: Path | str | None) -> SourceListing:
    """List a RAF-DB copy, detecting its layout; every structural problem raises DatasetError."""
    root = require_directory(root)
    layout = detect_rafdb_layout(root)
    if layout == OFFICIAL_LAYOUT:
        return _list_official(root)
    return _list_repackaged(root)


def _list_official(root: Path) -> SourceListing:
    label_file = root / LABEL_FILE
    if not label_file.is_file():
        raise DatasetError(
            f"{root}: official RAF-DB layout but the label file {label_file} is missing "
            "(it ships in the basic set as EmoLabel/list_patition_label.txt, spelled 'patition')"
        )
    image_dir = root / ALIGNED_DIR
    if not image_dir.is_dir():
        raise DatasetError(f"{root}: official RAF-DB layout but the image folder {image_dir} is missing")

    text = label_file.read_text(encoding="utf-8-sig")
    splits: dict[str, list[ImageRecord]] = {"train": [], "test": []}
    first_line: dict[str, int] = {}
    missing: list[str] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        match = _LINE.match(line)
        if match is None:
            raise DatasetError(
                f"{label_file}:{lineno}: cannot parse {raw!r}; expected '<train|test>_<number>.jpg <label 1-7>', "
                "e.g. 'train_00001.jpg 5'"
            )
        name, split, label_text = match["name"], match["split"], match["label"]
        if not label_text.isdigit() or not 1 <= int(label_text) <= 7:
            raise DatasetError(
                f"{label_file}:{lineno}: label {label_text!r} for {name} is outside 1..7 "
                f"({', '.join(f'{i + 1}={c}' for i, c in enumerate(RAFDB_CLASSES))})"
            )
        if name in first_line:
            raise DatasetError(
                f"{label_file}:{lineno}: duplicate entry {name} (first listed on line {first_line[name]})"
            )
        first_line[name] = lineno
        path = image_dir / f"{Path(name).stem}_aligned.jpg"
        if not path.is_file():
            missing.append(f"{path} (line {lineno})")
            continue
        splits[split].append(
            ImageRecord(path=path, sample_id=path.relative_to(root).as_posix(), label=int(label_text) - 1)
        )

    if missing:
        shown = "\n  ".join(missing[:10])
        raise DatasetError(f"{label_file} lists {len(missing)} image(s) that do not exist, e.g.:\n  {shown}")
    for split, records in splits.items():
        if not records:
            raise DatasetError(f"{label_file}: no {split} entries (lines starting with '{split}_')")
    check_no_empty_classes(records=splits["train"], class_names=RAFDB_CLASSES, where=str(label_file))
    return SourceListing(
        dataset="rafdb",
        layout=OFFICIAL_LAYOUT,
        root=root,
        class_names=RAFDB_CLASSES,
        splits=splits,
        extra_fingerprint=hashlib.sha256(text.encode()).hexdigest(),
    )


def _list_repackaged(root: Path) -> SourceListing:
    if not (root / "test").is_dir():
        raise DatasetError(
            f"{root}: re-packaged RAF-DB layout has train/ but no test/ folder. Found: {describe_directory(root)}"
        )
    ignored: list[Path] = []
    splits = {
        split: list_class_folders(root=root, split=split, resolve_label=_resolve, ignored=ignored)
        for split in ("train", "test")
    }
    check_no_empty_classes(records=splits["train"], class_names=RAFDB_CLASSES, where=str(root / "train"))
    return SourceListing(
        dataset="rafdb",
        layout=REPACKAGED_LAYOUT,
        root=root,
        class_names=RAFDB_CLASSES,
        splits=splits,
        ignored=ignored,
    )


def _resolve(folder: str, where: str) -> int:
    return rafdb_label_from_folder(folder, where=where)
