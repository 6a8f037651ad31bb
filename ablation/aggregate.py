"""Collect finished, failed and diverged runs from any folder and summarise them per row.

A run is a folder with `metrics.json` (written by classifier.train.run_training) or
`error.json` (written when a run fails); the names live in `faces.runs`. Both `scripts/ablate.py` folders and Hydra multirun
folders (`scripts/train_classifier.py -m ...`) have that shape, so one aggregation serves both.
Failed and diverged runs are kept as rows with their error; means and standard deviations
use only the runs that finished, and the table says how many that was.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from faces.errors import EmptyGeneratedSetError
from faces.generated import read_generated_settings
from faces.runs import ERROR_FILE, GROUPS_TAIL_FIRST, HEADLINE, METRICS_FILE, ROW_FILE, read_metrics



@dataclass
class RunRecord:
    """One classifier run (a row x seed), finished or not."""

    row: str
    seed: int | None
    path: Path
    status: str  # "ok" | "failed" | "diverged" | "no_samples" (its generated set was empty)
    error: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)

    def value(self, key: str) -> float:
        return float(self.metrics.get(key, math.nan))

    def recall(self, class_name: str) -> float:
        return float(self.metrics.get("per_class", {}).get(class_name, {}).get("recall", math.nan))

    @property
    def collapsed(self) -> bool:
        """The run finished but learned nothing (one predicted class, or validation at chance): see classifier/budget.py."""
        return bool((self.metrics.get("collapse") or {}).get("collapsed"))

    def group(self, name: str) -> float:
        value = (self.metrics.get("group_mean_class_accuracy") or {}).get(name)
        return math.nan if value is None else float(value)


def row_label(metrics: dict[str, Any]) -> str:
    """A readable row name from a run's own record (used for multirun folders without row.json)."""
    balance = metrics.get("balance") or {}
    name = str(balance.get("name", "?"))
    if balance.get("synthetic") or name == "synthetic":
        generated = balance.get("generated_dir")
        settings = read_generated_settings(generated) if generated else None
        strategy = (settings or {}).get("strategy", "?")
        loss = balance.get("loss", "ce")
        return f"synthetic[{strategy}]" + ("" if loss in (None, "ce", "none") else f"+{loss}")
    return name


def _row_from_hydra_config(run_dir: Path) -> str | None:
    """A failed multirun job has no metrics.json; its row comes from the config Hydra saved."""
    saved = run_dir / ".hydra" / "config.yaml"
    if not saved.is_file():
        return None
    from omegaconf import OmegaConf

    balance = OmegaConf.to_container(OmegaConf.load(saved).get("balance") or {}, resolve=False)
    return row_label({"balance": balance}) if balance else None


def _diverged(metrics: dict[str, Any]) -> bool:
    return any(not math.isfinite(float(metrics.get(k, math.nan))) for k, _ in HEADLINE)


