"""Confusion matrix and per-class recall figures for a run's test metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from faces.runkit.plotting import pyplot

GROUP_COLOURS = {"many": "#4C72B0", "medium": "#DD8452", "few": "#C44E52", None: "#888888"}


def plot_confusion_matrix(metrics: dict[str, Any], *, path: Path, title: str) -> Path:
    """Row-normalised (recall) colours, raw counts printed in each cell."""
    import numpy as np

    plt = pyplot()
    names = list(metrics["per_class"])
    cm = np.asarray(metrics["confusion_matrix"], dtype=float)
    rows = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.0 * len(names) + 2.5, 0.9 * len(names) + 2), dpi=110)
    image = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(
                j,
                i,
                f"{int(cm[i, j])}\n{rows[i, j]:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if rows[i, j] > 0.5 else "black",
            )
    labels = [f"{n} ({metrics['per_class'][n].get('group', '')})" for n in names]
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (group)")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046, label="fraction of true class")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_per_class_recall(
    metrics: dict[str, Any], *, path: Path, title: str, train_counts: list[int] | None = None
) -> Path:
    plt = pyplot()
    names = list(metrics["per_class"])
    recalls = [metrics["per_class"][n]["recall"] for n in names]
    colours = [GROUP_COLOURS.get(metrics["per_class"][n].get("group")) for n in names]
    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 2, 4.2), dpi=110)
    bars = ax.bar(range(len(names)), recalls, color=colours)
    ax.bar_label(bars, labels=[f"{r:.2f}" for r in recalls], fontsize=8, padding=1)
    ticks = [f"{n}\n(train {train_counts[i]})" if train_counts else n for i, n in enumerate(names)]
    ax.set_xticks(range(len(names)), ticks, fontsize=8)
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("test recall")
    ax.axhline(
        metrics["mean_class_accuracy"],
        color="black",
        linestyle="--",
        linewidth=1,
        label=f"mean class accuracy {metrics['mean_class_accuracy']:.3f}",
    )
    for group, colour in GROUP_COLOURS.items():
        if group and any(metrics["per_class"][n].get("group") == group for n in names):
            ax.bar([0], [0], color=colour, label=group)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(title, fontsize=9)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path
