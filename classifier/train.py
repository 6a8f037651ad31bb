"""One classifier run, in four named steps: build (data, model, loss), fit (two-stage fine-tuning with
validation-only model selection), select (load the best validation weights), test (once, at the end),
and everything a reader needs to trust the numbers (run_dir/)."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

import faces
from faces.features import IMAGENET_MEAN, IMAGENET_STD
from faces.generated import read_generated_settings
from faces.io import plain
from faces.runkit.lock import folder_lock
from faces.runkit.loggers import build_loggers
from faces.runkit.logs import quiet_lightning
from faces.runkit.runs import check_not_interrupted, clear_interruption
from faces.split import warn_unvalidated_classes
from faces.summary import GroupThresholds, class_groups

from .backbones import check_backbone_name, check_hub_reachable, check_pretrained_source, create_backbone
from .balance import BalanceSpec, resolve_balance
from .budget import TrainingBudget, collapse_report, plan_budget, resolve_input_size
from .checkpoint import BEST_CHECKPOINT, load_classifier, read_meta, resolve_checkpoint_path, save_classifier
from .data import FaceDataModule, generated_only_for_filled_classes
from .losses import create_loss
from .metrics import minority_report
from .model import FERClassifier
from .module import BestWeights, FERLitModule
from .outputs import write_run_outputs
from .trainer import trainer_kwargs, training_fast_path
from .transforms import TensorAugment

log = logging.getLogger(__name__)
# The module (not the datamodule) owns on_after_batch_transfer on purpose: augmentation needs the device.
warnings.filterwarnings("ignore", message=r".*overridden `on_after_batch_transfer` in `LightningModule`.*")


def build_model(cfg: DictConfig, *, num_classes: int, head: str) -> tuple[FERClassifier, str, tuple, tuple]:
    c = cfg.classifier
    backbone, pretrained = create_backbone(
        c.backbone,
        pretrained=str(c.pretrained),
        pretrained_path=c.get("pretrained_path"),
        weights_format=str(c.get("weights_format") or "timm"),
    )
    pcfg = getattr(backbone, "pretrained_cfg", {}) or {}
    mean, std = tuple(pcfg.get("mean", IMAGENET_MEAN)), tuple(pcfg.get("std", IMAGENET_STD))
    model = FERClassifier(
        backbone=backbone, num_classes=num_classes, head=head, drop_rate=float(c.get("drop_rate", 0.0))
    )
    return model, pretrained, mean, std


def apply_cascade(
    model: FERClassifier, *, checkpoint: Path | str, backbone: str, class_names: tuple[str, ...], head: str
) -> str:
    """Cascaded fine-tuning (Ng et al. 2015): start from a classifier fine-tuned on an auxiliary
    dataset. The backbone always transfers; the head only if the classes and head type match."""
    source, meta = load_classifier(checkpoint)
    if meta["backbone"] != backbone:
        raise ValueError(
            f"classifier.cascade_from={checkpoint} is a {meta['backbone']} checkpoint, this run uses {backbone}"
        )
    model.backbone.load_state_dict(source.backbone.state_dict())
    if tuple(meta["class_names"]) == class_names and meta["head"] == head:
        model.head.load_state_dict(source.head.state_dict())
        return f"cascade:{meta['checkpoint']} (backbone + head)"
    return f"cascade:{meta['checkpoint']} (backbone)"


def _cascade_stage(cfg: DictConfig, *, run_dir: Path) -> Path:
    """Fine-tune on `classifier.cascade_data` (a data config) first; return that run's best checkpoint."""
    aux = OmegaConf.create(plain(cfg))
    base_data = OmegaConf.create(
        {
            k: v
            for k, v in plain(cfg.data).items()
            if k in ("val_fraction", "split_seed", "skip_unreadable", "num_workers", "groups")
        }
    )
    aux.data = OmegaConf.merge(base_data, aux.classifier.cascade_data)
    aux.classifier.cascade_data = None
    aux.balance = OmegaConf.create({"name": "none"})
    log.info("cascaded fine-tuning: stage on %s first", aux.data.get("name"))
    run_training(aux, run_dir=run_dir / "cascade")
    return run_dir / "cascade" / BEST_CHECKPOINT


