"""The classifier's LightningDataModule over in-memory uint8 splits (batches and samplers: faces.torchdata).

Training draws one global order per epoch and gives each rank a slice (class-balanced draws for
oversampling); evaluation shards without padding, so metrics summed over ranks count every
sample exactly once.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from faces import FaceSplit
from faces.torchdata import BatchedFaceDataset, EpochSampler, ShardSampler, class_balanced_weights, make_loader


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

    def _device(self) -> torch.device | None:
        """On a GPU the splits live on it and batches are indexed there (faces.torchdata.DeviceBatches)."""
        return self.trainer.strategy.root_device if self._pin() else None

    def train_dataloader(self) -> DataLoader:
        rank, world = self._rank()
        split = self.train_set.split
        weights = (
            class_balanced_weights(split.labels, num_classes=len(split.class_names)) if self.sampler == "class_balanced" else None
        )
        sampler = EpochSampler(num_items=len(split), seed=self.seed, weights=weights, rank=rank, world_size=world)
        per_rank = len(sampler)
        return make_loader(
            self.train_set, sampler=sampler, batch_size=self.batch_size, drop_last=per_rank > self.batch_size, pin_memory=self._pin(),
            device=self._device(),
        )

    def _eval_loader(self, dataset: BatchedFaceDataset) -> DataLoader:
        rank, world = self._rank()
        return make_loader(
            dataset, sampler=ShardSampler(num_items=len(dataset), rank=rank, world_size=world),
            batch_size=self.eval_batch_size, pin_memory=self._pin(), device=self._device(),
        )

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self.val_set)

    def test_dataloader(self) -> DataLoader:
        if self.test_set is None:
            raise RuntimeError("no test split was given to this FaceDataModule")
        return self._eval_loader(self.test_set)
