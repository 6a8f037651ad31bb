"""Planning and generating candidates: what each class still needs, and its fixed candidate batches.

Determinism is organised around fixed candidate batches: candidate `k` of class `c` lives in batch
`k // batch_size`, whose sources and noise depend only on (seed, c, batch), so any run that reaches a
batch decodes exactly the same images.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from faces import FaceSplit

from ..images import is_greyscale, resize_uint8, to_greyscale, to_model_range
from .guidance import Guide, guide_codes
from .perturbations import LatentBatch, class_scale_for
from .render import Grain, grain_std_for, render
from .request import AugmentError, AugmentSettings, GenerationRequest


def _batch_generator(*, seed: int, label: int, batch: int) -> torch.Generator:
    # One independent stream per (seed, class, batch), on the CPU so draws do not depend on
    # the device.
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, label, batch]).generate_state(1)[0]))


def _source_order(*, n_sources: int, seed: int, label: int, epoch: int) -> torch.Tensor:
    """A fresh permutation of the sources per pass, so every real image is used about equally."""
    generator = torch.Generator().manual_seed(
        int(np.random.SeedSequence([seed, label, 10**6 + epoch]).generate_state(1)[0])
    )
    return torch.randperm(n_sources, generator=generator)


def source_indices(*, candidates: Sequence[int], n_sources: int, seed: int, label: int) -> list[int]:
    """Which source (0..n_sources-1) candidate k uses: pass k // n through a per-pass permutation."""
    orders: dict[int, torch.Tensor] = {}
    result = []
    for k in candidates:
        epoch = k // n_sources
        if epoch not in orders:
            orders[epoch] = _source_order(n_sources=n_sources, seed=seed, label=label, epoch=epoch)
        result.append(int(orders[epoch][k % n_sources]))
    return result


@torch.no_grad()
def _encode_sources(model, images: torch.Tensor, labels: torch.Tensor, *, device: torch.device, batch_size: int):
    mus, logvars = [], []
    for start in range(0, len(images), batch_size):
        x = to_model_range(resize_uint8(images[start : start + batch_size], size=model.resolution).to(device))
        mu, logvar = model.encode(x, labels[start : start + batch_size].to(device))
        mus.append(mu.float())
        logvars.append(logvar.float())
    return torch.cat(mus), torch.cat(logvars)


@dataclass
class ClassPlan:
    """What one class still needs: its real source images (the fit split's) and its candidate budget."""

    label: int
    name: str
    need: int
    budget: int
    members: torch.Tensor  # indices into the fit split
    source_images: torch.Tensor  # uint8 [n, 3, H, W]
    source_labels: torch.Tensor  # the label each source was encoded with (its own)
    # The class's own real images, for the pixel near-duplicate test (None: the sources are the class's own).
    class_images: torch.Tensor | None = None
    mu: torch.Tensor | None = None
    logvar: torch.Tensor | None = None
    class_scale: torch.Tensor | None = None  # L with L L^T = Cov(mu | class), for the semantic perturbation
    # Samples of this class accepted so far (earlier runs' from disk, then this run's), in candidate
    # order: a new candidate too close to any of them is a near-duplicate.
    accepted: torch.Tensor | None = None
    accepted_features: torch.Tensor | None = None  # their features, with a DuplicateFilter
    # A greyscale dataset (every real image R = G = B) gets greyscale samples: the decoder's RGB output would
    # otherwise tint them, and "tinted" would mark every generated (minority) face for the classifier.
    greyscale: bool = False
    # The grain rendering's noise std (model range), matched to this class's real faces; 0 for other renderings.
    grain_std: float = 0.0


# Real faces per class the grain level is measured on (evenly spaced over the class): the estimate of a mean
# energy settles long before that, and RAF-DB's 4,772 Happiness faces need not all be decoded for it.
GRAIN_FACES_PER_CLASS = 256


