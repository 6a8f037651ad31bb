"""Per-class counts, imbalance ratio, many/medium/few groups, and a bar chart."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .cache import EXIF_ROTATED, NOT_SQUARE, SMALL
from .runkit.plotting import pyplot
from .split import warn_unvalidated_classes

GROUPS = ("many", "medium", "few")


@dataclass(frozen=True)
class GroupThresholds:
    """Class groups by training count relative to the largest class.

    Relative rather than absolute thresholds, so a scaled-down dataset (the embedded faces)
    groups its classes the same way as the full one: on RAF-DB, many = Surprise, Happiness,
    Sadness, Neutral; medium = Disgust, Anger; few = Fear.
    """

    many: float = 0.25  # count >= many * max count
    few: float = 0.1  # count <= few * max count

    def __post_init__(self) -> None:
        if not 0.0 <= self.few < self.many <= 1.0:
            raise ValueError(f"group thresholds need 0 <= few < many <= 1, got few={self.few}, many={self.many}")


def class_groups(train_counts: Sequence[int], *, thresholds: GroupThresholds = GroupThresholds()) -> list[str]:
    largest = max(train_counts)
    return [
        "many" if c >= thresholds.many * largest else "few" if c <= thresholds.few * largest else "medium"
        for c in train_counts
    ]


def imbalance_ratio(counts: Sequence[int]) -> float:
    """Largest over smallest class count (RAF-DB train: 4772 / 281 = 17.0)."""
    smallest = min(counts)
    return float("inf") if smallest == 0 else max(counts) / smallest


def plot_class_counts(
    *, counts: Mapping[str, Sequence[int]], class_names: Sequence[str], groups: Sequence[str], title: str, path: Path
) -> Path:
    """Grouped bars per class, one bar per split, with the count printed on each bar."""
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(1.4 * len(class_names) + 2, 4.5), dpi=110)
    width = 0.8 / max(1, len(counts))
    for offset, (split, split_counts) in enumerate(counts.items()):
        xs = [i + (offset - (len(counts) - 1) / 2) * width for i in range(len(class_names))]
        bars = ax.bar(xs, split_counts, width=width, label=f"{split} ({sum(split_counts)})")
        ax.bar_label(bars, labels=[str(c) for c in split_counts], fontsize=7, padding=1)
    ax.set_xticks(range(len(class_names)), [f"{name}\n({group})" for name, group in zip(class_names, groups)])
    ax.set_ylabel("images")
    ax.set_title(title)
    ax.legend()
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def summarize_dataset(data, *, thresholds: GroupThresholds = GroupThresholds()) -> dict:
    """Counts per split and class (train also split into fit/val), imbalance, groups, official check.

    `data` is a `faces.FaceData`; returned as plain types so it can be written as JSON.
    """
    from .classes import RAFDB_OFFICIAL_COUNTS

    counts = {name: split.class_counts() for name, split in data.splits.items()}
    if "train" in data.splits:
        fit, val = data.train_val()
        counts["train (fit)"], counts["val (held out)"] = fit.class_counts(), val.class_counts()
        without_val = warn_unvalidated_classes(fit, val)
    train = counts.get("train") or next(iter(counts.values()))
    summary = {
        "dataset": data.dataset,
        "layout": data.layout,
        "root": str(data.root),
        "image_size": next(iter(data.splits.values())).image_size,
        "class_names": list(data.class_names),
        "counts": counts,
        "totals": {name: sum(c) for name, c in counts.items()},
        "imbalance_ratio": imbalance_ratio(train),
        "groups": dict(zip(data.class_names, class_groups(train, thresholds=thresholds))),
        "group_thresholds": {"many": thresholds.many, "few": thresholds.few},
        "skipped_unreadable": {name: len(split.skipped) for name, split in data.splits.items()},
        # Decoding notes (faces.cache): turned upright by EXIF orientation, much smaller than image_size, far from square.
        "decode_notes": {
            kind: {name: len(split.flagged.get(kind, ())) for name, split in data.splits.items()}
            for kind in (EXIF_ROTATED, SMALL, NOT_SQUARE)
        },
        "ignored_non_images": len(data.ignored),
    }
    if "train" in data.splits:
        summary["classes_without_validation"] = without_val
    if data.dataset == "rafdb":
        summary["matches_official_counts"] = {
            split: counts[split] == list(RAFDB_OFFICIAL_COUNTS[split]) for split in ("train", "test") if split in counts
        }
    return summary


def format_summary(summary: dict) -> str:
    """A fixed-width table a person can read in a terminal or paste into a report."""
    names = summary["class_names"]
    width = max(8, *(len(n) for n in names))
    splits = list(summary["counts"])
    col = max(7, *(len(s) for s in splits)) + 1
    lines = [
        f"dataset: {summary['dataset']} ({summary['layout']}) at {summary['root']}, {summary['image_size']}px",
        f"{'class':<{width}} {'group':<7}" + "".join(f"{s:>{col}}" for s in splits),
    ]
    for i, name in enumerate(names):
        lines.append(
            f"{name:<{width}} {summary['groups'][name]:<7}"
            + "".join(f"{summary['counts'][s][i]:>{col}}" for s in splits)
        )
    lines.append(f"{'total':<{width}} {'':<7}" + "".join(f"{summary['totals'][s]:>{col}}" for s in splits))
    lines.append(
        f"imbalance ratio (train, largest/smallest): {summary['imbalance_ratio']:.1f}; groups: many >= "
        f"{summary['group_thresholds']['many']:g}x largest, few <= {summary['group_thresholds']['few']:g}x largest"
    )
    if "matches_official_counts" in summary:
        lines.append(f"matches RAF-DB official counts: {summary['matches_official_counts']}")
    notes = {kind: sum(per_split.values()) for kind, per_split in summary.get("decode_notes", {}).items()}
    if any(notes.values()):
        lines.append(
            f"images turned upright by their EXIF orientation: {notes.get(EXIF_ROTATED, 0)}; much smaller than "
            f"{summary['image_size']}px: {notes.get(SMALL, 0)}; far from square: {notes.get(NOT_SQUARE, 0)} (named in the log)"
        )
    skipped = sum(summary["skipped_unreadable"].values())
    if skipped or summary["ignored_non_images"]:
        lines.append(f"skipped unreadable images: {skipped}; ignored non-image files: {summary['ignored_non_images']}")
    return "\n".join(lines)


def plot_class_samples(split, *, path: Path, per_class: int = 10, seed: int = 0, scale: int = 2) -> Path:
    """A grid with one row per class (label on the left) of random images from `split` (a FaceSplit)."""
    plt = pyplot()
    import torch

    generator = torch.Generator().manual_seed(seed)
    rows = len(split.class_names)
    size = split.image_size
    fig, axes = plt.subplots(
        rows, 1, figsize=(per_class * size * scale / 100 + 1.4, rows * size * scale / 100 + 0.2), dpi=100
    )
    for label, ax in enumerate(axes if rows > 1 else [axes]):
        members = (split.labels == label).nonzero().flatten()
        chosen = members[torch.randperm(len(members), generator=generator)[:per_class]]
        strip = torch.zeros((3, size, size * per_class), dtype=torch.uint8)
        for slot, index in enumerate(chosen.tolist()):
            strip[:, :, slot * size : (slot + 1) * size] = split.images[index]
        ax.imshow(strip.permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_yticks([])
        ax.set_xticks([])
        ax.set_ylabel(f"{split.class_names[label]}\n({len(members)})", rotation=0, ha="right", va="center", fontsize=9)
        for spine in ax.spines.values():
            spine.set_visible(False)
    fig.subplots_adjust(left=0.09, right=0.99, top=0.99, bottom=0.01, hspace=0.05)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
