"""Class probabilities for uint8 images from a loaded classifier, with the training-time preprocessing."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from faces.features import cuda_fast_math

from .model import preprocess


def prediction_channels_last(meta: dict[str, Any], *, cuda: bool) -> bool:
    """Whether a checkpoint's model predicts in NHWC: always on CUDA; on the CPU where its run trained so
    (`cpu_channels_last` in its metadata, the model's measured choice; older checkpoints: contiguous)."""
    return cuda or bool(meta.get("cpu_channels_last", False))


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    images_uint8: torch.Tensor,
    *,
    meta: dict[str, Any],
    batch_size: int = 256,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Logits [N, C] (post-hoc logit adjustment included, if the run used it), fp32, on the CPU.

    On CUDA the backbone runs in bf16 autocast, channels_last (TF32 convolutions); the head and the post-hoc bias
    stay fp32 (FERClassifier.classify), so probabilities and argmax ties do not hang on bf16 rounding. On the CPU
    it stays fp32, channels_last where the checkpoint says its model trained so (`cpu_channels_last`: the same
    arithmetic in oneDNN's NHWC kernels; EfficientNet-Lite0 predicts 1.8x faster, BENCHMARKS.md).
    """
    if images_uint8.dtype != torch.uint8 or images_uint8.ndim != 4 or images_uint8.shape[1] != 3:
        raise ValueError(f"images must be uint8 [N, 3, H, W], got {images_uint8.dtype} {tuple(images_uint8.shape)}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval().to(device)
    outputs = []
    cuda = device.type == "cuda"
    channels_last = prediction_channels_last(meta, cuda=cuda)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    with cuda_fast_math(device):
        for start in range(0, len(images_uint8), batch_size):
            x = preprocess(
                images_uint8[start : start + batch_size].to(device, non_blocking=True),
                input_size=int(meta["input_size"]),
                mean=meta["mean"],
                std=meta["std"],
            )
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=cuda):
                logits = model(x.contiguous(memory_format=torch.channels_last) if channels_last else x)
            outputs.append(logits.float().cpu())
    model.train(was_training)
    num_classes = len(meta["class_names"])
    return torch.cat(outputs) if outputs else torch.zeros(0, num_classes)


def predict_proba(
    model: nn.Module,
    images_uint8: torch.Tensor,
    *,
    meta: dict[str, Any],
    batch_size: int = 256,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Softmax probabilities [N, C] in `meta['class_names']` order."""
    return predict_logits(model, images_uint8, meta=meta, batch_size=batch_size, device=device).softmax(dim=1)


def predict_proba_flip(
    model: nn.Module,
    images_uint8: torch.Tensor,
    *,
    meta: dict[str, Any],
    batch_size: int = 256,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Horizontal-flip test-time augmentation: the mean of the probabilities of each image and of its
    mirror image (faces are near-symmetric and training flips them, so both views are in-distribution)."""
    kwargs = {"meta": meta, "batch_size": batch_size, "device": device}
    return (predict_proba(model, images_uint8, **kwargs) + predict_proba(model, images_uint8.flip(-1), **kwargs)) / 2
