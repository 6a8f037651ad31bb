"""Sample-quality metrics on held-out real train images: L1, SSIM, LPIPS (when available), a
Fréchet distance in EfficientNet-Lite0 feature space (per class and overall), and a collapse
indicator. The Fréchet distance is *not* FID: it uses an offline ImageNet EfficientNet-Lite0
instead of Inception, so it is named after its network (`frechet_efficientnet_lite0`)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torchmetrics.functional.image import structural_similarity_index_measure

from faces.features import FEATURE_NETWORK, FeatureNetwork  # noqa: F401  (re-exported: the metrics' feature space)

FRECHET_NAME = f"frechet_{FEATURE_NETWORK}"


def reconstruction_l1(reconstructed: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Mean absolute error in [-1, 1] pixel units."""
    return (reconstructed.float() - real.float()).abs().mean()


def reconstruction_ssim(reconstructed: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """SSIM on [0, 1] images (Gaussian window 11, sigma 1.5); 1 is identical."""
    a = (reconstructed.float().clamp(-1, 1) + 1) / 2
    b = (real.float() + 1) / 2
    return structural_similarity_index_measure(a, b, data_range=1.0)


def frechet_distance(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2), in float64.

    The symmetric form needs only eigendecompositions of PSD matrices, which stay stable when
    a class has fewer samples than feature dimensions (rank-deficient covariances).
    NaN when either side has fewer than 2 samples.
    """
    if features_a.shape[0] < 2 or features_b.shape[0] < 2:
        return math.nan
    a, b = features_a.double(), features_b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    eigvals_a, eigvecs_a = torch.linalg.eigh(cov_a)
    sqrt_a = (eigvecs_a * eigvals_a.clamp_min(0).sqrt()) @ eigvecs_a.T
    middle = sqrt_a @ cov_b @ sqrt_a
    trace_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum()
    value = (mu_a - mu_b).pow(2).sum() + cov_a.trace() + cov_b.trace() - 2 * trace_sqrt
    return float(value.clamp_min(0))


def mean_pairwise_distance(features: torch.Tensor) -> float:
    """Mean Euclidean distance over distinct pairs; NaN below 2 samples."""
    n = features.shape[0]
    if n < 2:
        return math.nan
    distances = torch.cdist(features.double(), features.double())
    return float(distances.sum() / (n * (n - 1)))


def per_class_frechet(
    *, generated: torch.Tensor, generated_labels: torch.Tensor, real: torch.Tensor, real_labels: torch.Tensor,
    class_names: Sequence[str],
) -> dict[str, float]:
    """{"overall": FD, "<class>": FD of that class's samples, ...}."""
    result = {"overall": frechet_distance(generated, real)}
    for label, name in enumerate(class_names):
        result[name] = frechet_distance(generated[generated_labels == label], real[real_labels == label])
    return result


def diversity_ratio(
    *, generated: torch.Tensor, generated_labels: torch.Tensor, real: torch.Tensor, real_labels: torch.Tensor,
    class_names: Sequence[str],
) -> dict[str, float]:
    """Collapse indicator: within-class mean pairwise feature distance of samples / of real images.

    About 1 means samples of a class vary as much as real faces of that class; near 0 is mode
    collapse (the same face for every z). "overall" averages the classes where both are defined.
    """
    result: dict[str, float] = {}
    for label, name in enumerate(class_names):
        real_spread = mean_pairwise_distance(real[real_labels == label])
        generated_spread = mean_pairwise_distance(generated[generated_labels == label])
        result[name] = generated_spread / real_spread if real_spread > 0 else math.nan
    defined = [v for v in result.values() if not math.isnan(v)]
    result["overall"] = sum(defined) / len(defined) if defined else math.nan
    return result
