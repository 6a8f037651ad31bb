"""Whether a VAE-GAN was trained on the faces it is asked to augment: the same faces written again (a fresh
clone renders the synthetic faces anew) are the same data; another split or other pixels are not."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

import faces
from ablation.generate import warn_if_other_fit_split
from vaegan.generation.request import AugmentError, GenerationRequest
from vaegan.generation.run import augment
from vaegan.generation.store import settings_differences


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
    assert again.content_sha256 == original.content_sha256

    meta = {"data_sha256": original.content_sha256, "data_fingerprint": original.fingerprint}
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
    assert edited.content_sha256 != original.content_sha256


def test_an_older_export_without_a_content_hash_names_file_times(tmp_path: Path, tiny_synthetic_root: Path) -> None:
    original = _fit(tiny_synthetic_root, tmp_path / "cache_a")
    copy = tmp_path / "copy"
    shutil.copytree(tiny_synthetic_root, copy, copy_function=shutil.copyfile)
    again = _fit(copy, tmp_path / "cache_b")
    old_meta = {"data_fingerprint": original.fingerprint}
    assert warn_if_other_fit_split(old_meta, fit=original, train=original) is None
    message = warn_if_other_fit_split(old_meta, fit=again, train=again)
    assert message is not None and "may differ" in message and "file times" in message


def _augment(model, fit: faces.FaceSplit, out: Path):
    request = GenerationRequest(target_count=(40,) * 7, strategy="gaussian", out_dir=out, filter=False, workers=0)
    return augment(request, model=model, checkpoint_sha256="0" * 64, fit=fit, targets=[40] * 7, quality=None)


def test_a_generated_set_resumes_on_the_same_faces_written_again(
    tmp_path: Path, tiny_synthetic_root: Path, model
) -> None:
    original = _fit(tiny_synthetic_root, tmp_path / "cache_a")
    out = tmp_path / "set"
    _augment(model, original, out)
    manifest = (out / "manifest.csv").read_bytes()
    copy = tmp_path / "copy"
    shutil.copytree(tiny_synthetic_root, copy, copy_function=shutil.copyfile)
    again = _fit(copy, tmp_path / "cache_b")
    assert again.fingerprint != original.fingerprint
    _augment(model, again, out)  # same pixels: the finished set is kept, not refused
    assert (out / "manifest.csv").read_bytes() == manifest
    with pytest.raises(AugmentError, match="real_sha256"):  # another carve-out is other real images
        _augment(model, _fit(copy, tmp_path / "cache_b", split_seed=1), out)


def test_a_set_made_before_the_content_hash_is_compared_by_its_fingerprint() -> None:
    old = {"real_fingerprint": "a", "strategy": "gaussian"}
    assert settings_differences(old, {"real_fingerprint": "a", "real_sha256": "h", "strategy": "gaussian"}) == []
    assert settings_differences(old, {"real_fingerprint": "b", "real_sha256": "h", "strategy": "gaussian"}) == [
        "real_fingerprint: 'a' -> 'b'"
    ]
    new = {"real_fingerprint": "b", "real_sha256": "h"}
    assert settings_differences({"real_fingerprint": "a", "real_sha256": "h"}, new) == []
    assert settings_differences({"real_fingerprint": "b", "real_sha256": "g"}, new) == ["real_sha256: 'g' -> 'h'"]
