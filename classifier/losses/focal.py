"""Focal loss (Lin et al. 2017, ICCV)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .registry import BalancingLoss, register_loss


def focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, *, gamma: float = 2.0, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Lin et al. 2017: mean of -w_y (1 - p_y)^gamma log p_y; gamma=0 is (weighted) cross-entropy."""
    log_p = F.log_softmax(logits.float(), dim=1).gather(1, targets[:, None]).squeeze(1)
    loss = -((1.0 - log_p.exp()).clamp_min(0.0) ** gamma) * log_p
    if weight is not None:
        loss = loss * weight.to(loss.device)[targets]
    return loss.mean()


@register_loss(
    "focal", description="focal loss, down-weights easy examples (balance.gamma)", reference="Lin et al. 2017, ICCV"
)
class FocalLoss(BalancingLoss):
    def __init__(self, *, class_counts: Sequence[int], feature_dim: int, gamma: float = 2.0) -> None:
        super().__init__(class_counts=class_counts, feature_dim=feature_dim)
        self.gamma = gamma

    def forward(self, *, logits: torch.Tensor, features: torch.Tensor, targets: torch.Tensor):
        return focal_loss(logits, targets, gamma=self.gamma), {}
