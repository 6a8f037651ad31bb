"""VAE-GAN output as a dataset: `OUT/manifest.csv` + `OUT/<class>/*.png`, every sample tagged synthetic.

The augmenter (scripts/augment.py) writes the folder; the classifier's `synthetic` strategies
read it here and concatenate it with the *real* train split. Its samples carry
`is_synthetic=True`, so `require_real` rejects them anywhere near validation or test.

manifest.csv has one row per image; the loader needs `path` (relative to OUT) and
`class_name`; the augmenter adds provenance columns (strategy, strength, source ids, seed,
checkpoint fingerprint, quality scores) that are kept for the record.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from .cache import load_split
from .errors import DatasetError
from .listing import ImageRecord, SourceListing, require_directory
from .split import FaceSplit

MANIFEST_FILE = "manifest.csv"
# The augmenter's settings record (strategy, strength, checkpoint, judge, filter): written by
# vaegan.augment, read by reports that describe a generated set.
SETTINGS_FILE = "augment.json"
REQUIRED_COLUMNS = ("path", "class_name")
GENERATED_LAYOUT = "augmentation-manifest"


def manifest_fingerprint(out_dir: Path | str) -> str:
    """sha256 of manifest.csv: recorded by runs that train on the generated set."""
    return hashlib.sha256((Path(out_dir) / MANIFEST_FILE).read_bytes()).hexdigest()


def list_generated(out_dir: Path | str, *, class_names: Sequence[str]) -> SourceListing:
    root = require_directory(out_dir, what="generated data folder")
    manifest = root / MANIFEST_FILE
    if not manifest.is_file():
        raise DatasetError(f"{root} has no {MANIFEST_FILE}; create the folder with scripts/augment.py")
    index = {name: i for i, name in enumerate(class_names)}
    records: list[ImageRecord] = []
    first_line: dict[str, int] = {}
    missing: list[str] = []
    with manifest.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        absent = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if absent:
            raise DatasetError(f"{manifest}: missing column(s) {absent}; header is {reader.fieldnames}")
        for lineno, row in enumerate(reader, start=2):
            name, rel = row["class_name"], row["path"]
            if name not in index:
                raise DatasetError(
                    f"{manifest}:{lineno}: class {name!r} is not a class of the dataset {list(class_names)}; "
                    "the generated set was made for another dataset"
                )
            posix = PurePosixPath(rel)
            if posix.is_absolute() or ".." in posix.parts:
                raise DatasetError(f"{manifest}:{lineno}: path {rel!r} must be relative and inside {root}")
            if rel in first_line:
                raise DatasetError(f"{manifest}:{lineno}: duplicate path {rel} (first on line {first_line[rel]})")
            first_line[rel] = lineno
            path = root / posix
            if not path.is_file():
                missing.append(f"{path} (line {lineno})")
                continue
            records.append(ImageRecord(path=path, sample_id=f"generated/{rel}", label=index[name]))
    if missing:
        shown = "\n  ".join(missing[:10])
        raise DatasetError(f"{manifest} lists {len(missing)} file(s) that do not exist, e.g.:\n  {shown}")
    if not records:
        raise DatasetError(f"{manifest} lists no images")
    return SourceListing(
        dataset="generated",
        layout=GENERATED_LAYOUT,
        root=root,
        class_names=tuple(class_names),
        splits={"train": records},
        extra_fingerprint=manifest_fingerprint(root),
        is_synthetic=True,
    )


def load_generated(
    out_dir: Path | str, *, class_names: Sequence[str], image_size: int, cache_dir: Path | str
) -> FaceSplit:
    """The generated images as a FaceSplit named 'generated', all `is_synthetic`; for training only."""
    listing = list_generated(out_dir, class_names=class_names)
    split = load_split(listing, "train", image_size=image_size, cache_dir=cache_dir)
    return FaceSplit(
        name="generated",
        images=split.images,
        labels=split.labels,
        is_synthetic=split.is_synthetic,
        sample_ids=split.sample_ids,
        class_names=split.class_names,
        fingerprint=split.fingerprint,
    )


def read_generated_settings(out_dir: Path | str) -> dict | None:
    """The settings a generated folder was made with (augment.json), or None if it has none."""
    import json

    path = Path(out_dir) / SETTINGS_FILE
    return json.loads(path.read_text()) if path.is_file() else None
