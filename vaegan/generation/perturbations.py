"""Latent perturbation strategies: how a new code is made from the codes of real minority images.

Each strategy is one small registered unit, so an ablation row is one name. The semantic
augmentation of Li et al. 2024 (arXiv 2411.17254) moves a real image's code within its
class; `reconstruct` and `prior` are the controls that separate "the VAE-GAN's look"
(reconstructions, no new variation) from "new variation anchored on real images" (prior
samples ignore the real minority images altogether).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .guidance import Guidance


@dataclass(frozen=True)
class LatentBatch:
    """Codes of the source images for one batch of candidates (all of one class).

    `mu`, `logvar`: the encoder's posterior for each candidate's source; `partner_mu`: the code
    of a second real image of the same class (interpolation only). `noise` is standard normal
    `b latent_dim`, `mix` uniform [0, 1) `b 1`; both are drawn by the caller from a seeded
    generator so the result is reproducible.
    """

    mu: torch.Tensor
    logvar: torch.Tensor
    partner_mu: torch.Tensor
    noise: torch.Tensor
    mix: torch.Tensor
    # Square root of the class's covariance of real codes, L with L L^T = Cov(mu | class),
    # `latent_dim latent_dim` (None where the caller has no class statistics).
    class_scale: torch.Tensor | None = None


@dataclass(frozen=True)
class Perturbation:
    name: str
    description: str
    # How many real source images a candidate is made from (0: prior, 2: interpolation).
    sources: int
    default_strength: float
    apply: Callable[[LatentBatch, float], torch.Tensor]
    # Whether `apply` needs LatentBatch.class_scale (the class's covariance of real codes).
    class_statistics: bool = False
    # How a code becomes an image unless the caller says otherwise (vaegan.generation.render.RENDERS):
    # "residual" keeps the real source's details and adds the decoder's change; "decoder" is the
    # decoder's own image (the controls, whose point is the VAE-GAN's own look, and source-free draws).
    render: str = "residual"
    # Where the source codes come from: False, real images of the class being filled; True, real images
    # of the classes *larger* than it (M2m-style transfer: a majority face's code decoded with the
    # minority label borrows the majority's identities and poses; every other class for the largest).
    donors: bool = False
    # Gradient steps on the codes that make the filter's judge call the decoded image the target class
    # (vaegan.generation.guidance; M2m in latent space). None: the codes are used as `apply` makes them.
    guidance: Guidance | None = None
    # The filter's confidence floor unless the user sets one: 0.5, and M2m's 0.9 for guided samples (the
    # judge steered them, so only its confident verdicts are kept).
    min_confidence: float = 0.5


def _gaussian(batch: LatentBatch, strength: float) -> torch.Tensor:
    # A scaled draw from the image's own posterior: moves most along the directions the
    # encoder is unsure about, which are the ones the decoder treats as free variation.
    # Default a=2: with the low KL weight that keeps reconstructions sharp the posterior is
    # narrow, and a=1 decodes to near-copies of the reconstruction (mean |diff| ~0.015).
    return batch.mu + strength * torch.exp(0.5 * batch.logvar) * batch.noise


def _isotropic(batch: LatentBatch, strength: float) -> torch.Tensor:
    return batch.mu + strength * batch.noise


def _interpolate(batch: LatentBatch, strength: float) -> torch.Tensor:
    # SMOTE in latent space: a point on the segment towards another real code of the class;
    # strength caps how far along the segment (1 = anywhere up to the partner).
    return batch.mu + min(strength, 1.0) * batch.mix * (batch.partner_mu - batch.mu)


def _transfer(batch: LatentBatch, strength: float) -> torch.Tensor:
    # M2m (Kim et al. 2020) translates majority images into the minority; a conditional VAE does it by
    # decoding a majority face's code with the minority label (the code carries identity and pose, the
    # label the expression). `batch.mu` are the donors' codes; a scaled posterior draw around them
    # keeps two candidates from one donor apart.
    return batch.mu + strength * torch.exp(0.5 * batch.logvar) * batch.noise


def _reconstruct(batch: LatentBatch, strength: float) -> torch.Tensor:
    return batch.mu


def _semantic(batch: LatentBatch, strength: float) -> torch.Tensor:
    # ISDA-style semantic directions (Wang et al. 2019; Li et al. 2024 in latent space): move a
    # real code along the directions in which real codes *of its class* vary (pose, identity,
    # intensity), z = mu + a * L eps with L L^T = Cov(mu | class). Unlike the posterior's sigma,
    # which marks the directions the decoder learned to ignore, these are directions it decodes.
    if batch.class_scale is None:
        raise ValueError("the semantic perturbation needs the class's latent covariance (LatentBatch.class_scale)")
    return batch.mu + strength * batch.noise @ batch.class_scale.T


def class_latent_scale(mu: torch.Tensor, *, shrinkage: float = 0.1) -> torch.Tensor:
    """L with L L^T = the class's covariance of real codes, shrunk towards its diagonal (Ledoit-Wolf
    style) so a class with fewer images than latent dimensions still gets a full-rank factor."""
    mu = mu.double()
    if mu.shape[0] < 2:
        return torch.zeros(mu.shape[1], mu.shape[1], dtype=mu.dtype).float()
    cov = torch.cov(mu.T)
    cov = (1 - shrinkage) * cov + shrinkage * torch.diag(torch.diagonal(cov))
    cov = cov + 1e-6 * torch.eye(cov.shape[0], dtype=cov.dtype)
    return torch.linalg.cholesky(cov).float()


def _prior(batch: LatentBatch, strength: float) -> torch.Tensor:
    # z ~ N(0, strength^2 I) decoded with the class label; strength is a temperature.
    return strength * batch.noise


PERTURBATIONS: dict[str, Perturbation] = {
    p.name: p
    for p in (
        Perturbation(
            name="gaussian",
            description="z = mu + a*sigma*eps around one real image's code",
            sources=1,
            default_strength=2.0,
            apply=_gaussian,
        ),
        Perturbation(
            name="isotropic",
            description="z = mu + a*eps around one real image's code",
            sources=1,
            default_strength=0.5,
            apply=_isotropic,
        ),
        Perturbation(
            name="semantic",
            description="z = mu + a*L*eps along the class's own latent covariance (ISDA-style)",
            sources=1,
            default_strength=0.5,
            apply=_semantic,
            class_statistics=True,
        ),
        Perturbation(
            name="interpolate",
            description="z between the codes of two real images of the class (latent SMOTE)",
            sources=2,
            default_strength=1.0,
            apply=_interpolate,
        ),
        Perturbation(
            name="transfer",
            description="z = mu + a*sigma*eps around a real image of a larger class, decoded with "
            "the minority label (M2m-style)",
            sources=1,
            default_strength=1.0,
            apply=_transfer,
            render="decoder",
            donors=True,
        ),
        Perturbation(
            name="guided_transfer",
            description="a larger class's code (z = mu + a*sigma*eps) moved by 10 gradient steps until the judge "
            "calls its decode with the minority label the minority class (M2m in latent space)",
            sources=1,
            default_strength=0.5,
            apply=_transfer,
            render="decoder",
            donors=True,
            guidance=Guidance(),
            min_confidence=0.9,
        ),
        Perturbation(
            name="reconstruct",
            description="z = mu: reconstructions only (control, a = 0)",
            sources=1,
            default_strength=0.0,
            apply=_reconstruct,
            render="decoder",
        ),
        Perturbation(
            name="prior",
            description="z ~ N(0, a^2 I) with the class label (control, no real source)",
            sources=0,
            default_strength=1.0,
            apply=_prior,
            render="decoder",
        ),
    )
}


def get_perturbation(name: str) -> Perturbation:
    if name not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation strategy {name!r}; choose one of {sorted(PERTURBATIONS)}")
    return PERTURBATIONS[name]


def class_scale_for(perturbation: Perturbation, class_mu: torch.Tensor) -> torch.Tensor | None:
    """LatentBatch.class_scale for codes of one class, on their device; None when the perturbation needs none.
    The augmenter, the VAE-GAN's metrics and its grids all take the class statistics from here."""
    return class_latent_scale(class_mu.cpu()).to(class_mu.device) if perturbation.class_statistics else None


