"""Balancing strategies: one registry, each strategy a small named unit (a loss, a sampler, a data source).

This registry is the one place that says what a strategy does; `conf/balance/<name>.yaml` only
names it (so `balance=<name>` is a Hydra choice) and every balance key there defaults to null,
"the strategy's own choice". Losses live in `classifier/losses/` (one module per family, registered
by name, parameters as keyword arguments with their defaults).

`balance=<name>` picks a strategy; `balance.loss=<loss>`, `balance.sampler=<sampler>` and any
parameter can be overridden, so `balance=synthetic balance.loss=reweight` trains on real + VAE-GAN
samples with a reweighted loss. Unknown names fail with the list of choices; a parameter the chosen
loss does not take fails naming the loss's parameters.

Samplers (classifier/data.py): `none` (uniform), `class_balanced` (every class drawn equally often),
`replace` (class-balanced; a drawn slot of class k is a generated sample of k with probability
p_k = 1 - n_k / n_max, else a real image: M2m's rule, Kim et al. 2020).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from .losses import LOSSES, create_loss

SAMPLERS = ("none", "class_balanced", "replace")
# Which class counts a loss's statistics (prior, weights, margins) come from: what the model is fitted
# on ("fit", generated samples included) or the real long tail ("real", as RSG keeps LDAM-DRW's).
LOSS_COUNTS = ("fit", "real")
LOSS_ALIASES = {"none": "ce", "cross_entropy": "ce"}
# The generated-data keys and their values when neither the strategy nor the config sets them.
SAMPLING_DEFAULTS = {"synthetic_weight": 1.0, "synthetic_start": 0.0, "replace_prob": None, "loss_counts": "fit"}


@dataclass(frozen=True)
class Strategy:
    name: str
    loss: str
    sampler: str
    description: str
    reference: str
    synthetic: bool = False
    # CAS (Ravuri & Vinyals 2019): the classes the generated set fills train on generated images only.
    generated_replaces_real: bool = False
    presets: Mapping[str, Any] = field(default_factory=dict)  # this strategy's values of balance.* keys


STRATEGIES: dict[str, Strategy] = {}


def register_strategy(
    name: str,
    *,
    loss: str = "ce",
    sampler: str = "none",
    description: str | None = None,
    reference: str | None = None,
    **kwargs: Any,
) -> Strategy:
    """Add a strategy; a loss-only strategy borrows its loss's description and reference."""
    if name in STRATEGIES:
        raise ValueError(f"balancing strategy {name!r} is registered twice")
    strategy = Strategy(
        name=name,
        loss=loss,
        sampler=sampler,
        description=description or LOSSES[loss].description,
        reference=reference or LOSSES[loss].reference,
        **kwargs,
    )
    STRATEGIES[name] = strategy
    return strategy


