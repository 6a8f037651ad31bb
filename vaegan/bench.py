"""Training throughput (images/s) of the real LightningModule on random in-memory faces.

Same code path as `train_vaegan` (manual optimisation, EMA, guards); no validation, logging or
checkpoints. On CUDA it uses bf16 autocast and channels_last, as `trainer=gpu` does.
"""

from __future__ import annotations

import time
from typing import Any

import pytorch_lightning as pl
import torch

import faces
from faces import FaceSplit

from .data import VAEGANDataModule
from .module import VAEGANModule


class _Timer(pl.Callback):
    def __init__(self, *, warmup_steps: int) -> None:
        self.warmup_steps, self.started, self.images, self.seconds = warmup_steps, None, 0, 0.0
        self.channels_last: bool | None = None

    def _sync(self, module) -> None:
        if module.device.type == "cuda":
            torch.cuda.synchronize()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        # Counted in batches: global_step counts optimizer steps, and how many a batch takes depends on the
        # model (encoder, decoder, D, latent_classifier_steps, the expression classifier).
        if batch_idx == self.warmup_steps and self.started is None:
            # read while training: after fit Lightning moves the module to the CPU, where "auto" means false
            self.channels_last = pl_module._channels_last()
            self._sync(pl_module)
            self.started = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.started is not None:
            self.images += batch[0].shape[0]

    def on_train_end(self, trainer, pl_module) -> None:
        self._sync(pl_module)
        if self.started is not None:
            self.seconds = time.perf_counter() - self.started


def _random_split(*, n: int, size: int, num_classes: int) -> FaceSplit:
    generator = torch.Generator().manual_seed(0)
    return FaceSplit(
        name="train",
        images=torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=generator),
        labels=torch.randint(0, num_classes, (n,), generator=generator),
        is_synthetic=torch.zeros(n, dtype=torch.bool),
        sample_ids=tuple(f"bench_{i}" for i in range(n)),
        class_names=tuple(faces.RAFDB_CLASSES[:num_classes]),
    )


def benchmark_training(
    config: dict[str, Any], *, steps: int, warmup_steps: int, precision: str | None = None
) -> dict[str, Any]:
    """Images/s over `steps` training batches after `warmup_steps` (cudnn autotune, allocator). `precision`
    (Lightning's: 32-true, bf16-mixed) defaults to bf16-mixed on CUDA and 32-true on CPU; the memory
    format follows config["channels_last"]."""
    pl.seed_everything(0)
    resolution, batch_size = config["vaegan"]["resolution"], config["batch_size"]
    if resolution == "auto":
        resolution = config["vaegan"]["resolution"] = 64  # the embedded `small` faces' size
    cuda = torch.cuda.is_available()
    precision = precision or ("bf16-mixed" if cuda else "32-true")
    split = _random_split(n=batch_size * (steps + warmup_steps), size=resolution, num_classes=7)
    datamodule = VAEGANDataModule(
        fit=split, val=split.subset(range(2 * 7)), resolution=resolution, batch_size=batch_size, seed=0
    )
    module = VAEGANModule(
        config=config, class_names=list(split.class_names), image_size=resolution, data_fingerprint="bench"
    )
    timer = _Timer(warmup_steps=warmup_steps)
    trainer = pl.Trainer(
        accelerator="gpu" if cuda else "cpu",
        devices=1,
        precision=precision,
        max_epochs=1,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
        benchmark=cuda,
    )
    trainer.fit(module, datamodule=datamodule)
    device = torch.cuda.get_device_name() if cuda else f"CPU ({torch.get_num_threads()} threads)"
    return {
        "model": config["vaegan"]["name"],
        "resolution": resolution,
        "batch_size": batch_size,
        "device": device,
        "precision": precision,
        "channels_last": timer.channels_last,
        "images_per_s": timer.images / max(timer.seconds, 1e-9),
        "timed_images": timer.images,
    }
