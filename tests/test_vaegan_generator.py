"""The generator's own figures on inputs with known answers, the swapped-label loss, the latent adversary,
the v3 checkpoint layout, the fp32 encoder head and the single-device rule."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf
from vaegan_helpers import compose_config, tiny_config

from ablation.generation_report import generator_figures
from faces import FaceSplit
from faces.errors import CheckpointError
from faces.io import save_safetensors
from vaegan import load_vaegan, save_vaegan
from vaegan.checkpoint import FORMAT
from vaegan.data import VAEGANDataModule, load_vaegan_faces
from vaegan.diff_augment import gaussian_blur
from vaegan.images import resize_uint8, to_model_range
from vaegan.losses import expression_feature_loss, latent_confusion
from vaegan.metrics import (
    high_frequency_energy,
    label_flip_figures,
    latent_probe_recall,
    per_class_kid,
    reconstruction_fidelity,
)
from vaegan.model import ARCHITECTURE_SWITCHES, ARCHITECTURE_VERSION, VAEGAN, resolution_for
from vaegan.module import VAEGANModule
from vaegan.train import validate_config

NAMES = ("a", "b", "c", "d")


def _colour_faces(per_class: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """Class c is a flat image of grey level (c + 0.5) / 4 with a little per-face noise: a judge can read it."""
    labels = torch.arange(len(NAMES)).repeat_interleave(per_class)
    noise = torch.rand(len(labels), 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.05
    return (labels.float().view(-1, 1, 1, 1) + 0.5) / len(NAMES) + noise, labels


def _judge(images: torch.Tensor) -> torch.Tensor:
    """Reads the grey level back: a real (if simple) classifier of these faces, right on every real one."""
    return (images.mean(dim=(1, 2, 3)) * len(NAMES)).floor().clamp(0, len(NAMES) - 1).long()


def _flip_sources(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every face decoded with every other label: (source rows, target labels)."""
    pairs = [(i, t) for t in range(len(NAMES)) for i in range(len(labels)) if labels[i] != t]
    return torch.tensor([i for i, _ in pairs]), torch.tensor([t for _, t in pairs])


def test_a_decoder_that_copies_its_input_has_reconstruction_fidelity_one() -> None:
    faces, labels = _colour_faces()
    reconstructed = faces.clone()  # dec(mu(x), y) = x
    figures = reconstruction_fidelity(
        reconstructed_predictions=_judge(reconstructed),
        real_predictions=_judge(faces),
        labels=labels,
        class_names=NAMES,
    )
    assert all(figures[name]["ratio"] == 1.0 and figures[name]["n"] == 6 for name in NAMES), figures
    assert all(figures[name]["read_instead_as"] is None and figures[name]["read_instead_share"] == 0 for name in NAMES)
    blurred = torch.full_like(faces, 0.55)  # every reconstruction the same grey: only class c=2 survives
    figures = reconstruction_fidelity(
        reconstructed_predictions=_judge(blurred), real_predictions=_judge(faces), labels=labels, class_names=NAMES
    )
    assert [figures[name]["ratio"] for name in NAMES] == [0.0, 0.0, 1.0, 0.0]
    # ... and the others are all read as c, which names the feature the round trip loses.
    assert [figures[name]["read_instead_as"] for name in NAMES] == ["c", "c", None, "c"]
    assert [figures[name]["read_instead_share"] for name in NAMES] == [1.0, 1.0, 0.0, 1.0]


def test_reconstruction_fidelity_is_a_ratio_of_counts() -> None:
    """9 of 12 reconstructions read right against 10 of the 12 real faces is 0.9 exactly (a ratio of recalls,
    0.75 / 0.8333, gives 0.8999..., which a >= 0.9 target would fail)."""
    labels = torch.zeros(12, dtype=torch.long)
    real = torch.tensor([0] * 10 + [1] * 2)
    reconstructed = torch.tensor([0] * 9 + [1] * 3)
    figures = reconstruction_fidelity(
        reconstructed_predictions=reconstructed, real_predictions=real, labels=labels, class_names=["a", "b"]
    )
    assert figures["a"]["ratio"] == 0.9 and figures["a"]["ratio"] >= 0.9
    assert figures["a"]["judge_recall_reconstructed"] == 0.75 and math.isnan(figures["b"]["ratio"])


