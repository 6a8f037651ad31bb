"""What a classifier run or evaluation leaves in its folder (config, figures, metrics.json last) and
how its test numbers print. File names come from the run folder contract, `faces.runkit.runs`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from faces.io import write_text_atomic
from faces.runkit.runs import CONFIG_FILE, write_metrics

from .plots import plot_confusion_matrix, plot_per_class_recall


def write_run_outputs(
    run_dir: Path, *, cfg: DictConfig | None, metrics: dict[str, Any], train_counts: list[int]
) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    if cfg is not None:
        write_text_atomic(run_dir / CONFIG_FILE, OmegaConf.to_yaml(cfg, resolve=True))
    title = (
        f"{metrics['backbone']} / balance={metrics['balance']['name'] if isinstance(metrics.get('balance'), dict) else metrics.get('balance')}"
        f" / seed {metrics['seed']}: acc {metrics['accuracy']:.3f}, mean class acc {metrics['mean_class_accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f}"
    )
    plot_confusion_matrix(metrics, path=run_dir / "confusion_matrix.png", title=title)
    plot_per_class_recall(metrics, path=run_dir / "per_class_recall.png", title=title, train_counts=train_counts)
    # Written last and atomically: its existence is what marks the run finished (ablation resume).
    write_metrics(run_dir, metrics)


def format_metrics(metrics: dict[str, Any]) -> str:
    """The run's test numbers as a small table for the terminal. A run that never opened the test split
    (train.evaluate_test=false: the augmenter's judge) returns its selected epoch's validation numbers instead,
    and says so."""
    if "accuracy" not in metrics and "validation" in metrics:
        selection = metrics.get("selection") or {}
        heading = (
            f"validation at the selected epoch {selection.get('best_epoch')} (train.evaluate_test=false: the test "
            "split was not opened)"
        )
        return (
            heading
            + "\n"
            + _metrics_table(metrics["validation"], split="validation")
            + f"\ncheckpoint: {metrics['checkpoint']}"
        )
    return _metrics_table(metrics, split="test")


def _metrics_table(metrics: dict[str, Any], *, split: str) -> str:
    lines = [
        f"{split}: accuracy {metrics['accuracy']:.4f}  mean class accuracy {metrics['mean_class_accuracy']:.4f}  macro-F1 {metrics['macro_f1']:.4f}"
        f"  (n={metrics['num_samples']})",
        f"{'class':<10} {'group':<7} {'prec':>6} {'recall':>6} {'f1':>6} {'n':>5}",
    ]
    for name, m in metrics["per_class"].items():
        lines.append(
            f"{name:<10} {m.get('group', ''):<7} {m['precision']:6.3f} {m['recall']:6.3f} {m['f1']:6.3f} {m['support']:5d}"
        )
    groups = metrics.get("group_mean_class_accuracy") or {}
    lines.append("group mean class accuracy: " + ", ".join(f"{g} {v:.3f}" for g, v in groups.items() if v is not None))
    return "\n".join(lines)
