"""data.test_per_class: a larger test split of the embedded faces, the training split unchanged byte for byte."""

from __future__ import annotations

from pathlib import Path

import pytest

from faces import DatasetError
from faces.classes import RAFDB_CLASSES
from faces.synthetic import ensure_synthetic_faces, get_preset, preset_counts


def files(folder: Path, split: str) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted((folder / split).rglob("*.png"))}


def test_test_per_class_grows_the_test_split_and_leaves_training_exactly_as_it_was(tmp_path: Path) -> None:
    plain = ensure_synthetic_faces(root=tmp_path, preset="tiny", seed=0)
    big = ensure_synthetic_faces(root=tmp_path, preset="tiny", seed=0, test_per_class=30)
    assert big != plain and big.name == "tiny-32px-seed0-test30"
    assert files(big, "train") == files(plain, "train")  # same files, same bytes
    base = preset_counts(get_preset("tiny"))["test"]
    for name, preset in zip(RAFDB_CLASSES, base):
        assert len(list((big / "test" / name).glob("*.png"))) == max(30, preset), name
    # the preset's test faces are kept as they were: the larger split is a superset
    small_test, big_test = files(plain, "test"), files(big, "test")
    assert all(big_test[k] == v for k, v in small_test.items())
    assert ensure_synthetic_faces(root=tmp_path, preset="tiny", seed=0, test_per_class=30) == big  # rendered once


def test_small_preset_with_150_gives_every_class_at_least_150_test_faces() -> None:
    counts = preset_counts(get_preset("small"), test_per_class=150)
    assert min(counts["test"]) >= 150 and counts["train"] == preset_counts(get_preset("small"))["train"]


@pytest.mark.parametrize("value", [0, -5, 2.5, "many", True])
def test_bad_test_per_class_is_refused_by_name(tmp_path: Path, value: object) -> None:
    with pytest.raises(DatasetError, match=r"data.test_per_class="):
        ensure_synthetic_faces(root=tmp_path, preset="tiny", seed=0, test_per_class=value)