# (key, smallest allowed value, integer?) for the training numbers checked before any data is decoded.
TRAIN_NUMBERS = (
    ("epochs", 1, True),
    ("batch_size", 1, True),
    ("eval_batch_size", 1, True),
    ("freeze_epochs", 0, True),
    ("min_steps", 0, True),
    ("warmup_epochs", 0, False),
    ("lr", 0, False),
    ("backbone_lr_mult", 0, False),
    ("weight_decay", 0, False),
    ("early_stop_patience", 0, True),
)


def check_train_numbers(t: DictConfig) -> None:
    """train.epochs=-1 or train.batch_size=0 fail here, naming the key and value, not deep inside torch."""
    for key, smallest, integer in TRAIN_NUMBERS:
        value = t.get(key)
        if value is None and key in ("min_steps", "early_stop_patience"):
            continue
        ok = (
            isinstance(value, int) and not isinstance(value, bool)
            if integer
            else isinstance(value, (int, float)) and not isinstance(value, bool)
        )
        if not ok or value < smallest or (not integer and value != value):
            kind = "an integer" if integer else "a number"
            raise ValueError(f"train.{key}={value!r} must be {kind} >= {smallest}")


def _check_config(cfg: DictConfig) -> BalanceSpec:
    spec = resolve_balance(cfg.balance)
    # Weights first: a missing face-weights file or hub weights under HF_HUB_OFFLINE=1 fail now, before
    # any image is decoded.
    if check_pretrained_source(cfg.classifier).startswith("timm-hub:"):
        check_hub_reachable(str(cfg.classifier.backbone))
    check_backbone_name(str(cfg.classifier.backbone))
    training_fast_path(cfg.classifier, cfg.trainer)  # a bad classifier.cpu_precision fails here
    t = cfg.train
    check_train_numbers(t)
    if int(t.freeze_epochs) >= int(t.epochs) and int(t.epochs) > 0 and int(t.freeze_epochs) > 0:
        log.warning(
            "train.freeze_epochs=%s >= train.epochs=%s: the backbone is never fine-tuned", t.freeze_epochs, t.epochs
        )
    if cfg.classifier.get("cascade_from") and cfg.classifier.get("cascade_data"):
        raise ValueError("set classifier.cascade_from=CKPT or classifier.cascade_data={...}, not both")
    if cfg.classifier.get("cascade_from"):
        resolve_checkpoint_path(cfg.classifier.cascade_from)
        read_meta(cfg.classifier.cascade_from)
    return spec


@dataclass
class RunData:
    """The splits of one run: fit (real train minus validation, plus generated samples if any), val, test."""

    data: faces.FaceData
    fit: faces.FaceSplit
    val: faces.FaceSplit
    test: faces.FaceSplit | None
    manifest: str | None
    train_counts: list[int]
    groups: list[str]
    thresholds: GroupThresholds


@dataclass
class BuiltRun:
    module: FERLitModule
    datamodule: FaceDataModule
    meta: dict[str, Any]
    input_size: int
    input_size_rule: str
    budget: TrainingBudget
    pretrained: str


def world_size(trainer_cfg: DictConfig) -> int:
    """Processes the trainer config asks for (devices x nodes; 1 when devices is "auto" or a list)."""
    devices = trainer_cfg.get("devices", 1)
    return (int(devices) if isinstance(devices, int) and devices > 0 else 1) * int(trainer_cfg.get("num_nodes", 1) or 1)


