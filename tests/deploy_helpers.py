"""A tiny real classifier checkpoint (random weights, the format training writes) for the predict and
export tests, and photos with real faces: scikit-image's astronaut, pasted into a larger canvas."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import timm
import torch

from classifier.checkpoint import save_classifier
from classifier.model import FERClassifier
from faces.classes import RAFDB_CLASSES


def write_checkpoint(run_dir: Path, *, dataset: str = "rafdb", image_size: int = 48, seed: int = 0) -> Path:
    """run_dir/checkpoints/best.safetensors of a resnet10t classifier (what a run folder holds)."""
    torch.manual_seed(seed)
    backbone = timm.create_model("resnet10t", pretrained=False, num_classes=0)
    model = FERClassifier(backbone=backbone, num_classes=len(RAFDB_CLASSES))
    meta = {
        "class_names": list(RAFDB_CLASSES),
        "image_size": image_size,
        "input_size": image_size,
        "backbone": "resnet10t",
        "head": "linear",
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "dataset": dataset,
    }
    return save_classifier(run_dir / "checkpoints" / "best.safetensors", model=model, meta=meta)


def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


def pasted_faces(*, copies: int = 2) -> np.ndarray:
    """The astronaut's head and shoulders pasted `copies` times into a grey 320 x 640 canvas."""
    face = astronaut()[20:240, 110:330]  # 220 x 220 around the face
    canvas = np.full((320, 320 * copies, 3), 128, dtype=np.uint8)
    for k in range(copies):
        canvas[50:270, 320 * k + 50 : 320 * k + 270] = face
    return canvas