def collect_runs(root: Path | str) -> list[RunRecord]:
    """Every run folder under `root` (any depth), sorted by row then seed."""
    root = Path(root)
    records: list[RunRecord] = []
    run_dirs = sorted({p.parent for p in root.rglob(METRICS_FILE)} | {p.parent for p in root.rglob(ERROR_FILE)})
    for run_dir in run_dirs:
        if any(parent in run_dirs for parent in run_dir.parents):
            continue  # a nested stage (e.g. a cascade's first stage) belongs to its run
        row_info = json.loads((run_dir / ROW_FILE).read_text()) if (run_dir / ROW_FILE).is_file() else {}
        if (run_dir / METRICS_FILE).is_file():
            metrics = read_metrics(run_dir)
            status = "diverged" if _diverged(metrics) else "ok"
            records.append(RunRecord(
                row=row_info.get("row") or row_label(metrics), seed=row_info.get("seed", metrics.get("seed")),
                path=run_dir, status=status, metrics=metrics,
                error="non-finite test metrics (training diverged)" if status == "diverged" else "",
            ))
        else:
            error = json.loads((run_dir / ERROR_FILE).read_text())
            row = row_info.get("row") or error.get("row") or _row_from_hydra_config(run_dir) or run_dir.name
            message = str(error.get("error", "unknown error"))
            # A generated set whose filter accepted nothing is a finding about the generator, not a crash.
            status = "no_samples" if message.startswith(EmptyGeneratedSetError.__name__) else "failed"
            records.append(RunRecord(row=row, seed=row_info.get("seed", error.get("seed")), path=run_dir, status=status, error=message))
    return sorted(records, key=lambda r: (r.row, -1 if r.seed is None else r.seed))


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single run) of the finite values."""
    finite = np.array([v for v in values if math.isfinite(v)], dtype=float)
    if finite.size == 0:
        return math.nan, math.nan
    return float(finite.mean()), float(finite.std(ddof=1)) if finite.size > 1 else 0.0


@dataclass(frozen=True)
class RowSummary:
    row: str
    runs: int
    ok: int
    columns: dict[str, tuple[float, float]]  # column name -> (mean, std) over finished runs
    collapsed: int = 0  # finished runs flagged as collapsed (still in the means: dropping them would flatter the row)
    no_samples: int = 0  # runs with nothing to train on: the filter accepted no generated sample

    @property
    def all_collapsed(self) -> bool:
        return self.ok > 0 and self.collapsed == self.ok


def summarise(records: Sequence[RunRecord], *, class_names: Sequence[str], row_order: Sequence[str] | None = None) -> list[RowSummary]:
    rows: dict[str, list[RunRecord]] = {}
    for record in records:
        rows.setdefault(record.row, []).append(record)
    order = [r for r in (row_order or []) if r in rows] + sorted(r for r in rows if r not in (row_order or []))
    summaries = []
    for row in order:
        ok = [r for r in rows[row] if r.status == "ok"]
        columns: dict[str, tuple[float, float]] = {}
        for key, _ in HEADLINE:
            columns[key] = mean_std([r.value(key) for r in ok])
        for group in GROUPS_TAIL_FIRST:
            columns[f"{group}_acc"] = mean_std([r.group(group) for r in ok])
        for name in class_names:
            columns[f"recall_{name}"] = mean_std([r.recall(name) for r in ok])
        summaries.append(RowSummary(row=row, runs=len(rows[row]), ok=len(ok), columns=columns, collapsed=sum(r.collapsed for r in ok),
                                    no_samples=sum(r.status == "no_samples" for r in rows[row])))
    return summaries


def column_titles(class_names: Sequence[str]) -> list[tuple[str, str]]:
    return [*HEADLINE, *((f"{g}_acc", f"{g} acc.") for g in GROUPS_TAIL_FIRST), *((f"recall_{n}", f"{n} recall") for n in class_names)]


def runs_csv(records: Sequence[RunRecord], *, class_names: Sequence[str]) -> str:
    """One line per run (finished or not) with every headline number and per-class recall."""
    buffer = io.StringIO()
    titles = column_titles(class_names)
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["row", "seed", "status", *(key for key, _ in titles), "collapsed", "error", "path"])
    for r in records:
        values = [r.value(k) for k, _ in HEADLINE] + [r.group(g) for g in GROUPS_TAIL_FIRST] + [r.recall(n) for n in class_names]
        writer.writerow([r.row, "" if r.seed is None else r.seed, r.status,
                         *("" if not math.isfinite(v) else f"{v:.6f}" for v in values), int(r.collapsed), r.error, str(r.path)])
    return buffer.getvalue()


@dataclass(frozen=True)
class TableRow:
    """One rendered table row: the row name, 'finished/total' runs, and (text, is_best) per column."""

    row: str
    runs: str
    cells: list[tuple[str, bool]]


def table_rows(summaries: Sequence[RowSummary], *, class_names: Sequence[str], percent: bool = True) -> tuple[list[str], list[TableRow]]:
    """(column titles, rows): mean ± std per column, the best mean per column marked; one source for
    the markdown and the HTML tables."""
    titles = column_titles(class_names)
    scale = 100.0 if percent else 1.0
    # A row whose every run collapsed is not a result: it shows "collapsed" and cannot be best.
    best = {key: max((s.columns[key][0] for s in summaries if math.isfinite(s.columns[key][0]) and not s.all_collapsed), default=math.nan)
            for key, _ in titles}
    rows = []
    for s in summaries:
        cells = []
        if s.ok == 0 and s.no_samples:
            rows.append(TableRow(row=s.row, runs=f"0/{s.runs} no samples passed the filter", cells=[("no samples", False)] * len(titles)))
            continue
        if s.all_collapsed:
            rows.append(TableRow(row=s.row, runs=f"{s.ok}/{s.runs} all collapsed ⚠", cells=[("collapsed", False)] * len(titles)))
            continue
        for key, _ in titles:
            mean, std = s.columns[key]
            if not math.isfinite(mean):
                cells.append(("–", False))
                continue
            # One finished run has no spread to report: show the mean alone, not a fake "± 0.0".
            text = f"{mean * scale:.1f} ± {std * scale:.1f}" if s.ok > 1 else f"{mean * scale:.1f}"
            cells.append((text, math.isclose(mean, best[key])))
        runs = f"{s.ok}/{s.runs}" + (f" ({s.collapsed} collapsed)" if s.collapsed else "") + (" ⚠" if s.ok < s.runs or s.collapsed else "")
        rows.append(TableRow(row=s.row, runs=runs, cells=cells))
    return ["row", "runs ok", *(title for _, title in titles)], rows


def markdown_table(summaries: Sequence[RowSummary], *, class_names: Sequence[str], percent: bool = True) -> str:
    """mean ± std per column, best mean per column in bold; rows with failures say so."""
    header, rows = table_rows(summaries, class_names=class_names, percent=percent)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [f"**{text}**" if bold else text for text, bold in r.cells]
        lines.append(f"| {r.row} | {r.runs} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
