"""One classifier run: data, model, two-stage fine-tuning with validation-only model selection,
one final test evaluation, and everything a reader needs to trust the numbers (run_dir/)."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

import faces
from faces.summary import GroupThresholds, class_groups

from .augment import TensorAugment
from .backbones import check_backbone_name, create_backbone
from .balance import BalanceSpec, BalancedLoss, resolve_balance
from .checkpoint import BEST_CHECKPOINT, load_classifier, read_meta, resolve_checkpoint_path, save_classifier
from .data import FaceDataModule
from .metrics import minority_report
from .model import FERClassifier
from .module import BestWeights, FERLitModule
from .plots import plot_confusion_matrix, plot_per_class_recall
from faces.io import write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)
# The module (not the datamodule) owns on_after_batch_transfer on purpose: augmentation needs the device.
warnings.filterwarnings("ignore", message=r".*overridden `on_after_batch_transfer` in `LightningModule`.*")

METRICS_FILE = "metrics.json"


def _plain(cfg: Any) -> Any:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


def trainer_kwargs(trainer_cfg: DictConfig, *, freeze_epochs: int = 0) -> dict[str, Any]:
    kwargs = dict(_plain(trainer_cfg))
    accelerator = str(kwargs.get("accelerator", "cpu"))
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"trainer.accelerator={accelerator} but no CUDA device is visible; use trainer=cpu")
    # Stage 1 runs the frozen backbone under no_grad: DDP must be told some parameters get no gradient.
    if kwargs.get("strategy") == "ddp" and freeze_epochs > 0:
        kwargs["strategy"] = "ddp_find_unused_parameters_true"
    return kwargs


def _uses_gpu(cfg: DictConfig) -> bool:
    return str(cfg.trainer.get("accelerator", "cpu")) in ("gpu", "cuda")


def resolve_input_size(backbone: torch.nn.Module, *, requested: int | None, image_size: int) -> int:
    cfg = getattr(backbone, "pretrained_cfg", {}) or {}
    if requested:
        return int(requested)
    if cfg.get("fixed_input_size"):  # e.g. ViTs with learned position embeddings for one size
        return int(cfg["input_size"][-1])
    return image_size


def build_model(cfg: DictConfig, *, num_classes: int, head: str) -> tuple[FERClassifier, str, tuple, tuple]:
    c = cfg.classifier
    backbone, pretrained = create_backbone(c.backbone, pretrained=str(c.pretrained), pretrained_path=c.get("pretrained_path"))
    pcfg = getattr(backbone, "pretrained_cfg", {}) or {}
    mean, std = tuple(pcfg.get("mean", (0.485, 0.456, 0.406))), tuple(pcfg.get("std", (0.229, 0.224, 0.225)))
    model = FERClassifier(backbone=backbone, num_classes=num_classes, head=head, drop_rate=float(c.get("drop_rate", 0.0)))
    return model, pretrained, mean, std


def apply_cascade(model: FERClassifier, *, checkpoint: Path | str, backbone: str, class_names: tuple[str, ...], head: str) -> str:
    """Cascaded fine-tuning (Ng et al. 2015): start from a classifier fine-tuned on an auxiliary
    dataset. The backbone always transfers; the head only if the classes and head type match."""
    source, meta = load_classifier(checkpoint)
    if meta["backbone"] != backbone:
        raise ValueError(f"classifier.cascade_from={checkpoint} is a {meta['backbone']} checkpoint, this run uses {backbone}")
    model.backbone.load_state_dict(source.backbone.state_dict())
    if tuple(meta["class_names"]) == class_names and meta["head"] == head:
        model.head.load_state_dict(source.head.state_dict())
        return f"cascade:{meta['checkpoint']} (backbone + head)"
    return f"cascade:{meta['checkpoint']} (backbone)"


def _cascade_stage(cfg: DictConfig, *, run_dir: Path) -> Path:
    """Fine-tune on `classifier.cascade_data` (a data config) first; return that run's best checkpoint."""
    aux = OmegaConf.create(_plain(cfg))
    base_data = OmegaConf.create({k: v for k, v in _plain(cfg.data).items() if k in ("val_fraction", "split_seed", "skip_unreadable", "num_workers", "groups")})
    aux.data = OmegaConf.merge(base_data, aux.classifier.cascade_data)
    aux.classifier.cascade_data = None
    aux.balance = OmegaConf.create({"name": "none"})
    log.info("cascaded fine-tuning: stage on %s first", aux.data.get("name"))
    run_training(aux, run_dir=run_dir / "cascade")
    return run_dir / "cascade" / BEST_CHECKPOINT