@torch.no_grad()
def class_grain_std(
    model, images: torch.Tensor, *, label: int, image_size: int, device: torch.device, batch_size: int
) -> float:
    """The grain rendering's noise std for one class (render.grain_std_for): its real faces `images` (uint8, the
    data's size) against their decoder reconstructions dec(mu(x), y), rendered as the samples are."""
    pick = torch.linspace(0, len(images) - 1, min(len(images), GRAIN_FACES_PER_CLASS)).round().long().unique()
    real = images[pick].to(device)
    labels = torch.full((len(real),), label, dtype=torch.long)
    mu, _ = _encode_sources(model, real, labels, device=device, batch_size=batch_size)
    decoded = [
        render(
            model, z=mu[s : s + batch_size], labels=labels[s : s + batch_size], mode="decoder", image_size=image_size
        )
        for s in range(0, len(mu), batch_size)
    ]
    reconstructed = torch.cat(decoded) if decoded else torch.zeros_like(real)
    if is_greyscale(images):
        reconstructed = to_greyscale(reconstructed)  # as the samples are written
    return grain_std_for(real.cpu(), reconstructed.cpu())


@dataclass
class CandidateBatch:
    """One fixed batch of candidates of one class: images, their sources and the filter's verdicts."""

    batch: int
    candidates: list[int]
    images: torch.Tensor  # uint8 [B, 3, H, W] at the data's image size
    sources: list[int]  # index into plan.members per candidate ([] for source-free strategies)
    partners: list[int]
    reason: torch.Tensor | None = None
    judge_label: torch.Tensor | None = None
    judge_confidence: torch.Tensor | None = None
    distance: torch.Tensor | None = None
    features: torch.Tensor | None = None  # DuplicateFilter features of the candidates it embedded (NaN elsewhere)


def donor_indices(labels: torch.Tensor, *, label: int, counts: Sequence[int]) -> torch.Tensor:
    """Fit-split indices of the real images a donor strategy may start from for class `label`: those of
    the classes with more real images (M2m translates majority into minority), or of every other class
    when none is larger."""
    larger = [c for c, n in enumerate(counts) if n > counts[label]]
    pool = larger or [c for c in range(len(counts)) if c != label]
    return torch.isin(labels, torch.as_tensor(pool, dtype=labels.dtype)).nonzero().flatten()


def plan(
    model,
    fit: FaceSplit,
    *,
    request: GenerationRequest,
    targets: Sequence[int],
    done: Mapping[str, int],
    accepted: Mapping[str, torch.Tensor] | None = None,
) -> list[ClassPlan]:
    """The classes below their target, with their sources encoded once (not per batch) and the
    samples already accepted for them (`accepted`, e.g. read back from an interrupted run's PNGs)."""
    perturbation, device = request.perturbation, request.torch_device
    real_counts = fit.class_counts()
    greyscale = is_greyscale(fit.images)
    plans = []
    for label, name in enumerate(fit.class_names):
        need = targets[label] - real_counts[label] - done.get(name, 0)
        if need <= 0:
            continue
        own = (fit.labels == label).nonzero().flatten()
        members = donor_indices(fit.labels, label=label, counts=real_counts) if perturbation.donors else own
        if perturbation.sources and len(members) == 0:
            raise AugmentError(
                f"class {name} has no real training images to {'borrow' if perturbation.donors else 'perturb'}"
            )
        # The images a batch is compared with live on the device, beside the candidates it renders there.
        earlier = (accepted or {}).get(name, torch.zeros((0, *fit.images.shape[1:]), dtype=torch.uint8))
        item = ClassPlan(
            label=label,
            name=name,
            need=need,
            members=members,
            source_images=fit.images[members].to(device),
            source_labels=fit.labels[members],
            class_images=fit.images[own].to(device) if perturbation.donors else None,
            budget=int(np.ceil(request.max_attempts_factor * (targets[label] - real_counts[label]))),
            accepted=earlier.to(device),
            greyscale=greyscale,
        )
        if perturbation.sources:
            item.mu, item.logvar = _encode_sources(
                model, item.source_images, item.source_labels, device=device, batch_size=request.batch_size
            )
            item.class_scale = class_scale_for(perturbation, item.mu)
        if request.render == "grain" and len(own):
            item.grain_std = class_grain_std(
                model,
                fit.images[own],
                label=label,
                image_size=fit.images.shape[-1],
                device=device,
                batch_size=request.batch_size,
            )
        plans.append(item)
    return plans


