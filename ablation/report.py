"""ablation.csv, ablation.md, plots and report.html for a folder of runs.

One report model: `build_report` turns the runs into a `Report` (the setup lines and a list of
sections, each a list of blocks: text, bullets, tables, images, details), and `render_markdown` and
`render_html` write that one model in each format. A block marked `only="html"` (plots, per-class
tables, configurations) or `only="markdown"` (one-line summaries of them) appears in one format.
"""

from __future__ import annotations

import base64
import html
import json
import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from faces.generated import read_generated_settings
from faces.runkit.plotting import pyplot
from faces.runkit.runs import CONFIG_FILE

from .aggregate import (
    PAIRED_METHOD,
    PAIRED_METRICS,
    PairedDifference,
    RowSummary,
    RunRecord,
    collect_runs,
    is_cas,
    markdown_grid,
    mean_std,
    paired_comparisons,
    paired_rows,
    runs_csv,
    summarise,
    table_rows,
)
from .generation_report import REPORT_FILE as GENERATION_REPORT_FILE
from .generation_report import blur_tolerance_line, format_figure, judge_overlap_line, read_instead

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
        ax.bar(
            xs,
            [0 if math.isnan(m) else m for m in means],
            width=width,
            yerr=[0 if math.isnan(v) else v for v in stds],
            label=s.row,
            color=cmap(i % 20),
            capsize=1.5,
            error_kw={"elinewidth": 0.6},
        )
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


def plot_confusions(
    records: Sequence[RunRecord], *, rows: Sequence[str], class_names: Sequence[str], path: Path
) -> Path:
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
                ax.text(
                    j,
                    i,
                    f"{matrix[i, j]:.2f}"[1:] if matrix[i, j] < 1 else "1",
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if matrix[i, j] > 0.5 else "black",
                )
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
            lines.append(
                f"training budget: {budget['epochs']} epochs x {budget['steps_per_epoch']} steps "
                f"({budget['freeze_epochs']} head-only; train.min_steps raises the epochs of small datasets)"
            )
    lines.append(
        f"seeds: {', '.join(map(str, seeds)) or '?'}; runs: {len(records)} "
        f"({sum(r.status == 'ok' for r in records)} finished, {sum(r.status == 'failed' for r in records)} failed, "
        f"{sum(r.status == 'diverged' for r in records)} diverged)"
    )
    generated = sorted(
        {(r.metrics.get("balance") or {}).get("generated_dir") for r in records if r.status == "ok"} - {None}
    )
    for folder in generated:
        s = read_generated_settings(folder)
        if s is not None:
            filt = (
                f"passed the quality filter (judge {str(s.get('judge_sha256'))[:8]}, min confidence {s.get('min_confidence')})"
                if s.get("filter")
                else "NOT filtered (--no-filter)"
            )
            lines.append(
                f"synthetic set {Path(folder).name}: strategy {s.get('strategy')} a={s.get('strength')}, "
                f"{s.get('render', 'decoder')} rendering, seed {s.get('seed')}, "
                f"VAE-GAN {str(s.get('checkpoint_sha256'))[:8]}, {filt}"
            )
    for key, value in (extra or {}).items():
        lines.append(f"{key}: {value}")
    return lines


def _img(path: Path, *, width: str = "100%") -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" style="max-width:{width}" alt="{html.escape(path.name)}">'


def generation_sections(records: Sequence[RunRecord]) -> list[tuple[str, dict[str, Any]]]:
    """(folder name, generation_report.json) for every generated set a finished run trained on."""
    folders = sorted(
        {(r.metrics.get("balance") or {}).get("generated_dir") for r in records if r.status == "ok"} - {None}
    )
    sections = []
    for folder in folders:
        path = Path(folder) / GENERATION_REPORT_FILE
        if path.is_file():
            sections.append((Path(folder).name, json.loads(path.read_text())))
    return sections


