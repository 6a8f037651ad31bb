"""Real (tiny) VAE-GAN training runs on CPU: learning, gradients, checkpoints, resume, NaN guard."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from vaegan_helpers import TINY_OVERRIDES, compose_config, tiny_config

from vaegan import CheckpointError, checkpoint_fingerprint, load_vaegan, save_vaegan
from vaegan.module import NonFiniteLossError, VAEGANModule
from vaegan.train import EXPORT_NAME, train_vaegan, validate_config


def _train(root: Path, tmp: Path, *extra: str, callbacks=()):
    cfg = tiny_config(root=root, cache_dir=tmp / "cache", extra=extra)
    return train_vaegan(cfg, output_dir=tmp / "run", callbacks=callbacks)


@pytest.fixture(scope="module")
def three_epochs(tiny_synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("vaegan_three")
    return _train(tiny_synthetic_root, tmp, "epochs=3")


def _epoch_metric(run_dir: Path, key: str) -> list[float]:
    with open(run_dir / "logs" / "metrics.csv") as handle:
        return [float(row[key]) for row in csv.DictReader(handle) if row.get(key)]


def test_training_lowers_reconstruction_loss_and_writes_outputs(three_epochs) -> None:
    train_l1 = _epoch_metric(three_epochs.output_dir, "train/l1_epoch")
    val_l1 = _epoch_metric(three_epochs.output_dir, "val/l1")
    assert len(train_l1) == len(val_l1) == 3
    assert train_l1[-1] < 0.8 * train_l1[0], train_l1
    assert val_l1[-1] < val_l1[0], val_l1
    # the label loss's classifier (D's here) on real validation faces, each epoch (the ceiling on what the decoder can obey)
    class_recall = _epoch_metric(three_epochs.output_dir, "val/label_classifier_recall")
    assert len(class_recall) == 3 and all(0.0 <= r <= 1.0 for r in class_recall), class_recall
    out = three_epochs.output_dir
    assert three_epochs.last_checkpoint == out / "checkpoints" / "last.ckpt" and three_epochs.last_checkpoint.is_file()
    assert three_epochs.best_checkpoint == out / "checkpoints" / "best.ckpt" and three_epochs.best_checkpoint.is_file()
    assert (out / EXPORT_NAME).is_file()
    for name in ("reconstructions", "samples"):
        assert (out / "grids" / f"{name}_epoch003.png").stat().st_size > 1000
        assert (out / "grids" / f"{name}_final.png").is_file()
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))


def test_export_round_trip_gives_identical_decodes(three_epochs, tmp_path: Path) -> None:
    model, meta = load_vaegan(three_epochs.export)
    assert not model.training
    assert meta["image_size"] == 32 and meta["resolution"] == 32 and meta["latent_dim"] == 32
    assert meta["class_names"][0] == "Surprise" and len(meta["data_fingerprint"]) > 8
    assert len(meta["data_sha256"]) == 64  # the fit split's content: augment.py compares it, not file times
    # configured vs trained: a run stopped by trainer.max_time or exported from an earlier best epoch says so
    source = torch.load(meta["source_checkpoint"], map_location="cpu", weights_only=True)
    assert meta["epochs"] == 3 and meta["epochs_trained"] == source["epoch"] + 1 and 1 <= meta["epochs_trained"] <= 3
    z, y = torch.randn(5, 32, generator=torch.Generator().manual_seed(1)), torch.arange(5)
    copy = save_vaegan(
        tmp_path / "copy.safetensors",
        model=model,
        config=meta["config"],
        class_names=meta["class_names"],
        extra={"image_size": 32, "data_fingerprint": meta["data_fingerprint"]},
    )
    again, _ = load_vaegan(copy)
    with torch.no_grad():
        assert torch.equal(model.decode(z, y), again.decode(z, y))
    assert checkpoint_fingerprint(copy) == checkpoint_fingerprint(copy) and len(checkpoint_fingerprint(copy)) == 64


def test_lightning_checkpoint_loads_with_weights_only(three_epochs) -> None:
    checkpoint = torch.load(three_epochs.last_checkpoint, map_location="cpu", weights_only=True)
    assert checkpoint["epoch"] == 2 and checkpoint["hyper_parameters"]["config"]["vaegan"]["name"] == "small"


def test_bad_checkpoints_are_named(three_epochs, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"definitely not a checkpoint")
    with pytest.raises(CheckpointError, match="garbage.safetensors"):
        load_vaegan(garbage)
    with pytest.raises(CheckpointError, match=r"latent_dim: checkpoint 32, expected 64"):
        load_vaegan(three_epochs.export, expected_config={"resolution": 32, "latent_dim": 64})
    cfg = tiny_config(root=tmp_path, cache_dir=tmp_path, extra=(f"resume={garbage}",))
    with pytest.raises(CheckpointError, match="not a loadable training checkpoint"):
        train_vaegan(cfg, output_dir=tmp_path / "run")
    cfg = tiny_config(
        root=tmp_path, cache_dir=tmp_path, extra=(f"resume={three_epochs.last_checkpoint}", "vaegan.latent_dim=64")
    )
    with pytest.raises(CheckpointError, match=r"latent_dim: checkpoint 32, expected 64"):
        train_vaegan(cfg, output_dir=tmp_path / "run")


def test_resume_matches_an_uninterrupted_run(tiny_synthetic_root: Path, tmp_path: Path, three_epochs) -> None:
    first = _train(tiny_synthetic_root, tmp_path / "a", "epochs=2")
    resumed = _train(tiny_synthetic_root, tmp_path / "b", "epochs=3", f"resume={first.last_checkpoint}")
    straight = torch.load(three_epochs.last_checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    continued = torch.load(resumed.last_checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    assert straight.keys() == continued.keys()
    different = [k for k in straight if not torch.equal(straight[k], continued[k])]
    assert not different, different[:5]


class _InjectNaN(pl.Callback):
    """Poison the decoder's output layer at the first batch of the second epoch."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch == 1 and batch_idx == 0:
            with torch.no_grad():
                pl_module.model.decoder.to_rgb.weight.fill_(float("nan"))


