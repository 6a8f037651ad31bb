"""Is a generated sample any good? Per-class figures for a generated set, before and after the filter.

A generated set earns its ablation row only if its samples carry their class, are new, and vary:

- class fidelity (GAN-test, Shmelkov et al. 2018): the judge's recall on generated samples of a
  class, beside its recall on real validation images of that class, and their ratio;
- novelty: each sample's distance to its nearest real training image of the class (any image, not
  only its source) in a fixed feature space, compared with how far real images sit from each
  other (the median real-to-real nearest-neighbour distance of the class);
- diversity: mean pairwise feature distance among generated samples ÷ the same among real ones
  (about 1 is healthy, near 0 is collapse or copies);
- precision / recall (Kynkäänniemi et al. 2019): the share of generated samples inside the real
  k-NN manifold, and of real images inside the generated one;
- real vs generated (the 1-NN two-sample test, Lopez-Paz & Oquab 2017, Xu et al. 2018): leave-one-out
  1-nearest-neighbour accuracy on equal numbers of real and generated images of the class. 0.5: the two
  are indistinguishable in these features; 1: every sample's nearest neighbour is of its own kind (the
  generated images carry a signature a classifier trained on them can learn instead of the expression);
  near 0: copies of real images. Variants of one source sit near each other, so for a perturbation
  strategy with several variants per source it overstates the separation a little.

Every figure comes with its sample size; small classes make all of them noisy (a Wilson interval
is given for the recall-type figures, where it is cheap and exact enough).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from ..metrics import mean_pairwise_distance

# A sample closer to a real training image of *any* class (or to an earlier sample) than
# NEAR_DUPLICATE_FRACTION of its class's median real-to-real nearest-neighbour distance is a
# near-duplicate: real faces of one class are rarely that close to each other, so such a sample adds
# nothing oversampling lacks (any class, because a sample made from another class's face, or
# relabelled, is a copy all the same).
NEAR_DUPLICATE_FRACTION = 0.5
PRECISION_RECALL_K = 3


def wilson_interval(successes: int, n: int, *, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (well-behaved at 0, 1 and small n)."""
    if n == 0:
        return math.nan, math.nan
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def nearest_distances(queries: torch.Tensor, references: torch.Tensor, *, exclude_self: bool = False) -> torch.Tensor:
    """Distance of each query to its nearest reference (float64); `exclude_self` when both are one set."""
    if queries.shape[0] == 0 or references.shape[0] == 0:
        return torch.full((queries.shape[0],), math.inf, dtype=torch.float64)
    distances = torch.cdist(queries.double(), references.double())
    if exclude_self:
        distances.fill_diagonal_(math.inf)
    return distances.min(dim=1).values


def kth_neighbour_radius(features: torch.Tensor, *, k: int) -> torch.Tensor:
    """Distance of each point to its k-th nearest other point (the k-NN manifold radius)."""
    distances = torch.cdist(features.double(), features.double())
    distances.fill_diagonal_(math.inf)
    k = min(k, features.shape[0] - 1)
    return distances.topk(k, dim=1, largest=False).values[:, -1]


def precision_recall(
    *, real: torch.Tensor, generated: torch.Tensor, k: int = PRECISION_RECALL_K
) -> tuple[float, float]:
    """Kynkäänniemi et al. 2019: precision = share of generated samples within some real sample's
    k-NN radius; recall = share of real samples within some generated sample's radius. NaN when
    either side has k or fewer points."""
    if real.shape[0] <= k or generated.shape[0] <= k:
        return math.nan, math.nan
    real_radius, generated_radius = kth_neighbour_radius(real, k=k), kth_neighbour_radius(generated, k=k)
    cross = torch.cdist(generated.double(), real.double())  # [G, R]
    precision = (cross <= real_radius[None, :]).any(dim=1).double().mean()
    recall = (generated_radius[None, :] >= cross.T).any(dim=1).double().mean()
    return float(precision), float(recall)


def real_spacing(real: torch.Tensor) -> float:
    """Median distance of a real image to its nearest other real image of the class."""
    if real.shape[0] < 2:
        return math.nan
    return float(nearest_distances(real, real, exclude_self=True).median())


def near_duplicates(
    *, generated: torch.Tensor, real: torch.Tensor, spacing: float, fraction: float = NEAR_DUPLICATE_FRACTION
) -> torch.Tensor:
    """bool [G]: a sample within fraction x spacing of any image in `real` (the caller passes every
    real training image), or of an earlier generated sample (so eight copies of one face count as
    seven duplicates)."""
    if generated.shape[0] == 0 or not math.isfinite(spacing):
        return torch.zeros(generated.shape[0], dtype=torch.bool)
    threshold = fraction * spacing
    to_real = nearest_distances(generated, real)
    within = torch.cdist(generated.double(), generated.double())
    earlier = torch.tril(torch.ones_like(within, dtype=torch.bool), diagonal=-1)  # j < i
    to_earlier = torch.where(earlier, within, torch.full_like(within, math.inf)).min(dim=1).values
    return (to_real < threshold) | (to_earlier < threshold)


