"""Generated (VAE-GAN) folders load tagged as synthetic and never pass the val/test guard."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from builders import write_image
from faces import DatasetError, FaceTensorDataset, SyntheticLeakError, load_generated, require_real
from faces.split import FaceSplit

CLASSES = ("Surprise", "Fear", "Disgust")


def build_generated(out: Path, rows: list[tuple[str, str]], *, extra_columns: bool = True) -> Path:
    for i, (rel, _) in enumerate(rows):
        write_image(out / rel, seed=i, size=20, fmt="PNG")
    with (out / "manifest.csv").open("w", newline="") as handle:
        fields = ["path", "class_name"] + (["strategy", "source_ids"] if extra_columns else [])
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for rel, name in rows:
            writer.writerow({"path": rel, "class_name": name, **({"strategy": "gaussian", "source_ids": "a;b"} if extra_columns else {})})
    return out


def test_loads_tagged_synthetic_and_rejected_for_evaluation(tmp_path: Path) -> None:
    out = build_generated(tmp_path / "gen", [("Fear/0.png", "Fear"), ("Fear/1.png", "Fear"), ("Disgust/0.png", "Disgust")])
    split = load_generated(out, class_names=CLASSES, image_size=16, cache_dir=tmp_path / "cache")
    assert isinstance(split, FaceSplit) and split.name == "generated"
    assert split.is_synthetic.all() and split.class_counts() == [0, 2, 1]
    assert split.images.shape == (3, 3, 16, 16)
    assert set(split.sample_ids) == {"generated/Fear/0.png", "generated/Fear/1.png", "generated/Disgust/0.png"}
    for role in ("val", "test"):
        with pytest.raises(SyntheticLeakError):
            require_real(split, role=role)
        with pytest.raises(SyntheticLeakError):
            FaceTensorDataset(split=split, role=role)


def test_manifest_class_not_in_dataset(tmp_path: Path) -> None:
    out = build_generated(tmp_path / "gen", [("Fear/0.png", "Fear"), ("Contempt/0.png", "Contempt")])
    with pytest.raises(DatasetError, match=r"manifest.csv:3: class 'Contempt' is not a class of the dataset"):
        load_generated(out, class_names=CLASSES, image_size=16, cache_dir=tmp_path / "cache")


def test_manifest_lists_missing_file(tmp_path: Path) -> None:
    out = build_generated(tmp_path / "gen", [("Fear/0.png", "Fear"), ("Fear/1.png", "Fear")])
    (out / "Fear" / "1.png").unlink()
    with pytest.raises(DatasetError, match=r"(?s)lists 1 file\(s\) that do not exist.*Fear/1.png \(line 3\)"):
        load_generated(out, class_names=CLASSES, image_size=16, cache_dir=tmp_path / "cache")


def test_missing_manifest_and_columns(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="has no manifest.csv; create the folder with scripts/augment.py"):
        load_generated(tmp_path / "empty", class_names=CLASSES, image_size=16, cache_dir=tmp_path / "cache")
    out = tmp_path / "bad"
    out.mkdir()
    (out / "manifest.csv").write_text("file,label\nx.png,1\n")
    with pytest.raises(DatasetError, match=r"missing column\(s\) \['path', 'class_name'\]"):
        load_generated(out, class_names=CLASSES, image_size=16, cache_dir=tmp_path / "cache")


def test_path_escaping_the_folder_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "gen"
    out.mkdir()
    (out / "manifest.csv").write_text("path,class_name\n../real/train/x.png,Fear\n")
    with pytest.raises(DatasetError, match="must be relative and inside"):
        load_generated(out, class_names=CLASSES, image_size=16, cache_dir=tmp_path / "cache")
