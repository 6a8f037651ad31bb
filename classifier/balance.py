"""Balancing strategies: one registry, each strategy a small named unit (a loss, a sampler, a data source).

Losses live in `classifier/losses/` (one module per family, registered by name); a strategy
names a loss, a sampler and whether generated data is added.

`balance=<name>` picks a strategy; `balance.loss=<loss>` and `balance.sampler=<sampler>` can be
overridden, so `balance=synthetic balance.loss=reweight` trains on real + VAE-GAN samples with a
reweighted loss. Unknown names fail with the list of choices.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .losses import LOSSES, create_loss  # noqa: F401  (create_loss: a strategy's loss is built from its spec)


@dataclass(frozen=True)
class Strategy:
    name: str
    loss: str
    sampler: str
    synthetic: bool
    description: str
    reference: str
    params: tuple[tuple[str, Any], ...] = ()


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
