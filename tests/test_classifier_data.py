"""Samplers (oversampling draws classes equally; DDP shards), batched loading, augmentation, and the
real-only guard on the classifier's validation/test path."""

from __future__ import annotations

import pytest
import torch

from classifier.data import FaceDataModule
from classifier.transforms import TensorAugment
from faces import SyntheticLeakError
from faces.split import FaceSplit
from faces.torchdata import EpochSampler, ShardSampler, class_balanced_weights

pytestmark = pytest.mark.usefixtures("one_thread")

NAMES = ("A", "B", "C", "D")


def make_split(counts: list[int], *, synthetic: bool = False, name: str = "train", size: int = 8) -> FaceSplit:
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    n = len(labels)
    images = (torch.arange(n).view(n, 1, 1, 1) % 256).expand(n, 3, size, size).to(torch.uint8).contiguous()
    return FaceSplit(
        name=name,
        images=images,
        labels=labels,
        is_synthetic=torch.full((n,), synthetic),
        sample_ids=tuple(f"{name}/{i}" for i in range(n)),
        class_names=NAMES,
    )


def test_oversampling_draws_classes_about_equally() -> None:
    split = make_split([800, 150, 40, 10])  # 80:1 imbalance
    sampler = EpochSampler(num_items=len(split), seed=3, weights=class_balanced_weights(split.labels, num_classes=4))
    drawn = []
    for epoch in range(5):
        sampler.set_epoch(epoch)
        drawn += list(sampler)
    counts = torch.bincount(split.labels[torch.tensor(drawn)], minlength=4).double()
    n = counts.sum()
    # multinomial with p = 1/4 each: std of a class count is sqrt(n * 1/4 * 3/4) ~ 21 for n = 5000
    expected, std = n / 4, (n * 0.25 * 0.75) ** 0.5
    assert ((counts - expected).abs() < 4 * std).all(), counts
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 16.3, chi2  # chi-square, 3 dof, p = 0.001
    # without the sampler the rarest class is ~1% of draws
    plain = EpochSampler(num_items=len(split), seed=3)
    assert torch.bincount(split.labels[torch.tensor(list(plain))], minlength=4).tolist() == [800, 150, 40, 10]


def test_epoch_sampler_is_seeded_and_shards_across_ranks() -> None:
    a, b = EpochSampler(num_items=10, seed=1), EpochSampler(num_items=10, seed=1)
    assert list(a) == list(b)
    a.set_epoch(1)
    assert list(a) != list(b)
    ranks = [EpochSampler(num_items=11, seed=1, rank=r, world_size=2) for r in range(2)]
    shards = [list(s) for s in ranks]
    assert len(shards[0]) == len(shards[1]) == 6  # padded to equal length for DDP
    assert set(shards[0]) | set(shards[1]) == set(range(11))
    evals = [list(ShardSampler(num_items=11, rank=r, world_size=3)) for r in range(3)]
    assert sorted(sum(evals, [])) == list(range(11))  # evaluation: every sample exactly once


def test_loader_serves_whole_batches_from_uint8() -> None:
    dm = FaceDataModule(
        train=make_split([5, 5, 5, 5]),
        val=make_split([2, 2, 2, 2], name="val"),
        test=None,
        batch_size=6,
        eval_batch_size=3,
        seed=0,
    )
    images, labels = next(iter(dm.train_dataloader()))
    assert images.dtype == torch.uint8 and images.shape == (6, 3, 8, 8) and labels.shape == (6,)
    batches = list(dm.val_dataloader())
    assert sum(len(b[1]) for b in batches) == 8


def test_synthetic_samples_rejected_by_val_and_test_path() -> None:
    real, fake = make_split([3, 3, 3, 3]), make_split([1, 1, 1, 1], synthetic=True, name="generated")
    mixed = real.concat(fake, name="val")
    with pytest.raises(SyntheticLeakError, match="used as val"):
        FaceDataModule(train=real, val=mixed, test=None, batch_size=4, eval_batch_size=4, seed=0)
    with pytest.raises(SyntheticLeakError, match="used as test"):
        FaceDataModule(train=real, val=real, test=mixed, batch_size=4, eval_batch_size=4, seed=0)
    FaceDataModule(train=mixed, val=real, test=real, batch_size=4, eval_batch_size=4, seed=0)  # training may use them


def test_tensor_augment_keeps_shape_and_range_and_varies() -> None:
    torch.manual_seed(0)
    x = torch.rand(16, 3, 32, 32)
    y = TensorAugment()(x)
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    assert not torch.allclose(x, y)
    flip_only = TensorAugment(
        flip=1.0, rotate_degrees=0, scale=(1, 1), translate=0, brightness=0, contrast=0, saturation=0
    )
    assert torch.allclose(flip_only(x), x.flip(-1), atol=1e-5)