def generation_table(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Per minority class: sample sizes and each figure before -> after the filter."""
    header = [
        "class",
        "n before",
        "n after",
        "judge val recall",
        "fidelity ratio",
        "diversity ratio",
        "near-dup share",
        "closer than real",
        "precision / recall (after)",
        "real vs generated, 1-NN (after; 0.5 = indistinguishable)",
    ]
    rows = []
    before, after = report["before_filter"]["classes"], report["after_filter"]["classes"]
    for name, b in before.items():
        a = after.get(name) or {}
        fid_b, fid_a = (b.get("fidelity") or {}), (a.get("fidelity") or {})
        rows.append(
            [
                name,
                str(b["n_generated"]),
                str(a.get("n_generated", 0)),
                format_figure(fid_b.get("judge_recall_real_val")),
                f"{format_figure(fid_b.get('ratio'))} → {format_figure(fid_a.get('ratio'))}",
                f"{format_figure(b.get('diversity_ratio'))} → {format_figure(a.get('diversity_ratio'))}",
                f"{format_figure(b['novelty']['near_duplicate_share'])} → {format_figure((a.get('novelty') or {}).get('near_duplicate_share'))}",
                f"{format_figure(b['novelty']['closer_than_real_share'])} → {format_figure((a.get('novelty') or {}).get('closer_than_real_share'))}",
                f"{format_figure(a.get('precision'))} / {format_figure(a.get('recall'))}",
                two_sample_cell(a.get("real_vs_generated")),  # absent in reports written before it existed
            ]
        )
    return header, rows


def two_sample_cell(figure: dict[str, Any] | None) -> str:
    return f"{format_figure(figure['accuracy'])} ({figure['n_per_side']} a side)" if figure else "—"


# ----- the report model: sections as data, rendered to Markdown and HTML ------------------------------
Cell = tuple[str, bool]  # (text, bold)


@dataclass(frozen=True)
class Text:
    text: str
    only: str | None = None  # "markdown" | "html" | None (both)


@dataclass(frozen=True)
class Bullets:
    items: list[str]
    only: str | None = None


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[Cell]]
    css: str = ""  # an HTML class for the table's rows (the main table has none)
    only: str | None = None


@dataclass(frozen=True)
class Image:
    path: Path
    width: str = "100%"
    only: str | None = "html"


@dataclass(frozen=True)
class Details:
    summary: str
    text: str
    only: str | None = "html"


Block = Text | Bullets | Table | Image | Details


@dataclass(frozen=True)
class Section:
    title: str
    blocks: list[Block]
    bad: bool = False  # a warning (failures, collapsed runs): marked in HTML
    level: int = 2
    only: str | None = None


@dataclass
class Report:
    title: str
    setup: list[str]
    sections: list[Section] = field(default_factory=list)


def _shown(item: Section | Block, fmt: str) -> bool:
    return item.only in (None, fmt)


def render_markdown(report: Report) -> str:
    md = [f"# {report.title}", "", *(f"- {line}" for line in report.setup), ""]
    for section in (s for s in report.sections if _shown(s, "markdown")):
        blocks = [b for b in section.blocks if _shown(b, "markdown")]
        if section.blocks and not blocks:  # a section with nothing for this format (a title alone still shows)
            continue
        if section.title:
            md += [f"{'#' * section.level} {section.title}", ""]
        for block in blocks:
            if isinstance(block, Text):
                md.append(block.text)
            elif isinstance(block, Bullets):
                md += [f"- {item}" for item in block.items]
            elif isinstance(block, Table):
                md.append(markdown_grid(block.header, block.rows))
            md.append("")
    return "\n".join(md)


def _html_block(block: Block, *, bad: bool) -> str:
    cls = " class='bad'" if bad else ""
    if isinstance(block, Text):
        return f"<p>{html.escape(block.text).replace('**', '')}</p>"
    if isinstance(block, Bullets):
        return (
            "<ul>" + "".join(f"<li{cls}>{html.escape(item).replace('**', '')}</li>" for item in block.items) + "</ul>"
        )
    if isinstance(block, Table):
        tr = f"<tr class='{block.css}'>" if block.css else "<tr>"
        table = f"<table class='{block.css}'>" if block.css else "<table>"

        def cell(text: str, bold: bool, tag: str = "td") -> str:
            text = html.escape(text)
            return f"<{tag}>{'<b>' + text + '</b>' if bold else text}</{tag}>"

        lines = [tr + "".join(cell(h, False, "th") for h in block.header) + "</tr>"]
        lines += [tr + "".join(cell(t, b) for t, b in row) + "</tr>" for row in block.rows]
        return table + "".join(lines) + "</table>"
    if isinstance(block, Image):
        return _img(block.path, width=block.width)
    return f"<details><summary>{html.escape(block.summary)}</summary><pre>{html.escape(block.text)}</pre></details>"


STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;font-size:13px}"
    "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}td:first-child,th:first-child{text-align:left}"
    "pre{background:#f6f6f6;padding:8px;font-size:12px;overflow:auto}.bad{color:#b00}"
)


def render_html(report: Report) -> str:
    page = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(report.title)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(report.title)}</h1><ul>"
        + "".join(f"<li>{html.escape(line)}</li>" for line in report.setup)
        + "</ul>",
    ]
    for section in (s for s in report.sections if _shown(s, "html")):
        blocks = [b for b in section.blocks if _shown(b, "html")]
        if section.blocks and not blocks:  # a section with nothing for this format (a title alone still shows)
            continue
        if section.title:
            page.append(
                f"<h{section.level}{' class=' + repr('bad') if section.bad else ''}>{html.escape(section.title)}</h{section.level}>"
            )
        page += [_html_block(b, bad=section.bad) for b in blocks]
    page.append("</body></html>")
    return "\n".join(page)


# ----- the sections ----------------------------------------------------------------------------------
ONE_SEED = (
    "One seed per row: single runs differ by a few points between machines of the same kind (the same seed-0 demo "
    "gave `none` 52.2 and 49.5 mean class accuracy on two of them), so no gap in this table is evidence; "
    "`experiment=study` runs 5 seeds with paired intervals."
)


def results_section(summaries: Sequence[RowSummary], *, class_names: Sequence[str], seeds: int) -> Section:
    header, rows = table_rows(summaries, class_names=class_names)
    return Section(
        title="",
        blocks=[
            *([Text(f"**{ONE_SEED}**")] if seeds == 1 else []),
            Text(
                "Test-set numbers in %, mean ± sample std over seeds (the mean alone where one run finished); best mean per column "
                "in **bold**. Group columns are mean class accuracy over the few / medium / many classes (by train count)."
            ),
            Table(header, [[(r.row, False), (r.runs, False), *r.cells] for r in rows]),
        ],
    )


def comparison_section(records: Sequence[RunRecord], summaries: Sequence[RowSummary]) -> Section | None:
    comparisons = paired_comparisons(records, summaries)
    if not comparisons:
        return None
    header, rows = paired_rows(comparisons)
    return Section(
        title="Paired differences against oversample and the best loss-based row",
        blocks=[
            Text(
                f"Differences in percentage points, {PAIRED_METHOD}. A row **beats** its baseline only where the 95 % interval "
                "excludes 0 (and is **worse** where it lies below 0); otherwise no difference is shown at this number of seeds."
            ),
            Table(header, [[(c, c in ("beats", "worse")) for c in row] for row in rows], css="paired", only="html"),
            # Markdown: one line per comparison (ablation.md keeps a single table, the results, whose rows tools read)
            Bullets(
                [
                    f"{row} vs {baseline} ({seeds} seeds): "
                    + "; ".join(
                        f"{title} {diff} **{verdict}**"
                        for (_, title), diff, verdict in zip(PAIRED_METRICS, cells, cells[len(PAIRED_METRICS) :])
                    )
                    for row, baseline, seeds, *cells in rows
                ],
                only="markdown",
            ),
            Text(generated_answer(records, comparisons)),
        ],
    )


def generated_answer(records: Sequence[RunRecord], comparisons: Sequence[PairedDifference]) -> str:
    """The plain answer: which rows on generated data beat every baseline, per metric."""
    generated = {
        r.row
        for r in records
        if r.status == "ok" and (r.metrics.get("balance") or {}).get("synthetic") and not is_cas(r)
    }
    baselines = sorted({c.baseline for c in comparisons})
    answers = []
    for metric, title in PAIRED_METRICS:
        winners = []
        for row in sorted(generated):
            verdicts = [c.verdict for c in comparisons if c.row == row and c.metric == metric]
            if len(verdicts) == len(baselines) and set(verdicts) == {"beats"}:
                winners.append(row)
        answers.append(f"on {title}: {', '.join(winners) if winners else 'none'}")
    return (
        f"Does a row on generated data beat {' and '.join(baselines)} (interval above 0 against each)? "
        + "; ".join(answers)
        + f" (of {len(generated)} generated-data row(s))."
    )


def problem_sections(records: Sequence[RunRecord]) -> list[Section]:
    failures = [r for r in records if r.status != "ok"]
    collapsed = [r for r in records if r.status == "ok" and r.collapsed]
    reasons = {r.path: "; ".join((r.metrics.get("collapse") or {}).get("reasons", [])) for r in collapsed}
    sections = []
    if failures:
        sections.append(
            Section(
                title="Runs that did not finish",
                bad=True,
                blocks=[
                    Bullets([f"{r.row} seed {r.seed}: **{r.status}** — {r.error}" for r in failures], only="html"),
                    Bullets(
                        [f"{r.row} seed {r.seed}: **{r.status}** — {r.error} ({r.path})" for r in failures],
                        only="markdown",
                    ),
                ],
            )
        )
    if collapsed:
        sections.append(
            Section(
                title="Runs that collapsed (finished, but learned nothing: not results)",
                bad=True,
                blocks=[
                    Bullets([f"{r.row} seed {r.seed}: {reasons[r.path]}" for r in collapsed], only="html"),
                    Bullets(
                        [f"{r.row} seed {r.seed}: {reasons[r.path]} ({r.path})" for r in collapsed], only="markdown"
                    ),
                ],
            )
        )
    return sections


def _cas_runs(records: Sequence[RunRecord], folder: str) -> list[RunRecord]:
    return [
        r
        for r in records
        if r.status == "ok"
        and is_cas(r)
        and Path((r.metrics.get("balance") or {}).get("generated_dir") or "").name == folder
    ]


def cas_summary(records: Sequence[RunRecord], folder: str, *, filled: Sequence[str]) -> str | None:
    """CAS of one generated set beside its fidelity: mean class accuracy over seeds, recall of each filled class,
    and the same figures of the real-data `none` row (Ravuri & Vinyals 2019 compare CAS with real data)."""
    runs = _cas_runs(records, folder)
    if not runs:
        return None
    mean, std = mean_std([r.value("mean_class_accuracy") for r in runs])
    reference = [r for r in records if r.status == "ok" and r.row == "none"]
    recall = ", ".join(
        f"{n} {100 * mean_std([r.recall(n) for r in runs])[0]:.1f}"
        + (f" (real data: {100 * mean_std([r.recall(n) for r in reference])[0]:.1f})" if reference else "")
        for n in filled
    )
    real = (
        f"; the same classifier on real data (row none): {100 * mean_std([r.value('mean_class_accuracy') for r in reference])[0]:.1f}"
        if reference
        else ""
    )
    return (
        f"CAS (trained on generated images only for the classes the set fills, real images for the others; tested on the real "
        f"test split; never used for selection): mean class accuracy {100 * mean:.1f} ± {100 * std:.1f} over {len(runs)} seed(s){real}; "
        f"recall of the filled classes: {recall}"
    )


def _set_summary(name: str, report: dict[str, Any]) -> str:
    before, after = report["before_filter"]["overall"], report["after_filter"]["overall"]
    judge = report.get("judge") or {}
    return (
        f"{name} ({report['strategy']} a={report['strength']:g}, {report.get('render', 'decoder')} rendering): "
        "before → after the filter, mean fidelity ratio "
        f"{format_figure(before.get('fidelity_ratio_mean'))} → {format_figure(after.get('fidelity_ratio_mean'))}, diversity ratio "
        f"{format_figure(before.get('diversity_ratio_mean'))} → {format_figure(after.get('diversity_ratio_mean'))}, near-duplicate share "
        f"{format_figure(before.get('near_duplicate_share_mean'))} → {format_figure(after.get('near_duplicate_share_mean'))} "
        f"(n {before['n_generated']} → {after['n_generated']}); judge validation mean class accuracy "
        f"{format_figure(judge.get('validation_mean_class_accuracy'))}"
        + (f", WEAK on {', '.join(judge['weak_classes'])}" if judge.get("weak_classes") else "")
    )


def generator_table(report: dict[str, Any]) -> tuple[list[str], list[list[str]]] | None:
    """The generator's own images per minority class (decoder only, no rendering trick), with sample sizes:
    reconstruction fidelity, label-flip accuracy / source kept / identity kept, prior fidelity, prior KID."""
    generator = report.get("generator")
    if not generator:
        return None
    kid = next((v for k, v in generator.items() if k.startswith("kid_")), {})
    header = [
        "class",
        "reconstruction fidelity (n)",
        "reconstructions read instead as",
        "label-flip accuracy (n)",
        "source kept",
        "identity kept",
        "flip high-freq. vs recon.",
        "prior fidelity (n)",
        "prior KID",
    ]
    rows = []
    for name, flip in generator["label_flip"].items():
        recon, prior = generator["reconstruction_fidelity"].get(name, {}), generator["prior_fidelity"].get(name)
        if prior is None:  # not a class the set fills
            continue
        rows.append(
            [
                name,
                f"{format_figure(recon.get('ratio'))} ({recon.get('n', 0)})",
                read_instead(recon),
                f"{format_figure(flip['accuracy'])} ({flip['n']})",
                format_figure(flip["source_kept"]),
                format_figure(flip["identity_kept"]),
                format_figure(flip.get("high_frequency_ratio")),  # absent in reports written before it existed
                f"{format_figure(prior['ratio'])} ({prior['n']})",
                format_figure((kid.get(name) or {}).get("kid"), 3),
            ]
        )
    return header, rows


def generation_report_sections(records: Sequence[RunRecord]) -> list[Section]:
    """Markdown: one line per generated set (and its CAS); HTML: a section per set with the per-class table and CAS."""
    generation = generation_sections(records)
    if not generation:
        return []
    lines = []
    for name, report in generation:
        cas = cas_summary(records, name, filled=list(report["before_filter"]["classes"]))
        lines.append(_set_summary(name, report) + (f". {cas}" if cas else ""))
    sections = [
        Section(title="Generated sets (per-class figures in report.html)", only="markdown", blocks=[Bullets(lines)])
    ]
    for name, report in generation:
        header, rows = generation_table(report)
        cas_runs = _cas_runs(records, name)
        if cas_runs:  # CAS recall of each filled class, beside its fidelity
            header = [*header, "CAS recall"]
            rows = [[*row, f"{mean_std([r.recall(row[0]) for r in cas_runs])[0]:.2f}"] for row in rows]
        judge = report.get("judge") or {}
        weak = f" WEAK on {', '.join(judge['weak_classes'])}" if judge.get("weak_classes") else ""
        cas = cas_summary(records, name, filled=list(report["before_filter"]["classes"]))
        sections.append(
            Section(
                title=f"Generated set {name}: {report['strategy']} a={report['strength']:g}, {report.get('render', 'decoder')} rendering",
                only="html",
                blocks=[
                    Text(
                        f"Before → after the filter, in {report['feature_network']} features; near-duplicate: {report['near_duplicate_rule']}. "
                        f"Judge validation mean class accuracy {format_figure(judge.get('validation_mean_class_accuracy'))}"
                        f"{blur_tolerance_line(judge.get('blur_tolerance'))}{judge_overlap_line(judge)}.{weak}"
                    ),
                    *([Text(cas)] if cas else []),
                    Table(header, [[(c, False) for c in row] for row in rows], css="generation"),
                    *_generator_blocks(report),
                ],
            )
        )
    return sections


def _generator_blocks(report: dict[str, Any]) -> list[Block]:
    table = generator_table(report)
    if table is None:
        return []
    header, rows = table
    return [
        Text(
            "The generator's own images (the decoder's, resized; no residual), judged by the same judge on real "
            "validation faces: reconstruction fidelity = recall on dec(μ(x), y) ÷ recall on x; label flip = faces of "
            "other classes decoded as dec(μ(x), y′) and judged y′ (source kept: still judged their own class; identity "
            "kept: nearer their source than the class's median real-to-real distance); prior = dec(z ~ N(0, I), y′)."
        ),
        Table(header, [[(c, False) for c in row] for row in rows], css="generation"),
    ]


def figure_sections(
    plots: Sequence[Path], grids: Sequence[tuple[str, Path]], configs: Sequence[tuple[str, str]]
) -> list[Section]:
    sections = [Section(title=p.stem.replace("_", " "), blocks=[Image(p)], only="html") for p in plots]
    if grids:
        sections.append(
            Section(
                title="Generated samples (each row: a real source image, then its accepted variants)",
                only="html",
                blocks=[],
            )
        )
        sections += [Section(title=name, level=3, blocks=[Image(p, width="600px")], only="html") for name, p in grids]
    sections.append(Section(title="Configurations", only="html", blocks=[Details(row, text) for row, text in configs]))
    return sections


def build_report(
    records: Sequence[RunRecord],
    *,
    class_names: Sequence[str],
    row_order: Sequence[str] | None,
    title: str,
    extra_setup: dict[str, Any] | None,
    figures: list[Section],
) -> Report:
    """The whole report as data. CAS runs are not rows: they appear in the generation sections."""
    summaries = summarise([r for r in records if not is_cas(r)], class_names=class_names, row_order=row_order)
    comparison = comparison_section(records, summaries)
    seeds = len({r.seed for r in records if r.status == "ok"})
    sections = [
        results_section(summaries, class_names=class_names, seeds=seeds),
        *([comparison] if comparison else []),
        *problem_sections(records),
        *generation_report_sections(records),
        *figures,
    ]
    return Report(title=title, setup=describe_setup(records, extra=extra_setup), sections=sections)


def _copy_grids(sample_grids: dict[str, Path] | None, out: Path) -> list[tuple[str, Path]]:
    grids = []
    for name, grid in (sample_grids or {}).items():
        if Path(grid).is_file():
            target = out / "samples" / f"{name}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(grid, target)
            grids.append((name, target))
    return grids


def write_report(
    root: Path | str,
    *,
    out_dir: Path | str | None = None,
    row_order: Sequence[str] | None = None,
    title: str = "Ablation",
    extra_setup: dict[str, Any] | None = None,
    sample_grids: dict[str, Path] | None = None,
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
    paths = {"csv": out / CSV_FILE, "markdown": out / MARKDOWN_FILE, "html": out / HTML_FILE}
    paths["csv"].write_text(runs_csv(records, class_names=class_names))
    plots = []
    summaries = summarise([r for r in records if not is_cas(r)], class_names=class_names, row_order=row_order)
    if class_names:
        paths["recall_plot"] = plot_recall_bars(summaries, class_names=class_names, path=out / RECALL_PLOT)
        paths["confusion_plot"] = plot_confusions(
            records, rows=[s.row for s in summaries], class_names=class_names, path=out / CONFUSION_PLOT
        )
        plots = [paths["recall_plot"], paths["confusion_plot"]]
    configs = []
    for s in summaries:
        run = next((r for r in records if r.row == s.row and (r.path / CONFIG_FILE).is_file()), None)
        if run is not None:
            configs.append((s.row, (run.path / CONFIG_FILE).read_text()))
    report = build_report(
        records,
        class_names=class_names,
        row_order=row_order,
        title=title,
        extra_setup=extra_setup,
        figures=figure_sections(plots, _copy_grids(sample_grids, out), configs),
    )
    paths["markdown"].write_text(render_markdown(report))
    paths["html"].write_text(render_html(report))
    return paths
