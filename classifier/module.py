"""Lightning module: two-stage fine-tuning (frozen backbone, then discriminative LR with warm-up and
cosine decay), a strategy's loss, batched on-device augmentation, and confusion-matrix metrics that
are reduced over all ranks before anything is computed from them."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch

from .losses import BalancingLoss, sample_weighted_loss
from .metrics import confusion_matrix_metric, metrics_from_confusion
from .model import FERClassifier, preprocess
from .transforms import TensorAugment


def fine_tune_lr_factor(
    step: int, *, steps_per_epoch: int, freeze_epochs: int, warmup_epochs: float, max_epochs: int
) -> float:
    """Multiplier of every group's base LR at optimizer step `step`.

    Stage 1 (epochs < freeze_epochs, backbone frozen): the head trains at its full LR.
    Stage 2: linear warm-up over `warmup_epochs`, then cosine decay to zero at `max_epochs`
    (the backbone's base LR is lower: discriminative fine-tuning, Howard & Ruder 2018).
    """
    stage1 = freeze_epochs * steps_per_epoch
    if step < stage1:
        return 1.0
    t, total = step - stage1, max(1, (max_epochs - freeze_epochs) * steps_per_epoch)
    warm = max(0, int(round(warmup_epochs * steps_per_epoch)))
    if t < warm:
        return (t + 1) / warm
    progress = min(1.0, (t - warm) / max(1, total - warm))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


# How often (steps) the training loss's finiteness is read back on the host: reading it every step
# would wait for the device at every step (a GPU then idles while the next batch is prepared).
FINITE_CHECK_EVERY = 50


class FERLitModule(pl.LightningModule):
    def __init__(
        self,
        *,
        model: FERClassifier,
        criterion: BalancingLoss | None,
        class_names: Sequence[str],
        groups: Sequence[str],
        input_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        optim: dict[str, Any],
        augment: TensorAugment | None,
        channels_last: bool = False,
        monitor: str = "val/mean_class_accuracy",
        generated_weight: float = 1.0,
        train_autocast: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.criterion = criterion
        self.class_names = tuple(class_names)
        self.groups = tuple(groups)
        self.input_size = input_size
        self.mean, self.std = tuple(mean), tuple(std)
        self.optim = dict(optim)
        self.augment = augment
        self.channels_last = channels_last
        self.monitor = monitor
        self.generated_weight = generated_weight  # loss weight of a generated sample (balance.synthetic_weight)
        # CPU fast path (classifier/trainer.py training_fast_path): bf16 autocast of the training forward
        # only; evaluation stays fp32. On a GPU, trainer.precision=bf16-mixed autocasts every step instead.
        self.train_autocast = train_autocast
        self._nonfinite: torch.Tensor | None = None  # device-side "some step's loss was not finite" flag
        self.val_confusion = confusion_matrix_metric(len(class_names))
        self.test_confusion = confusion_matrix_metric(len(class_names))
        self.last_val_metrics: dict[str, Any] = {}
        self.test_metrics: dict[str, Any] = {}
        bias = criterion.posthoc_logit_bias() if criterion is not None else None
        if bias is not None:
            self.model.logit_bias.copy_(bias)

    def setup(self, stage: str) -> None:
        # Before the strategy wraps the model (DDP): the reducer's buckets then see the NHWC parameters.
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)

    # ----- data on device -------------------------------------------------------------------
    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        images, labels, *tags = batch  # training batches with generated samples also carry their tags
        x = images.float().div_(255.0)
        if self.trainer.training and self.augment is not None:
            x = self.augment(x)
        x = preprocess(x, input_size=self.input_size, mean=self.mean, std=self.std)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, labels, *tags

    # ----- training ---------------------------------------------------------------------------
    @property
    def backbone_frozen(self) -> bool:
        return self.current_epoch < int(self.optim["freeze_epochs"])

    def on_train_epoch_start(self) -> None:
        assert self.criterion is not None, "a module built for evaluation only cannot train"
        self.criterion.on_epoch_start(epoch=self.current_epoch, max_epochs=self.trainer.max_epochs)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y, *tags = batch
        if self.backbone_frozen:
            # Stage 1: the ImageNet features stay as they are (BatchNorm statistics included) while the
            # new head learns; no backward pass through the backbone, which also makes it cheap.
            self.model.backbone.eval()
            with torch.no_grad():
                features = self._train_features(x)
        else:
            self.model.backbone.train()
            features = self._train_features(x)
        logits = self.model.classify(features)
        loss, parts = sample_weighted_loss(
            self.criterion,
            logits=logits,
            features=features,
            targets=y,
            generated=tags[0] if tags else None,
            generated_weight=self.generated_weight,
        )
        self._check_finite(loss, batch_idx=batch_idx)
        # The per-step value is this rank's (no collective per step) and stays off the progress bar (which
        # would read it back every step); the epoch means are reduced over ranks once, at the epoch's end.
        # Same CSV columns as logging "train/loss" on step and epoch.
        self.log("train/loss_step", loss, on_step=True, on_epoch=False, batch_size=len(y))
        self.log(
            "train/loss_epoch", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y), sync_dist=True
        )
        for name, value in parts.items():
            self.log(f"train/{name}", value, on_step=False, on_epoch=True, batch_size=len(y), sync_dist=True)
        return loss

    def _train_features(self, x: torch.Tensor) -> torch.Tensor:
        autocast = (
            torch.autocast(device_type=x.device.type, dtype=self.train_autocast)
            if self.train_autocast
            else contextlib.nullcontext()
        )
        with autocast:
            return self.model.features(x)

    def _check_finite(self, loss: torch.Tensor, *, batch_idx: int) -> None:
        """Raise FloatingPointError, on every rank at the same step, once a training loss was not finite.

        The flag stays on the device and is read every FINITE_CHECK_EVERY steps and at the epoch's end
        (a diverged run trains at most that many steps more). It is summed over ranks before it is read,
        so all ranks raise together: one rank raising alone would leave the others waiting forever in
        their next collective.
        """
        bad = ~torch.isfinite(loss.detach())
        self._nonfinite = bad if self._nonfinite is None else self._nonfinite | bad
        if (batch_idx + 1) % FINITE_CHECK_EVERY == 0:
            self._raise_if_nonfinite(
                f"epoch {self.current_epoch}, steps {batch_idx + 1 - FINITE_CHECK_EVERY}..{batch_idx}"
            )

    def _raise_if_nonfinite(self, where: str) -> None:
        if self._nonfinite is None:
            return
        flag = self._nonfinite.to(torch.float32)
        self._nonfinite = None
        if self.trainer.world_size > 1:
            flag = self.trainer.strategy.reduce(flag, reduce_op="sum")
        if flag.item() > 0:
            raise FloatingPointError(
                f"non-finite training loss in {where} (on {int(flag.item())} of {self.trainer.world_size} "
                "rank(s)): training diverged; lower train.lr or check the data"
            )

    def on_train_epoch_end(self) -> None:
        self._raise_if_nonfinite(f"the last steps of epoch {self.current_epoch}")

    def configure_optimizers(self) -> Any:
        o = self.optim
        head = [*self.model.head.parameters()]
        backbone = [*self.model.backbone.parameters()]
        groups = [
            {"params": head, "lr": o["lr"], "weight_decay": o["weight_decay"], "name": "head"},
            {
                "params": backbone,
                "lr": o["lr"] * o["backbone_lr_mult"],
                "weight_decay": o["weight_decay"],
                "name": "backbone",
            },
        ]
        if self.criterion is not None:
            groups.extend(self.criterion.param_groups())
        optimizer = torch.optim.AdamW(groups)
        max_epochs = int(self.trainer.max_epochs)
        steps_per_epoch = max(1, int(self.trainer.estimated_stepping_batches) // max(1, max_epochs))
        schedule = lambda step: fine_tune_lr_factor(  # noqa: E731
            step,
            steps_per_epoch=steps_per_epoch,
            freeze_epochs=int(o["freeze_epochs"]),
            warmup_epochs=float(o["warmup_epochs"]),
            max_epochs=max_epochs,
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=[schedule] * len(groups))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ----- evaluation -------------------------------------------------------------------------
    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.val_confusion.update(self.model(x).argmax(dim=1), y)

    def on_validation_epoch_end(self) -> None:
        cm = self.val_confusion.compute()  # summed over ranks
        self.val_confusion.reset()
        m = metrics_from_confusion(cm, class_names=self.class_names, groups=self.groups)
        self.last_val_metrics = m
        scalars = {
            "val/accuracy": m["accuracy"],
            "val/mean_class_accuracy": m["mean_class_accuracy"],
            "val/macro_f1": m["macro_f1"],
        }
        for group, value in m["group_accuracy"].items():
            if value is not None:
                scalars[f"val/{group}_accuracy"] = value
        for name in self.class_names:
            scalars[f"val_recall/{name}"] = m["per_class"][name]["recall"]
        # Identical on every rank already (reduced confusion matrix). sync_dist=True averages equal values (one
        # small all-reduce per scalar at epoch end) and stops Lightning warning once per scalar under DDP.
        self.log_dict({k: torch.tensor(float(v)) for k, v in scalars.items()}, prog_bar=False, sync_dist=True)
        self.log("val/mca", m["mean_class_accuracy"], prog_bar=True, logger=False, sync_dist=True)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.test_confusion.update(self.model(x).argmax(dim=1), y)

    def on_test_epoch_end(self) -> None:
        cm = self.test_confusion.compute()
        self.test_confusion.reset()
        self.test_metrics = metrics_from_confusion(cm, class_names=self.class_names, groups=self.groups)
        self.log_dict(
            {f"test/{k}": float(self.test_metrics[k]) for k in ("accuracy", "mean_class_accuracy", "macro_f1")},
            sync_dist=True,  # equal on every rank (reduced confusion matrix), as above
        )


class BestWeights(pl.Callback):
    """Model selection on validation only: keeps (in memory, on every rank) and saves (rank 0) the
    weights of the epoch with the best `monitor` value; ties keep the earlier epoch."""

    def __init__(self, *, monitor: str, save: Any) -> None:
        self.monitor = monitor
        self.save = save  # callable(model, epoch, val_metrics) run on global rank 0
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_val_metrics: dict[str, Any] = {}

    def on_validation_end(self, trainer: pl.Trainer, pl_module: FERLitModule) -> None:
        if trainer.sanity_checking:
            return
        score = float(trainer.callback_metrics[self.monitor])
        if self.best_score is None or score > self.best_score:
            self.best_score, self.best_epoch = score, trainer.current_epoch
            self.best_state = {k: v.detach().cpu().clone() for k, v in pl_module.model.state_dict().items()}
            self.best_val_metrics = pl_module.last_val_metrics
            if trainer.is_global_zero:
                self.save(pl_module.model, trainer.current_epoch, pl_module.last_val_metrics)
