"""The balancing-loss registry: one small module per loss family registers itself here by name.

A loss is an `nn.Module` subclass of `BalancingLoss`, built from the run's `BalanceSpec` and the
*training* class counts (what the model is fitted on, generated samples included), called as
`loss(logits=..., features=..., targets=...) -> (loss, parts)`. Adding a balancing loss is one
file in this package (a class decorated with `@register_loss(...)`, imported in `__init__`)
plus one config file in conf/balance/.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .weights import class_prior


@dataclass(frozen=True)
class LossOption:
    name: str
    description: str
    reference: str
    head: str = "linear"
    build: type[BalancingLoss] | None = None


LOSSES: dict[str, LossOption] = {}


class BalancingLoss(nn.Module):
    """Base of every registered loss: holds the class prior; no post-hoc bias, no schedule, no extra parameters."""

    def __init__(self, *, spec: Any, class_counts: Sequence[int], feature_dim: int) -> None:
        super().__init__()
        self.spec = spec
        self.register_buffer("prior", class_prior(class_counts))

    def forward(self, *, logits: torch.Tensor, features: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def posthoc_logit_bias(self) -> torch.Tensor | None:
        """A bias added to the logits at prediction time only (post-hoc logit adjustment), else None."""
        return None

    def on_epoch_start(self, *, epoch: int, max_epochs: int) -> None:
        """Schedules that change the loss during training (LDAM's deferred re-weighting)."""

    def param_groups(self) -> list[dict[str, Any]]:
        """Learnable parameters of the loss itself (weighted-cluster centres), as optimiser groups."""
        return []


def register_loss(name: str, *, description: str, reference: str, head: str = "linear") -> Callable[[type[BalancingLoss]], type[BalancingLoss]]:
    def decorate(cls: type[BalancingLoss]) -> type[BalancingLoss]:
        if name in LOSSES:
            raise ValueError(f"balancing loss {name!r} is registered twice ({LOSSES[name].build} and {cls})")
        LOSSES[name] = LossOption(name=name, description=description, reference=reference, head=head, build=cls)
        return cls

    return decorate


def create_loss(*, spec: Any, class_counts: Sequence[int], feature_dim: int) -> BalancingLoss:
    """The training loss of a resolved strategy (`spec.loss` names a registered loss)."""
    if spec.loss not in LOSSES:
        raise ValueError(f"balance.loss={spec.loss!r} is not a known choice; choose one of {sorted(LOSSES)}")
    return LOSSES[spec.loss].build(spec=spec, class_counts=class_counts, feature_dim=feature_dim)