def test_injected_nan_trips_the_guard_and_keeps_the_last_good_checkpoint(
    tiny_synthetic_root: Path, tmp_path: Path
) -> None:
    with pytest.raises(
        NonFiniteLossError,
        match=r"non-finite discriminator_hinge_loss=nan.* at step \d+ \(epoch 1\).*Last good checkpoint: .*last\.ckpt",
    ):
        _train(tiny_synthetic_root, tmp_path, "epochs=3", callbacks=[_InjectNaN()])
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    state = torch.load(last, map_location="cpu", weights_only=True)
    assert state["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in state["state_dict"].values() if v.is_floating_point())


@pytest.mark.parametrize(
    "variant",
    [
        "vaegan.losses.diff_augment=[]",
        "vaegan.losses.diff_augment=[color,translation,cutout]",
        "vaegan.expression_classifier=true",
    ],
)
def test_gradients_reach_what_should_train_and_no_gan_gradient_reaches_the_encoder(
    tiny_synthetic_root: Path, tmp_path: Path, variant: str
) -> None:
    """One real step with the GAN term on from step 0, and the same step with it off; with DiffAugment the
    gradient still reaches the decoder through the augmented images, and still not the encoder; the separate
    expression classifier trains (on real faces) too."""
    grads = {}
    for name, weight in (("gan", "0.5"), ("no_gan", "0.0")):
        cfg = tiny_config(
            root=tiny_synthetic_root,
            cache_dir=tmp_path / "cache",
            extra=(
                "epochs=1",
                "vaegan.losses.adversarial_start_epochs=0",
                "vaegan.losses.adversarial_ramp_epochs=0",
                "vaegan.losses.kl_warmup_epochs=0",
                f"vaegan.losses.adversarial_weight={weight}",
                variant,
            ),
        )
        from omegaconf import OmegaConf

        from vaegan.data import VAEGANDataModule, load_vaegan_faces

        config = OmegaConf.to_container(cfg, resolve=True)
        fit, val, _ = load_vaegan_faces(config["data"], cache_dir=config["paths"]["cache_dir"])
        pl.seed_everything(0)
        module = VAEGANModule(config=config, class_names=list(fit.class_names), image_size=32, data_fingerprint="x")
        datamodule = VAEGANDataModule(fit=fit, val=val, resolution=32, batch_size=32, seed=0)
        trainer = pl.Trainer(
            accelerator="cpu",
            max_steps=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            limit_val_batches=0,
            deterministic=True,
        )
        trainer.fit(module, datamodule=datamodule)
        grads[name] = {k: (None if p.grad is None else p.grad.clone()) for k, p in module.model.named_parameters()}
    trainable = [k for k in grads["gan"] if not k.startswith("decoder_ema.")]
    missing = [k for k in trainable if grads["gan"][k] is None or not grads["gan"][k].abs().sum() > 0]
    assert not missing, missing
    assert all(grads["gan"][k] is None for k in grads["gan"] if k.startswith("decoder_ema."))
    encoder = [k for k in trainable if k.startswith("encoder.")]
    decoder = [k for k in trainable if k.startswith("decoder.")]
    assert all(torch.equal(grads["gan"][k], grads["no_gan"][k]) for k in encoder)
    assert any(not torch.equal(grads["gan"][k], grads["no_gan"][k]) for k in decoder)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("vaegan.resolution=48", r"vaegan.resolution=48 .*\[32, 64, 128\]"),
        ("vaegan.latent_dim=100", r"vaegan.latent_dim=100 .*\[32, 64, 128, 256, 512\]"),
        ("vaegan.losses.latent_adversary_weight=-1", r"vaegan.losses.latent_adversary_weight=-1.* must be >= 0"),
        (
            "vaegan.optim.latent_classifier_steps=0",
            r"vaegan.optim.latent_classifier_steps=0 must be a positive integer",
        ),
        ("vaegan.losses.imagenet_feature_weight=-0.5", r"vaegan.losses.imagenet_feature_weight=-0.5 must be >= 0"),
        ("vaegan.encoder_sees_label=sometimes", r"vaegan.encoder_sees_label='sometimes' must be true or false"),
        ("vaegan.decoder_full_resolution=2", r"vaegan.decoder_full_resolution=2 must be true or false"),
        (
            "vaegan.expression_classifier_imagenet=true",
            r"expression_classifier_imagenet=true is the trunk .* set vaegan.expression_classifier=true",
        ),
        ("vaegan.losses.diff_augment=[color,rotate]", r"diff_augment: unknown op\(s\) \['rotate'\]; choose from"),
        (
            "vaegan.losses.expression_augment=[mirror]",
            r"vaegan.losses.expression_augment: unknown op\(s\) \['mirror'\]; choose from",
        ),
        (
            "vaegan.losses.expression_augment=[translation]",
            r"expression_augment=\['translation'\] augments .* set vaegan.expression_classifier=true",
        ),
        (
            "vaegan.optim.expression_classifier_pretrain_epochs=-1",
            r"expression_classifier_pretrain_epochs=-1 must be an integer >= 0",
        ),
        ("cpu_precision=16-mixed", r"cpu_precision='16-mixed'; choose one of \['32-true', 'bf16-mixed'\]"),
        (
            "vaegan.optim.expression_classifier_pretrain_epochs=4",
            r"expression_classifier_pretrain_epochs=4 pretrains .* set vaegan.expression_classifier=true",
        ),
    ],
)
def test_bad_config_fails_before_work(override: str, message: str) -> None:
    from omegaconf import OmegaConf

    with pytest.raises(ValueError, match=message):
        validate_config(OmegaConf.to_container(compose_config(override), resolve=True))


