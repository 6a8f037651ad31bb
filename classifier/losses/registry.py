"""The balancing-loss registry: one small module per loss family registers itself here by name.

A loss is an `nn.Module` subclass of `BalancingLoss`, built like timm's losses from explicit keyword
arguments: the *training* class counts (what the model is fitted on, generated samples included,
unless a strategy says otherwise), the feature width, and the loss's own parameters with their
defaults in its signature (`FocalLoss(gamma=2.0)`). Called as
`loss(logits=..., features=..., targets=...) -> (loss, parts)`. Adding a balancing loss is one file
in this package (a class decorated with `@register_loss(...)`, imported in `__init__`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .weights import class_prior

# Keyword arguments every loss takes; the rest of a loss's signature are its parameters.
COMMON_ARGUMENTS = ("class_counts", "feature_dim")


@dataclass(frozen=True)
class LossOption:
    name: str
    description: str
    reference: str
    head: str = "linear"
    build: type[BalancingLoss] | None = None

    @property
    def parameters(self) -> dict[str, Any]:
        """The loss's own keyword arguments and their defaults (from its signature)."""
        signature = inspect.signature(self.build.__init__)
        return {
            k: p.default
            for k, p in signature.parameters.items()
            if p.kind is p.KEYWORD_ONLY and k not in COMMON_ARGUMENTS
        }


LOSSES: dict[str, LossOption] = {}


class BalancingLoss(nn.Module):
    """Base of every registered loss: holds the class prior; no post-hoc bias, no schedule, no extra parameters."""

    def __init__(self, *, class_counts: Sequence[int], feature_dim: int) -> None:
        super().__init__()
        self.register_buffer("prior", class_prior(class_counts))

    def forward(
        self, *, logits: torch.Tensor, features: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def posthoc_logit_bias(self) -> torch.Tensor | None:
        """A bias added to the logits at prediction time only (post-hoc logit adjustment), else None."""
        return None

    def on_epoch_start(self, *, epoch: int, max_epochs: int) -> None:
        """Schedules that change the loss during training (LDAM's deferred re-weighting)."""

    def param_groups(self) -> list[dict[str, Any]]:
        """Learnable parameters of the loss itself (weighted-cluster centres), as optimiser groups."""
        return []


def register_loss(
    name: str, *, description: str, reference: str, head: str = "linear"
) -> Callable[[type[BalancingLoss]], type[BalancingLoss]]:
    def decorate(cls: type[BalancingLoss]) -> type[BalancingLoss]:
        if name in LOSSES:
            raise ValueError(f"balancing loss {name!r} is registered twice ({LOSSES[name].build} and {cls})")
        LOSSES[name] = LossOption(name=name, description=description, reference=reference, head=head, build=cls)
        return cls

    return decorate


def create_loss(name: str, *, class_counts: Sequence[int], feature_dim: int, **kwargs: Any) -> BalancingLoss:
    """The registered loss `name` with its own parameters as keyword arguments (unknown ones are refused)."""
    if name not in LOSSES:
        raise ValueError(f"balance.loss={name!r} is not a known choice; choose one of {sorted(LOSSES)}")
    option = LOSSES[name]
    unknown = sorted(set(kwargs) - set(option.parameters))
    if unknown:
        raise ValueError(
            f"loss {name!r} takes no parameter {unknown}; its parameters are {sorted(option.parameters) or 'none'}"
        )
    return option.build(class_counts=class_counts, feature_dim=feature_dim, **kwargs)


def sample_weighted_loss(
    criterion: BalancingLoss,
    *,
    logits: torch.Tensor,
    features: torch.Tensor,
    targets: torch.Tensor,
    generated: torch.Tensor | None,
    generated_weight: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The loss of a batch in which each generated sample counts `generated_weight` times a real one.

    The real and the generated part are scored separately and combined as a weighted mean,
    (n_real * L_real + w * n_gen * L_gen) / (n_real + w * n_gen): for a per-sample mean such as
    cross-entropy this is exactly the per-sample weighted mean (DiffuLT down-weights synthetic samples
    this way), and w = 0 is the real part's loss, with the real part's gradients. Weight 1 (or a
    batch without generated samples) scores the batch whole, exactly as before.
    """
    if generated is None or generated_weight == 1.0 or not bool(generated.any()):
        return criterion(logits=logits, features=features, targets=targets)
    real = ~generated
    n_real, n_gen = int(real.sum()), int(generated.sum())
    total, parts, norm = logits.sum() * 0.0, {}, n_real + generated_weight * n_gen
    if norm == 0:  # only generated samples, all at weight 0: nothing to learn from this batch
        return total, parts
    for mask, count, weight in ((real, n_real, 1.0), (generated, n_gen, generated_weight)):
        if count and weight:
            loss, parts = criterion(logits=logits[mask], features=features[mask], targets=targets[mask])
            total = total + loss * (weight * count / norm)
    return total, parts
