"""The uint8 tensor cache: decoded once, reused, invalidated when a source file changes."""

from __future__ import annotations

import os
import re
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

    root = build_class_folders(
        tmp_path / "d", counts={"train": (1, 1), "test": (1, 1)}, folder_names=("a", "b"), size=16
    )
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

    root = build_class_folders(
        tmp_path / "d", counts={"train": (2, 2), "test": (1, 1)}, folder_names=("a", "b"), size=16
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    for name, side in (("bomb.png", 40000), ("big.png", 10000)):  # over PIL's error limit / over its warning limit
        (root / "train" / "a" / name).write_bytes(
            b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00"))
            + chunk(b"IEND", b"")
        )
    with pytest.raises(
        DatasetError,
        match=r"(?s)2 of 6 image\(s\) could not be read.*big\.png: ValueError: the header claims "
        r"10000x10000 pixels.*bomb\.png: DecompressionBombError.*skip_unreadable=true",
    ):
        load_faces(_cfg(root), cache_dir=cache_dir)
    data = load_faces({**_cfg(root), "skip_unreadable": True}, cache_dir=cache_dir)
    assert set(data.train.skipped) == {"train/a/bomb.png", "train/a/big.png"} and len(data.train) == 4


def _phone_photo(path: Path) -> None:
    """A 32x16 JPEG stored sideways (left half black, right half white) with EXIF orientation 6 (turn 90° clockwise)."""
    import numpy as np
    from PIL import Image

    pixels = np.zeros((16, 32, 3), dtype=np.uint8)
    pixels[:, 16:] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(pixels).save(path, format="JPEG", quality=95, exif=exif.tobytes())


def test_exif_orientation_is_applied_and_counted(tmp_path: Path, cache_dir: Path) -> None:
    """A phone photo with EXIF orientation 6 is decoded as every viewer shows it (upright, 16x32), and counted."""
    from faces.summary import format_summary, summarize_dataset

    root = build_class_folders(
        tmp_path / "d", counts={"train": (2, 2), "test": (1, 1)}, folder_names=("a", "b"), size=16
    )
    _phone_photo(root / "train" / "a" / "phone.jpg")
    data = load_faces(_cfg(root), cache_dir=cache_dir)
    image = data.train.images[data.train.sample_ids.index("train/a/phone.jpg")].float().mean(0)  # [16, 16]
    # Turned clockwise, the stored left (black) half is on top: the top rows dark, the bottom rows light.
    assert image[:3].mean() < 60 and image[-3:].mean() > 190
    assert data.train.flagged["exif_rotated"] == ("train/a/phone.jpg",)
    summary = summarize_dataset(data)
    assert summary["decode_notes"]["exif_rotated"] == {"train": 1, "test": 0}
    assert "turned upright by their EXIF orientation: 1" in format_summary(summary)


def test_degenerate_images_are_named_and_min_image_size_refuses_them(tmp_path: Path, cache_dir: Path, caplog) -> None:
    """A 1x1 and a 400x20 PNG: warned about by name and counted; data.min_image_size refuses them by name."""
    import logging

    import numpy as np
    from PIL import Image

    from faces import DatasetError

    root = build_class_folders(
        tmp_path / "d", counts={"train": (2, 2), "test": (1, 1)}, folder_names=("a", "b"), size=32
    )
    Image.fromarray(np.full((1, 1, 3), 128, dtype=np.uint8)).save(root / "train" / "a" / "dot.png")
    Image.fromarray(np.full((20, 400, 3), 128, dtype=np.uint8)).save(root / "train" / "b" / "strip.png")
    with caplog.at_level(logging.WARNING, logger="faces.cache"):
        data = load_faces(_cfg(root), cache_dir=cache_dir)
    assert data.train.flagged["small"] == ("train/a/dot.png",)
    assert data.train.flagged["far_from_square"] == ("train/b/strip.png",)
    assert re.search(r"1 image\(s\) much smaller than the 16px target.*dot\.png \(1x1\)", caplog.text)
    assert re.search(r"1 image\(s\) far from square.*strip\.png \(400x20\)", caplog.text)
    # The refusal is checked on every load, also when the split comes from the cache.
    with pytest.raises(
        DatasetError,
        match=r"2 image\(s\) with a side under data\.min_image_size=24px: .*dot\.png \(1x1\), .*strip\.png \(400x20\)",
    ):
        load_faces({**_cfg(root), "min_image_size": 24}, cache_dir=cache_dir)
    assert len(load_faces({**_cfg(root), "min_image_size": 1}, cache_dir=cache_dir).train) == 6
    with pytest.raises(DatasetError, match=r"data\.min_image_size=0 must be a positive integer"):
        load_faces({**_cfg(root), "min_image_size": 0}, cache_dir=cache_dir)