def one_nn_two_sample_accuracy(real: torch.Tensor, generated: torch.Tensor, *, seed: int = 0) -> dict[str, Any]:
    """Leave-one-out 1-NN accuracy of telling `real` [R, D] from `generated` [G, D] features, on min(R, G) of each
    (a seeded draw, so the figure does not depend on the order the samples were made in)."""
    m = min(int(real.shape[0]), int(generated.shape[0]))
    if m < 2:
        return {"accuracy": math.nan, "n_per_side": m}
    draw = torch.Generator().manual_seed(seed)
    pooled = torch.cat(
        [
            real[torch.randperm(real.shape[0], generator=draw)[:m]],
            generated[torch.randperm(generated.shape[0], generator=draw)[:m]],
        ]
    ).double()
    is_generated = torch.arange(2 * m) >= m
    distances = torch.cdist(pooled, pooled)
    distances.fill_diagonal_(math.inf)
    nearest = distances.argmin(dim=1)
    return {"accuracy": float((is_generated[nearest] == is_generated).double().mean()), "n_per_side": m}


def class_figures(
    *,
    generated: torch.Tensor,
    real: torch.Tensor,
    judge_predictions: torch.Tensor | None,
    label: int,
    real_val_recall: float | None,
    all_real: torch.Tensor | None = None,
) -> dict[str, Any]:
    """All figures for one class: features [G, D] of generated samples and [R, D] of the class's real
    training images; `all_real` (default: `real`) are the real images a near-duplicate is checked against."""
    n, spacing = int(generated.shape[0]), real_spacing(real)
    figures: dict[str, Any] = {"n_generated": n, "n_real": int(real.shape[0])}
    if judge_predictions is not None and n:
        hits = int((judge_predictions == label).sum())
        recall = hits / n
        figures["fidelity"] = {
            "judge_recall_generated": recall,
            "interval": wilson_interval(hits, n),
            "judge_recall_real_val": real_val_recall,
            "ratio": recall / real_val_recall if real_val_recall else math.nan,
        }
    nearest = nearest_distances(generated, real)
    duplicates = near_duplicates(generated=generated, real=real if all_real is None else all_real, spacing=spacing)
    figures["novelty"] = {
        "median_nearest_real_distance": float(nearest.median()) if n else math.nan,
        "real_spacing": spacing,
        "closer_than_real_share": float((nearest < spacing).double().mean()) if n else math.nan,
        "near_duplicate_share": float(duplicates.double().mean()) if n else math.nan,
        "near_duplicate_threshold": NEAR_DUPLICATE_FRACTION * spacing,
    }
    real_spread = mean_pairwise_distance(real)
    generated_spread = mean_pairwise_distance(generated)
    figures["diversity_ratio"] = (
        generated_spread / real_spread if real_spread and math.isfinite(real_spread) else math.nan
    )
    precision, recall = precision_recall(real=real, generated=generated)
    figures["precision"], figures["recall"] = precision, recall
    figures["real_vs_generated"] = one_nn_two_sample_accuracy(real, generated)
    return figures


def generation_figures(
    *,
    generated: torch.Tensor,
    generated_labels: torch.Tensor,
    real: torch.Tensor,
    real_labels: torch.Tensor,
    class_names: Sequence[str],
    classes: Sequence[int],
    judge_predictions: torch.Tensor | None = None,
    real_val_recall: Sequence[float] | None = None,
) -> dict[str, Any]:
    """{"classes": {name: figures}, "overall": figures pooled over `classes`} for one set of samples; `real`
    holds every real training image (all classes: near-duplicates are checked against any of them)."""
    per_class = {}
    for label in classes:
        mine = generated_labels == label
        per_class[class_names[label]] = class_figures(
            generated=generated[mine],
            real=real[real_labels == label],
            judge_predictions=None if judge_predictions is None else judge_predictions[mine],
            label=label,
            real_val_recall=None if real_val_recall is None else real_val_recall[label],
            all_real=real,
        )
    overall: dict[str, Any] = {"n_generated": int(sum(f["n_generated"] for f in per_class.values()))}
    if per_class:

        def mean_of(getter) -> float:
            values = [getter(f) for f in per_class.values()]
            values = [v for v in values if v is not None and isinstance(v, float) and math.isfinite(v)]
            return sum(values) / len(values) if values else math.nan

        overall["fidelity_ratio_mean"] = mean_of(lambda f: f.get("fidelity", {}).get("ratio"))
        overall["diversity_ratio_mean"] = mean_of(lambda f: f["diversity_ratio"])
        overall["near_duplicate_share_mean"] = mean_of(lambda f: f["novelty"]["near_duplicate_share"])
        overall["real_vs_generated_mean"] = mean_of(lambda f: f["real_vs_generated"]["accuracy"])
        pooled = torch.isin(generated_labels, torch.as_tensor(list(classes)))
        pooled_real = torch.isin(real_labels, torch.as_tensor(list(classes)))
        overall["precision"], overall["recall"] = precision_recall(real=real[pooled_real], generated=generated[pooled])
    return {"classes": per_class, "overall": overall}