def test_a_decoder_that_ignores_the_label_is_at_chance_and_keeps_the_source_class() -> None:
    faces, labels = _colour_faces()
    sources, targets = _flip_sources(labels)
    features = faces.flatten(1)
    ignoring = faces[sources]  # dec(mu(x), y') = x whatever y'
    figures = label_flip_figures(
        predictions=_judge(ignoring),
        target_labels=targets,
        source_labels=labels[sources],
        class_names=NAMES,
        flipped_features=ignoring.flatten(1),
        source_features=features[sources],
        real_features=features,
        real_labels=labels,
    )
    for name in NAMES:
        f = figures[name]
        assert f["n"] == 18 and f["chance"] == 0.25
        assert f["accuracy"] <= f["chance"] and f["source_kept"] == 1.0 and f["identity_kept"] == 1.0, f
    obeying = (targets.float().view(-1, 1, 1, 1) + 0.5) / len(NAMES) + 0 * faces[sources]  # draws y', forgets the face
    figures = label_flip_figures(
        predictions=_judge(obeying),
        target_labels=targets,
        source_labels=labels[sources],
        class_names=NAMES,
        flipped_features=obeying.flatten(1),
        source_features=features[sources],
        real_features=features,
        real_labels=labels,
    )
    assert all(figures[name]["accuracy"] == 1.0 and figures[name]["source_kept"] == 0.0 for name in NAMES)
    assert all(figures[name]["identity_kept"] == 0.0 for name in NAMES)  # a flat copy of the class, not the source face


def test_the_high_frequency_ratio_is_one_for_a_decoder_that_ignores_the_label_and_flags_speckle() -> None:
    """Known answers: flips identical to the reconstructions give exactly 1 per class; flips that add a pixel
    checkerboard (speckle) are far above 1; flips blurred further (a decoder that smooths the new label in) are
    below 1. Without the energies the figure is NaN."""
    faces, labels = _colour_faces()
    faces = torch.nn.functional.interpolate(faces, size=64, mode="nearest")  # a face-sized image, 1 px = 1 px
    sources, targets = _flip_sources(labels)
    side = faces.shape[-1]
    texture = torch.rand(1, 1, side, side, generator=torch.Generator().manual_seed(0)) * 0.4 - 0.2
    reconstructed = (faces[sources] + texture).clamp(-1, 1)  # some real detail, so the energy is not zero
    checker = ((torch.arange(side)[:, None] + torch.arange(side)[None, :]) % 2).float() * 0.2 - 0.1

    def ratios(flipped: torch.Tensor) -> list[float]:
        figures = label_flip_figures(
            predictions=_judge(flipped),
            target_labels=targets,
            source_labels=labels[sources],
            class_names=NAMES,
            flipped_high_frequency=high_frequency_energy(flipped),
            reconstructed_high_frequency=high_frequency_energy(reconstructed),
        )
        return [figures[name]["high_frequency_ratio"] for name in NAMES]

    assert ratios(reconstructed) == [1.0] * len(NAMES)
    assert min(ratios(reconstructed + checker)) > 1.5
    smoothed = gaussian_blur(reconstructed, torch.full((len(reconstructed),), 2.0 * side / 64))
    assert max(ratios(smoothed)) < 0.9
    plain = label_flip_figures(
        predictions=_judge(reconstructed), target_labels=targets, source_labels=labels[sources], class_names=NAMES
    )
    assert all(math.isnan(plain[name]["high_frequency_ratio"]) for name in NAMES)


def test_a_latent_probe_reads_codes_that_carry_the_label_and_not_codes_that_hide_it() -> None:
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(len(NAMES)).repeat(40)
    noise = torch.randn(len(labels), 16, generator=generator)
    carrying = noise + 3 * torch.nn.functional.one_hot(labels, 16).float()  # a few dimensions say the class
    split = dict(train_labels=labels[:120], test_labels=labels[120:], class_names=NAMES)
    read = latent_probe_recall(train_codes=carrying[:120], test_codes=carrying[120:], **split)
    hidden = latent_probe_recall(train_codes=noise[:120], test_codes=noise[120:], **split)
    assert read["mean_class_recall"] > 0.9 and read["chance"] == 0.25 and read["n_test"] == 40
    assert hidden["mean_class_recall"] < 0.5