GENERATED = "real train + VAE-GAN samples from an augmentation folder (balance.generated_dir)"
register_strategy("none", description="plain cross-entropy on the real train split", reference="-")
register_strategy(
    "oversample",
    sampler="class_balanced",
    description="class-balanced sampler: every class drawn equally often (with replacement)",
    reference="Buda et al. 2018, Neural Networks",
)
register_strategy("reweight", loss="reweight")
register_strategy(
    "reweight_effective",
    loss="reweight",
    presets={"weighting": "effective_number"},
    description="cross-entropy weighted by the inverse effective number of samples, (1-beta)/(1-beta^n)",
)
register_strategy("focal", loss="focal")
register_strategy("weighted_cluster", loss="weighted_cluster")
register_strategy("balanced_softmax", loss="balanced_softmax")
register_strategy("logit_adjust", loss="logit_adjust")
register_strategy(
    "logit_adjust_posthoc",
    loss="logit_adjust",
    presets={"mode": "posthoc"},
    description="plain CE; predictions use logits - tau*log prior",
)
register_strategy("ldam_drw", loss="ldam_drw")
register_strategy(
    "synthetic",
    synthetic=True,
    description=f"{GENERATED}; combine with balance.loss=<loss>",
    reference="Larsen et al. 2016 (VAE-GAN); this project",
)
register_strategy(
    "oversample_synthetic",
    sampler="replace",
    synthetic=True,
    description="class-balanced sampling; a drawn slot of class k is a generated sample of k with probability "
    "1 - n_k/n_max (balance.replace_prob), else a real image",
    reference="Kim et al. 2020 (M2m), CVPR",
)
# 0.8: M2m generates only in the last 40 of 200 epochs and RSG only after epoch 160 of 200: both let the
# network learn the real data first and bring generated samples in for the last fifth.
register_strategy(
    "synthetic_deferred",
    sampler="replace",
    synthetic=True,
    presets={"synthetic_start": 0.8},
    description="oversample until balance.synthetic_start of the steps, then oversample_synthetic's replacement",
    reference="Kim et al. 2020 (M2m); Wang et al. 2021 (RSG), CVPR",
)
# RSG: LDAM-DRW on the real counts, generated tail samples from the point re-weighting starts (0.8).
register_strategy(
    "synthetic_ldam_drw",
    loss="ldam_drw",
    synthetic=True,
    presets={"synthetic_start": 0.8, "loss_counts": "real"},
    description="LDAM-DRW on the real counts; generated samples join the uniform draw from balance.synthetic_start",
    reference="Cao et al. 2019; Wang et al. 2021 (RSG), CVPR",
)
register_strategy(
    "cas",
    synthetic=True,
    generated_replaces_real=True,
    description="classification accuracy score: real images of the classes at or above the target, ONLY generated "
    "images for the classes below it; an evaluation figure of the generator, not a competitor",
    reference="Ravuri & Vinyals 2019, NeurIPS",
)


@dataclass(frozen=True)
class BalanceSpec:
    """A resolved `balance` config: what a run actually does, with every parameter explicit."""

    name: str
    loss: str
    sampler: str
    synthetic: bool
    generated_dir: str | None = None
    loss_args: dict[str, Any] = field(default_factory=dict)  # the loss's own keyword arguments
    generated_replaces_real: bool = False
    synthetic_weight: float = 1.0  # loss weight of a generated sample relative to a real one
    synthetic_start: float = 0.0  # fraction of the optimiser steps before which no generated sample is drawn
    replace_prob: float | dict[str, float] | None = None  # sampler=replace: p_k; None is 1 - n_k/n_max
    loss_counts: str = "fit"
    # Train on a generated set whose augmenter run did not finish (refused otherwise); recorded in metrics.json.
    allow_incomplete_generated: bool = False

    @property
    def head(self) -> str:
        return LOSSES[self.loss].head

    def as_dict(self) -> dict[str, Any]:
        """Flat, as metrics.json and checkpoint metadata record it: the loss's parameters beside the rest."""
        record = asdict(self)
        return {**{k: v for k, v in record.items() if k != "loss_args"}, **record["loss_args"]}


def _choose(value: str, choices: Any, *, key: str) -> str:
    if value not in choices:
        raise ValueError(f"{key}={value!r} is not a known choice; choose one of {list(choices)}")
    return value


def _plain(value: Any) -> Any:
    """An OmegaConf node or a plain value -> plain Python (a mapping stays a mapping)."""
    return {str(k): float(v) for k, v in value.items()} if hasattr(value, "items") else value


def _loss_args(loss: str, get: Any, presets: Mapping[str, Any]) -> dict[str, Any]:
    """The chosen loss's keyword arguments: config value, else the strategy's, else the loss's default."""
    args = {}
    for key, default in LOSSES[loss].parameters.items():
        value = get(key) if get(key) is not None else presets.get(key, default)
        args[key] = (
            type(default)(value) if isinstance(default, (int, float, str)) and not isinstance(default, bool) else value
        )
    return args


