"""Long-tail losses and class weights, as plain functions and small modules.

Every function takes logits [N, C] and int64 targets [N]; class statistics come from the
*training* counts (what the model is fitted on, including generated samples if any).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _counts(class_counts: Sequence[int] | torch.Tensor) -> torch.Tensor:
    counts = torch.as_tensor(class_counts, dtype=torch.float64)
    if (counts <= 0).any():
        raise ValueError(f"every class needs at least one training sample, got counts {counts.tolist()}")
    return counts


def class_prior(class_counts: Sequence[int] | torch.Tensor) -> torch.Tensor:
    counts = _counts(class_counts)
    return (counts / counts.sum()).float()


def inverse_frequency_weights(class_counts: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """w_j = K * (1/n_j) / sum_k (1/n_k): weights proportional to 1/n_j that sum to the number of classes K."""
    inv = 1.0 / _counts(class_counts)
    return (inv * len(inv) / inv.sum()).float()


def effective_number_weights(class_counts: Sequence[int] | torch.Tensor, *, beta: float = 0.9999) -> torch.Tensor:
    """Cui et al. 2019, "Class-Balanced Loss Based on Effective Number of Samples":
    E_n = (1 - beta^n) / (1 - beta); w_j proportional to 1/E_{n_j}, normalised to sum to K.
    beta -> 0 gives uniform weights; beta -> 1 gives inverse frequency."""
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta={beta} must be in [0, 1)")
    counts = _counts(class_counts)
    effective = (1.0 - torch.pow(torch.tensor(beta, dtype=torch.float64), counts)) / (1.0 - beta)
    inv = 1.0 / effective
    return (inv * len(inv) / inv.sum()).float()


def focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, *, gamma: float = 2.0, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Lin et al. 2017: mean of -w_y (1 - p_y)^gamma log p_y; gamma=0 is (weighted) cross-entropy."""
    log_p = F.log_softmax(logits.float(), dim=1).gather(1, targets[:, None]).squeeze(1)
    loss = -((1.0 - log_p.exp()).clamp_min(0.0) ** gamma) * log_p
    if weight is not None:
        loss = loss * weight.to(loss.device)[targets]
    return loss.mean()


def logit_adjusted_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, *, prior: torch.Tensor, tau: float = 1.0
) -> torch.Tensor:
    """Menon et al. 2021 (logit adjustment, training-time): CE(logits + tau * log prior).
    tau = 1 is Ren et al. 2020's balanced softmax."""
    return F.cross_entropy(logits.float() + tau * prior.to(logits.device).log(), targets)


def balanced_softmax_loss(logits: torch.Tensor, targets: torch.Tensor, *, prior: torch.Tensor) -> torch.Tensor:
    """Ren et al. 2020, "Balanced Meta-Softmax": softmax over logits + log n_j."""
    return logit_adjusted_cross_entropy(logits, targets, prior=prior, tau=1.0)


def posthoc_logit_adjust(logits: torch.Tensor, *, prior: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """Menon et al. 2021 (post-hoc): predict argmax_j of logits_j - tau * log prior_j."""
    return logits - tau * prior.to(logits.device, logits.dtype).log()


def ldam_margins(class_counts: Sequence[int] | torch.Tensor, *, max_margin: float = 0.5) -> torch.Tensor:
    """Cao et al. 2019: m_j proportional to n_j^(-1/4), the rarest class gets `max_margin`."""
    m = _counts(class_counts) ** -0.25
    return (m * (max_margin / m.max())).float()


class LDAMLoss(nn.Module):
    """Label-distribution-aware margin loss on cosine logits: CE(s * (cos - m_y 1[j=y]), weight).

    With DRW (deferred re-weighting), `weight` stays None until the schedule switches it to
    effective-number weights late in training (Cao et al. 2019, Sec. 3.3)."""

    def __init__(self, *, class_counts: Sequence[int], max_margin: float = 0.5, scale: float = 30.0) -> None:
        super().__init__()
        self.register_buffer("margins", ldam_margins(class_counts, max_margin=max_margin))
        self.register_buffer("class_weight", torch.ones(len(class_counts)))
        self.scale = scale
        self.reweighting = False

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        adjusted = logits.float() - F.one_hot(targets, logits.shape[1]).float() * self.margins[targets][:, None]
        return F.cross_entropy(self.scale * adjusted, targets, weight=self.class_weight if self.reweighting else None)


def weighted_cluster_class_weights(class_counts: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """Per-class weights from each class's share of the data (Ngo & Yoon 2020): the inverse share
    n / n_j, normalised to mean 1, so the rare classes' clusters are pulled tightest."""
    counts = _counts(class_counts)
    inverse_share = counts.sum() / counts
    return (inverse_share / inverse_share.mean()).float()


class WeightedClusterLoss(nn.Module):
    """Ngo & Yoon 2020, "FER based on weighted-cluster loss and deep transfer learning using a highly
    imbalanced dataset" (Sensors 20(9)): a learned center c_j per class; each sample is pulled
    towards its class center (intra-class compactness, as in Wen et al. 2016's center loss) relative
    to how far that center sits from the centroid of all centers (inter-class separability), and
    weighted by its class's share of the data:

        L_wc = mean_i  w_{y_i} * 0.5 ||x_i - c_{y_i}||^2 / (0.5 ||c_{y_i} - mean_k c_k||^2 + 1)

    Used together with softmax cross-entropy: L = CE + lambda * L_wc. The centers are parameters,
    learned with their own learning rate (`balance.center_lr`).
    """

    def __init__(self, *, class_counts: Sequence[int], feature_dim: int) -> None:
        super().__init__()
        self.centers = nn.Parameter(torch.zeros(len(class_counts), feature_dim))
        nn.init.normal_(self.centers, std=0.01)
        self.register_buffer("class_weight", weighted_cluster_class_weights(class_counts))

    def forward(self, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return weighted_cluster_loss(features, targets, centers=self.centers, class_weight=self.class_weight)


def weighted_cluster_loss(
    features: torch.Tensor, targets: torch.Tensor, *, centers: torch.Tensor, class_weight: torch.Tensor
) -> torch.Tensor:
    """The functional form of `WeightedClusterLoss` (same formula, explicit centers and weights)."""
    own = centers[targets]
    intra = 0.5 * (features.float() - own).pow(2).sum(dim=1)
    inter = 0.5 * (centers - centers.mean(dim=0, keepdim=True)).pow(2).sum(dim=1)[targets]
    return (class_weight[targets] * intra / (inter + 1.0)).mean()