def test_per_class_kid_is_small_for_the_same_distribution_and_large_for_a_shifted_one() -> None:
    generator = torch.Generator().manual_seed(0)
    real, labels = torch.randn(60, 8, generator=generator), torch.arange(60) % 2
    same = per_class_kid(
        generated=torch.randn(30, 8, generator=generator),
        generated_labels=torch.arange(30) % 2,
        real=real,
        real_labels=labels,
        class_names=("x", "y"),
    )
    shifted = per_class_kid(
        generated=torch.randn(30, 8, generator=generator) + 2,
        generated_labels=torch.arange(30) % 2,
        real=real,
        real_labels=labels,
        class_names=("x", "y"),
    )
    for name in ("x", "y"):
        assert same[name]["subset_size"] == 15 and same[name]["n_real"] == 30
        assert abs(same[name]["kid"]) < 0.2 * shifted[name]["kid"], (same, shifted)


def test_resolution_follows_the_data() -> None:
    assert [resolution_for(size) for size in (32, 48, 64, 100, 256)] == [32, 64, 64, 128, 128]


def test_encoder_head_stays_fp32_under_bf16_autocast() -> None:
    model = VAEGAN(resolution=32, latent_dim=32, num_classes=7, base_channels=8, max_channels=32, embed_dim=8).eval()
    images, labels = torch.rand(2, 3, 32, 32) * 2 - 1, torch.tensor([0, 1])
    with torch.no_grad(), torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        mu, logvar = model.encode(images, labels)
    assert mu.dtype == logvar.dtype == torch.float32


def test_old_architecture_checkpoints_are_refused_with_retrain(tmp_path: Path) -> None:
    model = VAEGAN(resolution=32, latent_dim=32, num_classes=7, base_channels=8, max_channels=32, embed_dim=8)
    names = ["Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral"]
    path = save_vaegan(
        tmp_path / "current.safetensors",
        model=model,
        config={},
        class_names=names,
        extra={"image_size": 32, "data_fingerprint": "x"},
    )
    loaded, meta = load_vaegan(path)  # the new layout round-trips
    assert meta["architecture_version"] == ARCHITECTURE_VERSION == 3
    assert "latent_classifier.net.0.weight" in loaded.state_dict()
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    old_meta = {k: v for k, v in meta.items() if k != "architecture_version"}  # what version 1 wrote
    old = save_safetensors(
        tmp_path / "v1.safetensors", model.state_dict(), metadata={"format": FORMAT, "meta": old_meta}
    )
    with pytest.raises(CheckpointError, match=r"v1\.safetensors: a VAE-GAN of architecture version 1.*Retrain"):
        load_vaegan(old)
    # Version 2 had no latent classifier: its file is refused by version, before any weight is read.
    v2_state = {k: v for k, v in model.state_dict().items() if not k.startswith("latent_classifier.")}
    v2 = save_safetensors(
        tmp_path / "v2.safetensors",
        v2_state,
        metadata={"format": FORMAT, "meta": {**meta, "architecture_version": 2}},
    )
    with pytest.raises(CheckpointError, match=r"v2\.safetensors: a VAE-GAN of architecture version 2.*Retrain"):
        load_vaegan(v2)
    # A version-3 file written before the switches existed loads with their defaults.
    before_switch = {
        **meta,
        "architecture": {k: v for k, v in meta["architecture"].items() if k not in ARCHITECTURE_SWITCHES},
    }
    pre = save_safetensors(
        tmp_path / "pre.safetensors", model.state_dict(), metadata={"format": FORMAT, "meta": before_switch}
    )
    assert load_vaegan(pre)[1]["architecture"]["encoder_sees_label"] is True
    assert load_vaegan(pre)[1]["architecture"]["expression_classifier"] is False


def test_ddp_is_refused_before_any_work_with_what_to_use() -> None:
    config = OmegaConf.to_container(compose_config("trainer=ddp_cpu"), resolve=True)
    with pytest.raises(ValueError, match=r"trainer.strategy='ddp'.*one device only.*Use trainer=gpu or trainer=cpu"):
        validate_config(config)
    validate_config(OmegaConf.to_container(compose_config(), resolve=True))  # one device: accepted


def _trained(root: Path, tmp: Path, *, steps: int, extra: tuple[str, ...]) -> tuple[VAEGANModule, FaceSplit]:
    """A tiny VAE-GAN after `steps` real training steps (GAN, label and latent terms on from step 0)."""
    cfg = tiny_config(
        root=root,
        cache_dir=tmp / "cache",
        extra=(
            "epochs=1",
            "vaegan.losses.adversarial_start_epochs=0",
            "vaegan.losses.adversarial_ramp_epochs=0",
            "vaegan.losses.latent_adversary_start_epochs=0",
            "vaegan.losses.latent_adversary_ramp_epochs=0",
            *extra,
        ),
    )
    config = OmegaConf.to_container(cfg, resolve=True)
    fit, val, _ = load_vaegan_faces(config["data"], cache_dir=config["paths"]["cache_dir"])
    pl.seed_everything(0)
    module = VAEGANModule(
        config=config, class_names=list(fit.class_names), image_size=fit.image_size, data_fingerprint="x"
    )
    datamodule = VAEGANDataModule(fit=fit, val=val, resolution=module.model.resolution, batch_size=32, seed=0)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        deterministic=True,
    )
    trainer.fit(module, datamodule=datamodule)
    return module, fit


