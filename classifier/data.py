"""The classifier's LightningDataModule over in-memory uint8 splits (batches and samplers: faces.torchdata).

Training draws one global order per epoch and gives each rank a slice (class-balanced draws for
oversampling); evaluation shards without padding, so metrics summed over ranks count every
sample exactly once.

Generated samples in the training split can enter the draws in three ways beyond the plain mix
(`GeneratedMixSampler`): M2m's replacement (sampler=replace: a class-balanced slot of class k is a
generated sample of k with probability p_k = 1 - n_k / n_max), late (no generated sample before
`start_step`), and with their own loss weight (batches then carry each sample's generated tag).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Sampler

from faces import FaceSplit
from faces.torchdata import BatchedFaceDataset, EpochSampler, ShardSampler, class_balanced_weights, make_loader


class TaggedFaceDataset(BatchedFaceDataset):
    """Training batches that also say which samples are generated: (images, labels, is_synthetic)."""

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(indices, dtype=torch.long)
        return self.split.images[index], self.split.labels[index], self.split.is_synthetic[index]


def replace_probabilities(split: FaceSplit, *, override: float | Mapping[str, float] | None = None) -> torch.Tensor:
    """p_k for sampler=replace: M2m's 1 - n_k / n_max from the *real* counts, or `override` (one number, or
    per class name; unnamed classes keep the rule). A class without generated samples gets 0, so a class
    at the majority count is never replaced."""
    num_classes = len(split.class_names)
    real = torch.bincount(split.labels[~split.is_synthetic], minlength=num_classes).double()
    generated = torch.bincount(split.labels[split.is_synthetic], minlength=num_classes)
    p = 1.0 - real / real.max().clamp_min(1)
    if isinstance(override, Mapping):
        unknown = sorted(set(override) - set(split.class_names))
        if unknown:
            raise ValueError(
                f"balance.replace_prob names unknown class(es) {unknown}; classes are {list(split.class_names)}"
            )
        for name, value in override.items():
            p[split.class_names.index(name)] = float(value)
    elif override is not None:
        p = torch.where(real < real.max(), torch.full_like(p, float(override)), torch.zeros_like(p))
    return torch.where(generated > 0, p, torch.zeros_like(p)).float()


class GeneratedMixSampler(Sampler[int]):
    """A training order over real + generated samples, fixed by (seed, epoch), sliced for this rank.

    `sampler`: "none" draws uniformly (a permutation), "class_balanced" every class equally often,
    "replace" every class equally often with a slot of class k a generated sample of k with
    probability `replace_prob[k]` (else one of its real images). Before optimiser step `start_step`
    the same rule runs on the real samples only (replace: p = 0, i.e. plain oversampling), so
    generated samples enter only for the rest of training (M2m, RSG). Steps are counted as the
    trainer takes them: `steps_per_epoch` batches of `batch_size` per rank.
    """

    def __init__(
        self,
        *,
        split: FaceSplit,
        sampler: str,
        seed: int,
        batch_size: int,
        steps_per_epoch: int,
        start_step: int = 0,
        replace_prob: torch.Tensor | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.labels, self.generated = split.labels, split.is_synthetic
        self.num_classes = len(split.class_names)
        self.sampler, self.seed, self.start_step = sampler, seed, start_step
        self.batch_size, self.steps_per_epoch = batch_size, steps_per_epoch
        self.replace_prob = replace_prob if replace_prob is not None else torch.zeros(self.num_classes)
        self.num_samples, self.rank, self.world_size = len(split), rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def weights(self, *, with_generated: bool) -> torch.Tensor | None:
        """Per-sample draw weights (None: a uniform permutation of everything)."""
        if with_generated and self.sampler != "replace":
            return (
                class_balanced_weights(self.labels, num_classes=self.num_classes)
                if self.sampler == "class_balanced"
                else None
            )
        real = (~self.generated).double()
        if self.sampler == "none":
            return real
        # Every class carries total weight 1: (1 - p_k) spread over its real images, p_k over its generated ones.
        p = self.replace_prob.double() if with_generated else torch.zeros(self.num_classes, dtype=torch.float64)
        n_real = torch.bincount(self.labels[~self.generated], minlength=self.num_classes).double().clamp_min(1)
        n_gen = torch.bincount(self.labels[self.generated], minlength=self.num_classes).double().clamp_min(1)
        y = self.labels
        return torch.where(self.generated, p[y] / n_gen[y], real * (1.0 - p[y]) / n_real[y])

    def _draw(self, generator: torch.Generator, *, with_generated: bool) -> torch.Tensor:
        weights = self.weights(with_generated=with_generated)
        if weights is None:
            return torch.randperm(self.num_samples, generator=generator)
        return torch.multinomial(weights, self.num_samples, replacement=True, generator=generator)

    def step_of(self, positions: torch.Tensor) -> torch.Tensor:
        """The optimiser step at which each position of this epoch's global order is trained on."""
        return self.epoch * self.steps_per_epoch + (positions // self.world_size) // self.batch_size

    def global_order(self) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = self._draw(generator, with_generated=True)
        if self.start_step > 0:
            early = self._draw(generator, with_generated=False)
            order = torch.where(self.step_of(torch.arange(self.num_samples)) >= self.start_step, order, early)
        total = math.ceil(len(order) / self.world_size) * self.world_size
        return torch.cat([order, order[: total - len(order)]])

    def __iter__(self) -> Iterator[int]:
        return iter(self.global_order()[self.rank :: self.world_size].tolist())

    def __len__(self) -> int:
        return math.ceil(self.num_samples / self.world_size)


def generated_only_for_filled_classes(
    real: FaceSplit, generated: FaceSplit, *, targets: Mapping[str, int] | None = None
) -> FaceSplit:
    """CAS's training split (Ravuri & Vinyals 2019): for every class below the augmenter's target, only its
    generated images; the real images of the classes at or above it. `targets` ({class: target count},
    recorded by the augmenter) decides which classes are below; without it, the classes the set has samples of."""
    names = real.class_names
    counts = real.class_counts()
    if targets:
        below = [k for k, name in enumerate(names) if name in targets and counts[k] < int(targets[name])]
    else:
        below = torch.unique(generated.labels).tolist()
    have = set(torch.unique(generated.labels).tolist())
    empty = [names[k] for k in below if k not in have]
    if empty:
        raise ValueError(
            f"balance=cas: class(es) {empty} are below the target but the generated set has no sample of them, "
            "so a classifier trained on generated data alone cannot learn them; CAS is not defined for this set"
        )
    keep = torch.nonzero(~torch.isin(real.labels, torch.tensor(below, dtype=real.labels.dtype))).flatten()
    return real.subset(keep, name=f"{real.name}-at-or-above-target").concat(generated, name="cas")


class FaceDataModule(pl.LightningDataModule):
    """Train (may include generated samples), val and test (real only, checked) loaders over FaceSplits."""

    def __init__(
        self,
        *,
        train: FaceSplit | None,
        val: FaceSplit | None,
        test: FaceSplit | None,
        batch_size: int,
        eval_batch_size: int,
        seed: int,
        sampler: str = "none",
        start_step: int = 0,
        steps_per_epoch: int | None = None,
        replace_prob: float | Mapping[str, float] | None = None,
    ) -> None:
        super().__init__()
        tagged = train is not None and bool(train.is_synthetic.any())
        self.train_set = (
            (TaggedFaceDataset if tagged else BatchedFaceDataset)(split=train, role="train")
            if train is not None
            else None
        )
        self.val_set = BatchedFaceDataset(split=val, role="val") if val is not None else None
        self.test_set = BatchedFaceDataset(split=test, role="test") if test is not None else None
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.seed = seed
        self.sampler = sampler
        self.start_step, self.steps_per_epoch, self.replace_prob = start_step, steps_per_epoch, replace_prob

    def _rank(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _pin(self) -> bool:
        trainer = getattr(self, "trainer", None)
        return bool(trainer is not None and trainer.accelerator.__class__.__name__ == "CUDAAccelerator")

    def _device(self) -> torch.device | None:
        """On a GPU the splits live on it and batches are indexed there (faces.torchdata.DeviceBatches)."""
        return self.trainer.strategy.root_device if self._pin() else None

    def train_sampler(self, *, rank: int = 0, world: int = 1) -> Sampler[int]:
        split = self.train_set.split
        if self.sampler == "replace" or self.start_step > 0:
            per_rank = math.ceil(len(split) / world)
            steps = self.steps_per_epoch or max(1, per_rank // self.batch_size)
            return GeneratedMixSampler(
                split=split,
                sampler=self.sampler,
                seed=self.seed,
                batch_size=self.batch_size,
                steps_per_epoch=steps,
                start_step=self.start_step,
                replace_prob=replace_probabilities(split, override=self.replace_prob),
                rank=rank,
                world_size=world,
            )
        weights = (
            class_balanced_weights(split.labels, num_classes=len(split.class_names))
            if self.sampler == "class_balanced"
            else None
        )
        return EpochSampler(num_items=len(split), seed=self.seed, weights=weights, rank=rank, world_size=world)

    def train_dataloader(self) -> DataLoader:
        rank, world = self._rank()
        sampler = self.train_sampler(rank=rank, world=world)
        per_rank = len(sampler)
        return make_loader(
            self.train_set,
            sampler=sampler,
            batch_size=self.batch_size,
            drop_last=per_rank > self.batch_size,
            pin_memory=self._pin(),
            device=self._device(),
        )

    def _eval_loader(self, dataset: BatchedFaceDataset) -> DataLoader:
        rank, world = self._rank()
        return make_loader(
            dataset,
            sampler=ShardSampler(num_items=len(dataset), rank=rank, world_size=world),
            batch_size=self.eval_batch_size,
            pin_memory=self._pin(),
            device=self._device(),
        )

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self.val_set)

    def test_dataloader(self) -> DataLoader:
        if self.test_set is None:
            raise RuntimeError("no test split was given to this FaceDataModule")
        return self._eval_loader(self.test_set)
