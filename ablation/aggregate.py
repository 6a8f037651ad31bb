"""Collect finished, failed and diverged runs from any folder and summarise them per row.

A run is a folder with `metrics.json` (written by classifier.train.run_training) or
`error.json` (written when a run fails); the names live in `faces.runkit.runs`. Both `scripts/ablate.py` folders and Hydra multirun
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
from faces.runkit.runs import ERROR_FILE, GROUPS_TAIL_FIRST, HEADLINE, METRICS_FILE, ROW_FILE, read_metrics


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
        # `synthetic` names its loss (balance.loss=...); the other generated-data strategies are named themselves.
        return f"{name}[{strategy}]" + ("" if loss in (None, "ce", "none") or name != "synthetic" else f"+{loss}")
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
            records.append(
                RunRecord(
                    row=row_info.get("row") or row_label(metrics),
                    seed=row_info.get("seed", metrics.get("seed")),
                    path=run_dir,
                    status=status,
                    metrics=metrics,
                    error="non-finite test metrics (training diverged)" if status == "diverged" else "",
                )
            )
        else:
            error = json.loads((run_dir / ERROR_FILE).read_text())
            row = row_info.get("row") or error.get("row") or _row_from_hydra_config(run_dir) or run_dir.name
            message = str(error.get("error", "unknown error"))
            # A generated set whose filter accepted nothing is a finding about the generator, not a crash.
            status = "no_samples" if message.startswith(EmptyGeneratedSetError.__name__) else "failed"
            records.append(
                RunRecord(
                    row=row, seed=row_info.get("seed", error.get("seed")), path=run_dir, status=status, error=message
                )
            )
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


def summarise(
    records: Sequence[RunRecord], *, class_names: Sequence[str], row_order: Sequence[str] | None = None
) -> list[RowSummary]:
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
        summaries.append(
            RowSummary(
                row=row,
                runs=len(rows[row]),
                ok=len(ok),
                columns=columns,
                collapsed=sum(r.collapsed for r in ok),
                no_samples=sum(r.status == "no_samples" for r in rows[row]),
            )
        )
    return summaries


def column_titles(class_names: Sequence[str]) -> list[tuple[str, str]]:
    return [
        *HEADLINE,
        *((f"{g}_acc", f"{g} acc.") for g in GROUPS_TAIL_FIRST),
        *((f"recall_{n}", f"{n} recall") for n in class_names),
    ]


def runs_csv(records: Sequence[RunRecord], *, class_names: Sequence[str]) -> str:
    """One line per run (finished or not) with every headline number and per-class recall."""
    buffer = io.StringIO()
    titles = column_titles(class_names)
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["row", "seed", "status", *(key for key, _ in titles), "collapsed", "error", "path"])
    for r in records:
        values = (
            [r.value(k) for k, _ in HEADLINE]
            + [r.group(g) for g in GROUPS_TAIL_FIRST]
            + [r.recall(n) for n in class_names]
        )
        writer.writerow(
            [
                r.row,
                "" if r.seed is None else r.seed,
                r.status,
                *("" if not math.isfinite(v) else f"{v:.6f}" for v in values),
                int(r.collapsed),
                r.error,
                str(r.path),
            ]
        )
    return buffer.getvalue()


@dataclass(frozen=True)
class TableRow:
    """One rendered table row: the row name, 'finished/total' runs, and (text, is_best) per column."""

    row: str
    runs: str
    cells: list[tuple[str, bool]]


def table_rows(
    summaries: Sequence[RowSummary], *, class_names: Sequence[str], percent: bool = True
) -> tuple[list[str], list[TableRow]]:
    """(column titles, rows): mean ± std per column, the best mean per column marked; one source for
    the markdown and the HTML tables."""
    titles = column_titles(class_names)
    scale = 100.0 if percent else 1.0
    # A row whose every run collapsed is not a result: it shows "collapsed" and cannot be best.
    best = {
        key: max(
            (s.columns[key][0] for s in summaries if math.isfinite(s.columns[key][0]) and not s.all_collapsed),
            default=math.nan,
        )
        for key, _ in titles
    }
    rows = []
    for s in summaries:
        cells = []
        if s.ok == 0 and s.no_samples:
            rows.append(
                TableRow(
                    row=s.row,
                    runs=f"0/{s.runs} no samples passed the filter",
                    cells=[("no samples", False)] * len(titles),
                )
            )
            continue
        if s.all_collapsed:
            rows.append(
                TableRow(row=s.row, runs=f"{s.ok}/{s.runs} all collapsed ⚠", cells=[("collapsed", False)] * len(titles))
            )
            continue
        for key, _ in titles:
            mean, std = s.columns[key]
            if not math.isfinite(mean):
                cells.append(("–", False))
                continue
            # One finished run has no spread to report: show the mean alone, not a fake "± 0.0".
            text = f"{mean * scale:.1f} ± {std * scale:.1f}" if s.ok > 1 else f"{mean * scale:.1f}"
            cells.append((text, math.isclose(mean, best[key])))
        runs = (
            f"{s.ok}/{s.runs}"
            + (f" ({s.collapsed} collapsed)" if s.collapsed else "")
            + (" ⚠" if s.ok < s.runs or s.collapsed else "")
        )
        rows.append(TableRow(row=s.row, runs=runs, cells=cells))
    return ["row", "runs ok", *(title for _, title in titles)], rows


def markdown_grid(header: Sequence[str], rows: Sequence[Sequence[tuple[str, bool]]]) -> str:
    """A Markdown table; a cell is (text, bold)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(f"**{text}**" if bold else text for text, bold in cells) + " |" for cells in rows]
    return "\n".join(lines)


