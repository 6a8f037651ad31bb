"""Shared helpers for the classifier tests: compose the real Hydra config with tiny, fast overrides."""

from __future__ import annotations

import csv
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

CONF = Path(__file__).resolve().parents[1] / "conf"


def tiny_cfg(
    root: Path, tmp: Path, *overrides: str, config_name: str = "train_classifier", fast: bool = True
) -> DictConfig:
    base = [
        "data.preset=tiny",
        f"data.root={root}",
        f"paths.cache_dir={tmp / 'cache'}",
        f"paths.output_dir={tmp / 'out'}",
        "trainer.enable_progress_bar=false",
    ]
    if fast and config_name == "train_classifier":
        # train.min_steps=0: these runs test mechanics at a fixed tiny budget (the step rule has its own tests).
        base += [
            "classifier=resnet10t_scratch",
            "train.epochs=1",
            "train.min_steps=0",
            "train.freeze_epochs=0",
            "train.warmup_epochs=0",
            "train.batch_size=16",
            "train.limit_train_batches=2",
        ]
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        return compose(config_name=config_name, overrides=[*base, *overrides])


def train_losses(run_dir: Path) -> list[float]:
    with (run_dir / "logs" / "metrics.csv").open() as handle:
        return [float(row["train/loss_step"]) for row in csv.DictReader(handle) if row.get("train/loss_step")]


def epoch_losses(run_dir: Path) -> list[float]:
    with (run_dir / "logs" / "metrics.csv").open() as handle:
        return [float(row["train/loss_epoch"]) for row in csv.DictReader(handle) if row.get("train/loss_epoch")]
