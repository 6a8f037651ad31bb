"""The quality filter's judge: a classifier fine-tuned on the real train split (selection on
validation, never the test split), turned into the `Judge` callable the augmenter is given.

A judge is reused only if its training finished: `judge.json`, written atomically after
training, is the completion marker and records what the judge was trained on (the data config
and the classifier overrides) and the sha256 of its checkpoint. A run killed mid-training
leaves a `checkpoints/best.safetensors` from some improving epoch but no marker; that judge
is thrown away and trained again from scratch, so a killed and re-run augmentation ends
byte-identical to an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any, NamedTuple

import torch
from omegaconf import DictConfig

from classifier.checkpoint import (
    BEST_CHECKPOINT,
    check_classes_match,
    load_classifier,
    resolve_checkpoint_path,
)
from classifier.model import preprocess
from classifier.predict import predict_proba
from classifier.train import run_training
from faces.io import checkpoint_fingerprint, plain, write_json_atomic
from faces.runkit.lock import LOCK_FILE
from faces.runkit.logs import quiet_lightning
from vaegan.generation.guidance import Guide
from vaegan.generation.request import AugmentError, Judge

from .config import compose_config

log = logging.getLogger("augment")

MARKER_FILE = "judge.json"
# What a judge's run folder may hold (classifier.train's outputs): anything else means the folder
# is not a judge's, and it is not deleted.
_RUN_ENTRIES = frozenset(
    {
        "checkpoints",
        "logs",
        "tensorboard",
        "cascade",
        "config.yaml",
        "metrics.json",
        "error.json",
        "confusion_matrix.png",
        "per_class_recall.png",
        MARKER_FILE,
        LOCK_FILE,
    }
)


class LoadedJudge(NamedTuple):
    """A classifier checkpoint trained on real data, ready to judge."""

    probabilities: Judge  # uint8 images -> class probabilities
    logits: Guide  # float images in [0, 1] -> logits with gradients, for guided strategies
    sha256: str  # of the checkpoint file
    meta: dict[str, Any]  # its stored metadata (backbone, weight source, input size, classes)


def load_judge(path: Path, *, class_names: tuple[str, ...], device: torch.device) -> LoadedJudge:
    """Load a judge; refuses one trained on other classes than `class_names`."""
    path = resolve_checkpoint_path(path)
    model, meta = load_classifier(path, map_location=device)
    check_classes_match(meta, class_names, what=f"--judge {path}")
    model.eval().to(device)
    for parameter in model.parameters():  # frozen: guidance differentiates with respect to its input only
        parameter.requires_grad_(False)

    def judge_probabilities(images: torch.Tensor) -> torch.Tensor:
        return predict_proba(model, images, meta=meta, device=device)

    def judge_logits(images: torch.Tensor) -> torch.Tensor:
        # The training-time preprocessing (classifier.model.preprocess) on float [0, 1] images, in fp32.
        x = preprocess(images.to(device), input_size=int(meta["input_size"]), mean=meta["mean"], std=meta["std"])
        return model(x).float()

    return LoadedJudge(judge_probabilities, judge_logits, checkpoint_fingerprint(path), meta)


def judge_trainer(device: torch.device) -> str | DictConfig:
    """The trainer a judge trains with for `--device`: trainer=cpu, or trainer=gpu on exactly that GPU
    (`cuda:1` trains on GPU 1; Lightning's devices=1 would take GPU 0, which may be another job's)."""
    if device.type != "cuda":
        return "cpu"
    trainer = compose_config("train_classifier", ["trainer=gpu"]).trainer
    trainer.devices = [device.index if device.index is not None else torch.cuda.current_device()]
    return trainer


def _finished_record(run_dir: Path) -> dict[str, Any] | None:
    """The completion marker of `run_dir`'s judge if its training finished (marker and checkpoint agree)."""
    marker, checkpoint = run_dir / MARKER_FILE, run_dir / BEST_CHECKPOINT
    if not (marker.is_file() and checkpoint.is_file()):
        return None
    try:
        record = json.loads(marker.read_text())
    except ValueError:
        return None
    if not isinstance(record, dict) or record.get("checkpoint_sha256") != checkpoint_fingerprint(checkpoint):
        return None
    return record


