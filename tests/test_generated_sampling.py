"""Generated samples on top of re-balancing: M2m's replacement sampler, the deferred start, the loss
weight of a generated sample, and CAS's training split (real images of filled classes never in it)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from builders import write_image
from classifier_helpers import tiny_cfg

from classifier.balance import resolve_balance
from classifier.data import FaceDataModule, GeneratedMixSampler, replace_probabilities
from classifier.losses import create_loss, sample_weighted_loss
from classifier.train import load_run_data
from faces import FaceSplit

pytestmark = pytest.mark.usefixtures("one_thread")

CLASSES = ("Big", "Mid", "Rare")


def mixed_split(real: list[int], generated: list[int]) -> FaceSplit:
    labels = [k for k, n in enumerate(real) for _ in range(n)] + [k for k, n in enumerate(generated) for _ in range(n)]
    n = len(labels)
    return FaceSplit(
        name="fit+generated",
        images=torch.zeros(n, 3, 2, 2, dtype=torch.uint8),
        labels=torch.tensor(labels),
        is_synthetic=torch.tensor([False] * sum(real) + [True] * sum(generated)),
        sample_ids=tuple(f"s{i}" for i in range(n)),
        class_names=CLASSES,
    )


def draws(sampler: GeneratedMixSampler, epochs: int) -> torch.Tensor:
    order = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        order += list(sampler)
    return torch.tensor(order)


def test_replacement_sampler_draws_generated_at_rate_p_k_and_never_for_the_majority_class() -> None:
    # The majority class has generated samples too: with n_k = n_max its p_k is 0, so none is ever drawn.
    split = mixed_split(real=[60, 20, 6], generated=[10, 30, 30])
    p = replace_probabilities(split)
    assert p.tolist() == pytest.approx([0.0, 1 - 20 / 60, 1 - 6 / 60])
    sampler = GeneratedMixSampler(
        split=split, sampler="replace", seed=3, batch_size=8, steps_per_epoch=100, replace_prob=p
    )
    order = draws(sampler, epochs=20)
    labels, generated = split.labels[order], split.is_synthetic[order]
    for k in range(3):
        n = int((labels == k).sum())
        # class-balanced: each class about a third of the draws
        assert abs(n - len(order) / 3) < 4 * math.sqrt(len(order) * (1 / 3) * (2 / 3)), (k, n)
        count, expected = int(generated[labels == k].sum()), float(p[k]) * n
        assert abs(count - expected) <= 4 * math.sqrt(n * float(p[k]) * (1 - float(p[k]))) + 1e-9, (k, count, expected)
    assert int(generated[labels == 0].sum()) == 0
    # same seed, same order
    assert torch.equal(
        draws(
            GeneratedMixSampler(
                split=split, sampler="replace", seed=3, batch_size=8, steps_per_epoch=100, replace_prob=p
            ),
            epochs=20,
        ),
        order,
    )


def test_replace_probability_can_be_overridden_and_a_class_without_samples_stays_real() -> None:
    split = mixed_split(real=[60, 20, 6], generated=[0, 0, 30])
    assert replace_probabilities(split, override=0.5).tolist() == [0.0, 0.0, 0.5]
    assert replace_probabilities(split, override={"Rare": 0.25}).tolist() == pytest.approx([0.0, 0.0, 0.25])
    with pytest.raises(ValueError, match=r"unknown class\(es\) \['Fear'\]"):
        replace_probabilities(split, override={"Fear": 0.5})


def test_synthetic_deferred_draws_no_generated_sample_before_its_start_step_and_some_after() -> None:
    split = mixed_split(real=[60, 20, 6], generated=[0, 30, 30])
    spec = resolve_balance({"name": "synthetic_deferred", "generated_dir": "x"})
    assert (spec.sampler, spec.synthetic_start) == ("replace", 0.8)
    steps_per_epoch, epochs, batch = 4, 5, 8
    start = int(round(spec.synthetic_start * steps_per_epoch * epochs))  # as classifier.train.build_run computes it
    module = FaceDataModule(
        train=split,
        val=None,
        test=None,
        batch_size=batch,
        eval_batch_size=8,
        seed=0,
        sampler=spec.sampler,
        start_step=start,
        steps_per_epoch=steps_per_epoch,
        replace_prob=spec.replace_prob,
    )
    sampler = module.train_sampler()
    before, after = [], []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        order = list(sampler)[: steps_per_epoch * batch]  # the trainer takes steps_per_epoch batches
        for position, index in enumerate(order):
            (before if epoch * steps_per_epoch + position // batch < start else after).append(index)
    assert before and not split.is_synthetic[torch.tensor(before)].any()
    assert split.is_synthetic[torch.tensor(after)].any()


def test_synthetic_weight_zero_gives_the_gradients_of_real_only_training() -> None:
    torch.manual_seed(0)
    layer = torch.nn.Linear(5, 3)
    features = torch.randn(10, 5)
    targets = torch.tensor([0, 1, 2, 0, 1, 2, 2, 1, 0, 2])
    generated = torch.tensor([False, False, False, False, False, False, True, True, True, True])
    for name in ("ce", "reweight", "focal", "ldam_drw", "weighted_cluster"):
        criterion = create_loss(name, class_counts=[50, 10, 5], feature_dim=5)
        layer.zero_grad()
        loss, _ = sample_weighted_loss(
            criterion,
            logits=layer(features),
            features=features,
            targets=targets,
            generated=generated,
            generated_weight=0.0,
        )
        loss.backward()
        weighted = [p.grad.clone() for p in layer.parameters()]
        layer.zero_grad()
        real, _ = criterion(
            logits=layer(features[~generated]), features=features[~generated], targets=targets[~generated]
        )
        real.backward()
        assert torch.isclose(loss, real), name
        for a, b in zip(weighted, (p.grad for p in layer.parameters())):
            assert torch.allclose(a, b, atol=1e-6), name
    # a weight of w is the per-sample weighted mean of cross-entropy
    criterion = create_loss("ce", class_counts=[50, 10, 5], feature_dim=5)
    logits = layer(features)
    loss, _ = sample_weighted_loss(
        criterion, logits=logits, features=features, targets=targets, generated=generated, generated_weight=0.5
    )
    w = torch.where(generated, 0.5, 1.0)
    assert torch.isclose(loss, (w * F.cross_entropy(logits, targets, reduction="none")).sum() / w.sum())


def write_generated(out: Path, per_class: dict[str, int]) -> Path:
    rows = []
    for name, n in per_class.items():
        for i in range(n):
            write_image(out / name / f"{i}.png", seed=i, size=32, fmt="PNG")
            rows.append((f"{name}/{i}.png", name, "gaussian"))
    with (out / "manifest.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([("path", "class_name", "strategy"), *rows])
    return out


def test_cas_trains_on_no_real_image_of_the_classes_below_the_target(tiny_synthetic_root: Path, tmp_path: Path) -> None:
    generated_dir = write_generated(tmp_path / "generated", {"Fear": 5, "Disgust": 3})
    cfg = tiny_cfg(tiny_synthetic_root, tmp_path, "balance=cas", f"balance.generated_dir={generated_dir}")
    run = load_run_data(cfg, spec=resolve_balance(cfg.balance), evaluate_test=False)
    names = run.data.class_names
    filled = [names.index("Fear"), names.index("Disgust")]
    real = ~run.fit.is_synthetic
    for k in filled:
        assert not (real & (run.fit.labels == k)).any(), names[k]
    assert run.fit.class_counts()[filled[0]] == 5 and run.fit.class_counts()[filled[1]] == 3
    # every other class keeps all its real fit images; validation stays real and complete
    fit_real = torch.bincount(run.fit.labels[real], minlength=len(names)).tolist()
    expected = [n - v for n, v in zip(run.train_counts, run.val.class_counts())]
    assert [c for k, c in enumerate(fit_real) if k not in filled] == [
        c for k, c in enumerate(expected) if k not in filled
    ]
    assert not run.val.is_synthetic.any() and all(run.val.class_counts())


def test_cas_takes_the_classes_below_the_recorded_targets_and_refuses_one_without_samples() -> None:
    from classifier.data import generated_only_for_filled_classes

    real, generated = (
        mixed_split(real=[60, 20, 6], generated=[0, 0, 0]),
        mixed_split(real=[0, 0, 0], generated=[0, 14, 54]),
    )
    cas = generated_only_for_filled_classes(real, generated, targets={"Big": 60, "Mid": 34, "Rare": 60})
    assert cas.class_counts() == [60, 14, 54] and not cas.is_synthetic[cas.labels > 0].logical_not().any()
    with pytest.raises(ValueError, match=r"\['Mid'\] are below the target but the generated set has no sample"):
        generated_only_for_filled_classes(
            real, mixed_split(real=[0, 0, 0], generated=[0, 0, 54]), targets={"Mid": 34, "Rare": 60}
        )
