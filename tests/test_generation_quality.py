"""Generation-report figures on hand-made feature sets with known answers."""

from __future__ import annotations

import math

import pytest
import torch

from vaegan.generation.quality import (
    class_figures,
    generation_figures,
    near_duplicates,
    one_nn_two_sample_accuracy,
    precision_recall,
    real_spacing,
    wilson_interval,
)


def _cloud(n: int, *, seed: int, centre: float = 0.0, dim: int = 8) -> torch.Tensor:
    return centre + torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


def test_a_set_compared_with_itself() -> None:
    real = _cloud(40, seed=0)
    figures = class_figures(generated=real.clone(), real=real, judge_predictions=None, label=0, real_val_recall=None)
    assert figures["diversity_ratio"] == pytest.approx(1.0)
    assert (figures["precision"], figures["recall"]) == (1.0, 1.0)


def test_exact_copies_of_training_images_are_flagged_by_novelty() -> None:
    real = _cloud(40, seed=1)
    copies = real[torch.tensor([3, 7, 11, 19])]
    figures = class_figures(generated=copies, real=real, judge_predictions=None, label=0, real_val_recall=None)
    assert figures["novelty"]["near_duplicate_share"] == 1.0
    assert figures["novelty"]["closer_than_real_share"] == 1.0
    fresh = _cloud(20, seed=2)  # new draws from the same distribution: mostly not duplicates
    assert (
        class_figures(generated=fresh, real=real, judge_predictions=None, label=0, real_val_recall=None)["novelty"][
            "near_duplicate_share"
        ]
        < 0.2
    )


def test_samples_of_another_class_have_fidelity_zero() -> None:
    real = _cloud(30, seed=3)
    generated = _cloud(10, seed=4)
    figures = class_figures(
        generated=generated, real=real, judge_predictions=torch.full((10,), 2), label=1, real_val_recall=0.8
    )
    assert figures["fidelity"]["judge_recall_generated"] == 0.0 and figures["fidelity"]["ratio"] == 0.0
    low, high = figures["fidelity"]["interval"]
    assert low == 0.0 and 0.0 < high < 0.35  # n=10 cannot pin it down: the interval says so
    right = class_figures(
        generated=generated, real=real, judge_predictions=torch.full((10,), 1), label=1, real_val_recall=0.8
    )
    assert right["fidelity"]["ratio"] == pytest.approx(1.25)


def test_near_duplicates_of_non_source_images_and_of_earlier_samples() -> None:
    real = _cloud(30, seed=5)
    spacing = real_spacing(real)
    new = _cloud(3, seed=6, centre=10.0)  # far from everything
    generated = torch.cat([new[:1], real[17:18] + 1e-4, new[1:2], new[1:2] + 1e-4, new[2:3]])
    flags = near_duplicates(generated=generated, real=real, spacing=spacing).tolist()
    # sample 1 copies real image 17 (any training image, not only a source); sample 3 copies sample 2
    assert flags == [False, True, False, True, False]


def test_precision_recall_of_disjoint_sets_and_small_sets() -> None:
    real, far = _cloud(30, seed=7), _cloud(30, seed=8, centre=50.0)
    assert precision_recall(real=real, generated=far) == (0.0, 0.0)
    assert all(math.isnan(v) for v in precision_recall(real=real[:3], generated=far))


def test_generation_figures_pool_the_minority_classes() -> None:
    real = torch.cat([_cloud(20, seed=9), _cloud(20, seed=10, centre=5.0)])
    real_labels = torch.tensor([0] * 20 + [1] * 20)
    report = generation_figures(
        generated=real.clone(),
        generated_labels=real_labels,
        real=real,
        real_labels=real_labels,
        class_names=["A", "B"],
        classes=[1],
        judge_predictions=real_labels,
        real_val_recall=[0.9, 0.5],
    )
    assert set(report["classes"]) == {"B"} and report["overall"]["n_generated"] == 20
    assert report["classes"]["B"]["fidelity"]["ratio"] == pytest.approx(2.0)
    assert report["overall"]["diversity_ratio_mean"] == pytest.approx(1.0)


def test_wilson_interval_brackets_the_proportion() -> None:
    low, high = wilson_interval(8, 10)
    assert low < 0.8 < high and low >= 0 and high <= 1
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_training_time_metric_uses_the_registry_perturbation(tiny_synthetic_root, tmp_path) -> None:
    from omegaconf import OmegaConf
    from vaegan_helpers import tiny_config

    from vaegan.generation.perturbations import get_perturbation, perturb_codes
    from vaegan.module import VAEGANModule

    mu, logvar = torch.randn(12, 64), torch.randn(12, 64) - 2
    labels = torch.tensor([0, 1, 2] * 4)
    for name, strength in (("reconstruct", None), ("gaussian", 2.0), ("semantic", 0.5)):
        cfg = tiny_config(root=tiny_synthetic_root, cache_dir=tmp_path / "cache", extra=(f"grid.perturbation={name}",))
        module = VAEGANModule(
            config=OmegaConf.to_container(cfg, resolve=True),
            class_names=["a", "b", "c", "d", "e", "f", "g"],
            image_size=32,
            data_fingerprint="x",
        )
        got = module._perturb(mu, logvar, labels, generator=torch.Generator().manual_seed(3))
        expected = perturb_codes(
            get_perturbation(name),
            mu=mu,
            logvar=logvar,
            labels=labels,
            strength=strength,
            generator=torch.Generator().manual_seed(3),
        )
        assert torch.equal(got, expected), name
    # the gaussian formula itself: mu + a * sigma * eps, class by class with the generator's draws
    eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(3))
    gaussian = perturb_codes(
        get_perturbation("gaussian"), mu=mu, logvar=logvar, labels=labels, generator=torch.Generator().manual_seed(3)
    )
    assert torch.allclose(gaussian, mu + 2.0 * torch.exp(0.5 * logvar) * eps)
    assert torch.equal(perturb_codes(get_perturbation("reconstruct"), mu=mu, logvar=logvar, labels=labels), mu)


