"""Train-split-only data for the VAE-GAN, served in batches from in-memory uint8 tensors.

The VAE-GAN must never see a test image (the test split is the classifier's final, 100% real
yardstick). The only loader here asks `faces.load_faces` for `splits=("train",)`, so test
files are not listed for decoding, not opened and not cached; `tests/test_vaegan_data.py`
corrupts every test image and shows training still runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from torch.utils.data import DataLoader

import faces
from faces import FaceSplit
from faces.torchdata import BatchedFaceDataset, EpochSampler, ShardSampler, make_loader

from .images import resize_uint8

VAEGAN_SPLITS = ("train",)


def load_vaegan_faces(
    data_cfg: Mapping[str, Any], *, cache_dir: Path | str
) -> tuple[FaceSplit, FaceSplit, faces.FaceData]:
    """(fit, val, data): the real train split minus the classifier's validation carve-out, and that carve-out."""
    data = faces.load_faces(data_cfg, cache_dir=cache_dir, splits=VAEGAN_SPLITS)
    if "test" in data.splits:  # belt and braces: the protocol forbids it, whatever load_faces does
        raise RuntimeError("the VAE-GAN data path loaded the test split; it must only ever load train")
    fit, val = data.train_val()
    return faces.require_real(fit, role="VAE-GAN training"), faces.require_real(val, role="val"), data


class VAEGANDataModule(pl.LightningDataModule):
    """fit/val splits resized once (on tensors) to the model resolution; batches stay uint8 until the device."""

    def __init__(self, *, fit: FaceSplit, val: FaceSplit, resolution: int, batch_size: int, seed: int) -> None:
        super().__init__()
        if batch_size < 2:
            raise ValueError(f"batch_size={batch_size} must be >= 2 (batch norm and pairwise metrics need pairs)")
        self.fit = dataclasses.replace(fit, images=resize_uint8(fit.images, size=resolution))
        self.val = dataclasses.replace(val, images=resize_uint8(val.images, size=resolution))
        self.class_names = fit.class_names
        self.batch_size, self.seed = batch_size, seed

    def _pin(self) -> bool:
        # Pinned host memory lets the uint8 batch copy to the GPU overlap compute; pointless on CPU.
        return bool(self.trainer is not None and self.trainer.strategy.root_device.type == "cuda")

    def _rank(self) -> tuple[int, int]:
        return (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)

    def train_dataloader(self) -> DataLoader:
        rank, world = self._rank()
        sampler = EpochSampler(num_items=len(self.fit), seed=self.seed, rank=rank, world_size=world)
        # drop_last: a trailing batch of 1-2 images would give batch norm degenerate statistics.
        drop_last = len(sampler) >= 2 * self.batch_size
        return make_loader(
            BatchedFaceDataset(split=self.fit, role="train"),
            sampler=sampler,
            batch_size=self.batch_size,
            drop_last=drop_last,
            pin_memory=self._pin(),
        )

    def val_dataloader(self) -> DataLoader:
        # Every rank scores the whole validation set (the metrics are not reduced across ranks).
        return make_loader(
            BatchedFaceDataset(split=self.val, role="val"),
            sampler=ShardSampler(num_items=len(self.val)),
            batch_size=max(self.batch_size, 256),
            pin_memory=self._pin(),
        )