def _swapped_decodes(root: Path, tmp: Path, *, label_weight: str, extra: tuple[str, ...] = ()) -> torch.Tensor:
    """dec(z, y') of fixed codes after 3 real training steps with the given swapped-label weight."""
    module, _ = _trained(root, tmp, steps=3, extra=(f"vaegan.losses.label_weight={label_weight}", *extra))
    z = torch.randn(7, module.model.latent_dim, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        return module.model.decode(z, (torch.arange(7) + 1) % 7, ema=False)


def test_swapped_label_loss_changes_the_decodes_of_a_changed_label(tiny_synthetic_root: Path, tmp_path: Path) -> None:
    without = _swapped_decodes(tiny_synthetic_root, tmp_path, label_weight="0.0")
    with_loss = _swapped_decodes(tiny_synthetic_root, tmp_path, label_weight="5.0")
    assert (with_loss - without).abs().mean() > 1e-3


def test_the_expression_feature_loss_trains_the_decoder(tiny_synthetic_root: Path, tmp_path: Path) -> None:
    """With the separate classifier, 3 steps with its feature loss on give another decoder than with it off
    (the label loss is the same in both: its logits come from the same eval-mode pass)."""
    on = ("vaegan.expression_classifier=true",)
    without = _swapped_decodes(tiny_synthetic_root, tmp_path, label_weight="1.0", extra=on)
    with_loss = _swapped_decodes(
        tiny_synthetic_root, tmp_path, label_weight="1.0", extra=(*on, "vaegan.losses.expression_feature_weight=5.0")
    )
    assert (with_loss - without).abs().mean() > 1e-4


def test_an_imagenet_expression_classifier_trains_only_its_top_inside_the_vaegan(
    tiny_synthetic_root: Path, tmp_path: Path
) -> None:
    """expression_classifier_imagenet=true in real training: 3 steps with the label and expression feature
    losses on leave the frozen ImageNet stem and stages exactly as the package has them (weights and batch-norm
    statistics) and move the fine-tuned stage; the decoder learns from it (another decoder than the scratch
    classifier's)."""
    from faces.features import imagenet_efficientnet_lite0

    on = ("vaegan.expression_classifier=true", "vaegan.losses.expression_feature_weight=1.0")
    module, _ = _trained(
        tiny_synthetic_root,
        tmp_path,
        steps=3,
        extra=(*on, "vaegan.expression_classifier_imagenet=true", "vaegan.losses.label_weight=5.0"),
    )
    classifier = module.model.expression_classifier
    imagenet = imagenet_efficientnet_lite0(num_classes=0)
    for ours, theirs in ((classifier.stem[1], imagenet.bn1), (classifier.stages[:3], imagenet.blocks[:3])):
        for (name, a), b in zip(ours.state_dict().items(), theirs.state_dict().values()):
            assert torch.equal(a, b), name
    assert not torch.equal(classifier.stages[3][0].conv_pw.weight, imagenet.blocks[3][0].conv_pw.weight)
    z = torch.randn(7, module.model.latent_dim, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        imagenet_decodes = module.model.decode(z, (torch.arange(7) + 1) % 7, ema=False)
    scratch_decodes = _swapped_decodes(tiny_synthetic_root, tmp_path, label_weight="5.0", extra=on)
    assert (imagenet_decodes - scratch_decodes).abs().mean() > 1e-4


def test_the_imagenet_feature_loss_trains_the_decoder_and_stays_out_of_the_checkpoint(
    tiny_synthetic_root: Path, tmp_path: Path
) -> None:
    """imagenet_feature_weight > 0: 3 steps give another decoder than without it, the term is logged, and the
    frozen ImageNet network is not part of what the module saves."""
    without = _swapped_decodes(tiny_synthetic_root, tmp_path, label_weight="1.0")
    with_loss = _swapped_decodes(
        tiny_synthetic_root, tmp_path, label_weight="1.0", extra=("vaegan.losses.imagenet_feature_weight=5.0",)
    )
    assert (with_loss - without).abs().mean() > 1e-4
    module, _ = _trained(tiny_synthetic_root, tmp_path, steps=1, extra=("vaegan.losses.imagenet_feature_weight=1.0",))
    assert "train/imagenet_feature_step" in module.trainer.logged_metrics
    assert not any("stages" in key or "imagenet" in key for key in module.state_dict())


def test_the_expression_classifiers_views_change_what_the_decoder_learns(
    tiny_synthetic_root: Path, tmp_path: Path
) -> None:
    """expression_augment reaches training: the classifier learns from, and the label loss reads, augmented views,
    so 3 steps give another decoder than the same 3 steps without it."""
    on = ("vaegan.expression_classifier=true",)
    without = _swapped_decodes(tiny_synthetic_root, tmp_path, label_weight="5.0", extra=on)
    augmented = _swapped_decodes(
        tiny_synthetic_root, tmp_path, label_weight="5.0", extra=(*on, "vaegan.losses.expression_augment=[translation]")
    )
    assert (augmented - without).abs().mean() > 1e-4


def test_pretraining_the_expression_classifier_teaches_it_the_fit_faces_before_the_first_step(
    tiny_synthetic_root: Path, tmp_path: Path
) -> None:
    """expression_classifier_pretrain_epochs: after one VAE-GAN step, a classifier that first took 8 passes alone
    over the fit faces reads them better (lower class-balanced cross-entropy) than one that did not."""
    on = ("vaegan.expression_classifier=true",)

    def fit_loss(pretrain: int) -> float:
        module, fit = _trained(
            tiny_synthetic_root,
            tmp_path,
            steps=1,
            extra=(*on, f"vaegan.optim.expression_classifier_pretrain_epochs={pretrain}"),
        )
        with torch.no_grad():
            logits = module.model.classify(to_model_range(resize_uint8(fit.images, size=module.model.resolution)))
        return float(torch.nn.functional.cross_entropy(logits, fit.labels))

    assert fit_loss(8) < fit_loss(0) - 0.1  # measured 1.67 against 1.93


def test_expression_features_are_the_classifiers_blocks_and_their_loss_is_zero_only_on_a_copy() -> None:
    torch.manual_seed(0)
    model = VAEGAN(
        resolution=32, latent_dim=32, num_classes=7, base_channels=8, max_channels=32, expression_classifier=True
    )
    images = torch.rand(4, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        logits, blocks = model.classify(images, return_features=True)
        assert torch.allclose(logits, model.classify(images))
        assert [b.shape[-1] for b in blocks] == [16, 8, 4]
        _, other = model.classify(images.flip(3), return_features=True)
    assert float(expression_feature_loss(blocks, blocks)) == 0.0
    assert float(expression_feature_loss(other, blocks)) > 0.01
    with pytest.raises(ValueError, match="same non-zero number of blocks"):
        expression_feature_loss(blocks[:2], blocks)
    with pytest.raises(ValueError, match="expression_classifier=true"):
        VAEGAN(resolution=32, latent_dim=32, num_classes=7).classify(images, return_features=True)
    config = OmegaConf.to_container(compose_config("vaegan.losses.expression_feature_weight=0.5"), resolve=True)
    with pytest.raises(ValueError, match=r"expression_feature_weight=0.5 needs the separate expression classifier"):
        validate_config(config)


def test_latent_confusion_is_zero_at_the_class_prior_and_grows_with_a_confident_reading() -> None:
    assert abs(float(latent_confusion(torch.zeros(4, 7)))) < 1e-6
    sure, surer = torch.eye(7)[:4] * 3, torch.eye(7)[:4] * 9
    assert 0 < float(latent_confusion(sure)) < float(latent_confusion(surer))
    # On long-tailed data a code that says nothing is read as the class frequencies: that is 0, not uniform.
    prior = torch.tensor([0.5, 0.2, 0.1, 0.1, 0.05, 0.03, 0.02])
    assert abs(float(latent_confusion(prior.log().expand(4, -1), prior))) < 1e-6
    assert float(latent_confusion(torch.zeros(4, 7), prior)) > 0.1


def test_the_latent_adversary_moves_the_encoder_only_and_hides_the_label_from_the_latent_classifier() -> None:
    """Fader's two sides on a tiny model, with the module's own pieces: the latent classifier learns to read
    the label from the codes (they carry it: the encoder sees the label), then encoder steps on the confusion
    term alone, backpropagated into the encoder only as training does, leave that classifier near chance."""
    torch.manual_seed(0)
    model = VAEGAN(resolution=32, latent_dim=32, num_classes=7, base_channels=8, max_channels=32, embed_dim=8).eval()
    images, labels = torch.rand(28, 3, 32, 32) * 2 - 1, torch.arange(7).repeat(4)
    reader = torch.optim.Adam(model.latent_classifier.parameters(), lr=0.01)
    with torch.no_grad():
        codes = model.encode(images, labels)[0]
    for _ in range(100):
        reader.zero_grad()
        torch.nn.functional.cross_entropy(model.latent_classifier(codes), labels).backward()
        reader.step()
    reader.zero_grad(set_to_none=True)

    def confusion() -> float:
        with torch.no_grad():
            return float(latent_confusion(model.latent_classifier(model.encode(images, labels)[0])))

    read, frozen = confusion(), [p.detach().clone() for p in model.latent_classifier.parameters()]
    encoder = torch.optim.Adam(model.encoder.parameters(), lr=0.01)
    for _ in range(30):
        encoder.zero_grad()
        loss = latent_confusion(model.latent_classifier(model.encode(images, labels)[0]))
        torch.autograd.backward(loss, inputs=list(model.encoder.parameters()))
        encoder.step()
    assert read > 1.0  # the classifier read the label
    assert confusion() < 0.1 * read
    assert all(torch.equal(a, b) for a, b in zip(frozen, model.latent_classifier.parameters()))
    assert all(p.grad is None for p in model.latent_classifier.parameters())


class _CopyingGenerator(torch.nn.Module):
    """A 'VAE-GAN' whose code is the image itself and whose decoder ignores the label: dec(mu(x), y') = x."""

    resolution, latent_dim = 8, 3 * 8 * 8

    def encode(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return images.flatten(1), torch.zeros_like(images.flatten(1))

    def decode(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return z.clamp(-1, 1).view(-1, 3, 8, 8)


def _split(name: str, per_class: int, seed: int):
    grey, labels = _colour_faces(per_class)
    images = (grey * 255).round().clamp(0, 255).to(torch.uint8)
    return FaceSplit(
        name=name,
        images=images,
        labels=labels,
        is_synthetic=torch.zeros(len(labels), dtype=torch.bool),
        sample_ids=tuple(f"{name}_{seed}_{i}" for i in range(len(labels))),
        class_names=NAMES,
    )


def test_the_generation_reports_generator_section_on_a_copying_label_blind_generator() -> None:
    fit, val = _split("train", 10, 0), _split("val", 6, 1)
    judge = lambda images: torch.nn.functional.one_hot(_judge(images.float() / 255), len(NAMES)).float()  # noqa: E731
    embed = lambda images: images.float().flatten(1)  # noqa: E731
    figures = generator_figures(
        model=_CopyingGenerator(),
        fit=fit,
        val=val,
        classes=[0, 1, 2],
        judge=judge,
        embed=embed,
        real_features=embed(fit.images),
        device=torch.device("cpu"),
        seed=0,
    )
    assert all(figures["reconstruction_fidelity"][name]["ratio"] == 1.0 for name in NAMES)
    for name in ("a", "b", "c"):
        flip = figures["label_flip"][name]
        assert (
            flip["n"] == 3 * 6
            and flip["accuracy"] == 0.0
            and flip["source_kept"] == 1.0
            and flip["identity_kept"] == 1.0
        )
        assert (
            figures["prior_fidelity"][name]["n"] == 64 and figures["kid_efficientnet_lite0_prior"][name]["n_real"] == 10
        )


def test_the_ablation_gives_the_vaegan_and_the_judge_one_device_of_a_ddp_trainer() -> None:
    """`ablate.py trainer=ddp launcher=...`: stage 3's classifier runs may be data-parallel, but the VAE-GAN (refused
    under DDP) and the judge train in the ablation's own process on one device of the same kind."""
    from faces.runkit.config import single_device_trainer
    from vaegan.train import check_single_device

    ddp = compose_config("trainer=ddp_cpu", "trainer.devices=2").trainer
    with pytest.raises(ValueError, match="one device only"):
        check_single_device(OmegaConf.to_container(ddp))
    single = single_device_trainer(ddp)
    check_single_device(OmegaConf.to_container(single))
    assert (single.accelerator, single.devices, single.strategy) == (ddp.accelerator, 1, "auto") and ddp.devices == 2