def test_near_duplicates_of_another_class_count_when_every_real_image_is_given() -> None:
    fear, disgust = _cloud(20, seed=7), _cloud(20, seed=8, centre=6.0)
    generated = torch.cat([_cloud(2, seed=9, centre=-8.0), disgust[3:4] + 1e-4])  # the last copies a Disgust image
    own_only = class_figures(generated=generated, real=fear, judge_predictions=None, label=1, real_val_recall=None)
    everyone = class_figures(
        generated=generated,
        real=fear,
        judge_predictions=None,
        label=1,
        real_val_recall=None,
        all_real=torch.cat([fear, disgust]),
    )
    assert own_only["novelty"]["near_duplicate_share"] == 0.0
    assert everyone["novelty"]["near_duplicate_share"] == pytest.approx(1 / 3)


def test_training_time_metrics_and_grids_use_the_augmenters_rendering(tiny_synthetic_root, tmp_path) -> None:
    from omegaconf import OmegaConf
    from vaegan_helpers import tiny_config

    from vaegan.generation.render import render
    from vaegan.images import to_model_range, to_uint8
    from vaegan.module import VAEGANModule

    names = ["a", "b", "c", "d", "e", "f", "g"]
    for extra, mode in (
        ((), "residual"),
        (("grid.render=decoder",), "decoder"),
        (("grid.perturbation=prior",), "decoder"),
        (("grid.perturbation=transfer",), "decoder"),
    ):
        cfg = tiny_config(root=tiny_synthetic_root, cache_dir=tmp_path / "cache", extra=extra)
        module = VAEGANModule(
            config=OmegaConf.to_container(cfg, resolve=True), class_names=names, image_size=32, data_fingerprint="x"
        )
        module.model.eval()
        assert module._render_mode() == mode
        sources = to_model_range(torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8))
        labels = torch.tensor([0, 1, 2, 3])
        mu = torch.randn(4, module.model.latent_dim)
        z = mu + 1.0
        got = module._render(z, labels, sources=sources, source_mu=mu)
        expected = render(
            module.model,
            z=z,
            labels=labels,
            mode=mode,
            image_size=32,
            source_images=to_uint8(sources),
            source_mu=mu,
            source_labels=labels,
        )
        assert torch.equal(to_uint8(got), expected)
    # grain: the decoder's image plus noise matched to these real faces against their own reconstructions.
    from vaegan.generation.render import Grain, grain_std_for

    cfg = tiny_config(root=tiny_synthetic_root, cache_dir=tmp_path / "cache", extra=("grid.render=grain",))
    module = VAEGANModule(
        config=OmegaConf.to_container(cfg, resolve=True), class_names=names, image_size=32, data_fingerprint="x"
    )
    module.model.eval()
    got = module._render(z, labels, sources=sources, source_mu=mu)
    std = grain_std_for(to_uint8(sources), to_uint8(module.model.decode(mu, labels)))
    assert std > 0  # random real pixels against an untrained decoder's smooth images
    grain = Grain(std=std, generator=torch.Generator().manual_seed(0))
    expected = render(module.model, z=z, labels=labels, mode="grain", image_size=32, grain=grain)
    assert torch.equal(to_uint8(got), expected)
    cfg = tiny_config(
        root=tiny_synthetic_root,
        cache_dir=tmp_path / "cache",
        extra=("grid.perturbation=prior", "grid.render=residual"),
    )
    module = VAEGANModule(
        config=OmegaConf.to_container(cfg, resolve=True), class_names=names, image_size=32, data_fingerprint="x"
    )
    with pytest.raises(ValueError, match="grid.render=decoder"):
        module._render_mode()


def test_one_nn_two_sample_accuracy_on_known_answers() -> None:
    real = _cloud(200, seed=0)
    # the same distribution: about chance
    assert 0.4 <= one_nn_two_sample_accuracy(real, _cloud(300, seed=1))["accuracy"] <= 0.6
    # far apart: every nearest neighbour is of its own kind
    assert one_nn_two_sample_accuracy(real, _cloud(300, seed=1, centre=10.0)) == {"accuracy": 1.0, "n_per_side": 200}
    # copies of the real images: each one's nearest neighbour is its original, of the other kind
    assert one_nn_two_sample_accuracy(real, real.clone())["accuracy"] == 0.0
    assert math.isnan(one_nn_two_sample_accuracy(real, real[:1])["accuracy"])  # too few to say anything
    figures = class_figures(
        generated=_cloud(50, seed=2, centre=10.0), real=real, judge_predictions=None, label=0, real_val_recall=None
    )
    assert figures["real_vs_generated"] == {"accuracy": 1.0, "n_per_side": 50}
