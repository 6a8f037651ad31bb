"""Defaults that work the first time on any FER data: a training budget in optimiser steps, an
input-size rule for pretrained backbones, and a guard that flags runs that collapsed.

Budget. A budget in epochs starves small datasets: 8 epochs of a 300-image set at batch 64 are
~40 optimiser steps, 3 of them head-only, and the model stays at chance. The run therefore
trains for `max(train.epochs, ceil(train.min_steps / steps_per_epoch))` epochs; the warm-up and
the early-stopping patience keep their share of the budget (they scale with it), the head-only
stage grows only up to a tenth of it, and early stopping cannot end a run before half of it (a validation set of 30 images
is noisy, and an early plateau is not convergence). Large datasets are untouched: once
`train.epochs` epochs already give `min_steps` steps, nothing changes. A debug run that caps
its batches (`train.limit_train_batches`) gets exactly the epochs it asked for.

Input size. An ImageNet CNN's last stage has stride 32: a 32 px face becomes one 1x1 feature map,
a 48 px face 2x2, and transfer learning has nothing left to transfer. When `classifier.input_size`
is not set, images are resized up on the device to at least 3x the backbone's output stride
(96 px for stride-32 CNNs: a 3x3 final map), never down; models with a fixed input size (ViTs)
get that size; a backbone trained from scratch keeps the data's size. An explicit
`classifier.input_size` is used exactly as given.

Collapse. A run whose test predictions fall into one class, or whose best validation mean class
accuracy stays near chance (1/K), learned nothing; it is flagged in metrics.json, warned about at
the end of the run, and marked in the ablation report, never silently averaged as a result.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch

# A final feature map of at least MIN_FEATURE_MAP x MIN_FEATURE_MAP cells.
MIN_FEATURE_MAP = 3
DEFAULT_REDUCTION = 32
# Most of a scaled-up budget goes to fine-tuning the whole network (see plan_budget).
HEAD_ONLY_SHARE = 0.1
# Validation mean class accuracy below chance * CHANCE_MARGIN counts as "at chance".
CHANCE_MARGIN = 1.25


@dataclass(frozen=True)
class TrainingBudget:
    """The schedule a run really uses, derived from the config and the size of its training set."""

    steps_per_epoch: int
    epochs: int
    freeze_epochs: int
    warmup_epochs: float
    early_stop_patience: int | None
    min_epochs: int
    total_steps: int
    scaled: float  # epochs / train.epochs: 1.0 when the data was large enough already

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan_budget(
    *,
    num_train: int,
    batch_size: int,
    epochs: int,
    min_steps: int = 0,
    freeze_epochs: int = 0,
    warmup_epochs: float = 0.0,
    early_stop_patience: int | None = None,
    world_size: int = 1,
    drop_last: bool = True,
) -> TrainingBudget:
    """Epochs from the configured epochs and a minimum number of optimiser steps (see the module doc)."""
    if num_train < 1:
        raise ValueError(f"the training split is empty (num_train={num_train})")
    per_rank = math.ceil(num_train / world_size)
    # The same rule as classifier.data.FaceDataModule: a trailing partial batch is dropped once a rank has more than one.
    steps_per_epoch = max(
        1, per_rank // batch_size if drop_last and per_rank > batch_size else math.ceil(per_rank / batch_size)
    )
    target = max(int(epochs), math.ceil(int(min_steps) / steps_per_epoch)) if min_steps else int(epochs)
    scale = target / max(1, int(epochs))
    # The head-only stage grows with the budget only up to HEAD_ONLY_SHARE of it: a long frozen stage
    # fits the head to features the fine-tuning stage then moves (BatchNorm leaves eval mode), so its
    # extra steps are wasted; on 300 images, 28 of 75 epochs head-only left the run at chance.
    freeze = min(int(round(freeze_epochs * scale)), max(int(freeze_epochs), int(round(HEAD_ONLY_SHARE * target))))
    if freeze_epochs and freeze >= target:  # keep at least one fine-tuning epoch
        freeze = max(0, target - 1)
    patience = (
        None if not early_stop_patience else max(int(early_stop_patience), int(round(early_stop_patience * scale)))
    )
    return TrainingBudget(
        steps_per_epoch=steps_per_epoch,
        epochs=target,
        freeze_epochs=freeze,
        warmup_epochs=float(warmup_epochs) * scale,
        early_stop_patience=patience,
        min_epochs=max(1, math.ceil(target / 2)) if patience else 1,
        total_steps=target * steps_per_epoch,
        scaled=scale,
    )


def backbone_reduction(backbone: torch.nn.Module) -> int:
    """The output stride of a timm feature extractor (32 for ResNets, EfficientNets, ConvNeXts)."""
    info = getattr(backbone, "feature_info", None)
    try:
        return int(info[-1]["reduction"]) if info else DEFAULT_REDUCTION
    except (TypeError, KeyError, IndexError):
        return DEFAULT_REDUCTION


def resolve_input_size(
    backbone: torch.nn.Module, *, requested: int | None, image_size: int, pretrained: bool = True
) -> tuple[int, str]:
    """(network input side, the rule that chose it) — the rule is recorded in metrics.json.

    The upsizing rule is about transfer: a backbone trained from scratch (`pretrained=False`) learns
    its filters at the data's own scale, so it keeps the data's image size.
    """
    cfg = getattr(backbone, "pretrained_cfg", {}) or {}
    if requested:
        return int(requested), f"classifier.input_size={int(requested)} (explicit)"
    if cfg.get("fixed_input_size"):  # e.g. ViTs with learned position embeddings for one size
        size = int(cfg["input_size"][-1])
        return size, f"fixed input size of the backbone ({size}px)"
    if not pretrained:
        return image_size, f"data's image size ({image_size}px; no pretrained weights, so no upsizing)"
    reduction = backbone_reduction(backbone)
    minimum = MIN_FEATURE_MAP * reduction
    if image_size >= minimum:
        return image_size, f"data's image size ({image_size}px >= {minimum}px, {MIN_FEATURE_MAP}x stride {reduction})"
    return minimum, (
        f"upsized {image_size}px -> {minimum}px on the device: at least a {MIN_FEATURE_MAP}x{MIN_FEATURE_MAP} final "
        f"feature map for a stride-{reduction} backbone"
    )


def collapse_report(
    *,
    confusion: list[list[int]] | torch.Tensor,
    best_val_mean_class_accuracy: float | None,
    num_classes: int,
    split: str = "test",
) -> dict[str, Any]:
    """{"collapsed": bool, "reasons": [...], "predicted_classes": k, "chance": 1/K} for a finished run."""
    cm = torch.as_tensor(confusion)
    predicted = int((cm.sum(dim=0) > 0).sum())
    chance = 1.0 / num_classes
    reasons = []
    if predicted <= 1 and num_classes > 1:
        reasons.append(f"all {split} predictions fall into {predicted} class")
    if best_val_mean_class_accuracy is not None and best_val_mean_class_accuracy <= CHANCE_MARGIN * chance:
        reasons.append(
            f"best validation mean class accuracy {best_val_mean_class_accuracy:.3f} is at chance "
            f"(<= {CHANCE_MARGIN:g} x 1/{num_classes} = {CHANCE_MARGIN * chance:.3f})"
        )
    return {"collapsed": bool(reasons), "reasons": reasons, "predicted_classes": predicted, "chance": chance}