def finished_judge(run_dir: Path, *, trained_on: dict[str, Any]) -> Path | None:
    """The checkpoint in `run_dir` if its training finished on exactly `trained_on`, else None."""
    record = _finished_record(run_dir)
    return run_dir / BEST_CHECKPOINT if record is not None and record.get("trained_on") == trained_on else None


def _clear_run_dir(run_dir: Path) -> None:
    """Remove an unfinished or outdated judge before training a new one from scratch."""
    if not run_dir.exists():
        return
    unknown = sorted(p.name for p in run_dir.iterdir() if p.name not in _RUN_ENTRIES and not p.name.startswith("."))
    if unknown:
        raise ValueError(
            f"{run_dir} should hold the quality-filter judge's training run, but also holds {unknown}; "
            "move those files away (nothing was deleted)"
        )
    for entry in run_dir.iterdir():
        if entry.name == LOCK_FILE:
            continue
        shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()


def ensure_judge(
    *,
    data_cfg: DictConfig,
    paths_cfg: DictConfig,
    overrides: list[str],
    run_dir: Path,
    trainer: str | DictConfig = "cpu",
    replace: bool = False,
) -> Path:
    """Fine-tune the default classifier on the real train split (selection on validation, no test).

    Reused when `run_dir` holds a judge whose training finished on the same data config and
    overrides (see MARKER_FILE), so a resumed augmentation keeps its judge. A half-trained judge
    (a killed run) is retrained from scratch. A finished judge trained on other data or overrides
    filtered the images already generated beside it: it is replaced only if `replace`
    (augment.py --overwrite), otherwise refused before any training.
    """
    run_dir = Path(run_dir)
    trained_on = {"data": plain(data_cfg), "overrides": [str(o) for o in overrides]}
    reusable = finished_judge(run_dir, trained_on=trained_on)
    if reusable is not None:
        log.info("reusing the judge %s", reusable)
        return reusable
    record = _finished_record(run_dir)  # a finished judge trained otherwise, or None
    if record is not None and not replace:
        old = record.get("trained_on") or {}
        differing = [key for key in ("data", "overrides") if old.get(key) != trained_on[key]]
        shown = "; ".join(f"{key}: {old.get(key)} -> {trained_on[key]}" for key in differing)
        raise AugmentError(
            f"{run_dir} holds a finished quality-filter judge trained with other {' and '.join(differing)} ({shown}); "
            "images generated beside it were filtered by it. Pass --overwrite to train a new judge and "
            "replace the generated set, or choose another --out"
        )
    if (run_dir / BEST_CHECKPOINT).is_file():
        log.info(
            "the judge in %s %s; training it again from scratch",
            run_dir,
            "was trained on other data or overrides" if record is not None else "did not finish training",
        )
    judge_cfg = compose_config(
        "train_classifier", [*overrides, *([f"trainer={trainer}"] if isinstance(trainer, str) else [])]
    )
    judge_cfg.data = data_cfg
    judge_cfg.paths = paths_cfg
    if not isinstance(trainer, str):
        judge_cfg.trainer = trainer
    judge_cfg.train.evaluate_test = False  # the judge never sees the test split
    _clear_run_dir(run_dir)
    quiet_lightning()
    log.info("training the quality-filter judge on the real train split into %s", run_dir)
    result = run_training(judge_cfg, run_dir=run_dir)
    checkpoint = run_dir / BEST_CHECKPOINT
    write_json_atomic(
        run_dir / MARKER_FILE,
        {
            "trained_on": trained_on,
            "checkpoint_sha256": checkpoint_fingerprint(checkpoint),
            "selection": result.get("selection"),
        },
        indent=1,
        sort_keys=True,
        default=str,
    )
    return checkpoint
