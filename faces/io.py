"""Atomic file writes (a temp file beside the target, then one rename) for text, JSON and PNG
images, and safetensors files with JSON metadata, the one checkpoint format of both model
packages (no pickle anywhere); a file's sha256; plain-Python copies of config values for them.

A run killed mid-write leaves the previous file (or none), never a truncated one. That is what
lets resumable stages treat "the file exists" as "the step finished".
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from .errors import CheckpointError


def plain(value: Any) -> Any:
    """A resolved plain-Python copy of an OmegaConf node (dicts and lists); anything else is returned as is."""
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def json_safe(value: Any) -> Any:
    """A JSON-safe copy: OmegaConf nodes resolved, tuples become lists, paths and other objects strings."""
    return json.loads(json.dumps(plain(value), default=str))


def checkpoint_fingerprint(path: Path | str) -> str:
    """sha256 of the file's bytes: what records a checkpoint's identity (the augmenter's generator, the judge)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temp path to write to; on success it replaces `path`, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The pid keeps concurrent writers (e.g. DDP ranks, worker processes) off each other's temp file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as error:
        # A full disk surfaces as a write error without a file name (PIL, json): name the target.
        if error.filename is None:
            raise OSError(error.errno, error.strerror or str(error), str(path)) from error
        raise
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path | str, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json_atomic(path: Path | str, data: Any, **dump_kwargs: Any) -> Path:
    return write_text_atomic(path, json.dumps(data, **dump_kwargs))


# Level 1 is ~4x faster than PIL's default 6 for a few % more bytes; PNG stays lossless
# and byte-identical for identical pixels.
PNG_COMPRESS_LEVEL = 1


def write_png_atomic(path: Path | str, image: Any) -> Path:
    """Write `image` (uint8 numpy H x W x 3) to `path` via a temp file and rename: never a half file."""
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return Path(path)


def write_pngs(items: list[tuple[str, Any]]) -> int:
    """Write (path, image) pairs with `write_png_atomic`; the unit of work of PNG-writing worker
    processes (it lives here, under a package that imports no torch, so workers stay light)."""
    for path, image in items:
        write_png_atomic(path, image)
    return len(items)


def save_safetensors(path: Path | str, tensors: dict[str, Any], *, metadata: dict[str, Any]) -> Path:
    """Write `tensors` (contiguous CPU copies) atomically; each metadata value is stored as JSON text."""
    from safetensors.torch import save_file

    state = {key: value.detach().to("cpu").contiguous().clone() for key, value in tensors.items()}
    header = {key: value if isinstance(value, str) else json.dumps(value) for key, value in metadata.items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=header)
    return Path(path)


def read_safetensors_metadata(path: Path | str, *, key: str, what: str) -> dict[str, Any]:
    """The JSON object stored under `key` in a safetensors header; no tensor is read.

    Every failure is a CheckpointError naming the file: missing, not safetensors, another kind
    of safetensors file (no `key`), or metadata that is not a JSON object.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file; expected {what}")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
    except Exception as error:  # SafetensorError, OSError, header parse errors
        raise CheckpointError(
            f"{path}: not {what}; it is not a readable safetensors file ({type(error).__name__}: {error})"
        ) from error
    if key not in header:
        raise CheckpointError(f"{path}: a safetensors file, but not {what} (no {key!r} metadata)")
    try:
        value = json.loads(header[key])
    except json.JSONDecodeError as error:
        raise CheckpointError(
            f"{path}: its {key!r} metadata is not valid JSON ({error}); the file is damaged or not {what}"
        ) from error
    if not isinstance(value, dict):
        raise CheckpointError(f"{path}: its {key!r} metadata is not a JSON object; the file is damaged or not {what}")
    return value


# ----- metadata schemas: what a reader needs before it trusts a header -----------------------------
def is_name_list(value: Any) -> bool:
    """A non-empty list of distinct, non-empty strings (class names)."""
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(v, str) and v.strip() for v in value)
        and len(set(value)) == len(value)
    )


def is_positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def is_number_triple(value: Any) -> bool:
    """Three finite numbers (per-channel normalisation)."""
    return (
        isinstance(value, list)
        and len(value) == 3
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    )


def require_metadata(path: Path | str, meta: dict[str, Any], fields: dict[str, tuple[str, Any]], *, what: str) -> None:
    """Check `meta[key]` with each (description, predicate) of `fields`; one CheckpointError naming the
    file and every missing or malformed field, instead of a KeyError/TypeError deep in a loader."""
    problems = []
    for key, (expected, valid) in fields.items():
        if key not in meta:
            problems.append(f"{key} is missing (expected {expected})")
        elif not valid(meta[key]):
            shown = repr(meta[key])
            problems.append(f"{key}={shown[:60] + '…' if len(shown) > 60 else shown} (expected {expected})")
    if problems:
        raise CheckpointError(f"{path}: metadata is damaged or was not written for {what}: " + "; ".join(problems))
