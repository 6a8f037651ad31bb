"""The quality filter: the judge's verdict and the pixel and feature near-duplicate tests, per candidate batch.

A candidate is accepted (-1) or rejected with an index into REJECT_REASONS. Duplicates are decided in
candidate order against everything accepted before (earlier batches and runs included), so a resumed
run decides exactly as a single run would.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
from einops import rearrange

from faces import FaceSplit

from .candidates import CandidateBatch, ClassPlan
from .guidance import Guide
from .quality import NEAR_DUPLICATE_FRACTION, nearest_distances, real_spacing
from .request import Embed, Judge

REJECT_REASONS = ("wrong_class", "low_confidence", "near_duplicate")
REJECTED_EARLIER = -2  # candidates of a resumed batch that an earlier run already decided on


class DuplicateFilter:
    """The generation report's near-duplicate rule (vaegan.generation.quality), applied while filtering: a
    candidate closer than NEAR_DUPLICATE_FRACTION x its class's real spacing to any real training image
    (every class) or to a sample of its class accepted before it is rejected. One definition, so the
    report's after-filter near-duplicate share measures what the filter let through.

    The real images are embedded on first use: a re-run of a finished set never needs them."""

    def __init__(self, *, embed: Embed, fit: FaceSplit) -> None:
        self.embed, self._fit = embed, fit

    @functools.cached_property
    def real_features(self) -> torch.Tensor:
        """[N, D] features of every image of the fit split."""
        return self.embed(self._fit.images).cpu()

    @functools.cached_property
    def thresholds(self) -> tuple[float, ...]:
        """Per class: NEAR_DUPLICATE_FRACTION x the class's median real-to-real nearest-neighbour distance."""
        labels = self._fit.labels
        return tuple(
            NEAR_DUPLICATE_FRACTION * real_spacing(self.real_features[labels == c])
            for c in range(len(self._fit.class_names))
        )


@dataclass(frozen=True)
class QualityFilter:
    """The judge and the thresholds a candidate must pass (GenerationRequest's filter settings, with the judge loaded)."""

    judge_probabilities: Judge
    # The same judge, differentiable on float images (vaegan.generation.guidance): guided strategies need it.
    judge_logits: Guide | None = None
    min_confidence: float = 0.5
    min_source_distance: float = 0.02
    duplicates: DuplicateFilter | None = None
    judge_sha256: str | None = None


def judge_batch(
    candidates: CandidateBatch, *, item: ClassPlan, quality: QualityFilter | None, undecided_from: int
) -> None:
    """Fill in the filter's verdict per candidate: -1 accepted, else an index into REJECT_REASONS
    (REJECTED_EARLIER for candidates a previous run already decided on). Without a filter every candidate is
    accepted; the source distance is recorded either way."""
    size = len(candidates.candidates)
    reason = torch.full((size,), -1)
    judge_label = torch.full((size,), -1)
    judge_conf = torch.full((size,), float("nan"))
    distance = torch.full((size,), float("nan"))
    if candidates.sources:
        sources = item.source_images[candidates.sources]
        distance = ((candidates.images.float() - sources.float()).abs().mean(dim=(1, 2, 3)) / 255.0).cpu()
    if quality is not None:
        min_source_distance = quality.min_source_distance
        probs = quality.judge_probabilities(candidates.images).float().cpu()
        judge_label = probs.argmax(dim=1)
        judge_conf = probs[:, item.label]
        # A copy of *any* real training image of the class (not only its source) adds nothing oversampling lacks.
        nearest_real = nearest_pixel_distance(
            candidates.images, item.source_images if item.class_images is None else item.class_images
        ).cpu()
        reason[(distance < min_source_distance) | (nearest_real < min_source_distance)] = REJECT_REASONS.index(
            "near_duplicate"
        )
        reason[judge_conf < quality.min_confidence] = REJECT_REASONS.index("low_confidence")
        reason[judge_label != item.label] = REJECT_REASONS.index("wrong_class")
    reason[:undecided_from] = REJECTED_EARLIER
    if quality is not None:
        _reject_copies_of_accepted(
            candidates.images, reason, accepted=item.accepted, min_distance=quality.min_source_distance
        )
    if quality is not None and quality.duplicates is not None:
        _reject_feature_duplicates(candidates, reason, item=item, duplicates=quality.duplicates)
    candidates.reason, candidates.judge_label, candidates.judge_confidence, candidates.distance = (
        reason,
        judge_label,
        judge_conf,
        distance,
    )