def perturb_codes(
    perturbation: Perturbation,
    *,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    labels: torch.Tensor,
    strength: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """New codes for a labelled batch of real codes (classes mixed), with the augmenter's own formula.

    The VAE-GAN's validation metrics and sample grids call this, so what they measure is what
    `augment.py --strategy <name>` produces: partners and class covariances come from the codes
    of the same class within the batch.
    """
    if perturbation.guidance is not None:
        raise ValueError(
            f"{perturbation.name} steers codes with a real-data classifier (the augmenter's judge), which the "
            "VAE-GAN's own metrics and grids do not have; use its unguided form, transfer"
        )
    strength = perturbation.default_strength if strength is None else float(strength)
    device = mu.device
    noise = torch.randn(mu.shape, generator=generator, device=device)
    mix = torch.rand((mu.shape[0], 1), generator=generator, device=device)
    out = torch.empty_like(mu)
    for label in labels.unique():
        rows = (labels == label).nonzero().flatten()
        source_rows = rows
        if perturbation.donors:  # codes of the batch's other classes (their sizes are not known here)
            others = (labels != label).nonzero().flatten()
            if len(others):
                pick = torch.randint(len(others), (len(rows),), generator=generator, device=device)
                source_rows = others[pick]
        class_mu = mu[source_rows]
        partner = class_mu[torch.roll(torch.arange(len(rows), device=device), 1)]
        batch = LatentBatch(
            mu=class_mu,
            logvar=logvar[source_rows],
            partner_mu=partner,
            noise=noise[rows],
            mix=mix[rows],
            class_scale=class_scale_for(perturbation, class_mu),
        )
        out[rows] = perturbation.apply(batch, strength).to(out.dtype)
    return out
