"""The run folder contract, in one place: which files a finished or failed run leaves, and the
names of the numbers inside `metrics.json` that aggregation reads.

A classifier run (scripts/train_classifier.py, an ablation row x seed, a Hydra multirun job)
is a folder. `metrics.json` is written last and atomically, so its presence means the run
finished; `error.json` means it failed; `interrupted.json` means a signal (SIGTERM from a
scheduler, Ctrl-C) stopped it and says how to resume; `row.json` names the ablation row and seed.
Writers (classifier.train) and readers (ablation.aggregate) both import these names from here.

Interruption, once for every entry point: `interrupt_signals()` turns SIGTERM and SIGINT into
`RunInterrupted` (a BaseException, so no `except Exception` records it as a failure), raised at once
in the main thread, also inside Lightning's fit (Lightning calls the handler that was there before
its own); the entry point catches it, marks its folders (`record_interruption`), prints the resume
command and exits 143 (SIGTERM) or 130 (SIGINT), so a scheduler never books a preempted job as done.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from ..io import write_json_atomic
from ..summary import GROUPS
from .workers import die_with_parent

METRICS_FILE = "metrics.json"
ERROR_FILE = "error.json"
ROW_FILE = "row.json"
INTERRUPTED_FILE = "interrupted.json"
CONFIG_FILE = "config.yaml"

# The headline test numbers every run reports (metrics.json keys) and how tables title them.
HEADLINE = (("accuracy", "accuracy"), ("mean_class_accuracy", "mean class acc."), ("macro_f1", "macro-F1"))
# Tables read tail first: the few-shot classes are what the project is about.
GROUPS_TAIL_FIRST = tuple(reversed(GROUPS))

__all__ = [
    "CONFIG_FILE",
    "ERROR_FILE",
    "GROUPS",
    "GROUPS_TAIL_FIRST",
    "HEADLINE",
    "INTERRUPTED_FILE",
    "METRICS_FILE",
    "ROW_FILE",
    "RunInterrupted",
    "UnwritableFolderError",
    "check_not_interrupted",
    "check_writable",
    "clear_interruption",
    "command_line",
    "exit_interrupted",
    "interrupt_signals",
    "read_metrics",
    "record_failure",
    "record_interruption",
    "replace_argument",
    "write_metrics",
]


def write_metrics(run_dir: Path | str, metrics: dict[str, Any]) -> Path:
    """metrics.json, atomically: call it last, its existence marks the run finished."""
    return write_json_atomic(Path(run_dir) / METRICS_FILE, metrics, indent=2)


def read_metrics(run_dir: Path | str) -> dict[str, Any]:
    return json.loads((Path(run_dir) / METRICS_FILE).read_text())


def record_failure(
    run_dir: Path | str, error: BaseException, *, row: str | None = None, seed: int | None = None
) -> Path:
    """error.json for a run that raised, so aggregation reports it as failed instead of missing it."""
    return write_json_atomic(
        Path(run_dir) / ERROR_FILE,
        {
            "row": row,
            "seed": seed,
            "error": f"{type(error).__name__}: {error}",
            "traceback": "".join(traceback.format_exception(error)),
        },
    )


class RunInterrupted(BaseException):
    """SIGTERM or SIGINT arrived: the run stops now. A BaseException, like KeyboardInterrupt, so the
    ablation's per-run `except Exception` does not book it as a failed run and go on to the next one."""

    def __init__(self, signum: int) -> None:
        self.signum = int(signum)
        self.signal_name = signal.Signals(self.signum).name
        super().__init__(f"interrupted by {self.signal_name}")

    @property
    def exit_status(self) -> int:
        """The shell's convention for a process ended by a signal: 128 + its number (143, 130)."""
        return 128 + self.signum


def _raise_interrupted(signum: int, _frame: Any) -> None:
    raise RunInterrupted(signum)