def head_only_epochs(cfg: DictConfig) -> int:
    """`train.freeze_epochs`, or 0 for a backbone with nothing to keep: the head-only stage trains a new head on
    the backbone's pretrained features, and from random weights (`classifier.pretrained=none`, no cascade) it
    would train a head on random features for 10 % of the budget (the resnet10t_scratch judge: 4 of 43 epochs)."""
    freeze = int(cfg.train.freeze_epochs)
    classifier = cfg.classifier
    pretrained = classifier.get("cascade_from") or classifier.get("cascade_data")
    if freeze and not pretrained and check_pretrained_source(classifier) == "none":
        log.info(
            "classifier.pretrained=none: no head-only epochs (train.freeze_epochs=%d keeps pretrained features)", freeze
        )
        return 0
    return freeze


def budget_for(cfg: DictConfig, *, num_train: int) -> TrainingBudget:
    t = cfg.train
    budget = plan_budget(
        num_train=num_train,
        batch_size=int(t.batch_size),
        epochs=int(t.epochs),
        # A debug run capping its batches gets exactly the epochs it asked for.
        min_steps=0 if t.get("limit_train_batches") is not None else int(t.get("min_steps") or 0),
        freeze_epochs=head_only_epochs(cfg),
        warmup_epochs=float(t.warmup_epochs),
        early_stop_patience=t.get("early_stop_patience"),
        world_size=world_size(cfg.trainer),
    )
    cap = t.get("limit_train_batches")
    if isinstance(cap, int) and not isinstance(cap, bool) and 0 < cap < budget.steps_per_epoch:
        # Lightning stops each epoch after `cap` batches: record the steps the run really takes.
        budget = replace(budget, steps_per_epoch=cap, total_steps=cap * budget.epochs)
    return budget


def load_run_data(cfg: DictConfig, *, spec: BalanceSpec, evaluate_test: bool) -> RunData:
    """Validation is the stratified real-train carve-out; a run with evaluate_test=false (the
    augmenter's judge) never even opens the test split."""
    data = faces.load_faces(
        cfg.data, cache_dir=cfg.paths.cache_dir, splits=("train", "test") if evaluate_test else ("train",)
    )
    fit, val = data.train_val()
    faces.require_real(val, role="val")
    warn_unvalidated_classes(fit, val)
    test = faces.require_real(data.test, role="test") if evaluate_test else None
    manifest = None
    if spec.synthetic:
        # A generated set made from this run's validation (or test) images is refused, naming the image and the split_seed to use.
        faces.check_generated_sources(
            spec.generated_dir,
            fit_ids=fit.sample_ids,
            val_ids=val.sample_ids,
            test_ids=test.sample_ids if test is not None else (),
            split_seed=data.split_seed,
        )
        generated = faces.load_generated(
            spec.generated_dir,
            class_names=data.class_names,
            image_size=fit.image_size,
            cache_dir=cfg.paths.cache_dir,
            allow_incomplete=spec.allow_incomplete_generated,
        )
        manifest = faces.manifest_fingerprint(spec.generated_dir)
        log.info(
            "balance=synthetic: %d generated samples %s added to %d real",
            len(generated),
            generated.class_counts(),
            len(fit),
        )
        if spec.generated_replaces_real:  # CAS: the classes below the augmenter's target train on generated images only
            targets = (read_generated_settings(spec.generated_dir) or {}).get("targets")
            fit = generated_only_for_filled_classes(fit, generated, targets=targets)
        else:
            fit = fit.concat(generated, name="train+generated")
    train_counts = data.train.class_counts()
    thresholds = GroupThresholds(**plain(cfg.data.groups)) if cfg.data.get("groups") else GroupThresholds()
    return RunData(
        data=data,
        fit=fit,
        val=val,
        test=test,
        manifest=manifest,
        train_counts=train_counts,
        groups=class_groups(train_counts, thresholds=thresholds),
        thresholds=thresholds,
    )


