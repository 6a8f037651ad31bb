"""The sampling checkpoint the augmenter loads: safetensors weights + JSON metadata, no pickle.

`save_vaegan` writes atomically (temp file + rename) so an interrupted run never leaves a
half-written file where a good one was. `load_vaegan` rebuilds the model from the stored
architecture and refuses anything that is not such a file, naming the path and what differs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from faces.errors import CheckpointError
from faces.io import (
    is_name_list,
    is_positive_int,
    json_safe,
    read_safetensors_metadata,
    require_metadata,
    save_safetensors,
)

from .model import ARCHITECTURE_KEYS, ARCHITECTURE_SWITCHES, ARCHITECTURE_VERSION, VAEGAN

FORMAT = "fer-longtail-vaegan"
FORMAT_VERSION = 1
WHAT = "a VAE-GAN checkpoint (vaegan.safetensors from scripts/train_vaegan.py)"


def save_vaegan(
    path: Path | str, *, model: VAEGAN, config: Mapping[str, Any], class_names: Sequence[str], extra: Mapping[str, Any]
) -> Path:
    """Write weights and metadata to `path` (.safetensors). `extra` needs `image_size` and `data_fingerprint`."""
    path = Path(path)
    missing = [key for key in ("image_size", "data_fingerprint") if key not in extra]
    if missing:
        raise ValueError(f"save_vaegan: extra must contain {missing} (the data the model was trained on)")
    if len(class_names) != model.num_classes:
        raise ValueError(f"save_vaegan: {len(class_names)} class names for a {model.num_classes}-class model")
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": json_safe(dict(config)),
        "architecture": dict(model.architecture),
        "architecture_version": ARCHITECTURE_VERSION,
        "class_names": list(class_names),
        "resolution": model.resolution,
        "latent_dim": model.latent_dim,
        **json_safe(dict(extra)),
    }
    return save_safetensors(path, model.state_dict(), metadata={"format": FORMAT, "meta": meta})


def read_vaegan_meta(path: Path | str) -> dict[str, Any]:
    """The metadata of a checkpoint written by `save_vaegan` (no tensors are read)."""
    meta = read_safetensors_metadata(path, key="meta", what=WHAT)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: a safetensors file, but not {WHAT} (format={meta.get('format')!r})")
    missing = [key for key in ("architecture", "class_names", "image_size") if key not in meta]
    if missing:
        raise CheckpointError(
            f"{path}: VAE-GAN checkpoint metadata lacks {missing}; the file is damaged or was not written by save_vaegan"
        )
    require_metadata(
        path,
        meta,
        {
            "class_names": ("a list of distinct class names", is_name_list),
            "image_size": ("a positive integer", is_positive_int),
            "architecture": (
                f"an object with keys from {list(ARCHITECTURE_KEYS)} (sizes: positive integers; "
                f"{list(ARCHITECTURE_SWITCHES)}: true or false)",
                _is_architecture,
            ),
        },
        what=WHAT,
    )
    version = meta.get("architecture_version", 1)  # files from before the version was recorded are version 1
    if version != ARCHITECTURE_VERSION:
        raise CheckpointError(
            f"{path}: a VAE-GAN of architecture version {version!r}; this code builds version {ARCHITECTURE_VERSION} "
            "(space-to-depth stems, sub-pixel output, the discriminator's expression classifier) and cannot load it. "
            "Retrain: python scripts/train_vaegan.py (or delete the ablation's vaegan/ folder and re-run scripts/ablate.py)"
        )
    meta["architecture"] = {**ARCHITECTURE_SWITCHES, **meta["architecture"]}
    if meta["architecture"].get("num_classes") != len(meta["class_names"]):
        raise CheckpointError(
            f"{path}: metadata architecture.num_classes={meta['architecture'].get('num_classes')!r} but "
            f"{len(meta['class_names'])} class names; the file is damaged or was not written by save_vaegan"
        )
    return meta


def _is_architecture(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and set(value) <= set(ARCHITECTURE_KEYS)
        and all(isinstance(x, bool) if key in ARCHITECTURE_SWITCHES else is_positive_int(x) for key, x in value.items())
    )


def config_differences(stored: Mapping[str, Any], expected: Mapping[str, Any], *, keys: Sequence[str]) -> list[str]:
    """'key: stored X, expected Y' for each of `keys` whose values differ."""
    return [
        f"{key}: checkpoint {stored.get(key)!r}, expected {expected.get(key)!r}"
        for key in keys
        if key in expected and stored.get(key) != expected.get(key)
    ]


def load_vaegan(
    path: Path | str, *, map_location: str | torch.device = "cpu", expected_config: Mapping[str, Any] | None = None
) -> tuple[VAEGAN, dict[str, Any]]:
    """(model in eval mode, meta). `expected_config` (e.g. cfg.vaegan) must agree on the architecture keys."""
    path = Path(path)
    meta = read_vaegan_meta(path)
    architecture = meta["architecture"]
    if expected_config is not None:
        differences = config_differences(architecture, dict(expected_config), keys=ARCHITECTURE_KEYS)
        if differences:
            raise CheckpointError(f"{path}: checkpoint was trained with a different config: " + "; ".join(differences))
    try:
        model = VAEGAN(**architecture)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: the stored architecture {architecture} cannot be built ({error})") from error
    state = load_file(str(path), device="cpu")
    expected_keys, found_keys = set(model.state_dict()), set(state)
    if expected_keys != found_keys:
        raise CheckpointError(
            f"{path}: weights do not match the stored architecture: missing {sorted(expected_keys - found_keys)[:5]}, "
            f"unexpected {sorted(found_keys - expected_keys)[:5]}"
        )
    shapes = [
        f"{key}: {tuple(state[key].shape)} vs {tuple(value.shape)}"
        for key, value in model.state_dict().items()
        if state[key].shape != value.shape
    ]
    if shapes:
        raise CheckpointError(f"{path}: tensor shapes differ from the stored architecture: {shapes[:5]}")
    model.load_state_dict(state, strict=True)
    return model.to(map_location).eval(), meta


def check_resume_checkpoint(path: Path | str, *, config: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a Lightning checkpoint before resuming: loads with weights_only=True, compares the VAE-GAN config.

    Returns the checkpoint's hyper-parameters. Raises CheckpointError naming the path and differing keys.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"resume={path}: no such file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle errors, zip errors, unsafe globals
        raise CheckpointError(
            f"resume={path}: not a loadable training checkpoint ({type(error).__name__}: {str(error).splitlines()[0]})"
        ) from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "hyper_parameters" not in checkpoint:
        raise CheckpointError(
            f"resume={path}: not a VAE-GAN training checkpoint (expected Lightning's last.ckpt/best.ckpt)"
        )
    version = checkpoint["hyper_parameters"].get("architecture_version", 1)
    if version != ARCHITECTURE_VERSION:
        raise CheckpointError(
            f"resume={path}: a VAE-GAN of architecture version {version!r}; this code trains version "
            f"{ARCHITECTURE_VERSION} and cannot continue it. Retrain from scratch (drop resume=)"
        )
    stored = checkpoint["hyper_parameters"].get("config", {})
    # A switch added after the checkpoint was written has its default there.
    stored_model = {**ARCHITECTURE_SWITCHES, **stored.get("vaegan", {})}
    expected_model = {**ARCHITECTURE_SWITCHES, **dict(config.get("vaegan", {}))}
    if expected_model.get("resolution") == "auto":  # resolved from the data; the stored value is the resolved one
        expected_model.pop("resolution")
    differences = config_differences(stored_model, expected_model, keys=[*ARCHITECTURE_KEYS, "name"])
    differences += config_differences(stored, dict(config), keys=["batch_size"])
    if differences:
        raise CheckpointError(f"resume={path}: checkpoint config differs from this run: " + "; ".join(differences))
    return checkpoint["hyper_parameters"]