def markdown_table(summaries: Sequence[RowSummary], *, class_names: Sequence[str], percent: bool = True) -> str:
    """mean ± std per column, best mean per column in bold; rows with failures say so."""
    header, rows = table_rows(summaries, class_names=class_names, percent=percent)
    return markdown_grid(header, [[(r.row, False), (r.runs, False), *r.cells] for r in rows])


# ----- paired comparisons over seeds ----------------------------------------------------------------
# Two-sided 95 % quantiles of Student's t, t_{0.975, df}, for df = 1..30 (beyond: a Cornish-Fisher expansion).
_T975 = (
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
    2.042,
)
# The columns a comparison reports: mean class accuracy and few-class recall (mean recall of the few classes).
PAIRED_METRICS = (("mean_class_accuracy", "mean class acc."), ("few_acc", "few-class recall"))
PAIRED_METHOD = (
    "paired t-interval: the rows share seeds, so each seed gives one difference (row − baseline); "
    "mean difference ± t(0.975, n−1) · sd / √n over the n seeds both rows finished"
)


def t_quantile_975(df: int) -> float:
    if df < 1:
        raise ValueError(f"a t-interval needs at least 2 paired values (df={df})")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


@dataclass(frozen=True)
class PairedDifference:
    """row − baseline on one metric, paired by seed: mean and 95 % t-interval (nan with fewer than 2 seeds)."""

    row: str
    baseline: str
    metric: str
    seeds: int
    mean: float
    low: float
    high: float

    @property
    def verdict(self) -> str:
        """'beats' / 'worse' only when the interval excludes 0."""
        if self.seeds < 2 or not math.isfinite(self.low):
            return "too few seeds"
        return "beats" if self.low > 0 else "worse" if self.high < 0 else "no difference shown"


def paired_difference(row: dict[int, float], baseline: dict[int, float]) -> tuple[int, float, float, float]:
    """(seeds, mean, low, high) of row[s] − baseline[s] over the seeds where both are finite."""
    seeds = sorted(s for s in set(row) & set(baseline) if math.isfinite(row[s]) and math.isfinite(baseline[s]))
    d = np.array([row[s] - baseline[s] for s in seeds], dtype=float)
    if d.size == 0:
        return 0, math.nan, math.nan, math.nan
    if d.size < 2:
        return 1, float(d[0]), math.nan, math.nan
    half = t_quantile_975(d.size - 1) * float(d.std(ddof=1)) / math.sqrt(d.size)
    return int(d.size), float(d.mean()), float(d.mean()) - half, float(d.mean()) + half


