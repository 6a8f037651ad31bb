"""Classifier-guided transfer (M2m in latent space): the steps steer the decode towards the target class,
the strategy keeps M2m's confidence rule, and it refuses to run where it has no judge to follow."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from vaegan.generation.filter import QualityFilter
from vaegan.generation.guidance import Guidance, guide_codes
from vaegan.generation.perturbations import get_perturbation, perturb_codes
from vaegan.generation.request import AugmentError, GenerationRequest
from vaegan.generation.run import augment


class TinyJudge(nn.Module):
    """A seeded real classifier on float [0, 1] images: pooled colours -> linear (differentiable, frozen)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.net = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(48, 7))
        self.net.requires_grad_(False)

    def forward(self, images01: torch.Tensor) -> torch.Tensor:
        return 20.0 * self.net(images01.float())  # sharp enough that a few steps move its verdict

    def probabilities(self, images_uint8: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self(images_uint8.float() / 255.0).softmax(dim=1)


def _target_probability(model, judge, z, labels) -> torch.Tensor:
    with torch.no_grad():
        return judge(model.decode(z, labels).add(1).div(2)).softmax(dim=1).gather(1, labels.view(-1, 1)).squeeze(1)


def test_guided_steps_raise_the_judges_probability_of_the_target_class(model) -> None:
    judge = TinyJudge()
    z = torch.randn(16, model.latent_dim, generator=torch.Generator().manual_seed(0))
    labels, source_labels = torch.full((16,), 1), torch.full((16,), 3)
    before = _target_probability(model, judge, z, labels)
    steered = guide_codes(model, z, labels=labels, source_labels=source_labels, guide=judge, guidance=Guidance())
    after = _target_probability(model, judge, steered, labels)
    # An untrained decoder barely reacts to its code, so the gain is small in absolute terms: in log-probability
    # it is clear, and it holds for (nearly) every code.
    gain = after.log() - before.log()
    assert gain.mean() > 0.1
    assert (gain > 0).float().mean() >= 0.75
    # Each step is a normalised one: no code moves further than steps x step_size.
    assert ((steered - z).norm(dim=1) <= 10 * 0.3 + 1e-4).all()
    # No steps, no change; the decoder and the judge gain no gradients.
    unchanged = guide_codes(
        model, z, labels=labels, source_labels=source_labels, guide=judge, guidance=Guidance(steps=0)
    )
    assert torch.equal(unchanged, z)
    assert all(p.grad is None for p in model.parameters())


def test_guided_strategy_keeps_m2m_confidence_and_needs_the_judge(model, fit, tmp_path: Path) -> None:
    guided = get_perturbation("guided_transfer")
    assert guided.donors and guided.render == "decoder" and guided.guidance == Guidance(steps=10, penalty=0.5)
    request = GenerationRequest(target_count=40, strategy="guided_transfer", out_dir=tmp_path / "g")
    assert request.min_confidence == 0.9  # M2m's keep rule, unless the user says otherwise
    assert GenerationRequest(target_count=40, strategy="guided_transfer", min_confidence=0.6).min_confidence == 0.6
    assert GenerationRequest(target_count=40, strategy="gaussian").min_confidence == 0.5
    with pytest.raises(AugmentError, match="needs the filter"):
        GenerationRequest(target_count=40, strategy="guided_transfer", filter=False)
    with pytest.raises(ValueError, match="use its unguided form, transfer"):
        perturb_codes(guided, mu=torch.zeros(2, 4), logvar=torch.zeros(2, 4), labels=torch.tensor([0, 1]))
    judge = TinyJudge()
    without_gradients = QualityFilter(judge_probabilities=judge.probabilities, min_confidence=0.9)
    with pytest.raises(AugmentError, match="no differentiable judge"):
        augment(request, model=model, checkpoint_sha256="0" * 64, fit=fit, targets=[40] * 7, quality=without_gradients)


def test_guided_candidates_start_where_transfer_does_and_end_nearer_the_target_class(model, fit) -> None:
    from vaegan.generation.candidates import generate, plan

    judge = TinyJudge()
    counts = fit.class_counts()
    fear = fit.class_names.index("Fear")
    targets = [max(counts)] * len(counts)
    batches = {}
    for strategy in ("transfer", "guided_transfer"):  # the same donors and noise: strength 0.5 for both
        request = GenerationRequest(target_count=tuple(targets), strategy=strategy, strength=0.5, batch_size=16)
        (item,) = [p for p in plan(model, fit, request=request, targets=targets, done={}) if p.label == fear]
        batches[strategy] = generate(model, item, 0, request=request, image_size=fit.image_size, guide=judge)
    plain, guided = batches["transfer"], batches["guided_transfer"]
    assert plain.sources == guided.sources  # the same donor faces of larger classes
    assert all(counts[int(item.source_labels[s])] > counts[fear] for s in guided.sources)
    assert not torch.equal(plain.images, guided.images)
    # The generation report's before-filter candidates are these, steered by the same judge.
    from ablation.generation_report import _first_candidates

    quality = QualityFilter(judge_probabilities=judge.probabilities, judge_logits=judge)
    report_images, _ = _first_candidates(model, [item], request=request, image_size=fit.image_size, judge=quality)
    assert torch.equal(report_images, guided.images)
    fear_probability = lambda images: judge.probabilities(images)[:, fear]  # noqa: E731
    gain = fear_probability(guided.images).log() - fear_probability(plain.images).log()
    assert gain.mean() > 0.1 and (gain > 0).float().mean() >= 0.75
