"""Whether a VAE-GAN was trained on the faces it is asked to augment: the same faces written again (a fresh
clone renders the synthetic faces anew) are the same data; another split or other pixels are not."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import faces
from ablation.generate import warn_if_other_fit_split


def _fit(root: Path, cache: Path, **extra) -> faces.FaceSplit:
    cfg = {"name": "synthetic", "preset": "tiny", "seed": 0, "root": str(root), **extra}
    return faces.load_faces(cfg, cache_dir=cache, splits=("train",)).train_val()[0]


def test_faces_written_again_keep_their_content_hash(tmp_path: Path, tiny_synthetic_root: Path, caplog) -> None:
    original = _fit(tiny_synthetic_root, tmp_path / "cache_a")
    copy = tmp_path / "copy"
    shutil.copytree(
        tiny_synthetic_root, copy, copy_function=shutil.copyfile
    )  # new files, new modification times, the same bytes
    again = _fit(copy, tmp_path / "cache_b")
    assert again.fingerprint != original.fingerprint  # the cache key sees file times
    assert again.content_sha256() == original.content_sha256()

    meta = {"data_sha256": original.content_sha256(), "data_fingerprint": original.fingerprint}
    with caplog.at_level(logging.WARNING, logger="ablation.generate"):
        assert warn_if_other_fit_split(meta, fit=again, train=again) is None
    assert not caplog.records

    # another carve-out of the same files: other members, so another hash and a warning that says so
    other_split = _fit(copy, tmp_path / "cache_b", split_seed=1)
    message = warn_if_other_fit_split(meta, fit=other_split, train=other_split)
    assert message is not None and "content hash" in message and "data.split_seed" in message

    # one pixel changed is other data
    edited = faces.FaceSplit(
        name=again.name,
        images=again.images.clone(),
        labels=again.labels,
        is_synthetic=again.is_synthetic,
        sample_ids=again.sample_ids,
        class_names=again.class_names,
    )
    edited.images[0, 0, 0, 0] ^= 1
    assert edited.content_sha256() != original.content_sha256()


def test_an_older_export_without_a_content_hash_names_file_times(tmp_path: Path, tiny_synthetic_root: Path) -> None:
    original = _fit(tiny_synthetic_root, tmp_path / "cache_a")
    copy = tmp_path / "copy"
    shutil.copytree(tiny_synthetic_root, copy, copy_function=shutil.copyfile)
    again = _fit(copy, tmp_path / "cache_b")
    old_meta = {"data_fingerprint": original.fingerprint}
    assert warn_if_other_fit_split(old_meta, fit=original, train=original) is None
    message = warn_if_other_fit_split(old_meta, fit=again, train=again)
    assert message is not None and "may differ" in message and "file times" in message
