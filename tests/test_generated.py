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
            writer.writerow(
                {
                    "path": rel,
                    "class_name": name,
                    **({"strategy": "gaussian", "source_ids": "a;b"} if extra_columns else {}),
                }
            )
    return out


def test_loads_tagged_synthetic_and_rejected_for_evaluation(tmp_path: Path) -> None:
    out = build_generated(
        tmp_path / "gen", [("Fear/0.png", "Fear"), ("Fear/1.png", "Fear"), ("Disgust/0.png", "Disgust")]
    )
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


def test_symlinks_are_refused_even_inside_the_folder(tmp_path: Path) -> None:
    """A listed PNG replaced by a link (to a real test image, or to a folder) is never loaded."""
    real = write_image(tmp_path / "real" / "test" / "Fear" / "x.png", seed=7, size=20, fmt="PNG")
    out = build_generated(tmp_path / "gen", [("Fear/0.png", "Fear"), ("Fear/1.png", "Fear")])
    (out / "Fear" / "1.png").unlink()
    (out / "Fear" / "1.png").symlink_to(real)
    with pytest.raises(DatasetError, match=r"manifest.csv:3: path 'Fear/1.png': .*1.png is a symbolic link"):
        load_generated(out, class_names=CLASSES, image_size=16, cache_dir=tmp_path / "cache")
    # A linked class folder: the file itself is regular, a component above it is a link.
    out2 = tmp_path / "gen2"
    out2.mkdir()
    (out2 / "Fear").symlink_to(real.parent)
    (out2 / "manifest.csv").write_text("path,class_name\nFear/x.png,Fear\n")
    with pytest.raises(DatasetError, match=r"manifest.csv:2: .*Fear is a symbolic link"):
        load_generated(out2, class_names=CLASSES, image_size=16, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()  # refused before anything was decoded


def test_image_size_must_match_the_set(tmp_path: Path) -> None:
    out = build_generated(tmp_path / "gen", [("Fear/0.png", "Fear")])
    (out / "augment.json").write_text('{"image_size": 32}')
    with pytest.raises(DatasetError, match=r"holds 32px images \(augment.json image_size=32\), but this run uses 64px"):
        load_generated(out, class_names=CLASSES, image_size=64, cache_dir=tmp_path / "cache")
    assert load_generated(out, class_names=CLASSES, image_size=32, cache_dir=tmp_path / "cache").image_size == 32
    (out / "augment.json").write_text("{broken")
    with pytest.raises(DatasetError, match=r"augment.json: not valid JSON"):
        load_generated(out, class_names=CLASSES, image_size=32, cache_dir=tmp_path / "cache")


def test_sources_must_not_be_validation_or_test_images(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import json

    from faces import check_generated_sources, sample_ids_fingerprint

    out = build_generated(tmp_path / "gen", [("Fear/0.png", "Fear"), ("Fear/1.png", "Fear")])  # source_ids "a;b"
    fit = ("a", "b", "c")
    (out / "augment.json").write_text(
        json.dumps(
            {"source_ids_sha256": sample_ids_fingerprint(fit), "source_split": {"split_seed": 3, "fit_images": 3}}
        )
    )
    check_generated_sources(out, fit_ids=("c", "b", "a"), val_ids=("v",), test_ids=("t",), split_seed=3)  # order-free
    with pytest.raises(
        DatasetError,
        match=r"manifest.csv:2\) is derived from the real image 'b', which is in this run's "
        r"validation split \(data.split_seed=0\).*train with data.split_seed=3",
    ):
        check_generated_sources(out, fit_ids=("a", "c"), val_ids=("b",), split_seed=0)
    with pytest.raises(DatasetError, match=r"real image 'a', which is a test image"):
        check_generated_sources(out, val_ids=(), test_ids=("a",))
    # No row names a validation image, but the set was made from other real images (e.g. the prior strategy).
    with pytest.raises(
        DatasetError, match=r"made from another set of real training images.*over 3 images.*over 2 images"
    ):
        check_generated_sources(out, fit_ids=("a", "b"), val_ids=("c",), split_seed=0)
    # A hand-made set without provenance: accepted, with a warning.
    bare = build_generated(tmp_path / "bare", [("Fear/0.png", "Fear")], extra_columns=False)
    check_generated_sources(bare, fit_ids=("a",), val_ids=("b",))
    assert "records no source images" in caplog.text
