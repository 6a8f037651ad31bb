"""Re-evaluate a saved classifier on a dataset's (real) test split, on one process or across DDP ranks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

import faces
from faces.runkit.config import trainer_uses_gpu
from faces.runkit.logs import quiet_lightning
from faces.summary import GroupThresholds, class_groups

from .checkpoint import (
    check_classes_match,
    load_classifier,
    read_meta,
    resolve_checkpoint_path,
)
from .data import FaceDataModule
from .metrics import minority_report
from .module import FERLitModule
from .outputs import write_run_outputs
from .predict import prediction_channels_last
from .trainer import trainer_kwargs


def run_evaluation(cfg: DictConfig, *, checkpoint: Path | str, run_dir: Path) -> dict[str, Any]:
    """Test metrics of `checkpoint` on `cfg.data`'s test split; writes run_dir/metrics.json and figures (rank 0)."""
    run_dir = Path(run_dir)
    # Checkpoint metadata, then the dataset's classes from its listing: a wrong checkpoint or a
    # mismatched class set fails before a model is built or an image decoded.
    path = resolve_checkpoint_path(checkpoint)
    stored = {**read_meta(path), "checkpoint": str(path)}
    listing = faces.list_source(cfg.data)
    check_classes_match(stored, listing.class_names, what=f"dataset {listing.dataset} at {listing.root}")
    model, meta = load_classifier(checkpoint)
    data = faces.load_faces(cfg.data, cache_dir=cfg.paths.cache_dir, splits=("train", "test"))
    test = faces.require_real(data.test, role="test")
    train_counts = data.train.class_counts()
    thresholds = (
        GroupThresholds(**OmegaConf.to_container(cfg.data.groups)) if cfg.data.get("groups") else GroupThresholds()
    )
    groups = class_groups(train_counts, thresholds=thresholds)
    channels_last = prediction_channels_last(meta, cuda=trainer_uses_gpu(cfg.trainer))  # as the run tested itself
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    module = FERLitModule(
        model=model,
        criterion=None,
        class_names=data.class_names,
        groups=groups,
        input_size=int(meta["input_size"]),
        mean=meta["mean"],
        std=meta["std"],
        optim={},
        augment=None,
        channels_last=channels_last,
    )
    quiet_lightning()
    dm = FaceDataModule(train=None, val=None, test=test, batch_size=1, eval_batch_size=int(cfg.eval_batch_size), seed=0)
    trainer = pl.Trainer(
        **trainer_kwargs(cfg.trainer),
        logger=False,
        enable_checkpointing=False,
        use_distributed_sampler=False,
        enable_model_summary=False,
    )
    trainer.test(module, datamodule=dm, verbose=False)
    metrics = {
        **module.test_metrics,
        "minority": minority_report(module.test_metrics, train_counts=train_counts, class_names=list(data.class_names)),
        "checkpoint": meta["checkpoint"],
        "dataset": data.dataset,
        "layout": data.layout,
        "image_size": test.image_size,
        "input_size": meta["input_size"],
        "backbone": meta["backbone"],
        "pretrained": meta.get("pretrained"),
        "seed": meta.get("seed"),
        "balance": meta.get("balance"),
        "class_names": list(data.class_names),
        "groups": dict(zip(data.class_names, groups)),
        "group_thresholds": {"many": thresholds.many, "few": thresholds.few},
        "counts": {"train": train_counts, "test": test.class_counts()},
        "fingerprints": {"train": data.train.fingerprint, "test": data.test.fingerprint},
        "world_size": trainer.world_size,
    }
    if trainer.is_global_zero:
        write_run_outputs(run_dir, cfg=cfg, metrics=metrics, train_counts=train_counts)
    return metrics
