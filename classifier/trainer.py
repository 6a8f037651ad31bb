"""The Lightning Trainer arguments a classifier run or evaluation uses, and which process reports."""

from __future__ import annotations

import os
from typing import Any

import torch
from omegaconf import DictConfig

from faces.config import trainer_uses_gpu
from faces.io import plain


def trainer_kwargs(trainer_cfg: DictConfig, *, freeze_epochs: int = 0) -> dict[str, Any]:
    kwargs = dict(plain(trainer_cfg))
    if trainer_uses_gpu(kwargs) and not torch.cuda.is_available():
        raise RuntimeError(f"trainer.accelerator={kwargs.get('accelerator')} but no CUDA device is visible; use trainer=cpu")
    # Stage 1 runs the frozen backbone under no_grad: DDP must be told some parameters get no gradient.
    if kwargs.get("strategy") == "ddp" and freeze_epochs > 0:
        kwargs["strategy"] = "ddp_find_unused_parameters_true"
    return kwargs


def is_global_zero() -> bool:
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) == 0
