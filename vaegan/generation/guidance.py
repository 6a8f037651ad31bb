"""Classifier-guided transfer: M2m (Kim et al., CVPR 2020) in the VAE-GAN's latent space.

M2m translates a majority image into a minority class by a few gradient steps on the *image* that make
a classifier trained on real data predict the minority class, with a penalty on the source class's
logit, and keeps only the results that classifier calls the minority class with confidence >= 0.9.
Here the steps move the *code* of a larger class's face, decoded with the minority label, so the
image stays on the decoder's manifold (no adversarial pixel noise) and the donor's identity, pose and
background come along. The guide is the quality filter's judge, so the judge's verdict on these samples
is partly by construction: their before-filter fidelity ratio is an upper bound, and CAS (a classifier
trained on them, tested on real faces) is the figure that is not circular.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# float images in [0, 1], `b 3 h w`, differentiable -> logits `b C` (the judge without torch.no_grad)
Guide = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True, kw_only=True)
class Guidance:
    """How far the judge may steer a code. M2m's values: T = 10 steps, source-logit penalty 0.5."""

    steps: int = 10
    # Each step moves every code by `step_size` along its own normalised gradient, so 10 steps move a code
    # at most 3 prior standard deviations (the prior is N(0, I)): far enough to change an expression the
    # decoder draws, near enough that the donor's identity stays (the report's "identity kept").
    step_size: float = 0.3
    penalty: float = 0.5

    def __post_init__(self) -> None:
        if self.steps < 0 or not self.step_size >= 0 or not self.penalty >= 0:
            raise ValueError(f"guidance needs steps >= 0, step_size >= 0 and penalty >= 0, got {self}")


def guide_codes(
    model,
    z: torch.Tensor,
    *,
    labels: torch.Tensor,
    source_labels: torch.Tensor,
    guide: Guide,
    guidance: Guidance,
) -> torch.Tensor:
    """`z` after `guidance.steps` normalised gradient steps on
    CE(guide(dec(z, y)), y) + penalty * guide(dec(z, y))[source class], per code; the decoder and the
    guide stay frozen (gradients are taken with respect to the codes only)."""
    labels, source_labels = labels.to(z.device), source_labels.to(z.device)
    z = z.detach().float()
    for _ in range(guidance.steps):
        z = z.requires_grad_(True)
        with torch.enable_grad():
            images = model.decode(z, labels).float().add(1.0).div(2.0)  # tanh range -> [0, 1]
            logits = guide(images).float()
            source_logit = logits.gather(1, source_labels.view(-1, 1)).squeeze(1)
            # Summed, not averaged, so each code's gradient is its own loss's (codes do not share a batch mean).
            loss = F.cross_entropy(logits, labels, reduction="sum") + guidance.penalty * source_logit.sum()
            (grad,) = torch.autograd.grad(loss, z)
        step = grad / grad.norm(dim=1, keepdim=True).clamp_min(1e-12)
        z = (z - guidance.step_size * step).detach()
    return z
