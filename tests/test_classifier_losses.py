"""Balancing losses against their formulas; the strategy registry's choices and errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from classifier import losses as L
from classifier.balance import LOSSES, STRATEGIES, resolve_balance
from classifier.losses import create_loss

pytestmark = pytest.mark.usefixtures("one_thread")

COUNTS = [100, 10, 40]


def test_inverse_frequency_weights_match_formula() -> None:
    w = L.inverse_frequency_weights(COUNTS)
    inv = [1 / 100, 1 / 10, 1 / 40]
    expected = [3 * x / sum(inv) for x in inv]
    assert torch.allclose(w, torch.tensor(expected), atol=1e-6)
    assert math.isclose(float(w.sum()), 3.0, rel_tol=1e-6)
    assert w[1] / w[0] == pytest.approx(10.0)


def test_effective_number_weights_match_cui_et_al() -> None:
    beta = 0.99
    w = L.effective_number_weights(COUNTS, beta=beta)
    inv = [(1 - beta) / (1 - beta**n) for n in COUNTS]
    expected = [3 * x / sum(inv) for x in inv]
    assert torch.allclose(w, torch.tensor(expected), atol=1e-6)
    # limits: beta=0 -> uniform; beta -> 1 -> inverse frequency
    assert torch.allclose(L.effective_number_weights(COUNTS, beta=0.0), torch.ones(3))
    assert torch.allclose(
        L.effective_number_weights(COUNTS, beta=0.999999), L.inverse_frequency_weights(COUNTS), rtol=1e-3
    )


def test_focal_loss_formula_and_gamma_zero_is_ce() -> None:
    torch.manual_seed(0)
    logits, targets = torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2])
    assert L.focal_loss(logits, targets, gamma=0.0) == pytest.approx(float(F.cross_entropy(logits, targets)), rel=1e-5)
    p = logits.softmax(1)[torch.arange(6), targets]
    expected = (-((1 - p) ** 2) * p.log()).mean()
    assert L.focal_loss(logits, targets, gamma=2.0) == pytest.approx(float(expected), rel=1e-5)


def test_balanced_softmax_and_logit_adjusted_losses() -> None:
    torch.manual_seed(1)
    logits, targets = torch.randn(5, 3), torch.tensor([0, 1, 2, 1, 0])
    prior = L.class_prior(COUNTS)
    expected = F.cross_entropy(logits + prior.log(), targets)
    assert L.balanced_softmax_loss(logits, targets, prior=prior) == pytest.approx(float(expected), rel=1e-6)
    expected_half = F.cross_entropy(logits + 0.5 * prior.log(), targets)
    assert L.logit_adjusted_cross_entropy(logits, targets, prior=prior, tau=0.5) == pytest.approx(
        float(expected_half), rel=1e-6
    )


def test_posthoc_logit_adjustment_changes_predictions_as_the_formula_says() -> None:
    prior = torch.tensor([0.7, 0.1, 0.2])
    logits = torch.tensor([[2.0, 0.5, 1.0], [3.0, 0.0, 0.0], [0.1, 0.0, 0.05]])
    adjusted = L.posthoc_logit_adjust(logits, prior=prior, tau=1.0)
    assert torch.allclose(adjusted, logits - prior.log())
    # by hand: row 0 -> [2+0.357, 0.5+2.303, 1+1.609] = [2.357, 2.803, 2.609] -> class 1 (was 0)
    # row 1 -> [3.357, 2.303, 1.609] -> stays 0; row 2 -> [0.457, 2.303, 1.659] -> 1 (was 0)
    assert logits.argmax(1).tolist() == [0, 0, 0]
    assert adjusted.argmax(1).tolist() == [1, 0, 1]
    assert L.posthoc_logit_adjust(logits, prior=prior, tau=0.0).argmax(1).tolist() == [0, 0, 0]
    # the strategy puts exactly -tau * log prior into the model's evaluation-time bias
    spec = resolve_balance({"name": "logit_adjust_posthoc", "tau": 0.5})
    bias = create_loss(spec.loss, class_counts=[70, 10, 20], feature_dim=4, **spec.loss_args).posthoc_logit_bias()
    assert torch.allclose(bias, -0.5 * torch.tensor([0.7, 0.1, 0.2]).log(), atol=1e-6)
    plain = resolve_balance({"name": "logit_adjust"})
    assert (
        create_loss(plain.loss, class_counts=[70, 10, 20], feature_dim=4, **plain.loss_args).posthoc_logit_bias()
        is None
    )


def test_ldam_margins_and_drw_schedule() -> None:
    m = L.ldam_margins(COUNTS, max_margin=0.5)
    assert float(m.max()) == pytest.approx(0.5) and int(m.argmax()) == 1
    assert m[0] / m[1] == pytest.approx((10 / 100) ** 0.25, rel=1e-5)
    spec = resolve_balance({"name": "ldam_drw", "drw_start": 0.5})
    loss = create_loss(spec.loss, class_counts=COUNTS, feature_dim=4, **spec.loss_args)
    loss.on_epoch_start(epoch=4, max_epochs=10)
    assert not loss.ldam.reweighting
    loss.on_epoch_start(epoch=5, max_epochs=10)
    assert loss.ldam.reweighting
    cos, targets = torch.tensor([[0.9, 0.1, 0.0]]), torch.tensor([0])
    expected = F.cross_entropy(30 * (cos - torch.tensor([[float(m[0]), 0, 0]])), targets)
    loss.ldam.reweighting = False
    assert float(loss.ldam(cos, targets)) == pytest.approx(float(expected), rel=1e-5)


def test_weighted_cluster_loss_moves_centers_towards_class_means() -> None:
    torch.manual_seed(0)
    means = torch.tensor([[4.0, 0.0], [0.0, 4.0], [-4.0, -4.0]])
    targets = torch.tensor([0] * 60 + [1] * 10 + [2] * 30)
    features = means[targets] + 0.3 * torch.randn(len(targets), 2)
    class_means = torch.stack([features[targets == c].mean(0) for c in range(3)])
    loss = L.WeightedClusterLoss(class_counts=[60, 10, 30], feature_dim=2)
    optimizer = torch.optim.SGD(loss.parameters(), lr=0.5)
    before = (loss.centers.detach() - class_means).norm(dim=1)
    values = []
    for _ in range(200):
        optimizer.zero_grad()
        value = loss(features, targets)
        value.backward()
        optimizer.step()
        values.append(float(value.detach()))
    after = (loss.centers.detach() - class_means).norm(dim=1)
    assert (after < 0.5 * before).all(), (before, after)
    # the separability term pushes centers slightly apart, so they settle near (not exactly at) the means
    assert (after < 0.5).all(), after
    assert values[-1] < 0.2 * values[0]
    # weights from the class shares: the rarest class weighs most, mean weight 1
    w = L.weighted_cluster_class_weights([60, 10, 30])
    assert float(w.mean()) == pytest.approx(1.0) and int(w.argmax()) == 1
    assert float(w[1] / w[0]) == pytest.approx(6.0)


def test_every_loss_is_finite_and_differentiable() -> None:
    torch.manual_seed(0)
    features = torch.randn(8, 5, requires_grad=True)
    logits = torch.randn(8, 3, requires_grad=True)
    targets = torch.tensor([0, 1, 2, 0, 0, 1, 2, 0])
    for name in STRATEGIES:
        spec = resolve_balance({"name": name, "generated_dir": "x" if STRATEGIES[name].synthetic else None})
        value, _ = create_loss(spec.loss, class_counts=COUNTS, feature_dim=5, **spec.loss_args)(
            logits=logits, features=features, targets=targets
        )
        value.backward()
        assert torch.isfinite(value), name


def test_unknown_strategy_and_loss_list_the_choices() -> None:
    with pytest.raises(ValueError, match=r"balance \(balance.name\)='smote' is not a known choice.*'oversample'"):
        resolve_balance({"name": "smote"})
    with pytest.raises(ValueError, match=r"balance.loss='dice'.*'focal'"):
        resolve_balance({"name": "synthetic", "generated_dir": "x", "loss": "dice"})
    with pytest.raises(ValueError, match="needs balance.generated_dir"):
        resolve_balance({"name": "synthetic"})
    spec = resolve_balance(
        {"name": "synthetic", "generated_dir": "x", "loss": "reweight", "weighting": "effective_number"}
    )
    assert (spec.loss, spec.synthetic, spec.loss_args["weighting"]) == ("reweight", True, "effective_number")
    assert set(LOSSES) >= {
        "ce",
        "reweight",
        "focal",
        "weighted_cluster",
        "balanced_softmax",
        "logit_adjust",
        "ldam_drw",
    }


def test_strategy_registry_is_the_one_source_and_parameters_are_checked() -> None:
    from pathlib import Path

    from hydra import compose, initialize_config_dir
    from hydra.errors import MissingConfigException

    conf = Path(__file__).resolve().parents[1] / "conf"
    # every registered strategy is a balance= choice, and the choices are exactly the strategies (no _params)
    assert {p.stem for p in (conf / "balance").glob("*.yaml")} == set(STRATEGIES)
    with initialize_config_dir(version_base="1.3", config_dir=str(conf)):
        with pytest.raises(MissingConfigException) as error:
            compose("train_classifier", ["balance=smote"])
        assert (
            "oversample" in str(error.value) and "_params" not in str(error.value) and "common" not in str(error.value)
        )
        # the YAML names the strategy only; what it runs comes from the registry
        cfg = compose("train_classifier", ["balance=logit_adjust_posthoc", "balance.tau=0.5"])
    spec = resolve_balance(cfg.balance)
    assert (spec.loss, spec.loss_args) == ("logit_adjust", {"tau": 0.5, "mode": "posthoc"})
    assert L.LOSSES["focal"].parameters == {"gamma": 2.0}
    with pytest.raises(
        ValueError, match=r"balance=focal uses loss focal, which takes no \['tau'\]; its parameters are \['gamma'\]"
    ):
        resolve_balance({"name": "focal", "tau": 2.0})
    with pytest.raises(ValueError, match=r"drw_start=1.5 is a fraction of the epochs"):
        resolve_balance({"name": "ldam_drw", "drw_start": 1.5})
    with pytest.raises(ValueError, match=r"balance.synthetic_start=1.0 is a fraction of the optimiser steps"):
        resolve_balance({"name": "synthetic_deferred", "generated_dir": "x", "synthetic_start": 1.0})
    with pytest.raises(ValueError, match=r"balance.replace_prob is set but balance.sampler=none"):
        resolve_balance({"name": "synthetic", "generated_dir": "x", "replace_prob": 0.5})
    with pytest.raises(ValueError, match=r"sampler=replace swaps real images"):
        resolve_balance({"name": "none", "sampler": "replace"})
    spec = resolve_balance({"name": "synthetic_ldam_drw", "generated_dir": "x", "synthetic_weight": 0.5})
    assert (spec.loss, spec.synthetic_start, spec.loss_counts, spec.synthetic_weight) == ("ldam_drw", 0.8, "real", 0.5)
