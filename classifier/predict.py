"""Class probabilities for uint8 images from a loaded classifier, with the training-time preprocessing."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .model import preprocess


@torch.no_grad()
def predict_logits(
    model: nn.Module, images_uint8: torch.Tensor, *, meta: dict[str, Any], batch_size: int = 256,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Logits [N, C] (post-hoc logit adjustment included, if the run used it), on the CPU."""
    if images_uint8.dtype != torch.uint8 or images_uint8.ndim != 4 or images_uint8.shape[1] != 3:
        raise ValueError(f"images must be uint8 [N, 3, H, W], got {images_uint8.dtype} {tuple(images_uint8.shape)}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval().to(device)
    outputs = []
    use_bf16 = device.type == "cuda"
    for start in range(0, len(images_uint8), batch_size):
        x = preprocess(images_uint8[start : start + batch_size].to(device, non_blocking=True),
                       input_size=int(meta["input_size"]), mean=meta["mean"], std=meta["std"])
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16):
            outputs.append(model(x).float().cpu())
    model.train(was_training)
    num_classes = len(meta["class_names"])
    return torch.cat(outputs) if outputs else torch.zeros(0, num_classes)


def predict_proba(
    model: nn.Module, images_uint8: torch.Tensor, *, meta: dict[str, Any], batch_size: int = 256,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Softmax probabilities [N, C] in `meta['class_names']` order."""
    return predict_logits(model, images_uint8, meta=meta, batch_size=batch_size, device=device).softmax(dim=1)


def predict_proba_flip(
    model: nn.Module, images_uint8: torch.Tensor, *, meta: dict[str, Any], batch_size: int = 256,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Horizontal-flip test-time augmentation: the mean of the probabilities of each image and of its
    mirror image (faces are near-symmetric and training flips them, so both views are in-distribution)."""
    kwargs = {"meta": meta, "batch_size": batch_size, "device": device}
    return (predict_proba(model, images_uint8, **kwargs) + predict_proba(model, images_uint8.flip(-1), **kwargs)) / 2