def command_line(argv: list[str] | None = None) -> str:
    """This process's command (or `argv` in its place), as a user can paste it back into a shell."""
    return shlex.join([sys.executable or "python", *(sys.argv if argv is None else argv)])


def replace_argument(key: str, value: str | Path) -> list[str]:
    """sys.argv with a `key=value` override set (Hydra refuses the same key given twice)."""
    kept = [arg for arg in sys.argv if not arg.lstrip("+").startswith(f"{key}=")]
    return [*kept, f"{key}={value}"]


@contextmanager
def interrupt_signals() -> Iterator[None]:
    """Within the block, SIGTERM and SIGINT raise RunInterrupted in the main thread (previous handlers are
    restored afterwards). A DDP rank that Lightning started (LOCAL_RANK > 0) also dies with its parent, so a
    signal that ends rank 0 never leaves the other ranks waiting in a collective (a SIGTERM to rank 0 once left both ranks hung for minutes)."""
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    for signum in previous:
        signal.signal(signum, _raise_interrupted)
    if os.environ.get("LOCAL_RANK", "0") not in ("", "0"):
        die_with_parent()
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def check_not_interrupted(trainer: Any) -> None:
    """After `trainer.fit`: Lightning's own SIGTERM handling stops "gracefully" and returns as if training
    had finished (and its SIGTERMException exits 0); a trainer that saw SIGTERM must not go on to test and
    write metrics.json as a finished run."""
    if getattr(trainer, "received_sigterm", False):
        raise RunInterrupted(signal.SIGTERM)


def record_interruption(run_dir: Path | str, interrupted: RunInterrupted, *, resume: str, note: str = "") -> Path:
    """interrupted.json: which signal stopped the run, when, and the command that resumes it."""
    return write_json_atomic(
        Path(run_dir) / INTERRUPTED_FILE,
        {
            "signal": interrupted.signal_name,
            "exit_status": interrupted.exit_status,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "resume": resume,
            "note": note,
        },
        indent=2,
    )


def clear_interruption(run_dir: Path | str) -> None:
    """A run (re)starting in its folder is no longer the interrupted one."""
    (Path(run_dir) / INTERRUPTED_FILE).unlink(missing_ok=True)


def exit_interrupted(
    interrupted: RunInterrupted, *, run_dir: Path | str, resume: str, note: str = "", mark: bool = True
) -> NoReturn:
    """Mark `run_dir` interrupted, say so with the resume command on stderr, and exit 143 (SIGTERM) or 130 (SIGINT).
    `mark=False` (a DDP rank other than 0): exit with the same status, silently; rank 0 speaks for the run."""
    run_dir = Path(run_dir)
    if not mark:
        sys.exit(interrupted.exit_status)
    if run_dir.is_dir():
        record_interruption(run_dir, interrupted, resume=resume, note=note)
    marked = (
        f"{run_dir} is marked interrupted ({INTERRUPTED_FILE}), not finished"
        if run_dir.is_dir()
        else f"{run_dir} is not finished"
    )
    extra = f" {note}" if note else ""
    print(
        f"\nINTERRUPTED by {interrupted.signal_name}: {marked}.{extra}\nTo resume: {resume}",
        file=sys.stderr,
        flush=True,
    )
    sys.exit(interrupted.exit_status)


class UnwritableFolderError(PermissionError):
    """An output folder this process cannot write to (read-only, or not a folder): one line, exit status 2."""


def check_writable(folder: Path | str, *, what: str = "the output folder") -> None:
    """Refuse an output folder that cannot be written before any work, naming it. The nearest existing folder
    decides; one whose mode grants nobody write access counts as read-only even for root (who could write)."""
    folder = Path(folder).absolute()
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UnwritableFolderError(f"cannot write to {folder}: {existing} is not a folder ({what})")
    if not os.access(existing, os.W_OK | os.X_OK) or not existing.stat().st_mode & 0o222:
        raise UnwritableFolderError(f"cannot write to {folder}: {existing} is read-only ({what})")
