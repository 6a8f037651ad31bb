"""Sample-quality metrics on held-out real train images: L1, SSIM, LPIPS (when available), a
Fréchet distance in EfficientNet-Lite0 feature space (per class and overall), and a collapse
indicator. The Fréchet distance is *not* FID: it uses an offline ImageNet EfficientNet-Lite0
instead of Inception, so it is named after its network (`frechet_efficientnet_lite0`)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.functional.image import structural_similarity_index_measure

FEATURE_NETWORK = "efficientnet_lite0"
FRECHET_NAME = f"frechet_{FEATURE_NETWORK}"


def reconstruction_l1(reconstructed: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Mean absolute error in [-1, 1] pixel units."""
    return (reconstructed.float() - real.float()).abs().mean()


def reconstruction_ssim(reconstructed: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """SSIM on [0, 1] images (Gaussian window 11, sigma 1.5); 1 is identical."""
    a = (reconstructed.float().clamp(-1, 1) + 1) / 2
    b = (real.float() + 1) / 2
    return structural_similarity_index_measure(a, b, data_range=1.0)


class FeatureNetwork(nn.Module):
    """Pooled 1280-d features of the offline ImageNet EfficientNet-Lite0 (classifier.pretrained)."""

    def __init__(self, *, image_size: int = 224) -> None:
        super().__init__()
        from classifier.pretrained import imagenet_efficientnet_lite0, imagenet_normalize

        self.network = imagenet_efficientnet_lite0(num_classes=0).eval().requires_grad_(False)
        self.normalize = imagenet_normalize
        self.image_size = image_size

    def train(self, mode: bool = True) -> FeatureNetwork:
        return super().train(False)  # frozen: batch-norm statistics must never move

    @torch.no_grad()
    def forward(self, images: torch.Tensor, *, batch_size: int = 128) -> torch.Tensor:
        """float [-1, 1] images -> float64 features [N, 1280]."""
        out = []
        for start in range(0, images.shape[0], batch_size):
            x = (images[start : start + batch_size].float().clamp(-1, 1) + 1) / 2
            if x.shape[-1] != self.image_size:
                x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
            out.append(self.network(self.normalize(x)).double())
        return torch.cat(out) if out else torch.zeros(0, self.network.num_features, dtype=torch.float64)


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
