"""Build tiny, real dataset trees (actual JPEG/PNG files) in the layouts the loaders read."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from faces.classes import RAFDB_CLASSES


def write_image(path: Path, *, seed: int, size: int = 24, fmt: str | None = None) -> Path:
    """A random RGB image whose pixels depend on `seed` (so files differ from each other)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format=fmt)
    return path


def build_rafdb_official(
    root: Path, *, train_counts: Sequence[int], test_counts: Sequence[int], size: int = 24
) -> Path:
    """EmoLabel/list_patition_label.txt + Image/aligned/<name>_aligned.jpg, labels 1..7."""
    lines = []
    for split, counts in (("train", train_counts), ("test", test_counts)):
        number = 1
        digits = 5 if split == "train" else 4
        for label, count in enumerate(counts, start=1):
            for _ in range(count):
                name = f"{split}_{number:0{digits}d}.jpg"
                write_image(
                    root / "Image" / "aligned" / f"{split}_{number:0{digits}d}_aligned.jpg",
                    seed=2 * number + (split == "test"),
                    size=size,
                )
                lines.append(f"{name} {label}")
                number += 1
    label_file = root / "EmoLabel" / "list_patition_label.txt"
    label_file.parent.mkdir(parents=True, exist_ok=True)
    label_file.write_text("\n".join(lines) + "\n")
    return root


def build_class_folders(
    root: Path,
    *,
    counts: dict[str, Sequence[int]],
    folder_names: Sequence[str],
    suffix: str = ".jpg",
    size: int = 24,
) -> Path:
    """root/<split>/<folder name>/<n>.<suffix> for each split in `counts`."""
    seed = 0
    for split, split_counts in counts.items():
        for folder, count in zip(folder_names, split_counts):
            for i in range(count):
                write_image(root / split / folder / f"{split}_{i:04d}{suffix}", seed=seed, size=size)
                seed += 1
    return root


RAFDB_DIGIT_FOLDERS = tuple(str(label) for label in range(1, 8))
RAFDB_NAME_FOLDERS = tuple(name.lower() for name in RAFDB_CLASSES)
