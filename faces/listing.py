"""What a dataset is on disk before any pixel is decoded: which files, which label, which split.

Listing is cheap and does every structural check (missing files, bad labels, empty classes)
so that bad input fails before the expensive decode starts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DatasetError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
# OS droppings that are never data and not worth a warning.
_JUNK_NAMES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ImageRecord:
    """One image file with its 0-based label; `sample_id` is the path relative to the root."""

    path: Path
    sample_id: str
    label: int


@dataclass(frozen=True)
class SourceListing:
    """A dataset's files per split, plus how it was recognised."""

    dataset: str
    layout: str
    root: Path
    class_names: tuple[str, ...]
    splits: dict[str, list[ImageRecord]]
    # Files that were not images (reported, never silently dropped) and extra bytes that
    # identify the source beyond its files (e.g. the label file), for the cache fingerprint.
    ignored: list[Path] = field(default_factory=list)
    extra_fingerprint: str = ""
    # True for VAE-GAN output: every decoded sample is tagged and kept out of val/test.
    is_synthetic: bool = False

    def records(self, split: str) -> list[ImageRecord]:
        if split not in self.splits:
            raise DatasetError(
                f"{self.root}: split {split!r} not found in the {self.layout} layout; "
                f"available splits: {sorted(self.splits)}"
            )
        return self.splits[split]

    def class_counts(self, split: str) -> list[int]:
        counts = [0] * len(self.class_names)
        for record in self.records(split):
            counts[record.label] += 1
        return counts


def require_directory(root: Path | str | None, *, what: str = "data.root") -> Path:
    if root is None or str(root).strip() in ("", "None", "???"):
        raise DatasetError(f"{what} is not set: pass {what}=/path/to/dataset")
    path = Path(root).expanduser()
    if not path.exists():
        raise DatasetError(f"{what}={path} does not exist")
    if not path.is_dir():
        raise DatasetError(f"{what}={path} is a file, expected a directory")
    return path


def describe_directory(path: Path, *, limit: int = 12) -> str:
    """A short listing of what *is* there, for 'no known layout' errors."""
    entries = sorted(path.iterdir(), key=lambda p: p.name)
    shown = [p.name + ("/" if p.is_dir() else "") for p in entries[:limit]]
    more = f" … and {len(entries) - limit} more" if len(entries) > limit else ""
    return ", ".join(shown) + more if shown else "(empty directory)"


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def list_class_folders(
    *,
    root: Path,
    split: str,
    resolve_label: Callable[[str, str], int],
    ignored: list[Path],
) -> list[ImageRecord]:
    """Records of `root/split/<class folder>/<image>`; `resolve_label(folder, where)` maps names.

    Two folders that map to the same class (e.g. '4' and 'happy') are an error rather than a
    silent merge: it almost always means two copies of the data were unpacked into one tree.
    """
    split_dir = root / split
    seen: dict[int, str] = {}
    records: list[ImageRecord] = []
    for class_dir in sorted(p for p in split_dir.iterdir() if not p.name.startswith(".")):
        if not class_dir.is_dir():
            if class_dir.name not in _JUNK_NAMES:
                ignored.append(class_dir)
            continue
        label = resolve_label(class_dir.name, str(class_dir))
        if label in seen:
            raise DatasetError(
                f"{split_dir}: folders {seen[label]!r} and {class_dir.name!r} both name class {label + 1}; "
                "keep one of them"
            )
        seen[label] = class_dir.name
        for path in sorted(class_dir.iterdir()):
            if is_image_file(path):
                records.append(ImageRecord(path=path, sample_id=path.relative_to(root).as_posix(), label=label))
            elif path.name not in _JUNK_NAMES:
                ignored.append(path)
    return records


def check_no_empty_classes(*, records: Iterable[ImageRecord], class_names: tuple[str, ...], where: str) -> None:
    counts = [0] * len(class_names)
    for record in records:
        counts[record.label] += 1
    empty = [name for name, count in zip(class_names, counts) if count == 0]
    if empty:
        raise DatasetError(
            f"{where}: no training images for class(es) {', '.join(empty)}; every class needs at least one "
            f"training image (counts: {dict(zip(class_names, counts))})"
        )
