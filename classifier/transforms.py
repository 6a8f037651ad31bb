"""Batched augmentation on tensors, on the training device: flip, small affine (rotation, scale,
translation: a random crop-and-resize in one warp) and colour jitter. One kernel per op for the
whole batch instead of per-image PIL work, so the loader is never the bottleneck."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class TensorAugment(nn.Module):
    """float images in [0, 1], [N, 3, H, W] -> augmented, same shape; identity in eval mode."""

    def __init__(
        self,
        *,
        flip: float = 0.5,
        rotate_degrees: float = 10.0,
        scale: tuple[float, float] = (0.9, 1.1),
        translate: float = 0.08,
        brightness: float = 0.2,
        contrast: float = 0.2,
        saturation: float = 0.2,
    ) -> None:
        super().__init__()
        self.flip = flip
        self.rotate_degrees = rotate_degrees
        self.scale = tuple(scale)
        self.translate = translate
        self.brightness = brightness
        self.contrast = contrast
        self.saturation = saturation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, device = x.shape[0], x.device
        uniform = lambda lo, hi: torch.empty(n, device=device).uniform_(lo, hi)  # noqa: E731
        # Flip + rotation + isotropic scale + translation as one affine warp (sampling grid).
        angle = uniform(-self.rotate_degrees, self.rotate_degrees) * (math.pi / 180.0)
        zoom = uniform(*self.scale)
        sign = torch.where(torch.rand(n, device=device) < self.flip, -1.0, 1.0)
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        theta = torch.zeros(n, 2, 3, device=device)
        theta[:, 0, 0], theta[:, 0, 1] = cos * sign, -sin
        theta[:, 1, 0], theta[:, 1, 1] = sin * sign, cos
        theta[:, 0, 2], theta[:, 1, 2] = (
            uniform(-self.translate, self.translate),
            uniform(-self.translate, self.translate),
        )
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        # Colour jitter (brightness, contrast, saturation), per image.
        view = (n, 1, 1, 1)
        x = x * uniform(1 - self.brightness, 1 + self.brightness).view(view)
        gray = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
        x = (x - gray.mean(dim=(2, 3), keepdim=True)) * uniform(1 - self.contrast, 1 + self.contrast).view(
            view
        ) + gray.mean(dim=(2, 3), keepdim=True)
        gray = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
        x = (x - gray) * uniform(1 - self.saturation, 1 + self.saturation).view(view) + gray
        return x.clamp_(0.0, 1.0)
