"""Model shapes, conditioning, loss signs and metrics of the VAE-GAN (no training)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from einops import rearrange

from vaegan import VAEGAN, to_model_range, to_uint8
from vaegan import losses as L
from vaegan.checkpoint import load_vaegan, save_vaegan
from vaegan.metrics import diversity_ratio, frechet_distance


def _round_trip(model: VAEGAN, tmp_path: Path, *, image_size: int) -> tuple[VAEGAN, dict]:
    """The model after a save_vaegan / load_vaegan round trip through a safetensors file: (loaded, meta)."""
    path = save_vaegan(
        tmp_path / "v.safetensors",
        model=model,
        config={},
        class_names=[f"c{i}" for i in range(7)],
        extra={"image_size": image_size, "data_fingerprint": "x"},
    )
    return load_vaegan(path)


def small_model(resolution: int, latent_dim: int = 32) -> VAEGAN:
    return VAEGAN(
        resolution=resolution, latent_dim=latent_dim, num_classes=7, base_channels=8, max_channels=32, embed_dim=8
    )


@pytest.mark.parametrize("resolution", [32, 64, 128])
def test_shapes_for_each_resolution(resolution: int) -> None:
    torch.manual_seed(0)
    model = small_model(resolution).eval()
    images = torch.rand(3, 3, resolution, resolution) * 2 - 1
    labels = torch.tensor([0, 3, 6])
    mu, logvar = model.encode(images, labels)
    assert mu.shape == logvar.shape == (3, 32)
    decoded = model.decode(mu, labels)
    assert decoded.shape == (3, 3, resolution, resolution)
    assert decoded.min() >= -1 and decoded.max() <= 1
    logits, features = model.discriminator(images, labels, return_features=True)
    assert logits.shape == (3,)
    assert features.shape[-1] == 8  # Larsen's similarity layer is the 8x8 block at every resolution
    assert (model.resolution, model.latent_dim, model.num_classes) == (resolution, 32, 7)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"resolution": 48, "latent_dim": 64}, r"resolution=48 .*\[32, 64, 128\]"),
        ({"resolution": 64, "latent_dim": 100}, r"latent_dim=100 .*\[32, 64, 128, 256, 512\]"),
    ],
)
def test_unknown_resolution_or_latent_size_names_the_choices(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        VAEGAN(num_classes=7, **kwargs)


def test_changing_the_label_changes_the_decoded_image() -> None:
    torch.manual_seed(0)
    model = small_model(32).eval()
    z = torch.randn(1, 32).expand(7, 32)
    decoded = model.decode(z, torch.arange(7), ema=False)
    differences = (decoded[1:] - decoded[:1]).abs().flatten(1).mean(1)
    assert (differences > 1e-4).all(), differences


def test_ema_decoder_is_frozen_and_used_by_default() -> None:
    model = small_model(32)
    assert not any(p.requires_grad for p in model.decoder_ema.parameters())
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.add_(0.1)
    model.eval()
    z, y = torch.randn(2, 32), torch.tensor([1, 2])
    assert not torch.allclose(model.decode(z, y), model.decode(z, y, ema=False))
    model.update_ema(decay=0.0)  # decay 0 copies the trained weights
    torch.testing.assert_close(model.decode(z, y), model.decode(z, y, ema=False))


def test_pixel_range_round_trip() -> None:
    images = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    x = to_model_range(images)
    assert x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1
    assert torch.equal(to_uint8(x), images)
    with pytest.raises(TypeError, match="uint8"):
        to_model_range(x)


def test_hinge_loss_signs() -> None:
    confident_real, confident_fake = torch.full((4,), 2.0), torch.full((4,), -2.0)
    # A discriminator that separates real (>=1) from fake (<=-1) has zero loss ...
    assert L.hinge_discriminator_loss(confident_real, confident_fake) == 0
    # ... and one that has them swapped pays for both.
    assert L.hinge_discriminator_loss(confident_fake, confident_real) == pytest.approx(6.0)
    # The generator's loss falls as D scores its fakes as more real.
    assert L.hinge_generator_loss(confident_real) < L.hinge_generator_loss(confident_fake)
    fake = torch.zeros(4, requires_grad=True)
    L.hinge_generator_loss(fake).backward()
    assert (fake.grad < 0).all()  # gradient descent raises D(fake)


def test_kl_is_zero_at_the_prior_and_positive_elsewhere() -> None:
    assert L.kl_divergence(torch.zeros(3, 4), torch.zeros(3, 4)) == 0
    assert L.kl_divergence(torch.ones(3, 4), torch.zeros(3, 4)) == pytest.approx(2.0)


def test_loss_weight_schedules() -> None:
    assert L.kl_weight_at(step=0, weight=1.0, warmup_steps=10) == 0
    assert L.kl_weight_at(step=5, weight=1.0, warmup_steps=10) == 0.5
    assert L.kl_weight_at(step=50, weight=1.0, warmup_steps=10) == 1.0
    assert L.adversarial_weight_at(step=9, weight=0.1, start_step=10, ramp_steps=5) == 0
    assert 0 < L.adversarial_weight_at(step=10, weight=0.1, start_step=10, ramp_steps=5) < 0.1
    assert L.adversarial_weight_at(step=100, weight=0.1, start_step=10, ramp_steps=5) == 0.1


def test_lpips_without_backbone_weights_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert not L.lpips_available()
    with pytest.raises(L.LPIPSUnavailableError, match=r"alexnet-owt-7be5be79\.pth.*TORCH_HOME"):
        L.load_lpips(allow_download=False)


def test_frechet_distance_and_collapse_indicator() -> None:
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(200, 8, generator=generator, dtype=torch.float64)
    b = torch.randn(200, 8, generator=generator, dtype=torch.float64)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(a, b) < frechet_distance(a, b + 3.0)
    assert math.isnan(frechet_distance(a[:1], b))
    labels = torch.zeros(200, dtype=torch.long)
    varied = diversity_ratio(generated=b, generated_labels=labels, real=a, real_labels=labels, class_names=["c"])
    collapsed = diversity_ratio(
        generated=b[:1].expand(200, 8), generated_labels=labels, real=a, real_labels=labels, class_names=["c"]
    )
    assert varied["overall"] == pytest.approx(1.0, abs=0.15)
    assert collapsed["overall"] == 0.0


def test_an_encoder_that_does_not_see_the_label_ignores_it_and_round_trips(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = VAEGAN(
        resolution=32, latent_dim=32, num_classes=7, base_channels=8, max_channels=32, encoder_sees_label=False
    ).eval()
    assert model.encoder.label_embedding is None
    images = torch.rand(4, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        mu_a, _ = model.encode(images, torch.zeros(4, dtype=torch.long))
        mu_b, _ = model.encode(images, torch.full((4,), 6, dtype=torch.long))
    assert torch.equal(mu_a, mu_b)
    loaded, meta = _round_trip(model, tmp_path, image_size=32)
    assert meta["architecture"]["encoder_sees_label"] is False
    assert loaded.encoder.label_embedding is None
    with torch.no_grad():
        assert torch.allclose(loaded.encode(images, torch.zeros(4, dtype=torch.long))[0], mu_a)
    with pytest.raises(ValueError, match=r"encoder_sees_label='no' must be true or false"):
        VAEGAN(resolution=32, latent_dim=32, num_classes=7, encoder_sees_label="no")


@pytest.mark.parametrize("resolution", [32, 64])
def test_a_separate_expression_classifier_judges_in_eval_mode_and_round_trips(tmp_path: Path, resolution: int) -> None:
    """`expression_classifier=True`: model.classify answers with the separate CNN, in eval mode (the decoder's
    images never move its batch-norm statistics), and the weights come back from the safetensors file."""
    torch.manual_seed(0)
    model = VAEGAN(
        resolution=resolution,
        latent_dim=32,
        num_classes=7,
        base_channels=8,
        max_channels=32,
        expression_classifier=True,
    )
    assert VAEGAN(resolution=resolution, latent_dim=32, num_classes=7).expression_classifier is None
    classifier = model.expression_classifier.train()
    classifier(torch.rand(8, 3, resolution, resolution) * 2 - 1)  # a real-face step moves the running statistics
    stats = [b.clone() for b in classifier.buffers()]
    fakes = torch.rand(5, 3, resolution, resolution) * 2 - 1
    logits = model.classify(fakes)
    assert logits.shape == (5, 7) and classifier.training  # back in training mode afterwards
    assert all(torch.equal(a, b) for a, b in zip(stats, classifier.buffers()))
    assert not torch.allclose(logits, model.discriminator.classify(fakes))
    loaded, meta = _round_trip(model.eval(), tmp_path, image_size=resolution)
    assert meta["architecture"]["expression_classifier"] is True
    with torch.no_grad():
        assert torch.allclose(loaded.classify(fakes), model.classify(fakes))
    with pytest.raises(ValueError, match=r"expression_classifier=1 must be true or false"):
        VAEGAN(resolution=32, latent_dim=32, num_classes=7, expression_classifier=1)


@pytest.mark.parametrize("resolution", [32, 64, 128])
def test_an_imagenet_expression_classifier_starts_from_imagenet_and_trains_only_its_top(
    tmp_path: Path, resolution: int
) -> None:
    """`expression_classifier_imagenet=True`: the separate classifier's stem and first three stages are the
    package's ImageNet EfficientNet-Lite0, frozen with their batch norm in eval mode even in a training step; a
    step on real faces moves the fourth stage and the head only; its blocks are at 1/4, 1/8, 1/16 of the input;
    the weights come back from the safetensors file; and it needs the separate classifier."""
    from faces.features import imagenet_efficientnet_lite0

    torch.manual_seed(0)
    kwargs = dict(resolution=resolution, latent_dim=32, num_classes=7, base_channels=8, max_channels=32)
    model = VAEGAN(**kwargs, expression_classifier=True, expression_classifier_imagenet=True)
    classifier = model.expression_classifier
    imagenet = imagenet_efficientnet_lite0(num_classes=0)
    assert torch.equal(classifier.stem[0].weight, imagenet.conv_stem.weight)
    assert torch.equal(classifier.stages[3][0].conv_pw.weight, imagenet.blocks[3][0].conv_pw.weight)
    frozen = [classifier.stem, *classifier.stages[:3]]
    assert not any(p.requires_grad for m in frozen for p in m.parameters())
    assert all(p.requires_grad for m in (classifier.stages[3], classifier.head) for p in m.parameters())

    before = {name: tensor.clone() for name, tensor in classifier.state_dict().items()}
    classifier.train()
    assert not any(m.training for f in frozen for m in f.modules()) and classifier.stages[3].training
    optimizer = torch.optim.Adam([p for p in classifier.parameters() if p.requires_grad], lr=1e-2)
    faces = torch.rand(8, 3, resolution, resolution) * 2 - 1
    torch.nn.functional.cross_entropy(classifier(faces), torch.arange(8) % 7).backward()
    optimizer.step()
    after = classifier.state_dict()
    moved = {".".join(name.split(".")[:2]) for name in after if not torch.equal(after[name], before[name])}
    assert moved == {"stages.3", "head.0", "head.1", "head.6"}  # the frozen stem and stages 0-2 never move

    logits, blocks = classifier.eval()(faces, return_features=True)
    assert logits.shape == (8, 7)
    assert [b.shape[-1] for b in blocks] == [resolution // 4, resolution // 8, resolution // 16]
    loaded, meta = _round_trip(model.eval(), tmp_path, image_size=resolution)
    assert meta["architecture"]["expression_classifier_imagenet"] is True
    with torch.no_grad():
        assert torch.allclose(loaded.classify(faces), model.classify(faces))
    with pytest.raises(ValueError, match=r"expression_classifier_imagenet=true .* needs expression_classifier=true"):
        VAEGAN(**kwargs, expression_classifier_imagenet=True)


@pytest.mark.parametrize("resolution", [32, 64, 128])
def test_a_full_resolution_decoder_draws_single_pixels_and_round_trips(tmp_path: Path, resolution: int) -> None:
    """`decoder_full_resolution=True`: the last level is a label-modulated block at full resolution, so the decoder
    can paint one pixel unlike its neighbours (the sub-pixel layer paints 2x2 blocks from one half-resolution map),
    and files without the key keep the sub-pixel layout."""
    torch.manual_seed(0)
    kwargs = dict(resolution=resolution, latent_dim=32, num_classes=7, base_channels=8, max_channels=32, embed_dim=8)
    model = VAEGAN(**kwargs, decoder_full_resolution=True).eval()
    assert model.decoder.blocks[-1].conv.out_channels == 8 and model.decoder.to_rgb.out_channels == 3
    assert VAEGAN(**kwargs).decoder.to_rgb.out_channels == 12
    z, labels = torch.randn(3, 32), torch.tensor([0, 3, 6])
    with torch.no_grad():
        images = model.decode(z, labels)
    assert images.shape == (3, 3, resolution, resolution) and images.abs().max() <= 1

    # The pixels of a 2x2 block differ from the start; the sub-pixel layer's start equal (ICNR) and can only
    # learn to differ through four separate kernels reading the same half-resolution features.
    def within_block_spread(decoded: torch.Tensor) -> torch.Tensor:
        return rearrange(decoded, "b c (h i) (w j) -> b c h w (i j)", i=2, j=2).std(dim=-1)

    assert (within_block_spread(images) > 1e-4).float().mean() > 0.5
    with torch.no_grad():
        assert within_block_spread(VAEGAN(**kwargs).eval().decode(z, labels)).max() < 1e-6
    loaded, meta = _round_trip(model, tmp_path, image_size=resolution)
    assert meta["architecture"]["decoder_full_resolution"] is True
    with torch.no_grad():
        assert torch.allclose(loaded.decode(z, labels), images)
    with pytest.raises(ValueError, match=r"decoder_full_resolution='yes' must be true or false"):
        VAEGAN(**kwargs, decoder_full_resolution="yes")


def test_imagenet_features_are_frozen_and_their_loss_reads_edges() -> None:
    """The perceptual loss's network: 3 stages at 1/2, 1/4, 1/8 of the input, no trainable weights, batch norm
    kept in eval mode; its loss is 0 for identical images, larger for a blurred copy than for a slightly
    brightened one (edges, not intensity), and its gradient reaches the reconstruction."""
    from vaegan.diff_augment import gaussian_blur

    features = L.ImageNetFeatures().train()
    assert not features.training and not any(p.requires_grad for p in features.parameters())
    torch.manual_seed(0)
    real = (torch.rand(4, 3, 32, 32) > 0.5).float() * 1.6 - 0.8  # sharp black-and-white blocks in [-1, 1]
    blocks = features(real)
    assert [tuple(b.shape[-2:]) for b in blocks] == [(16, 16), (8, 8), (4, 4)]
    assert L.blockwise_feature_loss(features(real), blocks) == 0
    blurred = gaussian_blur(real, torch.full((4,), 1.0))
    brightened = (real + 0.1).clamp(-1, 1)
    assert L.blockwise_feature_loss(features(blurred), blocks) > 2 * L.blockwise_feature_loss(
        features(brightened), blocks
    )
    reconstruction = blurred.clone().requires_grad_(True)
    L.blockwise_feature_loss(features(reconstruction), blocks).backward()
    assert reconstruction.grad is not None and reconstruction.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="stages=0 must be between 1 and 7"):
        L.ImageNetFeatures(stages=0)