def test_cpu_training_takes_cpu_precision(tmp_path: Path) -> None:
    """On the CPU the trainer runs in `cpu_precision` (bf16 autocast by default: measured 2x there), whatever
    trainer=cpu's own precision says; 32-true keeps plain fp32."""
    from omegaconf import OmegaConf

    from vaegan.train import build_trainer

    for choice in ("bf16-mixed", "32-true"):
        config = OmegaConf.to_container(compose_config(f"cpu_precision={choice}", "logger=[]"), resolve=True)
        trainer, _, _ = build_trainer(config, output_dir=tmp_path / choice)
        assert trainer.precision == choice
    assert compose_config().cpu_precision == "bf16-mixed"


def test_default_config_composes() -> None:
    cfg = compose_config()
    assert cfg.vaegan.name == "small" and cfg.vaegan.resolution == "auto" and cfg.trainer.accelerator == "cpu"
    assert cfg.data.name == "synthetic" and cfg.seed == 0 and cfg.resume is None
    base = compose_config("vaegan=base", "trainer=gpu")
    assert base.vaegan.resolution == 64 and base.trainer.precision == "bf16-mixed"
    assert compose_config("vaegan=large").vaegan.resolution == 128


def test_a_greyscale_dataset_gets_greyscale_grids(tiny_synthetic_root: Path, tmp_path: Path) -> None:
    """A FER2013-style folder (every face R = G = B): the VAE-GAN's grids show what augment.py would write,
    luma only, not the decoder's tint."""
    from PIL import Image

    source = next(tiny_synthetic_root.glob("*/train")).parent
    for path in source.glob("t*/*/*.png"):
        target = tmp_path / "grey" / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.open(path).convert("L").save(target)
    cfg = tiny_config(
        root=tmp_path / "grey",
        cache_dir=tmp_path / "cache",
        preset=None,
        extra=("data=folder", "data.image_size=32", "epochs=1"),
    )
    out = train_vaegan(cfg, output_dir=tmp_path / "run").output_dir
    for name in ("reconstructions", "samples", "label_flip"):
        grid = torch.from_numpy(np.array(Image.open(out / "grids" / f"{name}.png").convert("RGB")))
        assert torch.equal(grid[..., 0], grid[..., 1]) and torch.equal(grid[..., 1], grid[..., 2]), name