def pixel_distances(images: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """[n, m] mean absolute pixel difference (0..1) of each image to each reference, on the images' device."""
    flat = rearrange(images.float(), "n c h w -> n (c h w)") / 255.0
    refs = rearrange(references.to(images.device).float(), "n c h w -> n (c h w)") / 255.0
    # L1 distance / number of values = mean absolute difference; chunked to bound memory.
    return torch.cat([torch.cdist(chunk, refs, p=1) for chunk in flat.split(64)]) / flat.shape[1]


def nearest_pixel_distance(images: torch.Tensor, references: torch.Tensor | None) -> torch.Tensor:
    """Mean absolute pixel difference (0..1) of each image to its nearest reference (inf with none)."""
    if references is None or references.shape[0] == 0:
        return torch.full((images.shape[0],), float("inf"), device=images.device)
    flat = rearrange(images.float(), "n c h w -> n (c h w)") / 255.0
    refs = rearrange(references.to(images.device).float(), "n c h w -> n (c h w)") / 255.0
    return torch.cat([torch.cdist(chunk, refs, p=1).min(dim=1).values for chunk in flat.split(64)]) / flat.shape[1]


def _keep_in_order(to_earlier: torch.Tensor, among: torch.Tensor, threshold: float) -> list[bool]:
    """Greedy in candidate order: candidate j is a near-duplicate if it is closer than `threshold` to an earlier
    sample (`to_earlier[j]`) or to a candidate kept before it (`among[j, kept]`). The distances are computed once,
    as matrices; only this walk over them is sequential."""
    kept: list[int] = []
    duplicate = []
    for j in range(len(to_earlier)):
        nearest = min(float(to_earlier[j]), float(among[j, kept].min())) if kept else float(to_earlier[j])
        duplicate.append(nearest < threshold)
        if not duplicate[-1]:
            kept.append(j)
    return duplicate


def _reject_copies_of_accepted(
    images: torch.Tensor, reason: torch.Tensor, *, accepted: torch.Tensor | None, min_distance: float
) -> None:
    """In candidate order: a candidate the filter would accept is a near-duplicate if it is within
    `min_distance` of a sample accepted before it (earlier batches, runs, or this batch)."""
    alive = (reason == -1).nonzero().flatten()
    if len(alive) == 0:
        return
    candidates = images[alive]
    to_earlier = nearest_pixel_distance(candidates, accepted).cpu()
    among = pixel_distances(candidates, candidates).cpu()
    for i, duplicate in zip(alive.tolist(), _keep_in_order(to_earlier, among, min_distance)):
        if duplicate:
            reason[i] = REJECT_REASONS.index("near_duplicate")


def _reject_feature_duplicates(
    candidates: CandidateBatch, reason: torch.Tensor, *, item: ClassPlan, duplicates: DuplicateFilter
) -> None:
    """DuplicateFilter's rule on the candidates still accepted, in candidate order. Only those are embedded:
    the judge has already rejected most of a batch, and the feature network is the expensive part."""
    alive = (reason == -1).nonzero().flatten()
    if len(alive) == 0:
        return
    features = duplicates.embed(candidates.images[alive]).cpu()
    threshold = duplicates.thresholds[item.label]
    near_real = nearest_distances(features, duplicates.real_features) < threshold
    pool = item.accepted_features if item.accepted_features is not None else features[:0]
    # A candidate near a real image is rejected outright and never becomes a reference for later ones.
    to_earlier = torch.where(near_real, torch.tensor(-math.inf, dtype=torch.float64), nearest_distances(features, pool))
    among = torch.cdist(features.double(), features.double())
    for i, duplicate in zip(alive.tolist(), _keep_in_order(to_earlier, among, threshold)):
        if duplicate:
            reason[i] = REJECT_REASONS.index("near_duplicate")
    candidates.features = torch.full((len(reason), features.shape[1]), float("nan"), dtype=features.dtype)
    candidates.features[alive] = features
