"""Train-split-only data for the VAE-GAN, served in batches from in-memory uint8 tensors.

The VAE-GAN must never see a test image (the test split is the classifier's final, 100% real
yardstick). The only loader here asks `faces.load_faces` for `splits=("train",)`, so test
files are not listed for decoding, not opened and not cached; `tests/test_vaegan_data.py`
corrupts every test image and shows training still runs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

import faces
from faces import FaceSplit

from .images import resize_uint8

VAEGAN_SPLITS = ("train",)


def load_vaegan_faces(data_cfg: Mapping[str, Any], *, cache_dir: Path | str) -> tuple[FaceSplit, FaceSplit, faces.FaceData]:
    """(fit, val, data): the real train split minus the classifier's validation carve-out, and that carve-out."""
    data = faces.load_faces(data_cfg, cache_dir=cache_dir, splits=VAEGAN_SPLITS)
    if "test" in data.splits:  # belt and braces: the protocol forbids it, whatever load_faces does
        raise RuntimeError("the VAE-GAN data path loaded the test split; it must only ever load train")
    fit, val = data.train_val()
    return faces.require_real(fit, role="VAE-GAN training"), faces.require_real(val, role="val"), data


class _BatchedFaces(Dataset):
    """uint8 images + labels; `__getitems__` gathers a whole batch with one index op (no per-sample work)."""

    def __init__(self, *, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index]

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(indices, dtype=torch.long)
        return self.images[index], self.labels[index]


def _identity_collate(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return batch


class EpochShuffleSampler(Sampler[int]):
    """A permutation that depends only on (seed, epoch) and this rank's shard.

    Because the order is a pure function of the epoch, a run resumed from `last.ckpt` sees
    exactly the batches the uninterrupted run would have seen.
    """

    def __init__(self, *, num_samples: int, seed: int, shuffle: bool = True, rank: int = 0, world_size: int = 1) -> None:
        self.num_samples, self.seed, self.shuffle = num_samples, seed, shuffle
        self.rank, self.world_size, self.epoch = rank, world_size, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.num_samples, generator=generator)
        else:
            order = torch.arange(self.num_samples)
        return iter(order[self.rank :: self.world_size].tolist())

    def __len__(self) -> int:
        return len(range(self.rank, self.num_samples, self.world_size))


class VAEGANDataModule(pl.LightningDataModule):
    """fit/val splits resized once (on tensors) to the model resolution; batches stay uint8 until the device."""

    def __init__(self, *, fit: FaceSplit, val: FaceSplit, resolution: int, batch_size: int, seed: int) -> None:
        super().__init__()
        if batch_size < 2:
            raise ValueError(f"batch_size={batch_size} must be >= 2 (batch norm and pairwise metrics need pairs)")
        self.fit_images = resize_uint8(fit.images, size=resolution)
        self.val_images = resize_uint8(val.images, size=resolution)
        self.fit_labels, self.val_labels = fit.labels, val.labels
        self.class_names = fit.class_names
        self.batch_size, self.seed = batch_size, seed

    def train_dataloader(self) -> DataLoader:
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        sampler = EpochShuffleSampler(num_samples=len(self.fit_labels), seed=self.seed, rank=rank, world_size=world)
        # drop_last: a trailing batch of 1-2 images would give batch norm degenerate statistics.
        drop_last = len(sampler) >= 2 * self.batch_size
        return DataLoader(
            _BatchedFaces(images=self.fit_images, labels=self.fit_labels), batch_size=self.batch_size,
            sampler=sampler, drop_last=drop_last, collate_fn=_identity_collate, num_workers=0,
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(
            _BatchedFaces(images=self.val_images, labels=self.val_labels), batch_size=max(self.batch_size, 256),
            shuffle=False, collate_fn=_identity_collate, num_workers=0,
        )
