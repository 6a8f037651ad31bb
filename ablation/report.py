"""ablation.csv, ablation.md, plots and report.html for a folder of runs."""

from __future__ import annotations

import base64
import html
import json
import math
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from faces.generated import read_generated_settings
from faces.plotting import pyplot
from faces.runs import CONFIG_FILE

from .generation_report import REPORT_FILE as GENERATION_REPORT_FILE
from .generation_report import format_figure

from .aggregate import RowSummary, RunRecord, collect_runs, markdown_table, runs_csv, summarise, table_rows

CSV_FILE = "ablation.csv"
MARKDOWN_FILE = "ablation.md"
HTML_FILE = "report.html"
RECALL_PLOT = "per_class_recall.png"
CONFUSION_PLOT = "confusion_matrices.png"


def plot_recall_bars(summaries: Sequence[RowSummary], *, class_names: Sequence[str], path: Path) -> Path:
    """Per-class recall, one bar per row (mean over seeds, std as error bars)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(8, 1.6 * len(class_names)), 4.8), dpi=110)
    width = 0.85 / max(1, len(summaries))
    cmap = plt.get_cmap("tab20")
    for i, s in enumerate(summaries):
        means = [s.columns[f"recall_{n}"][0] for n in class_names]
        stds = [s.columns[f"recall_{n}"][1] for n in class_names]
        xs = [c + (i - (len(summaries) - 1) / 2) * width for c in range(len(class_names))]
        ax.bar(xs, [0 if math.isnan(m) else m for m in means], width=width, yerr=[0 if math.isnan(v) else v for v in stds],
               label=s.row, color=cmap(i % 20), capsize=1.5, error_kw={"elinewidth": 0.6})
    ax.set_xticks(range(len(class_names)), class_names)
    ax.set_ylabel("test recall")
    ax.set_ylim(0, 1.05)
    ax.set_title("Per-class test recall by strategy (mean ± std over seeds)")
    ax.legend(fontsize=7, ncol=min(4, len(summaries)), loc="upper center", bbox_to_anchor=(0.5, -0.1))
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def mean_confusion(records: Sequence[RunRecord]) -> np.ndarray | None:
    """Row-normalised confusion matrix averaged over a row's finished runs."""
    mats = []
    for r in records:
        if r.status == "ok" and r.metrics.get("confusion_matrix"):
            m = np.asarray(r.metrics["confusion_matrix"], dtype=float)
            mats.append(m / np.clip(m.sum(axis=1, keepdims=True), 1, None))
    return np.mean(mats, axis=0) if mats else None


