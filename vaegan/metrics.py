"""Sample-quality metrics on held-out real train images: L1, SSIM, LPIPS (when available), a
Fréchet distance and KID in EfficientNet-Lite0 feature space (per class and overall), a collapse
indicator, and the generator's own figures (reconstruction fidelity, label-flip accuracy, identity
kept, high-frequency ratio). Neither distance is FID/Inception-KID: they use an offline ImageNet
EfficientNet-Lite0 instead of Inception, so they are named after it (`frechet_efficientnet_lite0`,
`kid_efficientnet_lite0`)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
from torchmetrics.functional.image import structural_similarity_index_measure
from torchmetrics.image.kid import KernelInceptionDistance

from faces.features import FEATURE_NETWORK, FeatureNetwork  # noqa: F401  (re-exported: the metrics' feature space)

from .diff_augment import gaussian_blur

FRECHET_NAME = f"frechet_{FEATURE_NETWORK}"
KID_NAME = f"kid_{FEATURE_NETWORK}"


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
    *,
    generated: torch.Tensor,
    generated_labels: torch.Tensor,
    real: torch.Tensor,
    real_labels: torch.Tensor,
    class_names: Sequence[str],
) -> dict[str, float]:
    """{"overall": FD, "<class>": FD of that class's samples, ...}."""
    result = {"overall": frechet_distance(generated, real)}
    for label, name in enumerate(class_names):
        result[name] = frechet_distance(generated[generated_labels == label], real[real_labels == label])
    return result


def diversity_ratio(
    *,
    generated: torch.Tensor,
    generated_labels: torch.Tensor,
    real: torch.Tensor,
    real_labels: torch.Tensor,
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


# ---------------------------------------------------------------------------------------------------
# Does the generator do its job? Figures on *predictions* of some judge, so the VAE-GAN's
# validation can use its discriminator's classifier and the generation report the real-data judge.


def _recall(predictions: torch.Tensor, labels: torch.Tensor, label: int) -> tuple[float, int]:
    rows = labels == label
    n = int(rows.sum())
    return (float((predictions[rows] == label).double().mean()) if n else math.nan), n


def mean_class_recall(
    predictions: torch.Tensor, labels: torch.Tensor, class_names: Sequence[str]
) -> tuple[float, dict[str, float]]:
    """(mean over the classes present in `labels` of each class's recall, each class's recall; NaN if absent)."""
    per_class = {name: _recall(predictions, labels, label)[0] for label, name in enumerate(class_names)}
    present = [v for v in per_class.values() if math.isfinite(v)]
    return (sum(present) / len(present) if present else math.nan), per_class


def reconstruction_fidelity(
    *,
    reconstructed_predictions: torch.Tensor,
    real_predictions: torch.Tensor,
    labels: torch.Tensor,
    class_names: Sequence[str],
) -> dict[str, dict[str, float]]:
    """Per class: the judge's recall on dec(mu(x), y) of real faces x of the class / its recall on x itself.

    1 means the round trip through the generator keeps everything the judge reads the expression from.
    `read_instead_as` / `read_instead_share`: the other class the judge reads most of the class's
    reconstructions as, and that share (None / 0 when every one is read as its own class). Why: it says
    which feature the round trip loses (Sadness reconstructions read as Anger: the brows come back lowered).
    """
    result = {}
    for label, name in enumerate(class_names):
        rows = labels == label
        n = int(rows.sum())
        hits_reconstructed, hits_real = (
            int((p[rows] == label).sum()) for p in (reconstructed_predictions, real_predictions)
        )
        # From the counts (the same n faces): 9 of 10 is 0.9 exactly, not 0.75 / 0.8333 = 0.8999...
        ratio = hits_reconstructed / hits_real if hits_real > 0 else math.nan
        readings = torch.bincount(reconstructed_predictions[rows].long(), minlength=len(class_names))
        readings[label] = 0
        other = int(readings.argmax())
        result[name] = {
            "ratio": ratio,
            "judge_recall_reconstructed": hits_reconstructed / n if n else math.nan,
            "judge_recall_real": hits_real / n if n else math.nan,
            "n": n,
            "read_instead_as": class_names[other] if readings[other] > 0 else None,
            "read_instead_share": float(readings[other]) / n if n else math.nan,
        }
    return result


def latent_probe_recall(
    *,
    train_codes: torch.Tensor,
    train_labels: torch.Tensor,
    test_codes: torch.Tensor,
    test_labels: torch.Tensor,
    class_names: Sequence[str],
    steps: int = 500,
    seed: int = 0,
) -> dict[str, float]:
    """How much of the expression a latent code carries: a linear probe (softmax regression on standardised
    codes, class-balanced, trained afresh) fitted on training codes and scored on held-out ones.

    Unlike an adversary trained alongside the encoder (Fader's latent classifier), a fresh probe cannot
    be fooled by codes that keep moving: it reads what the final codes say. Returns the held-out mean
    class recall, each class's recall and chance (1 / classes); a code that hides the label reads near chance.
    """
    train_codes, test_codes = train_codes.float().cpu(), test_codes.float().cpu()
    train_labels, test_labels = train_labels.cpu(), test_labels.cpu()
    mean, std = train_codes.mean(dim=0), train_codes.std(dim=0).clamp_min(1e-6)
    x_train, x_test = (train_codes - mean) / std, (test_codes - mean) / std
    num_classes = len(class_names)
    counts = torch.bincount(train_labels, minlength=num_classes).float()
    weight = torch.where(counts > 0, counts.sum() / (num_classes * counts.clamp_min(1)), torch.zeros_like(counts))
    generator = torch.Generator().manual_seed(seed)
    probe = torch.nn.Linear(x_train.shape[1], num_classes)
    with torch.no_grad():
        probe.weight.copy_(torch.randn(probe.weight.shape, generator=generator) * 0.01)
        probe.bias.zero_()
    optimizer = torch.optim.Adam(probe.parameters(), lr=0.05, weight_decay=1e-4)
    with torch.enable_grad():
        for _ in range(steps):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(probe(x_train), train_labels, weight=weight).backward()
            optimizer.step()
    with torch.no_grad():
        predictions = probe(x_test).argmax(dim=1)
    mean_recall, per_class = mean_class_recall(predictions, test_labels, class_names)
    return {
        "mean_class_recall": mean_recall,
        "chance": 1.0 / num_classes,
        "per_class": per_class,
        "n_train": int(len(train_labels)),
        "n_test": int(len(test_labels)),
    }


def median_pairwise_distance(features: torch.Tensor) -> float:
    """Median Euclidean distance over distinct pairs (two different real faces of a class); NaN below 2."""
    n = features.shape[0]
    if n < 2:
        return math.nan
    distances = torch.cdist(features.double(), features.double())
    return float(distances[torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)].median())


# The pass band of high_frequency_energy: what a Gaussian of 1 px at a 64 px side keeps (scaled with the side).
# Pixel-scale speckle lies above it, and so do part of a 64 px face's 1-3 px strokes (brows, lids, lips): the
# label-flip figure divides by the same faces' reconstructions, so what real strokes contribute cancels.
HIGH_FREQUENCY_SIGMA = 1.0


def high_frequency_energy(images: torch.Tensor) -> torch.Tensor:
    """Per image: the mean squared residual of float [-1, 1] `b c h w` images after a Gaussian blur of
    HIGH_FREQUENCY_SIGMA (at a 64 px side, at least 0.5 px), i.e. the energy of pixel-scale detail. Float64 `b`."""
    images = images.double()
    # At least half a pixel: below that the kernel is the identity and every image would have no energy.
    scaled = max(0.5, HIGH_FREQUENCY_SIGMA * min(images.shape[-2:]) / 64)
    sigma = torch.full((images.shape[0],), scaled, dtype=images.dtype)
    return (images - gaussian_blur(images, sigma)).pow(2).mean(dim=(1, 2, 3))


def label_flip_figures(
    *,
    predictions: torch.Tensor,
    target_labels: torch.Tensor,
    source_labels: torch.Tensor,
    class_names: Sequence[str],
    flipped_features: torch.Tensor | None = None,
    source_features: torch.Tensor | None = None,
    real_features: torch.Tensor | None = None,
    real_labels: torch.Tensor | None = None,
    flipped_high_frequency: torch.Tensor | None = None,
    reconstructed_high_frequency: torch.Tensor | None = None,
) -> dict[str, dict[str, float]]:
    """Per target class y': real faces of other classes decoded as dec(mu(x), y').

    accuracy: share the judge reads as y' (chance is 1/K for a decoder that ignores its label);
    source_kept: share still read as the source's class; identity_kept: share nearer their own source
    face (features) than two different real faces of y' typically are (the class's median real-to-real
    distance): a new face of y' with the source's identity, not a copy of some other face. Without
    features the identity figures are NaN. high_frequency_ratio (given both high_frequency_energy tensors,
    row for row): the flips' pixel-scale energy over that of the same faces decoded with their own label.
    1: changing the label adds no pixel-scale pattern (a decoder that ignores the label is exactly 1); well
    above 1: the label is drawn as speckle, which can satisfy a CNN judge without drawing the expression (the
    judge's accuracy then overstates the faces: look at the grid).
    """
    with_high_frequency = flipped_high_frequency is not None and reconstructed_high_frequency is not None
    with_features = flipped_features is not None
    distance_to_source = (flipped_features.double() - source_features.double()).norm(dim=1) if with_features else None
    result = {}
    for label, name in enumerate(class_names):
        rows = target_labels == label
        n = int(rows.sum())
        class_median = median_pairwise_distance(real_features[real_labels == label]) if with_features else math.nan
        if not n:
            result[name] = {
                "accuracy": math.nan,
                "source_kept": math.nan,
                "identity_kept": math.nan,
                "high_frequency_ratio": math.nan,
                "n": 0,
                "class_median_distance": class_median,
            }
            continue
        result[name] = {
            "accuracy": float((predictions[rows] == label).double().mean()),
            "source_kept": float((predictions[rows] == source_labels[rows]).double().mean()),
            "identity_kept": float((distance_to_source[rows] < class_median).double().mean())
            if math.isfinite(class_median)
            else math.nan,
            "median_distance_to_source": float(distance_to_source[rows].median()) if with_features else math.nan,
            "class_median_distance": class_median,
            "high_frequency_ratio": float(
                flipped_high_frequency[rows].mean() / reconstructed_high_frequency[rows].mean()
            )
            if with_high_frequency
            else math.nan,
            "n": n,
            "chance": 1.0 / len(class_names),
        }
    return result


class _Precomputed(torch.nn.Module):
    """KID's `feature=` network when the features are already computed by FeatureNetwork (no second pass)."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def kid(
    generated: torch.Tensor, real: torch.Tensor, *, max_subset_size: int = 100, subsets: int = 50, seed: int = 0
) -> dict[str, float]:
    """Kernel inception distance (Binkowski et al. 2018, unbiased MMD^2, cubic polynomial kernel) with
    torchmetrics' KernelInceptionDistance on features of the offline feature network, so it is named
    after that network. Unbiased at any sample size (unlike the Fréchet distance): subset_size is
    min(max_subset_size, both sizes). NaN below 2 samples on either side."""
    size = min(max_subset_size, generated.shape[0], real.shape[0])
    if size < 2:
        return {"kid": math.nan, "kid_std": math.nan, "subset_size": size}
    with warnings.catch_warnings():  # "will save all extracted features in buffer": a few hundred rows here
        warnings.simplefilter("ignore", UserWarning)
        metric = KernelInceptionDistance(feature=_Precomputed(), subsets=subsets, subset_size=size)
    metric.update(real.double(), real=True)
    metric.update(generated.double(), real=False)
    with torch.random.fork_rng(devices=[]):  # its subsets are drawn from the global generator: same seed, same figure
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return {"kid": float(mean), "kid_std": float(std), "subset_size": size}


def per_class_kid(
    *,
    generated: torch.Tensor,
    generated_labels: torch.Tensor,
    real: torch.Tensor,
    real_labels: torch.Tensor,
    class_names: Sequence[str],
) -> dict[str, dict[str, float]]:
    """{class: {kid, kid_std, subset_size, n_generated, n_real}}."""
    result = {}
    for label, name in enumerate(class_names):
        g, r = generated[generated_labels == label], real[real_labels == label]
        result[name] = {**kid(g, r), "n_generated": int(g.shape[0]), "n_real": int(r.shape[0])}
    return result
