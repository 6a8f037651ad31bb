"""Prior-corrected logits: balanced softmax (Ren et al. 2020) and logit adjustment (Menon et al. 2021),
training-time or post hoc. One formula for the post-hoc bias, used by the loss and by prediction."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .registry import BalancingLoss, register_loss

# train: the adjusted loss; posthoc: plain CE, the prior removed at prediction time.
LOGIT_ADJUST_MODES = ("train", "posthoc")


def logit_adjusted_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, *, prior: torch.Tensor, tau: float = 1.0
) -> torch.Tensor:
    """Menon et al. 2021 (logit adjustment, training-time): CE(logits + tau * log prior).
    tau = 1 is Ren et al. 2020's balanced softmax."""
    return F.cross_entropy(logits.float() + tau * prior.to(logits.device).log(), targets)


def balanced_softmax_loss(logits: torch.Tensor, targets: torch.Tensor, *, prior: torch.Tensor) -> torch.Tensor:
    """Ren et al. 2020, "Balanced Meta-Softmax": softmax over logits + log n_j."""
    return logit_adjusted_cross_entropy(logits, targets, prior=prior, tau=1.0)


def posthoc_logit_bias(prior: torch.Tensor, *, tau: float = 1.0) -> torch.Tensor:
    """Menon et al. 2021 (post-hoc): the bias -tau * log prior_j added to the logits at prediction time."""
    return -tau * prior.log()


def posthoc_logit_adjust(logits: torch.Tensor, *, prior: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """Predict argmax_j of logits_j - tau * log prior_j."""
    return logits + posthoc_logit_bias(prior.to(logits.device, logits.dtype), tau=tau)


@register_loss(
    "balanced_softmax",
    description="softmax over logits + log prior during training",
    reference="Ren et al. 2020, NeurIPS",
)
class BalancedSoftmax(BalancingLoss):
    def forward(self, *, logits: torch.Tensor, features: torch.Tensor, targets: torch.Tensor):
        return balanced_softmax_loss(logits.float(), targets, prior=self.prior), {}


@register_loss(
    "logit_adjust",
    description="logit adjustment by tau*log prior, training-time or post-hoc (balance.mode)",
    reference="Menon et al. 2021, ICLR",
)
class LogitAdjustment(BalancingLoss):
    def __init__(self, *, class_counts: Sequence[int], feature_dim: int, tau: float = 1.0, mode: str = "train") -> None:
        super().__init__(class_counts=class_counts, feature_dim=feature_dim)
        if mode not in LOGIT_ADJUST_MODES:
            raise ValueError(f"mode={mode!r} is not a known choice; choose one of {list(LOGIT_ADJUST_MODES)}")
        self.tau, self.mode = tau, mode

    def forward(self, *, logits: torch.Tensor, features: torch.Tensor, targets: torch.Tensor):
        if self.mode == "posthoc":  # train with plain CE; the prior is removed at prediction time
            return F.cross_entropy(logits.float(), targets), {}
        return logit_adjusted_cross_entropy(logits.float(), targets, prior=self.prior, tau=self.tau), {}

    def posthoc_logit_bias(self) -> torch.Tensor | None:
        return posthoc_logit_bias(self.prior, tau=self.tau) if self.mode == "posthoc" else None
