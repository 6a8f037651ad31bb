"""Pixel conventions: the data layer hands out uint8 [N, 3, H, W]; the VAE-GAN works in float [-1, 1]."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1] (the range of the decoder's tanh)."""
    if images.dtype != torch.uint8:
        raise TypeError(f"to_model_range expects uint8 images, got {images.dtype}")
    return images.float().div_(127.5).sub_(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255], clamped and rounded (not truncated, which would darken by 0.5 on average)."""
    return images.detach().float().add(1.0).mul_(127.5).round_().clamp_(0, 255).to(torch.uint8)


def resize_uint8(images: torch.Tensor, *, size: int, batch_size: int = 1024) -> torch.Tensor:
    """Resize uint8 [N, 3, H, W] to size x size on tensors (antialiased bilinear), in chunks to bound memory."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    chunks = []
    for start in range(0, images.shape[0], batch_size):
        chunk = images[start : start + batch_size].float()
        chunk = F.interpolate(chunk, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        chunks.append(chunk.round_().clamp_(0, 255).to(torch.uint8))
    if not chunks:
        return images.new_zeros((0, images.shape[1], size, size))
    return torch.cat(chunks)


def is_greyscale(images: torch.Tensor) -> bool:
    """Whether every uint8 `b 3 h w` image has R = G = B (a greyscale dataset decoded to RGB, e.g. FER2013)."""
    return bool(images.shape[0] > 0 and (images[:, 0] == images[:, 1]).all() and (images[:, 1] == images[:, 2]).all())


LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601, PIL's convert("L")


def _luma(images: torch.Tensor) -> torch.Tensor:
    weights = torch.tensor(LUMA_WEIGHTS, device=images.device).view(1, 3, 1, 1)
    return (images.float() * weights).sum(dim=1, keepdim=True)


def to_greyscale(images: torch.Tensor) -> torch.Tensor:
    """uint8 `b 3 h w` -> the same with R = G = B = ITU-R 601 luma (PIL's convert("L") weights)."""
    luma = _luma(images).round_().clamp_(0, 255).to(torch.uint8)
    return luma.expand(-1, 3, -1, -1).contiguous()


def to_greyscale_float(images: torch.Tensor) -> torch.Tensor:
    """float `b 3 h w` (any range: the weights sum to 1) -> the same with R = G = B = luma, in the input's dtype."""
    return _luma(images).to(images.dtype).expand(-1, 3, -1, -1).contiguous()
