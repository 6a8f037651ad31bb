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
- ``grain``: the decoder's image plus pixel noise at the level the real faces carry and the decoder
  leaves out. The decoder draws faces smoother than they are (pixel-scale energy of the study's 96-epoch
  reconstructions 0.0035 against the real faces' 0.0052, BENCHMARKS.md "Real vs generated against training
  length"), a signature a classifier can learn instead of the expression. The noise's std is matched per
  class (`grain_std_for`): the class's real faces' pixel-scale energy minus that of their own decoder
  reconstructions, over what unit noise adds to that energy. Everything else is the decoder's own image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..images import resize_uint8, to_model_range, to_uint8
from ..metrics import high_frequency_energy
from .perturbations import Perturbation

RENDERS = ("residual", "decoder", "grain")
# Renderings that draw the sample from the decoder alone (no real source image enters the pixels).
DECODER_RENDERS = ("decoder", "grain")


@dataclass(frozen=True, kw_only=True)
class Grain:
    """The `grain` rendering's noise: Gaussian, `std` in the model's [-1, 1] range (2/255 per uint8 step), drawn
    from `generator` (a CPU generator, so the images do not depend on the device). `greyscale`: one noise plane
    shared by the three channels, so a greyscale dataset's samples stay grey (R = G = B)."""

    std: float
    generator: torch.Generator | None = None
    greyscale: bool = False

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 `b c h w` -> the same plus the noise, rounded and clamped (uint8, on `images`' device)."""
        if self.std <= 0:
            return images
        b, c, h, w = images.shape
        noise = torch.randn((b, 1 if self.greyscale else c, h, w), generator=self.generator)
        noisy = to_model_range(images) + self.std * noise.to(images.device).expand(b, c, h, w)
        return to_uint8(noisy.clamp_(-1.0, 1.0))


def _unit_noise_energy(*, size: int, channels: int) -> float:
    """The pixel-scale energy (vaegan.metrics.high_frequency_energy) unit Gaussian noise adds at this size: the
    factor between a noise variance and the energy it adds (about 0.76 at 64 px), measured, borders included."""
    noise = torch.randn((8, channels, size, size), generator=torch.Generator().manual_seed(0))
    return float(high_frequency_energy(noise).mean())


def grain_std_for(real: torch.Tensor, reconstructed: torch.Tensor) -> float:
    """The noise std (model range) that brings the decoder's images to the real faces' pixel-scale energy.

    `real` and `reconstructed`: uint8 `b c h w`, the same faces and their decoder reconstructions dec(mu(x), y)
    at the data's size. Independent noise adds its variance times a fixed factor to the energy, so the std is
    sqrt(max(0, E_real - E_reconstructed) / factor); 0 where the decoder is already as grainy as the faces."""
    if real.shape != reconstructed.shape or real.dtype != torch.uint8 or reconstructed.dtype != torch.uint8:
        raise ValueError(
            f"grain_std_for needs uint8 real faces and their reconstructions of one shape, got {real.dtype} "
            f"{tuple(real.shape)} and {reconstructed.dtype} {tuple(reconstructed.shape)}"
        )
    if len(real) == 0:
        return 0.0
    missing = float(high_frequency_energy(to_model_range(real)).mean()) - float(
        high_frequency_energy(to_model_range(reconstructed)).mean()
    )
    factor = _unit_noise_energy(size=real.shape[-1], channels=real.shape[1])
    return max(0.0, missing / factor) ** 0.5


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
    grain: Grain | None = None,
) -> torch.Tensor:
    """uint8 `b 3 image_size image_size` on `z`'s device (the augmenter moves to the CPU only what it writes) for
    codes `z` decoded with `labels`.

    ``residual`` needs each candidate's real source: `source_images` uint8 at `image_size`,
    `source_mu` its code and `source_labels` the label it was encoded with. ``grain`` needs `grain`, the noise
    matched to the class's real faces (`grain_std_for`).
    """
    decoded = model.decode(z, labels.to(z.device))
    if check_render(mode) in DECODER_RENDERS:
        images = resize_uint8(to_uint8(decoded), size=image_size)
        if mode == "grain":
            if grain is None:
                raise ValueError("the grain rendering needs the noise matched to the real faces (grain=Grain(...))")
            images = grain.apply(images)
        return images
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
