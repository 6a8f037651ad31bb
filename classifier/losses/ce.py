"""Plain softmax cross-entropy and its class-weighted form (Cui et al. 2019's baselines)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .registry import BalancingLoss, register_loss
from .weights import effective_number_weights, inverse_frequency_weights

WEIGHTINGS = ("inverse_frequency", "effective_number")


@register_loss("ce", description="plain softmax cross-entropy", reference="-")
class CrossEntropy(BalancingLoss):
    def forward(self, *, logits: torch.Tensor, features: torch.Tensor, targets: torch.Tensor):
        return F.cross_entropy(logits.float(), targets), {}


@register_loss(
    "reweight",
    description="cross-entropy weighted per class: inverse frequency, or effective number (balance.weighting)",
    reference="Cui et al. 2019, CVPR",
)
class ReweightedCrossEntropy(BalancingLoss):
    def __init__(
        self,
        *,
        class_counts: Sequence[int],
        feature_dim: int,
        weighting: str = "inverse_frequency",
        beta: float = 0.9999,
    ) -> None:
        super().__init__(class_counts=class_counts, feature_dim=feature_dim)
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting={weighting!r} is not a known choice; choose one of {list(WEIGHTINGS)}")
        weight = (
            effective_number_weights(class_counts, beta=beta)
            if weighting == "effective_number"
            else inverse_frequency_weights(class_counts)
        )
        self.register_buffer("class_weight", weight)

    def forward(self, *, logits: torch.Tensor, features: torch.Tensor, targets: torch.Tensor):
        return F.cross_entropy(logits.float(), targets, weight=self.class_weight), {}
