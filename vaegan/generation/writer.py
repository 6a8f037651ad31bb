"""Atomic PNG writing in worker processes, so the device is not waiting on PNG encoding.

The workers (faces.runkit.workers.spawn_pool) are spawned, import only numpy, PIL and faces.io (no
torch), and die with the parent: a killed augment.py leaves no orphan processes behind.
"""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path

import numpy as np

from faces.io import PNG_COMPRESS_LEVEL, write_png_atomic, write_pngs
from faces.runkit.workers import spawn_pool

__all__ = ["PNG_COMPRESS_LEVEL", "PngWriterPool", "write_png_atomic"]


class PngWriterPool:
    """`submit(paths, images)` returns futures; workers=0 writes inline (tests, tiny runs)."""

    def __init__(self, *, workers: int, chunk: int = 64) -> None:
        if workers < 0:
            raise ValueError(f"workers={workers} must be >= 0 (0 writes in this process)")
        self.workers = workers
        self.chunk = chunk
        self._pool = spawn_pool(workers) if workers > 0 else None

    @property
    def executor(self):
        """The worker pool (None when writing inline)."""
        return self._pool

    def submit(self, paths: list[Path], images: np.ndarray) -> list[Future]:
        items = [(str(p), img) for p, img in zip(paths, images)]
        if self._pool is None:
            future: Future = Future()
            future.set_result(write_pngs(items))
            return [future]
        return [self._pool.submit(write_pngs, items[i : i + self.chunk]) for i in range(0, len(items), self.chunk)]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=False)

    def __enter__(self) -> PngWriterPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
