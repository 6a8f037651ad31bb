"""Worker processes that die with their parent: `spawn_pool(n)` for CPU-bound side work (PNG
encoding, rendering the embedded faces).

Spawned, not forked: the parent holds torch/CUDA/OpenMP threads, which fork would copy
mid-state. A ProcessPoolExecutor's workers outlive a parent that is killed (SIGKILL, OOM
killer): they wait forever on a queue whose write end they hold themselves. Each worker here
therefore (1) asks Linux to SIGKILL it when its parent dies (PR_SET_PDEATHSIG), and (2) on any
OS, watches `os.getppid()` from a daemon thread and exits when it changes.

The task functions must live in modules that do not import torch (`faces/__init__` imports
its submodules lazily for this reason), so a worker starts in a fraction of a second.

PR_SET_PDEATHSIG fires when the *thread* that started the worker exits; the executor starts
workers from the thread that calls `submit`, so submit from a thread that outlives the pool
(the main thread in all our callers).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor

_PR_SET_PDEATHSIG = 1
_POLL_S = 0.5


def spawn_pool(workers: int) -> ProcessPoolExecutor:
    """A ProcessPoolExecutor of `workers` spawned processes that exit when this process dies."""
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_die_with_parent,
        initargs=(os.getpid(),),
    )


def die_with_parent() -> None:
    """Make this process exit when its parent does (e.g. a DDP rank whose rank 0 was killed)."""
    _die_with_parent(os.getppid())


def _die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the watchdog below still applies
    if os.getppid() != parent_pid:  # the parent died before the line above took effect
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), name="parent-watchdog", daemon=True).start()


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(_POLL_S)
    os._exit(1)


def worker_report() -> dict:
    """What a worker looks like from inside (for tests and debugging): pid, parent, heavy imports."""
    return {"pid": os.getpid(), "parent": os.getppid(), "torch_imported": "torch" in sys.modules}
