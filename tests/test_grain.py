"""The `grain` rendering: the decoder's image plus pixel noise matched to the real faces (render.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_augment import png_files, run

from vaegan.generation.perturbations import get_perturbation
from vaegan.generation.render import Grain, grain_std_for, render, render_for
from vaegan.images import to_model_range, to_uint8


def _smooth_faces(n: int = 16, size: int = 32) -> torch.Tensor:
    """uint8 images with no pixel-scale detail: gradients, one per image."""
    ramp = torch.linspace(-0.6, 0.6, size)
    images = torch.stack(
        [(ramp[None, :] * (i % 4 - 1.5) / 2 + ramp[:, None] * 0.3).expand(3, size, size) for i in range(n)]
    )
    return to_uint8(images)


@pytest.mark.parametrize("std_levels", [3.0, 6.0, 12.0])
def test_grain_std_recovers_the_noise_that_separates_real_faces_from_smooth_ones(std_levels: float) -> None:
    smooth = _smooth_faces()
    std = std_levels / 127.5
    noisy = Grain(std=std, generator=torch.Generator().manual_seed(3)).apply(smooth)
    assert grain_std_for(noisy, smooth) == pytest.approx(std, rel=0.1)
    # A decoder as grainy as the faces (or grainier) gets no noise.
    assert grain_std_for(smooth, smooth) == 0.0
    assert grain_std_for(smooth, noisy) == 0.0


def test_grain_std_refuses_mismatched_inputs() -> None:
    smooth = _smooth_faces()
    with pytest.raises(ValueError, match="one shape"):
        grain_std_for(smooth, smooth[:4])
    with pytest.raises(ValueError, match="uint8"):
        grain_std_for(to_model_range(smooth), smooth)


def test_grain_is_deterministic_and_keeps_greyscale_grey() -> None:
    smooth = _smooth_faces(4)
    a = Grain(std=0.05, generator=torch.Generator().manual_seed(0)).apply(smooth)
    b = Grain(std=0.05, generator=torch.Generator().manual_seed(0)).apply(smooth)
    assert torch.equal(a, b) and not torch.equal(a, smooth)
    grey = Grain(std=0.05, generator=torch.Generator().manual_seed(0), greyscale=True).apply(smooth)
    assert torch.equal(grey[:, 0], grey[:, 1]) and torch.equal(grey[:, 1], grey[:, 2])
    assert torch.equal(Grain(std=0.0).apply(smooth), smooth)


def test_grain_rendering_is_the_decoders_image_plus_the_noise(model, fit) -> None:
    z = torch.randn(4, model.latent_dim, generator=torch.Generator().manual_seed(0))
    labels = fit.labels[:4]
    decoded = render(model, z=z, labels=labels, mode="decoder", image_size=fit.image_size)
    grain = Grain(std=0.04, generator=torch.Generator().manual_seed(5))
    grainy = render(model, z=z, labels=labels, mode="grain", image_size=fit.image_size, grain=grain)
    expected = Grain(std=0.04, generator=torch.Generator().manual_seed(5)).apply(decoded)
    assert torch.equal(grainy, expected)
    with pytest.raises(ValueError, match="matched to the real faces"):
        render(model, z=z, labels=labels, mode="grain", image_size=fit.image_size)
    # A decoder rendering: donor and source-free strategies may use it.
    assert render_for(get_perturbation("transfer"), "grain") == "grain"
    assert render_for(get_perturbation("prior"), "grain") == "grain"


def test_augment_with_grain_adds_the_matched_noise_to_the_decoders_samples(model, fit, tmp_path: Path) -> None:
    from vaegan.generation.candidates import class_grain_std

    decoded = run(model, fit, tmp_path / "dec", targets=[20] * 7, render_mode="decoder")
    grainy = run(model, fit, tmp_path / "grain", targets=[20] * 7, render_mode="grain")
    again = run(model, fit, tmp_path / "again", targets=[20] * 7, render_mode="grain")
    assert json.loads((tmp_path / "grain" / "augment.json").read_text())["render"] == "grain"
    assert png_files(tmp_path / "grain") == png_files(tmp_path / "again")  # same seed, same bytes
    assert png_files(tmp_path / "grain") != png_files(tmp_path / "dec")
    assert not decoded.grain_std and set(grainy.grain_std) == set(again.grain_std)
    assert "grain (pixel noise std" in grainy.table()
    # The level is each class's own: its real faces against their reconstructions.
    for label, name in enumerate(fit.class_names):
        if name in grainy.grain_std:
            own = fit.images[fit.labels == label]
            expected = class_grain_std(
                model, own, label=label, image_size=fit.image_size, device=torch.device("cpu"), batch_size=16
            )
            assert grainy.grain_std[name] == pytest.approx(expected)
    # An untrained decoder draws no detail at all: every class's faces need noise.
    assert all(std > 0 for std in grainy.grain_std.values())


def test_generation_report_records_the_grain_levels_per_class() -> None:
    from types import SimpleNamespace

    from ablation.generation_report import _grain_levels, format_generation_report
    from vaegan.generation.request import GenerationRequest

    plans = [SimpleNamespace(name="Fear", grain_std=6.5 / 127.5), SimpleNamespace(name="Anger", grain_std=0.0)]
    grainy = GenerationRequest(target_count=10, render="grain", device="cpu")
    assert _grain_levels(grainy, plans) == {"grain_levels": {"Fear": 6.5, "Anger": 0.0}}
    assert _grain_levels(GenerationRequest(target_count=10, render="decoder", device="cpu"), plans) == {}
    figures = {"n_generated": 0, "diversity_ratio": None, "novelty": {"near_duplicate_share": None}}
    report = {
        "strategy": "gaussian",
        "strength": 2.0,
        "feature_network": "x",
        "before_filter": {"classes": {"Fear": figures}},
        "after_filter": {"classes": {}},
        "grain_levels": {"Fear": 6.5, "Anger": 0.0},
    }
    assert "pixel noise std per class (uint8 levels, matched to its real faces): Fear 6.5, Anger 0.0" in (
        format_generation_report(report)
    )