def run_meta(cfg: DictConfig, *, spec: BalanceSpec, run: RunData, input_size, normalize, pretrained: str) -> dict:
    """What a checkpoint records about its run: classes, input pipeline, backbone, balance and data."""
    (input_size, input_size_rule), (mean, std) = input_size, normalize
    return {
        "class_names": list(run.data.class_names),
        "image_size": run.fit.image_size,
        "input_size": input_size,
        "backbone": str(cfg.classifier.backbone),
        "head": spec.head,
        "drop_rate": float(cfg.classifier.get("drop_rate", 0.0)),
        "mean": list(mean),
        "std": list(std),
        "pretrained": pretrained,
        "seed": int(cfg.seed),
        "balance": spec.as_dict(),
        "dataset": run.data.dataset,
        "train_counts": run.train_counts,
        "groups": run.groups,
        "input_size_rule": input_size_rule,
        # The model's measured CPU memory format (classifier.cpu_channels_last): prediction on the CPU uses it too.
        "cpu_channels_last": bool(cfg.classifier.get("cpu_channels_last") or False),
    }


def build_run(cfg: DictConfig, *, spec: BalanceSpec, run: RunData, cascade_from: str | Path | None) -> BuiltRun:
    """Model (backbone + head, cascade weights), loss, augmentation, Lightning module and data module."""
    class_names = run.data.class_names
    model, pretrained, mean, std = build_model(cfg, num_classes=len(class_names), head=spec.head)
    if cascade_from:
        pretrained = f"{pretrained} -> {apply_cascade(model, checkpoint=cascade_from, backbone=str(cfg.classifier.backbone), class_names=class_names, head=spec.head)}"
    input_size, input_size_rule = resolve_input_size(
        model.backbone,
        requested=cfg.classifier.get("input_size"),
        image_size=run.fit.image_size,
        pretrained=pretrained != "none",
    )
    budget = budget_for(cfg, num_train=len(run.fit))
    log.info(
        "budget: %d epochs x %d steps (%d head-only epochs, %.2g warm-up), input %dpx: %s",
        budget.epochs,
        budget.steps_per_epoch,
        budget.freeze_epochs,
        budget.warmup_epochs,
        input_size,
        input_size_rule,
    )
    # The loss's class statistics: what the model is fitted on, or the real long tail (balance.loss_counts=real).
    real_counts = torch.bincount(run.fit.labels[~run.fit.is_synthetic], minlength=len(class_names)).tolist()
    counts = run.fit.class_counts() if spec.loss_counts == "fit" else real_counts
    criterion = create_loss(spec.loss, class_counts=counts, feature_dim=model.num_features, **spec.loss_args)
    fast = training_fast_path(cfg.classifier, cfg.trainer)  # the module applies channels_last in its setup
    aug_cfg = plain(cfg.train.augment)
    augment = (
        TensorAugment(**{k: v for k, v in aug_cfg.items() if k != "enabled"}) if aug_cfg.get("enabled", True) else None
    )
    optim = {k: plain(cfg.train[k]) for k in ("lr", "backbone_lr_mult", "weight_decay")}
    optim.update(freeze_epochs=budget.freeze_epochs, warmup_epochs=budget.warmup_epochs)
    module = FERLitModule(
        model=model,
        criterion=criterion,
        class_names=class_names,
        groups=run.groups,
        input_size=input_size,
        mean=mean,
        std=std,
        optim=optim,
        augment=augment,
        channels_last=fast.channels_last,
        monitor=str(cfg.train.monitor),
        train_autocast=fast.autocast,
        generated_weight=spec.synthetic_weight,
    )
    datamodule = FaceDataModule(
        train=run.fit,
        val=run.val,
        test=run.test,
        batch_size=int(cfg.train.batch_size),
        eval_batch_size=int(cfg.train.eval_batch_size),
        seed=int(cfg.seed),
        sampler=spec.sampler,
        start_step=int(round(spec.synthetic_start * budget.total_steps)),
        steps_per_epoch=budget.steps_per_epoch,
        replace_prob=spec.replace_prob,
    )
    meta = run_meta(
        cfg, spec=spec, run=run, input_size=(input_size, input_size_rule), normalize=(mean, std), pretrained=pretrained
    )
    return BuiltRun(
        module=module,
        datamodule=datamodule,
        meta=meta,
        input_size=input_size,
        input_size_rule=input_size_rule,
        budget=budget,
        pretrained=pretrained,
    )