def plot_confusions(records: Sequence[RunRecord], *, rows: Sequence[str], class_names: Sequence[str], path: Path) -> Path:
    plt = pyplot()
    cols = min(4, max(1, len(rows)))
    nrows = math.ceil(len(rows) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.3 * cols, 3.2 * nrows), dpi=110, squeeze=False)
    short = [n[:3] for n in class_names]
    for ax in axes.flat:
        ax.axis("off")
    for ax, row in zip(axes.flat, rows):
        matrix = mean_confusion([r for r in records if r.row == row])
        ax.axis("on")
        ax.set_title(row, fontsize=9)
        if matrix is None:
            ax.text(0.5, 0.5, "no finished run", ha="center", va="center", transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        ax.imshow(matrix, vmin=0, vmax=1, cmap="Blues")
        for i in range(len(class_names)):
            for j in range(len(class_names)):
                ax.text(j, i, f"{matrix[i, j]:.2f}"[1:] if matrix[i, j] < 1 else "1", ha="center", va="center", fontsize=6,
                        color="white" if matrix[i, j] > 0.5 else "black")
        ax.set_xticks(range(len(class_names)), short, fontsize=7)
        ax.set_yticks(range(len(class_names)), short, fontsize=7)
        ax.set_xlabel("predicted", fontsize=7)
        ax.set_ylabel("true", fontsize=7)
    fig.suptitle("Test confusion matrices (row-normalised, mean over seeds)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _first_ok(records: Sequence[RunRecord]) -> RunRecord | None:
    return next((r for r in records if r.status == "ok"), None)


def describe_setup(records: Sequence[RunRecord], *, extra: dict[str, Any] | None = None) -> list[str]:
    """The facts a reader needs to trust the table: data, splits, seeds, backbone, weights, synthetic data."""
    first = _first_ok(records)
    seeds = sorted({r.seed for r in records if r.seed is not None})
    lines = []
    if first is not None:
        m = first.metrics
        counts = m.get("counts", {})
        lines += [
            f"dataset: {m.get('dataset')} ({m.get('layout')}), {m.get('image_size')}px images, classifier input {m.get('input_size')}px"
            + (f" ({m['input_size_rule']})" if m.get("input_size_rule") else ""),
            f"splits (real images): fit {sum(counts.get('fit', [])) - counts.get('generated_in_fit', 0) if counts.get('fit') else '?'}"
            f" / val {sum(counts.get('val', []))} / test {sum(counts.get('test', []))} (test is evaluated once per run, after selection on val)",
            f"backbone: {m.get('backbone')}; pretrained weights: {m.get('pretrained')}",
        ]
        budget = m.get("budget")
        if budget:
            lines.append(f"training budget: {budget['epochs']} epochs x {budget['steps_per_epoch']} steps "
                         f"({budget['freeze_epochs']} head-only; train.min_steps raises the epochs of small datasets)")
    lines.append(f"seeds: {', '.join(map(str, seeds)) or '?'}; runs: {len(records)} "
                 f"({sum(r.status == 'ok' for r in records)} finished, {sum(r.status == 'failed' for r in records)} failed, "
                 f"{sum(r.status == 'diverged' for r in records)} diverged)")
    generated = sorted({(r.metrics.get("balance") or {}).get("generated_dir") for r in records if r.status == "ok"} - {None})
    for folder in generated:
        s = read_generated_settings(folder)
        if s is not None:
            filt = f"passed the quality filter (judge {str(s.get('judge_sha256'))[:8]}, min confidence {s.get('min_confidence')})" if s.get("filter") else "NOT filtered (--no-filter)"
            lines.append(f"synthetic set {Path(folder).name}: strategy {s.get('strategy')} a={s.get('strength')}, "
                         f"{s.get('render', 'decoder')} rendering, seed {s.get('seed')}, "
                         f"VAE-GAN {str(s.get('checkpoint_sha256'))[:8]}, {filt}")
    for key, value in (extra or {}).items():
        lines.append(f"{key}: {value}")
    return lines


def _img(path: Path, *, width: str = "100%") -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" style="max-width:{width}" alt="{html.escape(path.name)}">'


def generation_sections(records: Sequence[RunRecord]) -> list[tuple[str, dict[str, Any]]]:
    """(folder name, generation_report.json) for every generated set a finished run trained on."""
    folders = sorted({(r.metrics.get("balance") or {}).get("generated_dir") for r in records if r.status == "ok"} - {None})
    sections = []
    for folder in folders:
        path = Path(folder) / GENERATION_REPORT_FILE
        if path.is_file():
            sections.append((Path(folder).name, json.loads(path.read_text())))
    return sections


def generation_table(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Per minority class: sample sizes and each figure before -> after the filter."""
    header = ["class", "n before", "n after", "judge val recall", "fidelity ratio", "diversity ratio", "near-dup share",
              "closer than real", "precision / recall (after)"]
    rows = []
    before, after = report["before_filter"]["classes"], report["after_filter"]["classes"]
    for name, b in before.items():
        a = after.get(name) or {}
        fid_b, fid_a = (b.get("fidelity") or {}), (a.get("fidelity") or {})
        rows.append([
            name, str(b["n_generated"]), str(a.get("n_generated", 0)), format_figure(fid_b.get("judge_recall_real_val")),
            f"{format_figure(fid_b.get('ratio'))} → {format_figure(fid_a.get('ratio'))}",
            f"{format_figure(b.get('diversity_ratio'))} → {format_figure(a.get('diversity_ratio'))}",
            f"{format_figure(b['novelty']['near_duplicate_share'])} → {format_figure((a.get('novelty') or {}).get('near_duplicate_share'))}",
            f"{format_figure(b['novelty']['closer_than_real_share'])} → {format_figure((a.get('novelty') or {}).get('closer_than_real_share'))}",
            f"{format_figure(a.get('precision'))} / {format_figure(a.get('recall'))}",
        ])
    return header, rows


def html_table(summaries: Sequence[RowSummary], *, class_names: Sequence[str]) -> str:
    """The same table as ablation.md, rendered from the row summaries (best mean per column in bold)."""
    header, rows = table_rows(summaries, class_names=class_names)

    def cell(text: str, *, bold: bool = False, tag: str = "td") -> str:
        text = html.escape(text)
        return f"<{tag}>{'<b>' + text + '</b>' if bold else text}</{tag}>"

    lines = ["<tr>" + "".join(cell(h, tag="th") for h in header) + "</tr>"]
    lines += ["<tr>" + cell(r.row) + cell(r.runs) + "".join(cell(t, bold=b) for t, b in r.cells) + "</tr>" for r in rows]
    return "<table>" + "".join(lines) + "</table>"


def write_report(
    root: Path | str, *, out_dir: Path | str | None = None, row_order: Sequence[str] | None = None,
    title: str = "Ablation", extra_setup: dict[str, Any] | None = None, sample_grids: dict[str, Path] | None = None,
) -> dict[str, Path]:
    """Aggregate every run under `root` and write the report files into `out_dir` (default root)."""
    root = Path(root)
    out = Path(out_dir or root)
    out.mkdir(parents=True, exist_ok=True)
    records = collect_runs(root)
    if not records:
        raise FileNotFoundError(f"{root}: no run folders (metrics.json or error.json) found")
    first = _first_ok(records)
    class_names = list(first.metrics["class_names"]) if first else []
    summaries = summarise(records, class_names=class_names, row_order=row_order)
    table = markdown_table(summaries, class_names=class_names)
    setup = describe_setup(records, extra=extra_setup)
    failures = [r for r in records if r.status != "ok"]
    collapsed = [r for r in records if r.status == "ok" and r.collapsed]

    paths = {"csv": out / CSV_FILE, "markdown": out / MARKDOWN_FILE, "html": out / HTML_FILE}
    paths["csv"].write_text(runs_csv(records, class_names=class_names))
    md = [f"# {title}", "", *(f"- {line}" for line in setup), "",
          "Test-set numbers in %, mean ± sample std over seeds (the mean alone where one run finished); best mean per column in **bold**. "
          "Group columns are mean class accuracy over the few / medium / many classes (by train count).", "", table, ""]
    if failures:
        md += ["## Runs that did not finish", ""] + [f"- {r.row} seed {r.seed}: **{r.status}** — {r.error} ({r.path})" for r in failures] + [""]
    generation = generation_sections(records)
    if generation:  # the per-class tables are in report.html; here one line per set
        md += ["## Generated sets (per-class figures in report.html)", ""]
        for name, report in generation:
            before, after = report["before_filter"]["overall"], report["after_filter"]["overall"]
            judge = report.get("judge") or {}
            md.append(f"- {name} ({report['strategy']} a={report['strength']:g}, {report.get('render', 'decoder')} rendering): "
                      "before → after the filter, mean fidelity ratio "
                      f"{format_figure(before.get('fidelity_ratio_mean'))} → {format_figure(after.get('fidelity_ratio_mean'))}, diversity ratio "
                      f"{format_figure(before.get('diversity_ratio_mean'))} → {format_figure(after.get('diversity_ratio_mean'))}, near-duplicate share "
                      f"{format_figure(before.get('near_duplicate_share_mean'))} → {format_figure(after.get('near_duplicate_share_mean'))} "
                      f"(n {before['n_generated']} → {after['n_generated']}); judge validation mean class accuracy "
                      f"{format_figure(judge.get('validation_mean_class_accuracy'))}"
                      + (f", WEAK on {', '.join(judge['weak_classes'])}" if judge.get("weak_classes") else ""))
        md.append("")
    if collapsed:
        md += ["## Runs that collapsed (finished, but learned nothing: not results)", ""] + [
            f"- {r.row} seed {r.seed}: " + "; ".join((r.metrics.get("collapse") or {}).get("reasons", [])) + f" ({r.path})" for r in collapsed] + [""]
    paths["markdown"].write_text("\n".join(md))

    plots = []
    if class_names:
        rows = [s.row for s in summaries]
        paths["recall_plot"] = plot_recall_bars(summaries, class_names=class_names, path=out / RECALL_PLOT)
        paths["confusion_plot"] = plot_confusions(records, rows=rows, class_names=class_names, path=out / CONFUSION_PLOT)
        plots = [paths["recall_plot"], paths["confusion_plot"]]
    grids = []
    for name, grid in (sample_grids or {}).items():
        if Path(grid).is_file():
            target = out / "samples" / f"{name}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(grid, target)
            grids.append((name, target))

    configs = []
    for s in summaries:
        run = next((r for r in records if r.row == s.row and (r.path / CONFIG_FILE).is_file()), None)
        if run is not None:
            configs.append((s.row, (run.path / CONFIG_FILE).read_text()))
    page = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}td:first-child,th:first-child{text-align:left}"
        "pre{background:#f6f6f6;padding:8px;font-size:12px;overflow:auto}.bad{color:#b00}</style></head><body>",
        f"<h1>{html.escape(title)}</h1><ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in setup) + "</ul>",
        "<p>Test-set numbers in %, mean ± sample std over seeds; best mean per column in bold.</p>",
        html_table(summaries, class_names=class_names),
    ]
    if failures:
        page.append("<h2 class='bad'>Runs that did not finish</h2><ul>" + "".join(
            f"<li class='bad'>{html.escape(f'{r.row} seed {r.seed}: {r.status} — {r.error}')}</li>" for r in failures) + "</ul>")
    if collapsed:
        page.append("<h2 class='bad'>Runs that collapsed (finished, but learned nothing: not results)</h2><ul>" + "".join(
            f"<li class='bad'>{html.escape(r.row)} seed {r.seed}: {html.escape('; '.join((r.metrics.get('collapse') or {}).get('reasons', [])))}</li>"
            for r in collapsed) + "</ul>")
    page += [f"<h2>{html.escape(p.stem.replace('_', ' '))}</h2>{_img(p)}" for p in plots]
    for name, report in generation:
        header, rows = generation_table(report)
        judge = report.get("judge") or {}
        page.append(f"<h2>Generated set {html.escape(name)}: {html.escape(report['strategy'])} a={report['strength']:g}, "
                    f"{html.escape(str(report.get('render', 'decoder')))} rendering</h2>"
                    f"<p>Before → after the filter, in {html.escape(report['feature_network'])} features; near-duplicate: "
                    f"{html.escape(report['near_duplicate_rule'])}. Judge validation mean class accuracy "
                    f"{format_figure(judge.get('validation_mean_class_accuracy'))}"
                    + (f" <b class='bad'>WEAK on {html.escape(', '.join(judge['weak_classes']))}</b>" if judge.get("weak_classes") else "")
                    + "</p><table class='generation'><tr class='generation'>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"
                    + "".join("<tr class='generation'>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows) + "</table>")
    if grids:
        page.append("<h2>Generated samples (each row: a real source image, then its accepted variants)</h2>")
        page += [f"<h3>{html.escape(name)}</h3>{_img(p, width='600px')}" for name, p in grids]
    page.append("<h2>Configurations</h2>")
    page += [f"<details><summary>{html.escape(row)}</summary><pre>{html.escape(text)}</pre></details>" for row, text in configs]
    page.append("</body></html>")
    paths["html"].write_text("\n".join(page))
    return paths