def generate(
    model, item: ClassPlan, batch: int, *, request: GenerationRequest, image_size: int, guide: Guide | None = None
) -> CandidateBatch:
    """Decode candidate batch `batch` of a class; its noise and sources depend only on (seed, class, batch).
    The request's rendering says how codes become images (vaegan.generation.render); a guided strategy's codes
    are first steered by `guide` (the judge's differentiable logits, vaegan.generation.guidance)."""
    perturbation, seed, batch_size, device = (
        request.perturbation,
        request.seed,
        request.batch_size,
        request.torch_device,
    )
    candidates = list(range(batch * batch_size, (batch + 1) * batch_size))
    generator = _batch_generator(seed=seed, label=item.label, batch=batch)
    noise = torch.randn((batch_size, model.latent_dim), generator=generator)
    mix = torch.rand((batch_size, 1), generator=generator)
    labels = torch.full((batch_size,), item.label, dtype=torch.long)
    n = len(item.members)
    if perturbation.sources:
        src = source_indices(candidates=candidates, n_sources=n, seed=seed, label=item.label)
        partner_offset = torch.randint(1, max(2, n), (batch_size,), generator=generator)
        partner = [(s + int(o)) % n if n > 1 else s for s, o in zip(src, partner_offset)]
        latents = LatentBatch(
            mu=item.mu[src],
            logvar=item.logvar[src],
            partner_mu=item.mu[partner],
            noise=noise.to(device),
            mix=mix.to(device),
            class_scale=item.class_scale,
        )
    else:
        src, partner = [], []
        zeros = torch.zeros((batch_size, model.latent_dim), device=device)
        latents = LatentBatch(mu=zeros, logvar=zeros, partner_mu=zeros, noise=noise.to(device), mix=mix.to(device))
    with torch.no_grad():
        z = perturbation.apply(latents, float(request.strength))
    if perturbation.guidance is not None:
        if guide is None:
            raise AugmentError(f"--strategy {perturbation.name} needs the filter's judge to steer its codes")
        z = guide_codes(
            model,
            z,
            labels=labels.to(device),
            source_labels=item.source_labels[src].to(device),
            guide=guide,
            guidance=perturbation.guidance,
        )
    sourced = (
        dict(source_images=item.source_images[src], source_mu=item.mu[src], source_labels=item.source_labels[src])
        if src
        else {}
    )
    # The grain's noise comes last from the batch's generator, so the codes are those of the other renderings.
    grain = Grain(std=item.grain_std, generator=generator, greyscale=item.greyscale)
    images = render(
        model, z=z, labels=labels.to(device), mode=request.render, image_size=image_size, grain=grain, **sourced
    )
    if item.greyscale:
        images = to_greyscale(images)
    return CandidateBatch(batch=batch, candidates=candidates, images=images, sources=src, partners=partner)


def manifest_row(
    candidates: CandidateBatch,
    i: int,
    *,
    item: ClassPlan,
    fit: FaceSplit,
    settings: AugmentSettings,
    sources_per_sample: int,
) -> dict[str, Any]:
    """The provenance of accepted candidate i: which real images it came from and how it was judged."""
    name, k = item.name, candidates.candidates[i]
    if not candidates.sources:
        used = []
    elif sources_per_sample == 2:
        used = [candidates.sources[i], candidates.partners[i]]
    else:
        used = [candidates.sources[i]]
    return {
        "path": f"{name}/{name}_{k:07d}.png",
        "class_name": name,
        "label": item.label,
        "strategy": settings.strategy,
        "strength": float(settings.strength),
        "source_ids": ";".join(fit.sample_ids[int(item.members[j])] for j in used),
        "candidate": k,
        "seed": settings.seed,
        "checkpoint_sha256": settings.checkpoint_sha256,
        "judge_label": int(candidates.judge_label[i]),
        "judge_confidence": round(float(candidates.judge_confidence[i]), 6),
        "source_distance": round(float(candidates.distance[i]), 6),
    }
