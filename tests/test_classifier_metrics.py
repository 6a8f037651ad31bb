"""Metrics on a hand-made confusion matrix equal hand-computed values (and torchmetrics agrees)."""

from __future__ import annotations

import pytest
import torch
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score, MulticlassPrecision, MulticlassRecall

from classifier.metrics import confusion_matrix, metrics_from_confusion, metrics_from_predictions, minority_report

NAMES = ("A", "B", "C")
GROUPS = ("many", "medium", "few")
# rows: true, columns: predicted
CM = torch.tensor([[8, 1, 1], [2, 3, 0], [1, 1, 2]])


def test_hand_computed_values() -> None:
    m = metrics_from_confusion(CM, class_names=NAMES, groups=GROUPS)
    assert m["num_samples"] == 19
    assert m["accuracy"] == pytest.approx(13 / 19)
    recall = [8 / 10, 3 / 5, 2 / 4]
    precision = [8 / 11, 3 / 5, 2 / 3]
    f1 = [2 * p * r / (p + r) for p, r in zip(precision, recall)]
    assert m["mean_class_accuracy"] == pytest.approx(sum(recall) / 3)  # 0.6333
    assert m["macro_f1"] == pytest.approx(sum(f1) / 3)
    for i, name in enumerate(NAMES):
        pc = m["per_class"][name]
        assert (pc["precision"], pc["recall"], pc["f1"]) == pytest.approx((precision[i], recall[i], f1[i]))
        assert pc["support"] == int(CM[i].sum()) and pc["group"] == GROUPS[i]
    assert m["group_accuracy"] == pytest.approx({"many": 0.8, "medium": 0.6, "few": 0.5})
    assert m["confusion_matrix"] == CM.tolist()


def test_groups_pool_samples_and_average_classes() -> None:
    m = metrics_from_confusion(CM, class_names=NAMES, groups=("many", "many", "few"))
    assert m["group_accuracy"]["many"] == pytest.approx(11 / 15)  # pooled over A and B samples
    assert m["group_mean_class_accuracy"]["many"] == pytest.approx((0.8 + 0.6) / 2)
    assert m["group_accuracy"]["medium"] is None


def test_absent_class_and_never_predicted_class() -> None:
    cm = torch.tensor([[5, 0, 0], [1, 0, 0], [0, 0, 0]])  # C absent from the split; B never predicted
    m = metrics_from_confusion(cm, class_names=NAMES)
    assert m["per_class"]["B"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert m["mean_class_accuracy"] == pytest.approx(0.5)  # over present classes A, B
    assert "group_accuracy" not in m


def test_agrees_with_torchmetrics_on_predictions() -> None:
    torch.manual_seed(0)
    targets = torch.randint(0, 3, (200,))
    preds = torch.where(torch.rand(200) < 0.6, targets, torch.randint(0, 3, (200,)))
    m = metrics_from_predictions(preds, targets, class_names=NAMES, groups=GROUPS)
    kw = {"num_classes": 3}
    assert m["accuracy"] == pytest.approx(float(MulticlassAccuracy(average="micro", **kw)(preds, targets)), abs=1e-6)
    assert m["mean_class_accuracy"] == pytest.approx(
        float(MulticlassAccuracy(average="macro", **kw)(preds, targets)), abs=1e-6
    )
    assert m["macro_f1"] == pytest.approx(float(MulticlassF1Score(average="macro", **kw)(preds, targets)), abs=1e-6)
    per_p = MulticlassPrecision(average=None, **kw)(preds, targets)
    per_r = MulticlassRecall(average=None, **kw)(preds, targets)
    for i, name in enumerate(NAMES):
        assert m["per_class"][name]["precision"] == pytest.approx(float(per_p[i]), abs=1e-6)
        assert m["per_class"][name]["recall"] == pytest.approx(float(per_r[i]), abs=1e-6)
    logits = torch.nn.functional.one_hot(preds, 3).float()
    assert torch.equal(
        confusion_matrix(logits, targets, num_classes=3), confusion_matrix(preds, targets, num_classes=3)
    )


def test_minority_report_names_the_rarest_classes() -> None:
    m = metrics_from_confusion(CM, class_names=NAMES, groups=GROUPS)
    report = minority_report(m, train_counts=[500, 100, 20], class_names=list(NAMES))
    assert report["rarest_classes"][0] == {
        "class": "C",
        "train_count": 20,
        "recall": 0.5,
        "f1": pytest.approx(4 / 7),
        "group": "few",
    }
    assert report["lowest_recall_class"] == {"class": "C", "recall": 0.5}
    assert report["recall_gap_many_minus_few"] == pytest.approx(0.3)
