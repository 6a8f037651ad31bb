"""Validation carve-out, provenance tags and the real-only guard for val/test."""

from __future__ import annotations

import pytest
import torch

from faces import FaceSplit, FaceTensorDataset, SyntheticLeakError, require_real, stratified_split


def make_split(n: int, *, synthetic: bool = False, name: str = "train", num_classes: int = 3) -> FaceSplit:
    return FaceSplit(
        name=name,
        images=torch.zeros((n, 3, 8, 8), dtype=torch.uint8),
        labels=torch.arange(n) % num_classes,
        is_synthetic=torch.full((n,), synthetic),
        sample_ids=tuple(f"{'gen' if synthetic else 'real'}_{i}" for i in range(n)),
        class_names=tuple(f"c{i}" for i in range(num_classes)),
    )


def test_stratified_split_per_class_and_deterministic() -> None:
    labels = torch.tensor([0] * 100 + [1] * 20 + [2] * 2 + [3] * 1)
    keep, held = stratified_split(labels, fraction=0.1, seed=0, num_classes=4)
    assert torch.bincount(labels[held], minlength=4).tolist() == [10, 2, 1, 0]
    assert sorted(torch.cat([keep, held]).tolist()) == list(range(len(labels)))
    keep2, held2 = stratified_split(labels, fraction=0.1, seed=0, num_classes=4)
    assert torch.equal(held, held2)
    _, held3 = stratified_split(labels, fraction=0.1, seed=1, num_classes=4)
    assert not torch.equal(held, held3)


def test_require_real_rejects_generated_samples() -> None:
    mixed = make_split(6).concat(make_split(3, synthetic=True), name="val")
    assert int(mixed.is_synthetic.sum()) == 3
    with pytest.raises(
        SyntheticLeakError, match=r"3 generated sample\(s\) \(e.g. 'gen_0'\) in split 'val' used as val"
    ):
        require_real(mixed, role="val")
    assert require_real(make_split(4), role="test") is not None


@pytest.mark.parametrize("role", ["val", "test"])
def test_evaluation_datasets_refuse_generated_samples(role: str) -> None:
    with pytest.raises(SyntheticLeakError):
        FaceTensorDataset(split=make_split(4).concat(make_split(2, synthetic=True)), role=role)
    # Training may mix them; that is the point of the augmentation.
    dataset = FaceTensorDataset(split=make_split(4).concat(make_split(2, synthetic=True)), role="train")
    image, label = dataset[5]
    assert image.shape == (3, 8, 8) and int(label) == 1  # second generated sample


def test_split_validation() -> None:
    with pytest.raises(ValueError, match="uint8"):
        FaceSplit(
            name="x",
            images=torch.zeros((1, 3, 4, 4)),
            labels=torch.zeros(1, dtype=torch.long),
            is_synthetic=torch.zeros(1, dtype=torch.bool),
            sample_ids=("a",),
            class_names=("c",),
        )
    with pytest.raises(ValueError, match="differ in length"):
        FaceSplit(
            name="x",
            images=torch.zeros((2, 3, 4, 4), dtype=torch.uint8),
            labels=torch.zeros(1, dtype=torch.long),
            is_synthetic=torch.zeros(1, dtype=torch.bool),
            sample_ids=("a",),
            class_names=("c",),
        )
    with pytest.raises(ValueError, match="role="):
        FaceTensorDataset(split=make_split(2), role="holdout")


def test_two_carve_outs_of_one_split_have_different_fingerprints() -> None:
    """FaceSplit.subset derives its fingerprint from its members: the fit splits of two
    data.split_seed values must not look alike (they once both kept the parent's)."""
    split = make_split(60)
    split = FaceSplit(
        name=split.name,
        images=split.images,
        labels=split.labels,
        is_synthetic=split.is_synthetic,
        sample_ids=split.sample_ids,
        class_names=split.class_names,
        fingerprint="parent",
    )
    fits = []
    for seed in (0, 1):
        keep, _ = stratified_split(split.labels, fraction=0.2, seed=seed, num_classes=3)
        fits.append(split.subset(keep))
    assert fits[0].fingerprint != fits[1].fingerprint
    assert split.fingerprint not in (fits[0].fingerprint, fits[1].fingerprint)
    keep, _ = stratified_split(split.labels, fraction=0.2, seed=0, num_classes=3)
    assert split.subset(keep).fingerprint == fits[0].fingerprint  # deterministic