def _check_sampling(spec: BalanceSpec) -> None:
    if not 0.0 <= spec.synthetic_start < 1.0:
        raise ValueError(
            f"balance.synthetic_start={spec.synthetic_start} is a fraction of the optimiser steps, in [0, 1)"
        )
    if not spec.synthetic_weight >= 0.0:
        raise ValueError(
            f"balance.synthetic_weight={spec.synthetic_weight} must be >= 0 (1: a generated sample counts as a real one)"
        )
    probs = spec.replace_prob.values() if isinstance(spec.replace_prob, dict) else [spec.replace_prob]
    if any(
        p is not None and (isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= float(p) <= 1.0)
        for p in probs
    ):
        raise ValueError(
            f"balance.replace_prob={spec.replace_prob} must be probabilities in [0, 1] (one number or per class)"
        )
    if spec.replace_prob is not None and spec.sampler != "replace":
        raise ValueError(
            f"balance.replace_prob is set but balance.sampler={spec.sampler}; it applies to sampler=replace only"
        )
    if not spec.synthetic and (spec.synthetic_start or spec.synthetic_weight != 1.0):
        raise ValueError(
            f"balance.synthetic_start / synthetic_weight are set but balance={spec.name} uses no generated data"
        )


def resolve_balance(cfg: Mapping[str, Any]) -> BalanceSpec:
    """The `balance` config group -> a checked BalanceSpec (unknown names list the choices)."""
    get = cfg.get if hasattr(cfg, "get") else (lambda k, d=None: getattr(cfg, k, d))
    name = _choose(str(get("name", "none")), list(STRATEGIES), key="balance (balance.name)")
    strategy = STRATEGIES[name]
    loss = str(get("loss") or strategy.loss)
    loss = _choose(LOSS_ALIASES.get(loss, loss), list(LOSSES), key="balance.loss")
    sampler = _choose(str(get("sampler") or strategy.sampler), SAMPLERS, key="balance.sampler")
    generated_dir = get("generated_dir")
    if strategy.synthetic and not generated_dir:
        raise ValueError(
            f"balance={name} needs balance.generated_dir=PATH, an augmentation output folder "
            "(manifest.csv + PNGs, written by scripts/augment.py)"
        )
    synthetic_names = sorted(n for n, s in STRATEGIES.items() if s.synthetic)
    if generated_dir and not strategy.synthetic:
        raise ValueError(
            f"balance.generated_dir is set but balance={name} does not use generated data; use one of {synthetic_names}"
        )
    if sampler == "replace" and not strategy.synthetic:
        raise ValueError(
            f"balance.sampler=replace swaps real images for generated ones; balance={name} has none ({synthetic_names} do)"
        )
    sampling = {
        k: _plain(get(k)) if get(k) is not None else strategy.presets.get(k, default)
        for k, default in SAMPLING_DEFAULTS.items()
    }
    spec = BalanceSpec(
        name=name,
        loss=loss,
        sampler=sampler,
        synthetic=strategy.synthetic,
        generated_dir=str(generated_dir) if generated_dir else None,
        loss_args=_loss_args(loss, get, strategy.presets),
        generated_replaces_real=strategy.generated_replaces_real,
        synthetic_weight=float(sampling["synthetic_weight"]),
        synthetic_start=float(sampling["synthetic_start"]),
        replace_prob=sampling["replace_prob"],
        loss_counts=_choose(str(sampling["loss_counts"]), LOSS_COUNTS, key="balance.loss_counts"),
        allow_incomplete_generated=bool(get("allow_incomplete_generated") or False),
    )
    _check_sampling(spec)
    ignored = sorted({k for option in LOSSES.values() for k in option.parameters} - set(spec.loss_args))
    ignored = [k for k in ignored if get(k) is not None]
    if ignored:
        raise ValueError(
            f"balance={name} uses loss {loss}, which takes no {ignored}; its parameters are {sorted(spec.loss_args) or 'none'}"
        )
    try:  # every parameter checked now, before data or weights are touched
        create_loss(loss, class_counts=[1, 1], feature_dim=1, **spec.loss_args)
    except ValueError as error:
        raise ValueError(f"balance={name} (loss {loss}): {error}") from error
    return spec
