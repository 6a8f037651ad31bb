"""torch Datasets and samplers over in-memory uint8 splits, shared by both model packages.

Batches come straight from the uint8 tensors: a whole batch is one index op, no PIL, no
per-sample work. Samplers are deterministic in (seed, epoch) and shard by rank themselves, so
the same code serves one process and DDP, and a run resumed at epoch k sees exactly the batches
an uninterrupted run would have seen. Evaluation roles refuse generated samples.

Two ways to serve batches: `make_loader` without a device gives a DataLoader that gathers each batch
on the host (one index op on the main thread; pinned when CUDA is present, so the copy to the GPU is
asynchronous), which is right on CPU, where a worker process would only take a core from the model.
With `device=` it gives `DeviceBatches`: the split's uint8 tensors are copied to the device once and
every batch is an index op there, so a GPU step waits neither for a host gather nor for a copy.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .split import EVALUATION_ROLES, FaceSplit, require_real

ROLES = ("train", *EVALUATION_ROLES)


class FaceTensorDataset(Dataset):
    """Yields (uint8 image [3, H, W], label); augmentation happens later, batched, on tensors."""

    def __init__(self, *, split: FaceSplit, role: str) -> None:
        if role not in ROLES:
            raise ValueError(f"role={role!r}; choose one of {list(ROLES)}")
        if role in EVALUATION_ROLES:
            require_real(split, role=role)
        self.split = split
        self.role = role

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.split.images[index], self.split.labels[index]


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
        self,
        *,
        num_items: int,
        seed: int,
        weights: torch.Tensor | None = None,
        num_samples: int | None = None,
        rank: int = 0,
        world_size: int = 1,
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


class DeviceBatches:
    """Batches of `dataset` in `sampler`'s order, indexed on `device` from uint8 tensors copied there once.

    The same batches as `make_loader`'s DataLoader (same sampler, `batch_size`, `drop_last`), already on
    the device. `sampler` is exposed so Lightning calls its `set_epoch` each epoch as for a DataLoader.
    Memory: the split's uint8 images once per process (RAF-DB's 12,271 train faces at 100 px: 368 MB).
    """

    def __init__(
        self,
        dataset: BatchedFaceDataset,
        *,
        sampler: Sampler[int],
        batch_size: int,
        drop_last: bool = False,
        device: torch.device | str,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}; it must be >= 1")
        self.dataset = dataset
        self.sampler = sampler
        self.batch_sampler = None  # Lightning reads a DataLoader's sampler attributes as a pair
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.device = torch.device(device)
        self.images = dataset.split.images.to(self.device)
        self.labels = dataset.split.labels.to(self.device)

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.as_tensor(list(self.sampler), dtype=torch.long).to(self.device)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = order[start : start + self.batch_size]
            yield self.images[index], self.labels[index]


def make_loader(
    dataset: BatchedFaceDataset,
    *,
    sampler: Sampler[int],
    batch_size: int,
    drop_last: bool = False,
    pin_memory: bool | None = None,
    device: torch.device | str | None = None,
) -> DataLoader | DeviceBatches:
    """A DataLoader gathering batches on the host (`pin_memory`: None = pin when CUDA is available), or,
    with `device`, `DeviceBatches` serving them from a copy of the split on that device."""
    if device is not None:
        return DeviceBatches(dataset, sampler=sampler, batch_size=batch_size, drop_last=drop_last, device=device)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        collate_fn=keep_batch,
        drop_last=drop_last,
        num_workers=0,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
    )
