"""Classification metrics for long-tailed FER, all derived from one confusion matrix.

The confusion matrix is a torchmetrics `MulticlassConfusionMatrix` (a summed state, so under DDP it
is reduced over ranks and the metrics cover the whole dataset, not one rank's shard); every other
number is a pure function of it, so the ablation can aggregate runs from their saved matrices.

Conventions: rows = true class, columns = predicted class. Mean class accuracy is macro recall over
classes present in the evaluated split; macro-F1 likewise. Group accuracy pools the group's samples;
group mean class accuracy averages the recalls of the group's classes (equal weight per class).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchmetrics.classification import MulticlassConfusionMatrix
from torchmetrics.functional.classification import multiclass_confusion_matrix

from faces.summary import GROUPS


def confusion_matrix_metric(num_classes: int) -> MulticlassConfusionMatrix:
    """The stateful, DDP-synchronised metric every evaluation loop accumulates."""
    return MulticlassConfusionMatrix(num_classes=num_classes)


def confusion_matrix(preds: torch.Tensor, targets: torch.Tensor, *, num_classes: int) -> torch.Tensor:
    """int64 [C, C], rows true, columns predicted (preds: class indices, or logits/probabilities [N, C])."""
    if preds.ndim == 2:
        preds = preds.argmax(dim=1)
    return multiclass_confusion_matrix(preds, targets, num_classes=num_classes).long()


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    return torch.where(den > 0, num / den.clamp_min(1e-12), torch.zeros_like(num))


def per_class_metrics(cm: torch.Tensor) -> dict[str, torch.Tensor]:
    cm = cm.double()
    tp = cm.diag()
    support = cm.sum(dim=1)
    predicted = cm.sum(dim=0)
    precision = _safe_div(tp, predicted)
    recall = _safe_div(tp, support)
    f1 = _safe_div(2 * precision * recall, precision + recall)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def accuracy(cm: torch.Tensor) -> float:
    total = cm.sum()
    return float(cm.diag().sum() / total) if total > 0 else 0.0


def mean_class_accuracy(cm: torch.Tensor) -> float:
    """Macro recall over classes with at least one sample: what overall accuracy hides on a long tail."""
    pc = per_class_metrics(cm)
    present = pc["support"] > 0
    return float(pc["recall"][present].mean()) if present.any() else 0.0


def macro_f1(cm: torch.Tensor) -> float:
    pc = per_class_metrics(cm)
    present = pc["support"] > 0
    return float(pc["f1"][present].mean()) if present.any() else 0.0


def group_metrics(
    cm: torch.Tensor, *, groups: Sequence[str]
) -> tuple[dict[str, float | None], dict[str, float | None]]:
    """(pooled accuracy per group, mean class accuracy per group); None for a group with no classes/samples."""
    pc = per_class_metrics(cm)
    pooled, macro = {}, {}
    for group in GROUPS:
        members = torch.tensor([g == group for g in groups])
        present = members & (pc["support"] > 0)
        if not present.any():
            pooled[group] = macro[group] = None
            continue
        pooled[group] = float(cm.double().diag()[present].sum() / pc["support"][present].sum())
        macro[group] = float(pc["recall"][present].mean())
    return pooled, macro


def metrics_from_confusion(
    cm: torch.Tensor, *, class_names: Sequence[str], groups: Sequence[str] | None = None
) -> dict[str, Any]:
    """Every reported number from a confusion matrix, as plain JSON-ready types."""
    cm = torch.as_tensor(cm).cpu().long()
    if cm.shape != (len(class_names), len(class_names)):
        raise ValueError(f"confusion matrix {tuple(cm.shape)} does not match {len(class_names)} classes")
    pc = per_class_metrics(cm)
    out: dict[str, Any] = {
        "num_samples": int(cm.sum()),
        "accuracy": accuracy(cm),
        "mean_class_accuracy": mean_class_accuracy(cm),
        "macro_f1": macro_f1(cm),
        "per_class": {
            name: {
                "precision": float(pc["precision"][i]),
                "recall": float(pc["recall"][i]),
                "f1": float(pc["f1"][i]),
                "support": int(pc["support"][i]),
                **({"group": groups[i]} if groups is not None else {}),
            }
            for i, name in enumerate(class_names)
        },
        "confusion_matrix": cm.tolist(),
    }
    if groups is not None:
        out["group_accuracy"], out["group_mean_class_accuracy"] = group_metrics(cm, groups=groups)
    return out


def metrics_from_predictions(
    preds: torch.Tensor, targets: torch.Tensor, *, class_names: Sequence[str], groups: Sequence[str] | None = None
) -> dict[str, Any]:
    return metrics_from_confusion(
        confusion_matrix(preds, targets, num_classes=len(class_names)), class_names=class_names, groups=groups
    )


def minority_report(
    metrics: dict[str, Any], *, train_counts: Sequence[int], class_names: Sequence[str]
) -> dict[str, Any]:
    """ "What happened to the minority classes": the rarest classes' recall/F1 and the weakest class."""
    order = sorted(range(len(class_names)), key=lambda i: train_counts[i])
    per_class = metrics["per_class"]
    worst = min(class_names, key=lambda name: per_class[name]["recall"])
    return {
        "rarest_classes": [
            {
                "class": class_names[i],
                "train_count": int(train_counts[i]),
                "recall": per_class[class_names[i]]["recall"],
                "f1": per_class[class_names[i]]["f1"],
                "group": per_class[class_names[i]].get("group"),
            }
            for i in order[:3]
        ],
        "lowest_recall_class": {"class": worst, "recall": per_class[worst]["recall"]},
        "recall_gap_many_minus_few": (
            None
            if metrics.get("group_mean_class_accuracy", {}).get("many") is None
            or metrics["group_mean_class_accuracy"].get("few") is None
            else metrics["group_mean_class_accuracy"]["many"] - metrics["group_mean_class_accuracy"]["few"]
        ),
    }
