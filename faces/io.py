"""Atomic file writes: a temp file beside the target, then one rename.

A run killed mid-write leaves the previous file (or none), never a truncated one. That is what
lets resumable stages treat "the file exists" as "the step finished".
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


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
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path | str, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json_atomic(path: Path | str, data: Any, **dump_kwargs: Any) -> Path:
    return write_text_atomic(path, json.dumps(data, **dump_kwargs))