def fit(cfg: DictConfig, *, built: BuiltRun, run_dir: Path) -> tuple[pl.Trainer, BestWeights]:
    """Two-stage fine-tuning; every improving validation epoch is saved (validation-only selection)."""
    monitor = str(cfg.train.monitor)
    checkpoint_path = run_dir / BEST_CHECKPOINT

    def save(net: FERClassifier, epoch: int, val_metrics: dict[str, Any]) -> None:
        save_classifier(
            checkpoint_path,
            model=net,
            meta={**built.meta, "epoch": epoch, "val_mean_class_accuracy": val_metrics["mean_class_accuracy"]},
        )

    best = BestWeights(monitor=monitor, save=save)
    callbacks: list[pl.Callback] = [best, pl.callbacks.LearningRateMonitor(logging_interval="epoch")]
    budget = built.budget
    if budget.early_stop_patience:
        callbacks.append(pl.callbacks.EarlyStopping(monitor=monitor, mode="max", patience=budget.early_stop_patience))
    loggers = build_loggers(cfg.get("logger"), save_dir=run_dir)  # conf/logger/: logger=[csv,tensorboard] by default
    extra = {k: cfg.train[k] for k in ("limit_train_batches", "limit_val_batches") if cfg.train.get(k) is not None}
    quiet_lightning()
    trainer = pl.Trainer(
        **trainer_kwargs(cfg.trainer, freeze_epochs=budget.freeze_epochs),
        **extra,
        max_epochs=budget.epochs,
        min_epochs=budget.min_epochs,
        callbacks=callbacks,
        logger=loggers,
        enable_checkpointing=False,
        use_distributed_sampler=False,
        default_root_dir=str(run_dir),
        num_sanity_val_steps=0,
        enable_model_summary=False,
    )
    trainer.fit(built.module, datamodule=built.datamodule)
    check_not_interrupted(trainer)
    return trainer, best


def select(built: BuiltRun, best: BestWeights) -> None:
    """Load the weights of the best validation epoch: model selection used validation only."""
    if best.best_state is None:
        raise RuntimeError("training ran no validation epoch, so no model was selected; set train.epochs >= 1")
    built.module.model.load_state_dict(best.best_state)


def selection_record(cfg: DictConfig, best: BestWeights, trainer: pl.Trainer | None = None) -> dict[str, Any]:
    record: dict[str, Any] = {
        "monitor": str(cfg.train.monitor),
        "best_epoch": best.best_epoch,
        "best_score": best.best_score,
    }
    if trainer is not None:
        record["epochs_run"] = trainer.current_epoch
        record["val"] = {
            k: best.best_val_metrics.get(k) for k in ("accuracy", "mean_class_accuracy", "macro_f1", "group_accuracy")
        }
    return record