@pytest.mark.parametrize("expression_classifier", ["false", "true"])
def test_the_throughput_benchmark_times_the_batches_after_warm_up(expression_classifier: str) -> None:
    """bench_vaegan's timer counts batches, not optimizer steps (a batch takes 8-9 of those: encoder, decoder, D,
    the latent classifier's steps, the expression classifier), so every batch after the warm-up is timed."""
    from omegaconf import OmegaConf

    from vaegan.bench import benchmark_training

    cfg = compose_config(
        *TINY_OVERRIDES, "vaegan.resolution=32", f"vaegan.expression_classifier={expression_classifier}"
    )
    config = OmegaConf.to_container(cfg, resolve=True)
    config["output_dir"] = None
    config["channels_last"] = True
    result = benchmark_training(config, steps=2, warmup_steps=1)
    assert result["timed_images"] == 2 * 32 and result["images_per_s"] > 0
    assert result["channels_last"] is True  # the format it trained in, read during training


def test_feature_figures_include_real_vs_generated(tiny_synthetic_root: Path, tmp_path: Path) -> None:
    """With the feature network on (the offline ImageNet EfficientNet-Lite0), every validation epoch logs the 1-NN
    real-vs-generated accuracy of reconstructions, prior samples and perturbed codes beside the Fréchet figures."""
    result = _train(tiny_synthetic_root, tmp_path, "epochs=1", "metrics.frechet=true", "metrics.feature_image_size=32")
    for kind in ("reconstructed", "prior", "perturbed"):
        values = _epoch_metric(result.output_dir, f"val/real_vs_generated_{kind}")
        assert len(values) == 1 and 0.0 <= values[0] <= 1.0, (kind, values)
    assert _epoch_metric(result.output_dir, "val/frechet_efficientnet_lite0_prior")


def test_validation_and_resume_leave_the_training_unchanged_with_the_expression_classifier(
    tiny_synthetic_root: Path, tmp_path: Path
) -> None:
    """The expression classifier's head has dropout, which draws from the global generator; validation (its
    feature network's construction, the metrics) draws from it too, and a resumed run re-seeds it. Each training
    step seeds its own, so the weights depend on neither how often the run validates nor where it was resumed."""
    recipe = ("vaegan.expression_classifier=true", "vaegan.losses.expression_augment=[translation]")
    once = _train(tiny_synthetic_root, tmp_path / "a", "epochs=2", "grid_every_n_epochs=2", *recipe)
    every = _train(tiny_synthetic_root, tmp_path / "b", "epochs=2", "grid_every_n_epochs=1", *recipe)
    first = _train(tiny_synthetic_root, tmp_path / "c", "epochs=1", "grid_every_n_epochs=1", *recipe)
    resumed = _train(
        tiny_synthetic_root,
        tmp_path / "d",
        "epochs=2",
        "grid_every_n_epochs=1",
        f"resume={first.last_checkpoint}",
        *recipe,
    )
    reference = torch.load(once.last_checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    for run in (every, resumed):
        state = torch.load(run.last_checkpoint, map_location="cpu", weights_only=True)["state_dict"]
        different = [k for k in reference if not torch.equal(reference[k], state[k])]
        assert not different, (run.output_dir, different[:5])
