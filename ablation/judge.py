"""The quality filter's judge: a classifier fine-tuned on the real train split (selection on
validation, never the test split), turned into the `Judge` callable the augmenter is given."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from omegaconf import DictConfig

from classifier.checkpoint import BEST_CHECKPOINT, check_classes_match, load_classifier, resolve_checkpoint_path
from classifier.predict import predict_proba
from classifier.train import run_training
from vaegan.augment.run import Judge
from vaegan.checkpoint import checkpoint_fingerprint

from .config import compose_config

log = logging.getLogger("augment")


def load_judge(path: Path, *, class_names: tuple[str, ...], device: torch.device) -> tuple[Judge, str]:
    """(score function, sha256 of the checkpoint) for a classifier checkpoint trained on real data."""
    path = resolve_checkpoint_path(path)
    model, meta = load_classifier(path, map_location=device)
    check_classes_match(meta, class_names, what=f"--judge {path}")

    def judge(images: torch.Tensor) -> torch.Tensor:
        return predict_proba(model, images, meta=meta, device=device)

    return judge, checkpoint_fingerprint(path)


def ensure_judge(*, data_cfg: DictConfig, paths_cfg: DictConfig, overrides: list[str], run_dir: Path,
                 trainer: str | DictConfig = "cpu") -> Path:
    """Fine-tune the default classifier on the real train split (selection on validation, no test).

    Reused when `run_dir` already holds its checkpoint, so a resumed augmentation keeps its judge.
    """
    checkpoint = run_dir / BEST_CHECKPOINT
    if checkpoint.is_file():
        log.info("reusing the judge %s", checkpoint)
        return checkpoint
    judge_cfg = compose_config("train_classifier", [*overrides, *([f"trainer={trainer}"] if isinstance(trainer, str) else [])])
    judge_cfg.data = data_cfg
    judge_cfg.paths = paths_cfg
    if not isinstance(trainer, str):
        judge_cfg.trainer = trainer
    judge_cfg.train.evaluate_test = False  # the judge never sees the test split
    log.info("training the quality-filter judge on the real train split into %s", run_dir)
    run_training(judge_cfg, run_dir=run_dir)
    return checkpoint


