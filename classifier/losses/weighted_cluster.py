"""Weighted-cluster loss (Ngo & Yoon 2020, Sensors) beside softmax cross-entropy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .registry import BalancingLoss, register_loss
from .weights import _counts


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


@register_loss(
    "weighted_cluster",
    description="softmax + weighted-cluster loss: a learned center per class, weighted by class share (balance.center_weight)",
    reference="Ngo & Yoon 2020, Sensors",
)
class SoftmaxWeightedCluster(BalancingLoss):
    def __init__(
        self, *, class_counts: Sequence[int], feature_dim: int, center_weight: float = 0.01, center_lr: float = 0.5
    ) -> None:
        super().__init__(class_counts=class_counts, feature_dim=feature_dim)
        self.center_weight, self.center_lr = center_weight, center_lr
        self.cluster = WeightedClusterLoss(class_counts=class_counts, feature_dim=feature_dim)

    def forward(self, *, logits: torch.Tensor, features: torch.Tensor, targets: torch.Tensor):
        ce = F.cross_entropy(logits.float(), targets)
        cluster = self.cluster(features, targets)
        return ce + self.center_weight * cluster, {"ce": ce.detach(), "weighted_cluster": cluster.detach()}

    def param_groups(self) -> list[dict[str, Any]]:
        # The centres learn at their own rate and without weight decay (decay would pull them to the origin).
        return [{"params": [self.cluster.centers], "lr": self.center_lr, "weight_decay": 0.0, "name": "centers"}]