def test(
    cfg: DictConfig, *, built: BuiltRun, run: RunData, trainer: pl.Trainer, best: BestWeights, run_dir: Path
) -> dict[str, Any]:
    """The selected weights see the test split, once; the result is metrics.json's content."""
    trainer.test(built.module, datamodule=built.datamodule, verbose=False)
    test_metrics = built.module.test_metrics
    class_names = run.data.class_names
    return {
        **test_metrics,
        "minority": minority_report(test_metrics, train_counts=run.train_counts, class_names=list(class_names)),
        "dataset": run.data.dataset,
        "layout": run.data.layout,
        "image_size": run.fit.image_size,
        "input_size": built.input_size,
        "input_size_rule": built.input_size_rule,
        "budget": built.budget.as_dict(),
        "backbone": str(cfg.classifier.backbone),
        "pretrained": built.pretrained,
        "seed": int(cfg.seed),
        "balance": built.meta["balance"],
        "class_names": list(class_names),
        "groups": dict(zip(class_names, run.groups)),
        "group_thresholds": {"many": run.thresholds.many, "few": run.thresholds.few},
        "counts": {
            "train": run.train_counts,
            "fit": run.fit.class_counts(),
            "val": run.val.class_counts(),
            "test": run.test.class_counts(),
            "generated_in_fit": int(run.fit.is_synthetic.sum()),
        },
        "fingerprints": {
            "train": run.data.train.fingerprint,
            "test": run.data.test.fingerprint,
            "manifest": run.manifest,
        },
        "selection": selection_record(cfg, best, trainer),
        "collapse": collapse_report(
            confusion=test_metrics["confusion_matrix"],
            best_val_mean_class_accuracy=best.best_score,
            num_classes=len(class_names),
        ),
        "world_size": trainer.world_size,
        "checkpoint": str(run_dir / BEST_CHECKPOINT),
    }


def run_training(cfg: DictConfig, *, run_dir: Path) -> dict[str, Any]:
    """The whole run; returns the final test metrics (also written to run_dir/metrics.json).

    A run with train.evaluate_test=false (the augmenter's judge) stops after selection and
    returns the checkpoint, the selection record and the validation metrics instead.
    """
    run_dir = Path(run_dir)
    spec = _check_config(cfg)  # bad names fail here, before any data or weights are touched
    # One writer per run folder: a second run on it gets an error naming this one's pid.
    with folder_lock(run_dir, what="classifier run"):
        clear_interruption(run_dir)
        seed = int(cfg.seed)
        pl.seed_everything(seed, workers=True, verbose=False)
        cascade_from = cfg.classifier.get("cascade_from")
        if cfg.classifier.get("cascade_data"):
            cascade_from = _cascade_stage(cfg, run_dir=run_dir)
            pl.seed_everything(seed, workers=True, verbose=False)

        evaluate_test = bool(cfg.train.get("evaluate_test", True))
        run = load_run_data(cfg, spec=spec, evaluate_test=evaluate_test)
        built = build_run(cfg, spec=spec, run=run, cascade_from=cascade_from)
        trainer, best = fit(cfg, built=built, run_dir=run_dir)
        select(built, best)
        if not evaluate_test:
            collapse = collapse_report(
                confusion=best.best_val_metrics["confusion_matrix"],
                best_val_mean_class_accuracy=best.best_score,
                num_classes=len(run.data.class_names),
                split="validation",
            )
            warn_if_collapsed(collapse, run_dir=run_dir)
            return {
                "checkpoint": str(run_dir / BEST_CHECKPOINT),
                "selection": selection_record(cfg, best),
                "validation": best.best_val_metrics,
                "collapse": collapse,
                "budget": built.budget.as_dict(),
                "input_size": built.input_size,
                "input_size_rule": built.input_size_rule,
            }
        result = test(cfg, built=built, run=run, trainer=trainer, best=best, run_dir=run_dir)
        if trainer.is_global_zero:
            write_run_outputs(run_dir, cfg=cfg, metrics=result, train_counts=run.train_counts)
        warn_if_collapsed(result["collapse"], run_dir=run_dir)
        return result


def warn_if_collapsed(collapse: dict[str, Any], *, run_dir: Path) -> None:
    if collapse["collapsed"]:
        log.warning(
            "COLLAPSED RUN %s: %s. Its numbers are not a result; give it more steps (train.min_steps), a larger "
            "input (classifier.input_size) or another learning rate.",
            run_dir,
            "; ".join(collapse["reasons"]),
        )