def is_cas(record: RunRecord) -> bool:
    """A CAS run (trained on generated images only for the filled classes): an evaluation figure of the
    generator, shown beside fidelity, never a row of the comparison."""
    return bool((record.metrics.get("balance") or {}).get("generated_replaces_real"))


def is_loss_based(record: RunRecord) -> bool:
    """A row that re-balances through its loss alone: real data only, uniform sampling, a loss other than CE."""
    balance = record.metrics.get("balance") or {}
    return (
        not balance.get("synthetic")
        and balance.get("sampler", "none") == "none"
        and balance.get("loss", "ce") not in ("ce", "none")
    )


def _per_seed(records: Sequence[RunRecord], row: str, metric: str) -> dict[int, float]:
    value = (lambda r: r.group(metric[: -len("_acc")])) if metric.endswith("_acc") else (lambda r: r.value(metric))
    return {int(r.seed): value(r) for r in records if r.row == row and r.status == "ok" and r.seed is not None}


def comparison_baselines(records: Sequence[RunRecord], summaries: Sequence[RowSummary]) -> list[str]:
    """`oversample` and the loss-based row with the best mean class accuracy, where they finished runs."""
    finished = {r.row for r in records if r.status == "ok"}
    loss_rows = {r.row for r in records if r.status == "ok" and is_loss_based(r)}
    ranked = [s for s in summaries if s.row in loss_rows and math.isfinite(s.columns["mean_class_accuracy"][0])]
    best = max(ranked, key=lambda s: s.columns["mean_class_accuracy"][0]).row if ranked else None
    return [b for b in ("oversample", best) if b is not None and b in finished]


def paired_comparisons(records: Sequence[RunRecord], summaries: Sequence[RowSummary]) -> list[PairedDifference]:
    """Every row against each baseline, on each of PAIRED_METRICS (CAS runs are not rows)."""
    records = [r for r in records if not is_cas(r)]
    rows = [s.row for s in summaries if any(r.row == s.row for r in records)]
    out = []
    for baseline in comparison_baselines(records, summaries):
        for row in rows:
            if row == baseline:
                continue
            for metric, _ in PAIRED_METRICS:
                n, mean, low, high = paired_difference(
                    _per_seed(records, row, metric), _per_seed(records, baseline, metric)
                )
                out.append(
                    PairedDifference(row=row, baseline=baseline, metric=metric, seeds=n, mean=mean, low=low, high=high)
                )
    return out


def paired_rows(comparisons: Sequence[PairedDifference], *, percent: bool = True) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the comparison table: one line per (row, baseline), a column pair per metric."""
    scale = 100.0 if percent else 1.0
    header = [
        "row",
        "vs",
        "seeds",
        *(f"Δ {title} [95 % CI]" for _, title in PAIRED_METRICS),
        *(f"verdict: {title}" for _, title in PAIRED_METRICS),
    ]
    lines: dict[tuple[str, str], dict[str, PairedDifference]] = {}
    for c in comparisons:
        lines.setdefault((c.row, c.baseline), {})[c.metric] = c
    rows = []
    for (row, baseline), by_metric in lines.items():
        cells = []
        for metric, _ in PAIRED_METRICS:
            c = by_metric[metric]
            interval = f" [{c.low * scale:+.1f}, {c.high * scale:+.1f}]" if math.isfinite(c.low) else ""
            cells.append("–" if not math.isfinite(c.mean) else f"{c.mean * scale:+.1f}{interval}")
        seeds = max(c.seeds for c in by_metric.values())
        rows.append([row, baseline, str(seeds), *cells, *(by_metric[m].verdict for m, _ in PAIRED_METRICS)])
    return header, rows
