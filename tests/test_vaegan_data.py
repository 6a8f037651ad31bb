"""The VAE-GAN trains on the train split only: test images are never opened, decoded or cached."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from vaegan_helpers import tiny_config

import faces
from faces.torchdata import EpochSampler
from vaegan.data import load_vaegan_faces
from vaegan.train import train_vaegan


def _copy_with_corrupt_test_split(tiny_synthetic_root: Path, tmp_path: Path) -> Path:
    preset = next(p for p in tiny_synthetic_root.iterdir() if p.is_dir())
    root = tmp_path / "faces"
    shutil.copytree(preset / "train", root / "train")
    corrupted = 0
    for image in sorted((preset / "test").rglob("*.png")):
        target = root / "test" / image.relative_to(preset / "test")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"not a png: reading this file is a protocol violation")
        corrupted += 1
    assert corrupted > 0
    return root


def test_training_never_reads_test_images(tiny_synthetic_root: Path, tmp_path: Path) -> None:
    root = _copy_with_corrupt_test_split(tiny_synthetic_root, tmp_path)
    cache = tmp_path / "cache"
    cfg = tiny_config(root=root, cache_dir=cache, preset=None, extra=("data=folder", "data.image_size=32", "epochs=1"))
    result = train_vaegan(cfg, output_dir=tmp_path / "run")  # corrupt test files would raise if decoded
    assert result.export.is_file()
    cached = [p.name for p in cache.rglob("*.pt")]
    assert cached and all(name.startswith("train-") for name in cached), cached

    # The corruption is real: a loader that did touch the test split would fail here.
    with pytest.raises(faces.DatasetError):
        faces.load_faces(cfg.data, cache_dir=tmp_path / "other_cache", splits=("train", "test"))

    fit, val, data = load_vaegan_faces(cfg.data, cache_dir=cache)
    assert set(data.splits) == {"train"}
    assert len(fit) + len(val) == len(data.train)
    assert not set(fit.sample_ids) & set(val.sample_ids)
    assert not any("test" in sample for sample in fit.sample_ids + val.sample_ids)


def test_epoch_order_depends_only_on_seed_and_epoch() -> None:
    a, b = EpochSampler(num_items=50, seed=3), EpochSampler(num_items=50, seed=3)
    a.set_epoch(4)
    b.set_epoch(4)
    assert list(a) == list(b) and sorted(a) == list(range(50))
    b.set_epoch(5)
    assert list(a) != list(b)
    shards = [list(EpochSampler(num_items=50, seed=3, rank=r, world_size=2)) for r in (0, 1)]
    assert sorted(shards[0] + shards[1]) == list(range(50))
