"""The run folder contract, in one place: which files a finished or failed run leaves, and the
names of the numbers inside `metrics.json` that aggregation reads.

A classifier run (scripts/train_classifier.py, an ablation row x seed, a Hydra multirun job)
is a folder. `metrics.json` is written last and atomically, so its presence means the run
finished; `error.json` means it failed; `row.json` names the ablation row and seed. Writers
(classifier.train) and readers (ablation.aggregate) both import these names from here.
"""

from __future__ import annotations

import json
import traceback
from pathlib import Path
from typing import Any

from .io import write_json_atomic
from .summary import GROUPS

METRICS_FILE = "metrics.json"
ERROR_FILE = "error.json"
ROW_FILE = "row.json"
CONFIG_FILE = "config.yaml"

# The headline test numbers every run reports (metrics.json keys) and how tables title them.
HEADLINE = (("accuracy", "accuracy"), ("mean_class_accuracy", "mean class acc."), ("macro_f1", "macro-F1"))
# Tables read tail first: the few-shot classes are what the project is about.
GROUPS_TAIL_FIRST = tuple(reversed(GROUPS))

__all__ = ["CONFIG_FILE", "ERROR_FILE", "GROUPS", "GROUPS_TAIL_FIRST", "HEADLINE", "METRICS_FILE", "ROW_FILE",
           "read_metrics", "record_failure", "write_metrics"]


def write_metrics(run_dir: Path | str, metrics: dict[str, Any]) -> Path:
    """metrics.json, atomically: call it last, its existence marks the run finished."""
    return write_json_atomic(Path(run_dir) / METRICS_FILE, metrics, indent=2)


def read_metrics(run_dir: Path | str) -> dict[str, Any]:
    return json.loads((Path(run_dir) / METRICS_FILE).read_text())


def record_failure(run_dir: Path | str, error: BaseException, *, row: str | None = None, seed: int | None = None) -> Path:
    """error.json for a run that raised, so aggregation reports it as failed instead of missing it."""
    return write_json_atomic(Path(run_dir) / ERROR_FILE, {
        "row": row, "seed": seed, "error": f"{type(error).__name__}: {error}",
        "traceback": "".join(traceback.format_exception(error)),
    })
