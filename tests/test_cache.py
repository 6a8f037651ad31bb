"""The uint8 tensor cache: decoded once, reused, invalidated when a source file changes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from builders import build_class_folders, write_image

import faces.cache
from faces import load_faces


def _cfg(root: Path) -> dict:
    return {"name": "folder", "root": str(root), "image_size": 16}


def _cache_files(cache_dir: Path) -> list[Path]:
    return sorted(cache_dir.rglob("*.pt"))


def test_round_trip_and_reuse(tmp_path: Path, cache_dir: Path, monkeypatch) -> None:
    root = build_class_folders(tmp_path / "d", counts={"train": (3, 2), "test": (1, 1)}, folder_names=("a", "b"))
    first = load_faces(_cfg(root), cache_dir=cache_dir)
    files = _cache_files(cache_dir)
    assert [f.name.split("-")[0] for f in files] == ["test", "train"]

    calls = []
    original = faces.cache._decode_records
    monkeypatch.setattr(faces.cache, "_decode_records", lambda *a, **k: calls.append(1) or original(*a, **k))
    second = load_faces(_cfg(root), cache_dir=cache_dir)
    assert calls == []  # served from the cache, no JPEG decoded
    assert torch.equal(first.train.images, second.train.images)
    assert torch.equal(first.train.labels, second.train.labels)
    assert first.train.sample_ids == second.train.sample_ids
    assert first.train.fingerprint == second.train.fingerprint


def test_changed_source_invalidates_and_replaces_cache(tmp_path: Path, cache_dir: Path) -> None:
    root = build_class_folders(tmp_path / "d", counts={"train": (3, 2), "test": (1, 1)}, folder_names=("a", "b"))
    before = load_faces(_cfg(root), cache_dir=cache_dir)
    old_train_cache = [f for f in _cache_files(cache_dir) if f.name.startswith("train")]

    victim = root / "train" / "a" / "train_0000.jpg"
    stat = victim.stat()
    write_image(victim, seed=999)
    os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    after = load_faces(_cfg(root), cache_dir=cache_dir)
    assert after.train.fingerprint != before.train.fingerprint
    assert not torch.equal(after.train.images[0], before.train.images[0])
    assert after.test.fingerprint == before.test.fingerprint
    new_train_cache = [f for f in _cache_files(cache_dir) if f.name.startswith("train")]
    assert len(new_train_cache) == 1 and new_train_cache != old_train_cache  # stale cache removed

    write_image(root / "train" / "b" / "extra.jpg", seed=5)  # an added image invalidates too
    assert load_faces(_cfg(root), cache_dir=cache_dir).train.class_counts() == [3, 3]


def test_corrupt_cache_is_rebuilt(tmp_path: Path, cache_dir: Path) -> None:
    root = build_class_folders(tmp_path / "d", counts={"train": (2, 2), "test": (1, 1)}, folder_names=("a", "b"))
    before = load_faces(_cfg(root), cache_dir=cache_dir)
    for f in _cache_files(cache_dir):
        f.write_bytes(b"garbage")
    after = load_faces(_cfg(root), cache_dir=cache_dir)
    assert torch.equal(before.train.images, after.train.images)


def test_only_requested_splits_are_read(tmp_path: Path, cache_dir: Path) -> None:
    """Test images that cannot even be decoded are never touched when only train is asked for."""
    root = build_class_folders(tmp_path / "d", counts={"train": (2, 2), "test": (1, 1)}, folder_names=("a", "b"))
    for path in (root / "test").rglob("*.jpg"):
        path.write_bytes(b"unreadable")
    data = load_faces(_cfg(root), cache_dir=cache_dir, splits=("train",))
    assert set(data.splits) == {"train"}
    assert all(f.name.startswith("train") for f in _cache_files(cache_dir))


def test_sixteen_bit_greyscale_is_scaled_not_clipped(tmp_path: Path, cache_dir: Path) -> None:
    """A 16-bit greyscale PNG (PIL mode I;16) decodes to the same grey levels as its 8-bit copy,
    not to near-white (PIL's convert("RGB") clips 16-bit values at 255)."""
    import numpy as np
    from PIL import Image

    root = build_class_folders(tmp_path / "d", counts={"train": (1, 1), "test": (1, 1)}, folder_names=("a", "b"), size=16)
    levels = np.linspace(0, 65535, 16 * 16).reshape(16, 16).astype(np.uint16)
    Image.fromarray(levels).save(root / "train" / "a" / "deep.png")
    assert Image.open(root / "train" / "a" / "deep.png").mode == "I;16"
    data = load_faces(_cfg(root), cache_dir=cache_dir)
    index = data.train.sample_ids.index("train/a/deep.png")
    decoded = data.train.images[index, 0].numpy().astype(int)
    expected = np.round(levels / 257.0)
    assert abs(decoded - expected).max() <= 1
    assert decoded.mean() == pytest.approx(127.5, abs=2)  # was ~255 when clipped


def test_decompression_bomb_is_named_and_skippable(tmp_path: Path, cache_dir: Path) -> None:
    """A header claiming 40000x40000 pixels is an unreadable image: named, and skipped on request."""
    import struct
    import zlib

    from faces import DatasetError

    root = build_class_folders(tmp_path / "d", counts={"train": (2, 2), "test": (1, 1)}, folder_names=("a", "b"), size=16)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    for name, side in (("bomb.png", 40000), ("big.png", 10000)):  # over PIL's error limit / over its warning limit
        (root / "train" / "a" / name).write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
                                                  + chunk(b"IDAT", zlib.compress(b"\x00")) + chunk(b"IEND", b""))
    with pytest.raises(DatasetError, match=r"(?s)2 of 6 image\(s\) could not be read.*big\.png: ValueError: the header claims "
                                           r"10000x10000 pixels.*bomb\.png: DecompressionBombError.*skip_unreadable=true"):
        load_faces(_cfg(root), cache_dir=cache_dir)
    data = load_faces({**_cfg(root), "skip_unreadable": True}, cache_dir=cache_dir)
    assert set(data.train.skipped) == {"train/a/bomb.png", "train/a/big.png"} and len(data.train) == 4
