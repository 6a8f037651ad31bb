"""The embedded synthetic faces: deterministic, RAF-DB's proportions, requested counts and sizes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from faces import RAFDB_CLASSES, RAFDB_OFFICIAL_COUNTS, DatasetError, load_faces
from faces.synthetic import PRESETS, ensure_synthetic_faces, preset_counts, render_sample, scaled_counts
from faces.synthetic_render import EXPRESSIONS, render_face


def test_renderer_is_deterministic_and_label_dependent() -> None:
    a = render_face(label=1, rng=np.random.default_rng(7), size=64)
    b = render_face(label=1, rng=np.random.default_rng(7), size=64)
    assert a.dtype == np.uint8 and a.shape == (64, 64, 3)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, render_face(label=1, rng=np.random.default_rng(8), size=64))
    # Same seed, another expression: same nuisance draw would still give a different face.
    assert not np.array_equal(a, render_face(label=3, rng=np.random.default_rng(7), size=64))
    assert EXPRESSIONS == RAFDB_CLASSES


@pytest.mark.parametrize("size", [32, 100, 128])
def test_renderer_sizes(size: int) -> None:
    assert render_face(label=6, rng=np.random.default_rng(0), size=size).shape == (size, size, 3)


@pytest.mark.parametrize("kwargs", [{"label": 7, "size": 64}, {"label": -1, "size": 64}, {"label": 0, "size": 8}])
def test_renderer_rejects_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        render_face(rng=np.random.default_rng(0), **kwargs)


def test_preset_counts_follow_rafdb() -> None:
    # `full` is RAF-DB's exact basic-set counts; smaller presets keep its proportions.
    assert preset_counts(PRESETS["full"]) == {k: tuple(v) for k, v in RAFDB_OFFICIAL_COUNTS.items()}
    small = preset_counts(PRESETS["small"])
    assert sum(small["train"]) == 2000 and sum(small["test"]) == 700
    assert small["train"][3] / small["train"][1] == pytest.approx(4772 / 281, rel=0.05)  # Happiness : Fear
    assert scaled_counts((100, 1), total=10, minimum=2) == (8, 2)


def test_tiny_preset_counts_sizes_and_cache(tiny_synthetic_root: Path, tmp_path: Path) -> None:
    cfg = {"name": "synthetic", "preset": "tiny", "seed": 0, "root": str(tiny_synthetic_root)}
    data = load_faces(cfg, cache_dir=tmp_path / "cache")
    counts = preset_counts(PRESETS["tiny"])
    assert data.train.class_counts() == list(counts["train"])
    assert data.test.class_counts() == list(counts["test"])
    assert data.train.images.shape[1:] == (3, 32, 32)
    assert data.class_names == RAFDB_CLASSES
    assert not data.train.is_synthetic.any()  # the embedded faces stand in for real data
    # Pixels on disk are exactly what the renderer makes for that (split, index).
    first = torch.from_numpy(render_sample(split="train", index=0, label=0, seed=0, image_size=32)).permute(2, 0, 1)
    position = data.train.sample_ids.index("train/Surprise/train_00000.png")
    assert torch.equal(data.train.images[position], first)
    # The images differ from one another (no constant output).
    assert data.train.images.float().std(dim=0).mean() > 5


def test_generation_is_deterministic_across_folders(tmp_path: Path, tiny_synthetic_root: Path) -> None:
    again = ensure_synthetic_faces(root=tmp_path, preset="tiny", seed=0)
    reference = tiny_synthetic_root / again.name
    files = sorted(p.relative_to(again) for p in again.rglob("*.png"))
    assert len(files) == 420
    assert files == sorted(p.relative_to(reference) for p in reference.rglob("*.png"))
    for rel in files[::37]:
        assert (again / rel).read_bytes() == (reference / rel).read_bytes()


def test_existing_folder_is_reused_and_foreign_folder_refused(tmp_path: Path) -> None:
    folder = ensure_synthetic_faces(root=tmp_path, preset="tiny", seed=3, image_size=32)
    meta_mtime = (folder / "meta.json").stat().st_mtime_ns
    assert ensure_synthetic_faces(root=tmp_path, preset="tiny", seed=3, image_size=32) == folder
    assert (folder / "meta.json").stat().st_mtime_ns == meta_mtime
    assert json.loads((folder / "meta.json").read_text())["seed"] == 3

    foreign = tmp_path / "tiny-32px-seed4"
    foreign.mkdir()
    (foreign / "my_photos.txt").write_text("mine")
    with pytest.raises(DatasetError, match="not a synthetic-faces folder.*refusing to overwrite"):
        ensure_synthetic_faces(root=tmp_path, preset="tiny", seed=4, image_size=32)


def test_unknown_preset() -> None:
    with pytest.raises(DatasetError, match=r"data.preset='huge' .* choose one of \['full', 'small', 'tiny'\]"):
        ensure_synthetic_faces(root="/tmp/unused", preset="huge", seed=0)
