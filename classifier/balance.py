"""Balancing strategies: one registry, each strategy a small named unit (a loss, a sampler, a data source).

`balance=<name>` picks a strategy; `balance.loss=<loss>` and `balance.sampler=<sampler>` can be
overridden, so `balance=synthetic balance.loss=reweight` trains on real + VAE-GAN samples with a
reweighted loss. Unknown names fail with the list of choices.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import losses as L

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Strategy:
    name: str
    loss: str
    sampler: str
    synthetic: bool
    description: str
    reference: str
    params: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class LossOption:
    name: str
    description: str
    reference: str
    head: str = "linear"


LOSSES: dict[str, LossOption] = {
    o.name: o
    for o in (
        LossOption("ce", "plain softmax cross-entropy", "-"),
        LossOption("reweight", "cross-entropy weighted per class: inverse frequency, or effective number (balance.weighting)", "Cui et al. 2019, CVPR"),
        LossOption("focal", "focal loss, down-weights easy examples (balance.gamma)", "Lin et al. 2017, ICCV"),
        LossOption("weighted_cluster", "softmax + weighted-cluster loss: a learned center per class, weighted by class share (balance.center_weight)", "Ngo & Yoon 2020, Sensors"),
        LossOption("balanced_softmax", "softmax over logits + log prior during training", "Ren et al. 2020, NeurIPS"),
        LossOption("logit_adjust", "logit adjustment by tau*log prior, training-time or post-hoc (balance.mode)", "Menon et al. 2021, ICLR"),
        LossOption("ldam_drw", "label-distribution-aware margins on a cosine head, deferred re-weighting late in training", "Cao et al. 2019, NeurIPS", head="cosine"),
    )
}
LOSS_ALIASES = {"none": "ce", "cross_entropy": "ce"}
SAMPLERS = ("none", "class_balanced")

STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy("none", "ce", "none", False, "plain cross-entropy on the real train split", "-"),
        Strategy("oversample", "ce", "class_balanced", False, "class-balanced sampler: every class drawn equally often (with replacement)", "Buda et al. 2018, Neural Networks"),
        Strategy("reweight", "reweight", "none", False, LOSSES["reweight"].description, LOSSES["reweight"].reference),
        Strategy("reweight_effective", "reweight", "none", False, "cross-entropy weighted by the inverse effective number of samples, (1-beta)/(1-beta^n)", "Cui et al. 2019, CVPR", (("weighting", "effective_number"),)),
        Strategy("focal", "focal", "none", False, LOSSES["focal"].description, LOSSES["focal"].reference),
        Strategy("weighted_cluster", "weighted_cluster", "none", False, LOSSES["weighted_cluster"].description, LOSSES["weighted_cluster"].reference),
        Strategy("balanced_softmax", "balanced_softmax", "none", False, LOSSES["balanced_softmax"].description, LOSSES["balanced_softmax"].reference),
        Strategy("logit_adjust", "logit_adjust", "none", False, LOSSES["logit_adjust"].description, LOSSES["logit_adjust"].reference),
        Strategy("logit_adjust_posthoc", "logit_adjust", "none", False, "plain CE; predictions use logits - tau*log prior", "Menon et al. 2021, ICLR", (("mode", "posthoc"),)),
        Strategy("ldam_drw", "ldam_drw", "none", False, LOSSES["ldam_drw"].description, LOSSES["ldam_drw"].reference),
        Strategy("synthetic", "ce", "none", True, "real train + VAE-GAN samples from an augmentation folder (balance.generated_dir); combine with balance.loss=<loss>", "Larsen et al. 2016 (VAE-GAN); this project"),
    )
}

WEIGHTINGS = ("inverse_frequency", "effective_number")
LOGIT_ADJUST_MODES = ("train", "posthoc")


@dataclass(frozen=True)
class BalanceSpec:
    """A resolved `balance` config: what a run actually does, with every parameter explicit."""

    name: str
    loss: str
    sampler: str
    synthetic: bool
    generated_dir: str | None = None
    weighting: str = "inverse_frequency"
    beta: float = 0.9999
    gamma: float = 2.0
    center_weight: float = 0.01
    center_lr: float = 0.5
    tau: float = 1.0
    mode: str = "train"
    max_margin: float = 0.5
    scale: float = 30.0
    drw_start: float = 0.8

    @property
    def head(self) -> str:
        return LOSSES[self.loss].head

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _choose(value: str, choices: Sequence[str], *, key: str) -> str:
    if value not in choices:
        raise ValueError(f"{key}={value!r} is not a known choice; choose one of {list(choices)}")
    return value


def resolve_balance(cfg: Mapping[str, Any]) -> BalanceSpec:
    """The `balance` config group -> a checked BalanceSpec (unknown names list the choices)."""
    get = cfg.get if hasattr(cfg, "get") else (lambda k, d=None: getattr(cfg, k, d))
    name = _choose(str(get("name", "none")), list(STRATEGIES), key="balance (balance.name)")
    strategy = STRATEGIES[name]
    loss = get("loss") or strategy.loss
    loss = LOSS_ALIASES.get(str(loss), str(loss))
    _choose(loss, list(LOSSES), key="balance.loss")
    sampler = _choose(str(get("sampler") or strategy.sampler), SAMPLERS, key="balance.sampler")
    preset = dict(strategy.params)
    get_or = lambda key, default: get(key) if get(key) is not None else preset.get(key, default)  # noqa: E731
    generated_dir = get("generated_dir")
    if strategy.synthetic and not generated_dir:
        raise ValueError(
            "balance=synthetic needs balance.generated_dir=PATH, an augmentation output folder "
            "(manifest.csv + PNGs, written by scripts/augment.py)"
        )
    if generated_dir and not strategy.synthetic:
        raise ValueError(f"balance.generated_dir is set but balance={name} does not use generated data; use balance=synthetic")
    defaults = BalanceSpec(name=name, loss=loss, sampler=sampler, synthetic=strategy.synthetic)
    fields = {k: type(getattr(defaults, k))(get(k)) for k in ("beta", "gamma", "center_weight", "center_lr", "tau", "max_margin", "scale", "drw_start") if get(k) is not None}
    spec = BalanceSpec(
        name=name, loss=loss, sampler=sampler, synthetic=strategy.synthetic,
        generated_dir=str(generated_dir) if generated_dir else None,
        weighting=_choose(str(get_or("weighting", "inverse_frequency")), WEIGHTINGS, key="balance.weighting"),
        mode=_choose(str(get_or("mode", "train")), LOGIT_ADJUST_MODES, key="balance.mode"),
        **fields,
    )
    if not 0.0 <= spec.drw_start <= 1.0:
        raise ValueError(f"balance.drw_start={spec.drw_start} is a fraction of the epochs, in [0, 1]")
    return spec


class BalancedLoss(nn.Module):
    """The training loss of a strategy: `loss(logits=..., features=..., targets=...)`.

    Holds the class statistics it needs (weights, prior, margins, centers) as buffers/parameters.
    """

    def __init__(self, *, spec: BalanceSpec, class_counts: Sequence[int], feature_dim: int) -> None:
        super().__init__()
        self.spec = spec
        self.register_buffer("prior", L.class_prior(class_counts))
        weight = None
        if spec.loss == "reweight":
            weight = (
                L.effective_number_weights(class_counts, beta=spec.beta)
                if spec.weighting == "effective_number"
                else L.inverse_frequency_weights(class_counts)
            )
        self.register_buffer("class_weight", weight if weight is not None else torch.ones(len(class_counts)))
        self.cluster = (
            L.WeightedClusterLoss(class_counts=class_counts, feature_dim=feature_dim) if spec.loss == "weighted_cluster" else None
        )
        self.ldam = (
            L.LDAMLoss(class_counts=class_counts, max_margin=spec.max_margin, scale=spec.scale) if spec.loss == "ldam_drw" else None
        )
        if self.ldam is not None:
            self.ldam.class_weight.copy_(L.effective_number_weights(class_counts, beta=spec.beta))

    def posthoc_logit_bias(self) -> torch.Tensor | None:
        """-tau * log prior when the strategy adjusts logits post hoc (Menon et al. 2021), else None."""
        if self.spec.loss == "logit_adjust" and self.spec.mode == "posthoc":
            return -self.spec.tau * self.prior.log()
        return None

    def on_epoch_start(self, *, epoch: int, max_epochs: int) -> None:
        """DRW: switch LDAM's re-weighting on at `drw_start` of the epochs."""
        if self.ldam is not None:
            switch = int(round(self.spec.drw_start * max_epochs))
            if epoch >= switch and not self.ldam.reweighting:
                log.info("LDAM-DRW: deferred re-weighting on from epoch %d", epoch)
            self.ldam.reweighting = epoch >= switch

    def forward(self, *, logits: torch.Tensor, features: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        spec, parts = self.spec, {}
        logits = logits.float()
        if spec.loss == "ce" or (spec.loss == "logit_adjust" and spec.mode == "posthoc"):
            loss = F.cross_entropy(logits, targets)
        elif spec.loss == "reweight":
            loss = F.cross_entropy(logits, targets, weight=self.class_weight)
        elif spec.loss == "focal":
            loss = L.focal_loss(logits, targets, gamma=spec.gamma)
        elif spec.loss == "balanced_softmax":
            loss = L.balanced_softmax_loss(logits, targets, prior=self.prior)
        elif spec.loss == "logit_adjust":
            loss = L.logit_adjusted_cross_entropy(logits, targets, prior=self.prior, tau=spec.tau)
        elif spec.loss == "ldam_drw":
            loss = self.ldam(logits, targets)
        elif spec.loss == "weighted_cluster":
            ce = F.cross_entropy(logits, targets)
            cluster = self.cluster(features, targets)
            parts = {"ce": ce.detach(), "weighted_cluster": cluster.detach()}
            loss = ce + spec.center_weight * cluster
        else:  # resolve_balance only lets known losses through
            raise AssertionError(spec.loss)
        return loss, parts


def strategy_table() -> str:
    """Markdown table of the strategies (README)."""
    rows = ["| `balance=` | what it does | reference |", "|---|---|---|"]
    rows += [f"| `{s.name}` | {s.description} | {s.reference} |" for s in STRATEGIES.values()]
    return "\n".join(rows)