def _check_config(cfg: DictConfig) -> BalanceSpec:
    spec = resolve_balance(cfg.balance)
    check_backbone_name(str(cfg.classifier.backbone))
    t = cfg.train
    if int(t.freeze_epochs) >= int(t.epochs) and int(t.epochs) > 0 and int(t.freeze_epochs) > 0:
        log.warning("train.freeze_epochs=%s >= train.epochs=%s: the backbone is never fine-tuned", t.freeze_epochs, t.epochs)
    if cfg.classifier.get("cascade_from") and cfg.classifier.get("cascade_data"):
        raise ValueError("set classifier.cascade_from=CKPT or classifier.cascade_data={...}, not both")
    if cfg.classifier.get("cascade_from"):
        resolve_checkpoint_path(cfg.classifier.cascade_from)
        read_meta(cfg.classifier.cascade_from)
    return spec


def run_training(cfg: DictConfig, *, run_dir: Path) -> dict[str, Any]:
    """The whole run; returns the final test metrics (also written to run_dir/metrics.json)."""
    run_dir = Path(run_dir)
    spec = _check_config(cfg)  # bad names fail here, before any data or weights are touched
    seed = int(cfg.seed)
    pl.seed_everything(seed, workers=True, verbose=False)

    cascade_from = cfg.classifier.get("cascade_from")
    if cfg.classifier.get("cascade_data"):
        cascade_from = _cascade_stage(cfg, run_dir=run_dir)
        pl.seed_everything(seed, workers=True, verbose=False)

    # Data: validation is the stratified real-train carve-out; test is opened once, at the end.
    # A run with train.evaluate_test=false (the augmenter's judge) never even opens the test split.
    evaluate_test = bool(cfg.train.get("evaluate_test", True))
    data = faces.load_faces(cfg.data, cache_dir=cfg.paths.cache_dir, splits=("train", "test") if evaluate_test else ("train",))
    class_names = data.class_names
    fit, val = data.train_val()
    faces.require_real(val, role="val")
    test = faces.require_real(data.test, role="test") if evaluate_test else None
    manifest = None
    if spec.synthetic:
        generated = faces.load_generated(spec.generated_dir, class_names=class_names, image_size=fit.image_size, cache_dir=cfg.paths.cache_dir)
        manifest = faces.manifest_fingerprint(spec.generated_dir)
        log.info("balance=synthetic: %d generated samples %s added to %d real", len(generated), generated.class_counts(), len(fit))
        fit = fit.concat(generated, name="train+generated")
    train_counts = data.train.class_counts()
    thresholds = GroupThresholds(**_plain(cfg.data.groups)) if cfg.data.get("groups") else GroupThresholds()
    groups = class_groups(train_counts, thresholds=thresholds)

    # Model.
    model, pretrained, mean, std = build_model(cfg, num_classes=len(class_names), head=spec.head)
    if cascade_from:
        pretrained = f"{pretrained} -> {apply_cascade(model, checkpoint=cascade_from, backbone=str(cfg.classifier.backbone), class_names=class_names, head=spec.head)}"
    input_size = resolve_input_size(model.backbone, requested=cfg.classifier.get("input_size"), image_size=fit.image_size)
    criterion = BalancedLoss(spec=spec, class_counts=fit.class_counts(), feature_dim=model.num_features)
    channels_last = _uses_gpu(cfg)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    aug_cfg = _plain(cfg.train.augment)
    augment = TensorAugment(**{k: v for k, v in aug_cfg.items() if k != "enabled"}) if aug_cfg.get("enabled", True) else None
    optim = {k: _plain(cfg.train[k]) for k in ("lr", "backbone_lr_mult", "weight_decay", "freeze_epochs", "warmup_epochs")}
    monitor = str(cfg.train.monitor)
    module = FERLitModule(
        model=model, criterion=criterion, class_names=class_names, groups=groups, input_size=input_size,
        mean=mean, std=std, optim=optim, augment=augment, channels_last=channels_last, monitor=monitor,
    )
    dm = FaceDataModule(
        train=fit, val=val, test=test, batch_size=int(cfg.train.batch_size), eval_batch_size=int(cfg.train.eval_batch_size),
        seed=seed, sampler=spec.sampler,
    )

    meta = {
        "class_names": list(class_names), "image_size": fit.image_size, "input_size": input_size,
        "backbone": str(cfg.classifier.backbone), "head": spec.head, "drop_rate": float(cfg.classifier.get("drop_rate", 0.0)),
        "mean": list(mean), "std": list(std), "pretrained": pretrained, "seed": seed, "balance": spec.as_dict(),
        "dataset": data.dataset, "train_counts": train_counts, "groups": groups,
    }
    checkpoint_path = run_dir / BEST_CHECKPOINT

    def save(net: FERClassifier, epoch: int, val_metrics: dict[str, Any]) -> None:
        save_classifier(checkpoint_path, model=net, meta={**meta, "epoch": epoch, "val_mean_class_accuracy": val_metrics["mean_class_accuracy"]})

    best = BestWeights(monitor=monitor, save=save)
    callbacks: list[pl.Callback] = [best, pl.callbacks.LearningRateMonitor(logging_interval="epoch")]
    if cfg.train.get("early_stop_patience"):
        callbacks.append(pl.callbacks.EarlyStopping(monitor=monitor, mode="max", patience=int(cfg.train.early_stop_patience)))
    loggers = [
        pl.loggers.CSVLogger(save_dir=str(run_dir), name="logs", version=""),
        pl.loggers.TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version="", default_hp_metric=False),
    ]
    extra = {k: cfg.train[k] for k in ("limit_train_batches", "limit_val_batches") if cfg.train.get(k) is not None}
    trainer = pl.Trainer(
        **trainer_kwargs(cfg.trainer, freeze_epochs=int(cfg.train.freeze_epochs)), **extra, max_epochs=int(cfg.train.epochs), callbacks=callbacks, logger=loggers,
        enable_checkpointing=False, use_distributed_sampler=False, default_root_dir=str(run_dir),
        num_sanity_val_steps=0, enable_model_summary=False,
    )
    trainer.fit(module, datamodule=dm)
    if best.best_state is None:
        raise RuntimeError("training ran no validation epoch, so no model was selected; set train.epochs >= 1")
    # Model selection used validation only; now the selected weights see the test split, once.
    module.model.load_state_dict(best.best_state)
    if not evaluate_test:
        return {"checkpoint": str(checkpoint_path), "selection": {"monitor": monitor, "best_epoch": best.best_epoch,
                "best_score": best.best_score}, "validation": best.best_val_metrics}
    trainer.test(module, datamodule=dm, verbose=False)

    test_metrics = module.test_metrics
    result = {
        **test_metrics,
        "minority": minority_report(test_metrics, train_counts=train_counts, class_names=list(class_names)),
        "dataset": data.dataset, "layout": data.layout, "image_size": fit.image_size, "input_size": input_size,
        "backbone": str(cfg.classifier.backbone), "pretrained": pretrained, "seed": seed, "balance": spec.as_dict(),
        "class_names": list(class_names), "groups": dict(zip(class_names, groups)),
        "group_thresholds": {"many": thresholds.many, "few": thresholds.few},
        "counts": {"train": train_counts, "fit": fit.class_counts(), "val": val.class_counts(), "test": test.class_counts(),
                   "generated_in_fit": int(fit.is_synthetic.sum())},
        "fingerprints": {"train": data.train.fingerprint, "test": data.test.fingerprint, "manifest": manifest},
        "selection": {"monitor": monitor, "best_epoch": best.best_epoch, "best_score": best.best_score,
                      "epochs_run": trainer.current_epoch, "val": {k: best.best_val_metrics.get(k) for k in ("accuracy", "mean_class_accuracy", "macro_f1", "group_accuracy")}},
        "world_size": trainer.world_size,
        "checkpoint": str(checkpoint_path),
    }
    if trainer.is_global_zero:
        write_run_outputs(run_dir, cfg=cfg, metrics=result, train_counts=train_counts)
    return result


