"""How a new latent code becomes an image: the one formula the augmenter, the VAE-GAN's validation
metrics and its sample grids share.

- ``decoder``: the decoder's image of the new code, resized to the data's image size. At the CPU
  preset's 32 px the brows, lids and lip corners that carry an expression are a pixel or two wide
  and come back blurred: a judge trained on the real 64 px faces recognises even *real* validation
  faces far less after a 32 px round trip (README, "Generated samples").
- ``residual`` (detail-preserving): the real source image plus the decoder's *change*,
  ``x_src + up(dec(z', y) - dec(mu_src, y_src))``. The decoder's own blur cancels out of the
  difference, so the sample keeps the source's sharp details wherever the new code does not move
  them, and takes the VAE-GAN's low-frequency variation (skin, hair, lighting, background, face
  shape and pose) from the perturbation. It is image editing through the generator (Zhu et al.
  2016 transfer a generator's change onto the real photo the same way); a sample is still made by
  perturbing the latent code of a real minority image, and `reconstruct` under this rendering is
  an exact copy of its source (so that control uses ``decoder``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..images import resize_uint8, to_model_range, to_uint8
from .perturbations import Perturbation

RENDERS = ("residual", "decoder")


def check_render(name: str) -> str:
    if name not in RENDERS:
        raise ValueError(f"unknown rendering {name!r}; choose one of {list(RENDERS)}")
    return name


def render_for(perturbation: Perturbation, mode: str | None) -> str:
    """The rendering a perturbation's samples get (its own when `mode` is None), refused where it cannot
    work; the augmenter and the VAE-GAN's metrics and grids both ask here."""
    mode = perturbation.render if mode is None else check_render(str(mode))
    if mode == "residual" and not perturbation.sources:
        raise ValueError(
            f"the residual rendering adds the decoder's change to a real source image of the class, and "
            f"{perturbation.name} has none; use the decoder rendering (--render decoder, grid.render=decoder)"
        )
    if mode == "residual" and perturbation.donors:
        raise ValueError(
            f"the residual rendering would keep the expression of the other class's face that {perturbation.name} "
            "starts from; use the decoder rendering (--render decoder, grid.render=decoder)"
        )
    return mode


def resize_float(images: torch.Tensor, *, size: int) -> torch.Tensor:
    """float `b c h w` -> `b c size size` (antialiased when shrinking; plain bilinear when enlarging)."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)


@torch.no_grad()
def render(
    model,
    *,
    z: torch.Tensor,
    labels: torch.Tensor,
    mode: str,
    image_size: int,
    source_images: torch.Tensor | None = None,
    source_mu: torch.Tensor | None = None,
    source_labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """uint8 `b 3 image_size image_size` on `z`'s device (the augmenter moves to the CPU only what it writes) for
    codes `z` decoded with `labels`.

    ``residual`` needs each candidate's real source: `source_images` uint8 at `image_size`,
    `source_mu` its code and `source_labels` the label it was encoded with.
    """
    decoded = model.decode(z, labels.to(z.device))
    if check_render(mode) == "decoder":
        return resize_uint8(to_uint8(decoded), size=image_size)
    if source_images is None or source_mu is None or source_labels is None:
        raise ValueError(
            "the residual rendering needs each candidate's real source image, code and label "
            "(a source-free strategy such as prior must use the decoder rendering)"
        )
    if source_images.shape[-1] != image_size:
        raise ValueError(f"source images are {source_images.shape[-1]}px, the rendering asks for {image_size}px")
    change = decoded.float() - model.decode(source_mu, source_labels.to(z.device)).float()
    base = to_model_range(source_images.to(z.device))
    return to_uint8((base + resize_float(change, size=image_size)).clamp_(-1.0, 1.0))
