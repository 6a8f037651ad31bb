"""torch Datasets over in-memory uint8 splits; evaluation roles refuse generated samples."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

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