def write_run_outputs(run_dir: Path, *, cfg: DictConfig | None, metrics: dict[str, Any], train_counts: list[int]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    if cfg is not None:
        write_text_atomic(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    title = (f"{metrics['backbone']} / balance={metrics['balance']['name'] if isinstance(metrics.get('balance'), dict) else metrics.get('balance')}"
             f" / seed {metrics['seed']}: acc {metrics['accuracy']:.3f}, mean class acc {metrics['mean_class_accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f}")
    plot_confusion_matrix(metrics, path=run_dir / "confusion_matrix.png", title=title)
    plot_per_class_recall(metrics, path=run_dir / "per_class_recall.png", title=title, train_counts=train_counts)
    # Written last and atomically: its existence is what marks the run finished (ablation resume).
    write_json_atomic(run_dir / METRICS_FILE, metrics, indent=2)


def format_metrics(metrics: dict[str, Any]) -> str:
    """The run's test numbers as a small table for the terminal."""
    lines = [
        f"test: accuracy {metrics['accuracy']:.4f}  mean class accuracy {metrics['mean_class_accuracy']:.4f}  macro-F1 {metrics['macro_f1']:.4f}"
        f"  (n={metrics['num_samples']})",
        f"{'class':<10} {'group':<7} {'prec':>6} {'recall':>6} {'f1':>6} {'n':>5}",
    ]
    for name, m in metrics["per_class"].items():
        lines.append(f"{name:<10} {m.get('group', ''):<7} {m['precision']:6.3f} {m['recall']:6.3f} {m['f1']:6.3f} {m['support']:5d}")
    groups = metrics.get("group_mean_class_accuracy") or {}
    lines.append("group mean class accuracy: " + ", ".join(f"{g} {v:.3f}" for g, v in groups.items() if v is not None))
    return "\n".join(lines)


def is_global_zero() -> bool:
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) == 0
