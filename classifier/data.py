"""Batches straight from the in-memory uint8 splits: index a whole batch at once, no PIL, no per-sample work.

Samplers are deterministic (seed, epoch) and shard by rank themselves, so the same code serves one
process and DDP: training draws one global order per epoch and gives each rank a slice; evaluation
shards without padding, so metrics summed over ranks count every sample exactly once.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Sampler

from faces import FaceSplit, FaceTensorDataset


class BatchedFaceDataset(FaceTensorDataset):
    """`FaceTensorDataset` (same role checks: val/test refuse generated samples) that fetches whole batches."""

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(indices, dtype=torch.long)
        return self.split.images[index], self.split.labels[index]


def keep_batch(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """collate_fn: `__getitems__` already returns the stacked batch."""
    return batch


def class_balanced_weights(labels: torch.Tensor, *, num_classes: int) -> torch.Tensor:
    """Per-sample weight 1/n_{y_i}: every class has the same total probability of being drawn."""
    counts = torch.bincount(labels, minlength=num_classes).double()
    return (1.0 / counts.clamp_min(1))[labels]


class EpochSampler(Sampler[int]):
    """Training order for one epoch, fixed by (seed, epoch), sliced for this rank.

    Uniform: a permutation of the data. Class-balanced (`weights` given): `num_samples` draws with
    replacement in proportion to `weights` (oversampling; Buda et al. 2018). The global order is
    padded to a multiple of `world_size` so ranks take equal steps (DDP needs that).
    """

    def __init__(
        self, *, num_items: int, seed: int, weights: torch.Tensor | None = None, num_samples: int | None = None,
        rank: int = 0, world_size: int = 1,
    ) -> None:
        self.num_items = num_items
        self.seed = seed
        self.weights = weights
        self.num_samples = num_samples or num_items
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def global_order(self) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        if self.weights is None:
            order = torch.randperm(self.num_items, generator=generator)
        else:
            order = torch.multinomial(self.weights, self.num_samples, replacement=True, generator=generator)
        total = math.ceil(len(order) / self.world_size) * self.world_size
        return torch.cat([order, order[: total - len(order)]])

    def __iter__(self) -> Iterator[int]:
        return iter(self.global_order()[self.rank :: self.world_size].tolist())

    def __len__(self) -> int:
        return math.ceil(self.num_samples / self.world_size)


class ShardSampler(Sampler[int]):
    """Evaluation: rank r takes items r, r + W, ...; no padding, so no sample is counted twice."""

    def __init__(self, *, num_items: int, rank: int = 0, world_size: int = 1) -> None:
        self.indices = list(range(rank, num_items, world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def make_loader(
    dataset: BatchedFaceDataset, *, sampler: Sampler[int], batch_size: int, drop_last: bool = False, pin_memory: bool = False
) -> DataLoader:
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, collate_fn=keep_batch, drop_last=drop_last,
        num_workers=0, pin_memory=pin_memory,
    )


class FaceDataModule(pl.LightningDataModule):
    """Train (may include generated samples), val and test (real only, checked) loaders over FaceSplits."""

    def __init__(
        self, *, train: FaceSplit | None, val: FaceSplit | None, test: FaceSplit | None, batch_size: int,
        eval_batch_size: int, seed: int, sampler: str = "none",
    ) -> None:
        super().__init__()
        self.train_set = BatchedFaceDataset(split=train, role="train") if train is not None else None
        self.val_set = BatchedFaceDataset(split=val, role="val") if val is not None else None
        self.test_set = BatchedFaceDataset(split=test, role="test") if test is not None else None
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.seed = seed
        self.sampler = sampler

    def _rank(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _pin(self) -> bool:
        trainer = getattr(self, "trainer", None)
        return bool(trainer is not None and trainer.accelerator.__class__.__name__ == "CUDAAccelerator")

    def train_dataloader(self) -> DataLoader:
        rank, world = self._rank()
        split = self.train_set.split
        weights = (
            class_balanced_weights(split.labels, num_classes=len(split.class_names)) if self.sampler == "class_balanced" else None
        )
        sampler = EpochSampler(num_items=len(split), seed=self.seed, weights=weights, rank=rank, world_size=world)
        per_rank = len(sampler)
        return make_loader(
            self.train_set, sampler=sampler, batch_size=self.batch_size, drop_last=per_rank > self.batch_size, pin_memory=self._pin()
        )

    def _eval_loader(self, dataset: BatchedFaceDataset) -> DataLoader:
        rank, world = self._rank()
        return make_loader(
            dataset, sampler=ShardSampler(num_items=len(dataset), rank=rank, world_size=world),
            batch_size=self.eval_batch_size, pin_memory=self._pin(),
        )

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self.val_set)

    def test_dataloader(self) -> DataLoader:
        if self.test_set is None:
            raise RuntimeError("no test split was given to this FaceDataModule")
        return self._eval_loader(self.test_set)
