"""Differentiable augmentation of everything the discriminator sees (DiffAugment, Zhao et al. 2020).

Why here: D's expression classifier learns from ~1,800 real faces and the decoder is trained to satisfy it.
Without augmentation it read real validation faces at ~0.3 mean class recall while reading the decoder's
label-flipped faces as their new label at 0.7-1.0 (BENCHMARKS.md): the decoder met a classifier that had
memorised its training faces with patterns no expression judge reads. Augmenting real and fake alike, with
ops that keep the gradient to the decoder, regularises D and its classifier without teaching D that
augmented images are fake (the same ops on both sides, so nothing leaks into the generated images).
Measured on the embedded faces it did the opposite (off by default): D's classifier stayed at the class prior
and the decoder tiled eyes across the face to answer D's translated views (BENCHMARKS.md).

Every op works on float images in [-1, 1] (NCHW, any memory format) and draws its parameters from the
caller's torch.Generator, so a resumed run draws the same augmentation at the same step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

# Magnitudes from DiffAugment's defaults, in the [-1, 1] range: brightness +-0.5, saturation x[0, 2],
# contrast x[0.5, 1.5], translation up to 1/8 of the side (zero = mid-grey padding), a cutout square of
# `CUTOUT_RATIO` of the side. Cutout is a quarter of the side (DiffAugment: half): half a 64 px face hides
# the whole mouth or both eyes, the regions that carry the expression the classifier must read.
TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.25
# `blur` (not in DiffAugment): a Gaussian of standard deviation drawn per row from BLUR_SIGMAS, in pixels of a
# 64 px side (scaled with the side). Why: a classifier that reads only low-passed images cannot be satisfied by
# pixel-scale speckle, the pattern the decoder drew to meet the label loss (BENCHMARKS.md). Its response at the
# Nyquist frequency is e^-1.2 = 0.29 at sigma 0.5 and e^-4.9 at 1. Not more: a 64 px face's brows, eyelids and
# lips are 1-3 px strokes, and with sigma 1-2 the separate classifier learned nothing in 24 epochs
# (cross-entropy stayed at ln 7; BENCHMARKS.md).
BLUR_SIGMAS = (0.5, 1.0)


def _uniform(n: int, *, generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    return torch.rand(n, 1, 1, 1, generator=generator, device=like.device, dtype=like.dtype)


def _over_blocks(images: torch.Tensor, *draws: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """One draw per row of a block -> one per row of the whole stack (row i of every block alike)."""
    blocks = images.shape[0] // draws[0].shape[0]
    return tuple(draw.repeat(blocks, *([1] * (draw.ndim - 1))) for draw in draws)


def color(images: torch.Tensor, *, n: int, generator: torch.Generator) -> torch.Tensor:
    """Brightness, saturation and contrast, one draw of each per row of `n`."""
    brightness = _uniform(n, generator=generator, like=images) - 0.5
    saturation = _uniform(n, generator=generator, like=images) * 2.0
    contrast = _uniform(n, generator=generator, like=images) + 0.5
    brightness, saturation, contrast = _over_blocks(images, brightness, saturation, contrast)
    images = images + brightness
    channel_mean = images.mean(dim=1, keepdim=True)
    images = (images - channel_mean) * saturation + channel_mean
    image_mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return (images - image_mean) * contrast + image_mean


def translation(images: torch.Tensor, *, n: int, generator: torch.Generator) -> torch.Tensor:
    """An integer shift of up to TRANSLATION_RATIO of each side, zero-padded (gathered, so differentiable)."""
    _, _, height, width = images.shape
    pad_y, pad_x = max(1, int(height * TRANSLATION_RATIO)), max(1, int(width * TRANSLATION_RATIO))
    device = images.device
    shift_y = torch.randint(-pad_y, pad_y + 1, (n,), generator=generator, device=device)
    shift_x = torch.randint(-pad_x, pad_x + 1, (n,), generator=generator, device=device)
    shift_y, shift_x = _over_blocks(images, shift_y, shift_x)
    padded = F.pad(images, [pad_x, pad_x, pad_y, pad_y])
    rows = torch.arange(height, device=device)[None, :] + pad_y - shift_y[:, None]  # (N, H)
    cols = torch.arange(width, device=device)[None, :] + pad_x - shift_x[:, None]  # (N, W)
    batch = torch.arange(images.shape[0], device=device)[:, None, None]
    shifted = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (N, H, W, C)
    return shifted.permute(0, 3, 1, 2)


def cutout(images: torch.Tensor, *, n: int, generator: torch.Generator) -> torch.Tensor:
    """Zero (mid-grey) one square of CUTOUT_RATIO of the side per row, anywhere in the image."""
    _, _, height, width = images.shape
    size_y, size_x = max(1, int(height * CUTOUT_RATIO)), max(1, int(width * CUTOUT_RATIO))
    device = images.device
    top = torch.randint(0, height - size_y + 1, (n,), generator=generator, device=device)
    left = torch.randint(0, width - size_x + 1, (n,), generator=generator, device=device)
    top, left = _over_blocks(images, top, left)
    ys = torch.arange(height, device=device)[None, :, None]
    xs = torch.arange(width, device=device)[None, None, :]
    inside = (ys >= top[:, None, None]) & (ys < (top + size_y)[:, None, None])
    inside = inside & (xs >= left[:, None, None]) & (xs < (left + size_x)[:, None, None])
    return images * (~inside).unsqueeze(1).to(images.dtype)


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """A separable Gaussian blur with its own standard deviation (pixels) per row, edges reflected: one grouped
    convolution per axis over all rows at once (each row and channel its own kernel). Differentiable."""
    batch, channels, height, width = images.shape
    sigma = sigma.to(device=images.device, dtype=images.dtype).reshape(batch)
    radius = min(max(1, math.ceil(3 * float(sigma.max()))), height - 1, width - 1)
    offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    kernel = torch.exp(-(offsets[None, :] ** 2) / (2 * sigma[:, None] ** 2))
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(channels, dim=0)  # (N*C, taps)
    flat = F.pad(images.reshape(1, batch * channels, height, width), [radius] * 4, mode="reflect")
    flat = F.conv2d(flat, kernel[:, None, None, :], groups=batch * channels)  # along rows
    flat = F.conv2d(flat, kernel[:, None, :, None], groups=batch * channels)  # along columns
    return flat.reshape(batch, channels, height, width)


def blur(images: torch.Tensor, *, n: int, generator: torch.Generator) -> torch.Tensor:
    """gaussian_blur with one standard deviation per row drawn from BLUR_SIGMAS (at a 64 px side)."""
    scale = min(images.shape[-2:]) / 64
    low, high = (sigma * scale for sigma in BLUR_SIGMAS)
    (sigma,) = _over_blocks(images, low + (high - low) * _uniform(n, generator=generator, like=images).flatten())
    return gaussian_blur(images, sigma)


OPS: dict[str, Callable[..., torch.Tensor]] = {
    "color": color,
    "translation": translation,
    "cutout": cutout,
    "blur": blur,
}


def parse_policy(policy: Sequence[str] | str | None, *, setting: str = "vaegan.losses.diff_augment") -> tuple[str, ...]:
    """A policy setting (`setting` names it in errors) -> op names in order; [] / "" / None is off. Unknown names
    are refused."""
    if policy is None or policy == "":
        return ()
    names = tuple(part.strip() for part in policy.split(",")) if isinstance(policy, str) else tuple(policy)
    unknown = [name for name in names if name not in OPS]
    if unknown:
        raise ValueError(f"{setting}: unknown op(s) {unknown}; choose from {sorted(OPS)}")
    return names


def diff_augment(
    images: torch.Tensor, *, policy: Sequence[str], generator: torch.Generator, groups: int = 1
) -> torch.Tensor:
    """Apply `policy`'s ops in order. The batch is `groups` stacked blocks of equal size (real faces, then
    their reconstructions, ...): row i of every block gets the same draw, so paired comparisons (D's feature
    loss between a face and its reconstruction) compare images transformed alike."""
    if not policy:
        return images
    if images.shape[0] % groups:
        raise ValueError(f"diff_augment: batch of {images.shape[0]} does not split into {groups} equal blocks")
    n = images.shape[0] // groups
    for name in policy:
        images = OPS[name](images, n=n, generator=generator)
    return images
