"""LDAM-DRW: label-distribution-aware margins with deferred re-weighting (Cao et al. 2019, NeurIPS)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .registry import BalancingLoss, register_loss
from .weights import _counts, effective_number_weights

log = logging.getLogger(__name__)


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


@register_loss(
    "ldam_drw",
    description="label-distribution-aware margins on a cosine head, deferred re-weighting late in training",
    reference="Cao et al. 2019, NeurIPS",
    head="cosine",
)
class LDAMDRW(BalancingLoss):
    def __init__(
        self,
        *,
        class_counts: Sequence[int],
        feature_dim: int,
        max_margin: float = 0.5,
        scale: float = 30.0,
        beta: float = 0.9999,
        drw_start: float = 0.8,
    ) -> None:
        super().__init__(class_counts=class_counts, feature_dim=feature_dim)
        if not 0.0 <= drw_start <= 1.0:
            raise ValueError(f"drw_start={drw_start} is a fraction of the epochs, in [0, 1]")
        self.drw_start = drw_start
        self.ldam = LDAMLoss(class_counts=class_counts, max_margin=max_margin, scale=scale)
        self.ldam.class_weight.copy_(effective_number_weights(class_counts, beta=beta))

    def on_epoch_start(self, *, epoch: int, max_epochs: int) -> None:
        """DRW: switch the re-weighting on at `drw_start` of the epochs."""
        switch = int(round(self.drw_start * max_epochs))
        if epoch >= switch and not self.ldam.reweighting:
            log.info("LDAM-DRW: deferred re-weighting on from epoch %d", epoch)
        self.ldam.reweighting = epoch >= switch

    def forward(self, *, logits: torch.Tensor, features: torch.Tensor, targets: torch.Tensor):
        return self.ldam(logits, targets), {}
