"""`train_vaegan(cfg)`: the whole run behind `python scripts/train_vaegan.py`."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from pytorch_lightning.callbacks import Callback, ModelCheckpoint

from faces.io import plain
from faces.runkit.lock import folder_lock
from faces.runkit.loggers import build_loggers
from faces.runkit.logs import quiet_lightning
from faces.runkit.runs import check_not_interrupted, clear_interruption

from .checkpoint import check_resume_checkpoint, save_vaegan
from .data import VAEGANDataModule, load_vaegan_faces
from .diff_augment import parse_policy
from .model import ARCHITECTURE_SWITCHES, LATENT_DIMS, RESOLUTIONS, resolution_for
from .module import NonFiniteLossError, VAEGANModule

log = logging.getLogger(__name__)
EXPORT_NAME = "vaegan.safetensors"
CPU_PRECISIONS = ("32-true", "bf16-mixed")


@dataclass(frozen=True)
class TrainResult:
    output_dir: Path
    last_checkpoint: Path
    best_checkpoint: Path | None
    export: Path
    metrics: dict[str, float]
    seconds: float


def check_single_device(trainer: dict[str, Any]) -> None:
    """Refuse a multi-process trainer before any work: the VAE-GAN trains on one device.

    It optimises manually with one backward per part (the discriminator, then encoder and decoder
    with `inputs=`); DDP's reducer expects every parameter to take part in one reduction per step
    and stops on the first step ("parameters that were not used in producing the loss", the pattern
    of Lightning #4953). A 64 px VAE-GAN fills one GPU on its own, so one device is the design.
    """
    strategy, devices = str(trainer.get("strategy", "auto")), trainer.get("devices", 1)
    count = len(devices) if isinstance(devices, (list, tuple)) else devices if isinstance(devices, int) else 1
    if (
        any(name in strategy for name in ("ddp", "fsdp", "deepspeed"))
        or count > 1
        or int(trainer.get("num_nodes", 1)) > 1
    ):
        raise ValueError(
            f"trainer.strategy={strategy!r}, trainer.devices={devices!r}: the VAE-GAN trains on one device only (manual "
            "optimisation with one backward per part cannot run under DDP's gradient reducer). Use trainer=gpu or "
            "trainer=cpu (trainer.devices=1); data-parallel training is for the classifier (scripts/train_classifier.py)"
        )


def validate_config(config: dict[str, Any]) -> None:
    """Fail before any work on values the model cannot use, naming the value and the choices."""
    model = config["vaegan"]
    if model.get("resolution") not in (*RESOLUTIONS, "auto"):
        raise ValueError(
            f"vaegan.resolution={model.get('resolution')!r} is not supported; choose one of {list(RESOLUTIONS)} "
            "or auto (the data's image size)"
        )
    if model.get("latent_dim") not in LATENT_DIMS:
        raise ValueError(
            f"vaegan.latent_dim={model.get('latent_dim')!r} is not supported; choose one of {list(LATENT_DIMS)}"
        )
    for key in ("epochs", "batch_size", "grid_every_n_epochs"):
        if not isinstance(config.get(key), int) or config[key] < 1:
            raise ValueError(f"{key}={config.get(key)!r} must be a positive integer")
    check_single_device(config.get("trainer", {}))
    if config.get("cpu_precision", "32-true") not in CPU_PRECISIONS:
        raise ValueError(f"cpu_precision={config.get('cpu_precision')!r}; choose one of {list(CPU_PRECISIONS)}")
    weights = model["losses"]
    for key in (
        "kl_weight",
        "pixel_l1_weight",
        "feature_weight",
        "lpips_weight",
        "adversarial_weight",
        "label_weight",
        "classifier_weight",
        "latent_adversary_weight",
        "expression_feature_weight",
        "imagenet_feature_weight",
    ):
        if weights.get(key, 0.0) < 0:
            raise ValueError(f"vaegan.losses.{key}={weights[key]} must be >= 0")
    if weights.get("expression_feature_weight", 0.0) > 0 and not model.get("expression_classifier", False):
        raise ValueError(
            f"vaegan.losses.expression_feature_weight={weights['expression_feature_weight']} needs the separate "
            "expression classifier whose features it matches: set vaegan.expression_classifier=true, or the weight to 0"
        )
    for key, default in ARCHITECTURE_SWITCHES.items():
        if not isinstance(model.get(key, default), bool):
            raise ValueError(f"vaegan.{key}={model.get(key)!r} must be true or false")
    if model.get("expression_classifier_imagenet", False) and not model.get("expression_classifier", False):
        raise ValueError(
            "vaegan.expression_classifier_imagenet=true is the trunk of the separate expression classifier: set "
            "vaegan.expression_classifier=true as well, or this to false"
        )
    parse_policy(weights.get("diff_augment"))  # an unknown op name fails here, naming the choices
    expression_policy = parse_policy(weights.get("expression_augment"), setting="vaegan.losses.expression_augment")
    if expression_policy and not model.get("expression_classifier", False):
        raise ValueError(
            f"vaegan.losses.expression_augment={list(expression_policy)} augments what the separate "
            "expression classifier reads: set vaegan.expression_classifier=true, or expression_augment to []"
        )
    steps = model["optim"].get("latent_classifier_steps")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"vaegan.optim.latent_classifier_steps={steps!r} must be a positive integer")
    pretrain = model["optim"].get("expression_classifier_pretrain_epochs", 0)
    if isinstance(pretrain, bool) or not isinstance(pretrain, int) or pretrain < 0:
        raise ValueError(f"vaegan.optim.expression_classifier_pretrain_epochs={pretrain!r} must be an integer >= 0")
    if pretrain and not model.get("expression_classifier", False):
        raise ValueError(
            f"vaegan.optim.expression_classifier_pretrain_epochs={pretrain} pretrains the separate expression "
            "classifier: set vaegan.expression_classifier=true, or the epochs to 0"
        )


def build_trainer(
    config: dict[str, Any], *, output_dir: Path, callbacks: Sequence[Callback] = ()
) -> tuple[pl.Trainer, ModelCheckpoint, ModelCheckpoint]:
    checkpoints = output_dir / "checkpoints"
    last = ModelCheckpoint(
        dirpath=checkpoints,
        filename="last",
        save_top_k=1,
        every_n_epochs=1,
        save_on_train_epoch_end=True,
        enable_version_counter=False,
    )
    # "Best" = lowest held-out reconstruction L1 of the EMA decoder (what sampling uses).
    best = ModelCheckpoint(
        dirpath=checkpoints,
        filename="best",
        monitor="val/l1",
        mode="min",
        save_top_k=1,
        auto_insert_metric_name=False,
        enable_version_counter=False,
    )
    trainer_cfg = dict(config["trainer"])
    if trainer_cfg.get("accelerator") == "cpu":  # a GPU trainer keeps its own precision (trainer=gpu: bf16-mixed)
        trainer_cfg["precision"] = config.get("cpu_precision", "32-true")
    trainer = pl.Trainer(
        **trainer_cfg,
        max_epochs=config["epochs"],
        check_val_every_n_epoch=config["grid_every_n_epochs"],
        num_sanity_val_steps=0,
        use_distributed_sampler=False,  # faces.torchdata.EpochSampler shards by rank itself
        callbacks=[last, best, *callbacks],
        logger=build_loggers(config.get("logger"), save_dir=output_dir),  # conf/logger/
        default_root_dir=output_dir,
    )
    return trainer, last, best


def export_best_weights(module, trainer, *, checkpoints, config: dict, fit, dataset: str, output_dir: Path):
    """Load the best (else last) checkpoint into the module and export its weights; returns (last, best, export)."""
    last, best = checkpoints
    last_path = Path(last.best_model_path)  # save_top_k=1, no monitor: the most recent epoch
    best_path = Path(best.best_model_path) if best.best_model_path else None
    # Export the best (held-out reconstruction) weights for the augmenter.
    source = best_path or last_path
    saved = torch.load(source, map_location="cpu", weights_only=True)
    module.load_state_dict(saved["state_dict"])
    trained_epochs = int(saved.get("epoch", -1)) + 1  # Lightning stores the 0-based epoch it was written in
    if trainer.current_epoch < config["epochs"]:  # trainer.max_time (or a stop) ended it early
        log.warning(
            "training stopped after %d of %d epochs; the export holds epoch %d (%s)",
            trainer.current_epoch,
            config["epochs"],
            trained_epochs,
            source.name,
        )
    if trainer.is_global_zero:
        module.model.to(memory_format=torch.contiguous_format)
        export = save_vaegan(
            output_dir / EXPORT_NAME,
            model=module.model.cpu(),
            config=config["vaegan"],
            class_names=fit.class_names,
            extra={
                "image_size": fit.image_size,
                "data_fingerprint": fit.fingerprint,
                "data_sha256": fit.content_sha256,
                "dataset": dataset,
                "data": config["data"],
                "seed": config["seed"],
                "epochs": config["epochs"],  # configured (reuse compares it with what a config composes now)
                # trained: the exported checkpoint's epochs, fewer where trainer.max_time or early selection
                # stopped or chose earlier
                "epochs_trained": trained_epochs,
                "source_checkpoint": str(source),
            },
        )
    else:
        export = output_dir / EXPORT_NAME
    return last_path, best_path, export


def train_vaegan(cfg: DictConfig | dict, *, output_dir: Path | str, callbacks: Sequence[Callback] = ()) -> TrainResult:
    """Train on the real train split (minus the validation carve-out), write checkpoints, grids, logs and the export."""
    started = time.perf_counter()
    output_dir = Path(output_dir)
    config = dict(plain(cfg))
    config["output_dir"] = str(output_dir)
    validate_config(config)
    if config.get("resume"):
        check_resume_checkpoint(config["resume"], config=config)
    # One writer per run folder (a second run on it names this one's pid); the EMA decoder stays in eval on purpose.
    quiet_lightning(frozen_eval_modules=True)
    with folder_lock(output_dir, what="VAE-GAN training"):
        clear_interruption(output_dir)
        pl.seed_everything(int(config["seed"]), workers=True)

        fit, val, data = load_vaegan_faces(config["data"], cache_dir=config["paths"]["cache_dir"])
        if config["vaegan"]["resolution"] == "auto":
            config["vaegan"]["resolution"] = resolution_for(fit.image_size)
        resolution = config["vaegan"]["resolution"]
        datamodule = VAEGANDataModule(
            fit=fit, val=val, resolution=resolution, batch_size=config["batch_size"], seed=int(config["seed"])
        )
        log.info(
            "VAE-GAN %s (%dpx, latent %d) on %s: %d fit / %d val images, classes %s",
            config["vaegan"]["name"],
            resolution,
            config["vaegan"]["latent_dim"],
            data.dataset,
            len(fit),
            len(val),
            dict(zip(fit.class_names, fit.class_counts())),
        )
        module = VAEGANModule(
            config=config,
            class_names=list(fit.class_names),
            image_size=fit.image_size,
            data_fingerprint=fit.fingerprint,
        )
        trainer, last, best = build_trainer(config, output_dir=output_dir, callbacks=callbacks)
        try:
            trainer.fit(module, datamodule=datamodule, ckpt_path=config.get("resume"), weights_only=True)
        except NonFiniteLossError as error:
            last_path = Path(last.last_model_path or last.best_model_path or output_dir / "checkpoints" / "last.ckpt")
            kept = last_path if last_path.is_file() else "none yet (it failed in the first epoch)"
            raise NonFiniteLossError(f"{error} Last good checkpoint: {kept}") from error
        check_not_interrupted(trainer)

        if trainer.is_global_zero:
            module.save_grids(tag="final")
        last_path, best_path, export = export_best_weights(
            module,
            trainer,
            checkpoints=(last, best),
            config=config,
            fit=fit,
            dataset=data.dataset,
            output_dir=output_dir,
        )
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if torch.as_tensor(v).numel() == 1}
        return TrainResult(
            output_dir=output_dir,
            last_checkpoint=last_path,
            best_checkpoint=best_path,
            export=export,
            metrics=metrics,
            seconds=time.perf_counter() - started,
        )


def format_summary(result: TrainResult) -> str:
    keys = [
        "val/l1",
        "val/ssim",
        "val/lpips",
        "val/frechet_efficientnet_lite0_prior",
        "val/frechet_efficientnet_lite0_perturbed",
        "val/diversity_ratio_prior",
        "val/diversity_ratio_perturbed",
        "train/l1_epoch",
        "train/kl_epoch",
        "train/discriminator_epoch",
    ]
    shown = ", ".join(f"{k}={result.metrics[k]:.4g}" for k in keys if k in result.metrics)
    return (
        f"{shown}\n"
        f"grids: {result.output_dir / 'grids'}\n"
        f"VAE-GAN done in {result.seconds:.0f}s: last={result.last_checkpoint} best={result.best_checkpoint} "
        f"export={result.export}"
    )
