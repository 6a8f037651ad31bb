"""Classifier checkpoints: one .safetensors file, weights plus a JSON `meta` record (classes, sizes,
backbone, normalisation, provenance). Loading never unpickles anything."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from faces.errors import CheckpointError
from faces.io import (
    is_name_list,
    is_number_triple,
    is_positive_int,
    read_safetensors_metadata,
    require_metadata,
    save_safetensors,
)

from .architectures import create_model
from .model import HEADS, FERClassifier

META_KEY = "fer_classifier"
BEST_CHECKPOINT = Path("checkpoints") / "best.safetensors"
REQUIRED_META = ("class_names", "image_size", "input_size", "backbone", "head", "mean", "std")
WHAT = "a classifier checkpoint (checkpoints/best.safetensors from scripts/train_classifier.py)"
# What loading trusts in `meta`, checked before anything is built from it.
META_SCHEMA = {
    "class_names": ("a list of distinct class names", is_name_list),
    "image_size": ("a positive integer", is_positive_int),
    "input_size": ("a positive integer", is_positive_int),
    "backbone": ("a timm model name", lambda v: isinstance(v, str) and bool(v.strip())),
    "head": (f"one of {list(HEADS)}", lambda v: v in HEADS),
    "mean": ("three numbers", is_number_triple),
    "std": ("three positive numbers", lambda v: is_number_triple(v) and all(x > 0 for x in v)),
}


def save_classifier(path: Path | str, *, model: FERClassifier, meta: dict[str, Any]) -> Path:
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise ValueError(f"checkpoint meta lacks {missing}")
    return save_safetensors(path, model.state_dict(), metadata={META_KEY: meta})


def resolve_checkpoint_path(path: Path | str) -> Path:
    """A .safetensors file, or a run directory holding checkpoints/best.safetensors."""
    path = Path(path).expanduser()
    if path.is_dir() and (path / BEST_CHECKPOINT).is_file():
        return path / BEST_CHECKPOINT
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} does not exist (pass a .safetensors file or a run directory with {BEST_CHECKPOINT})"
        )
    if path.suffix != ".safetensors":
        raise CheckpointError(
            f"{path}: classifier checkpoints are .safetensors files written by scripts/train_classifier.py"
        )
    return path


def read_meta(path: Path | str) -> dict[str, Any]:
    path = resolve_checkpoint_path(path)
    meta = read_safetensors_metadata(path, key=META_KEY, what=WHAT)
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise CheckpointError(f"{path}: checkpoint meta lacks {missing}")
    require_metadata(path, meta, META_SCHEMA, what=WHAT)
    drop_rate = meta.get("drop_rate", 0.0)
    if isinstance(drop_rate, bool) or not isinstance(drop_rate, (int, float)) or not 0.0 <= drop_rate < 1.0:
        raise CheckpointError(f"{path}: metadata drop_rate={drop_rate!r} must be a number in [0, 1)")
    return meta


def build_model_from_meta(meta: dict[str, Any]) -> FERClassifier:
    # create_model knows this package's own timm names (resnet50_caffe, the VGGFace2 ResNet-50 layout).
    backbone = create_model(meta["backbone"], pretrained=False, num_classes=0)
    return FERClassifier(
        backbone=backbone,
        num_classes=len(meta["class_names"]),
        head=meta["head"],
        drop_rate=float(meta.get("drop_rate", 0.0)),
    )


def load_classifier(path: Path | str, *, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """(model in eval mode, meta) from a checkpoint file or run directory; safetensors only, no pickle."""
    from safetensors.torch import load_file

    path = resolve_checkpoint_path(path)
    meta = read_meta(path)
    try:
        model = build_model_from_meta(meta)
    except (RuntimeError, ValueError, TypeError) as error:  # e.g. timm's "Unknown model"
        raise CheckpointError(
            f"{path}: cannot build the {meta['backbone']!r} classifier its metadata describes ({error})"
        ) from error
    state = load_file(str(path), device=str(map_location))
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"{path} does not fit a {meta['backbone']} classifier with {len(meta['class_names'])} classes: "
            f"missing {result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}"
        )
    meta["checkpoint"] = str(path)
    return model.to(map_location).eval(), meta


def check_classes_match(meta: dict[str, Any], class_names: tuple[str, ...] | list[str], *, what: str) -> None:
    if list(meta["class_names"]) != list(class_names):
        raise CheckpointError(
            f"checkpoint {meta.get('checkpoint', '')} was trained on classes {meta['class_names']}, but {what} has "
            f"{list(class_names)}: incompatible checkpoint"
        )
