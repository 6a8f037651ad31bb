"""PNG grids a user looks at: reconstructions (real | reconstruction pairs) and class-conditional samples, one row per class."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from einops import rearrange

from faces.runkit.plotting import pyplot

from .images import to_uint8


def pick_per_class(
    *, labels: torch.Tensor, num_classes: int, per_class: int, fallback_labels: torch.Tensor | None = None
):
    """Indices of up to `per_class` images per class: first from `labels` (held-out val), then `fallback_labels` (fit).

    Returns a list per class of (source, index) with source 0 = primary, 1 = fallback.
    """
    rows = []
    for label in range(num_classes):
        chosen = [(0, int(i)) for i in (labels == label).nonzero().flatten()[:per_class]]
        if len(chosen) < per_class and fallback_labels is not None:
            extra = (fallback_labels == label).nonzero().flatten()[: per_class - len(chosen)]
            chosen += [(1, int(i)) for i in extra]
        rows.append(chosen)
    return rows


def save_class_grid(
    *,
    rows: Sequence[torch.Tensor],
    class_names: Sequence[str],
    path: Path,
    title: str,
    column_labels: Sequence[str] = (),
) -> Path:
    """rows[c]: float [-1, 1] images [k, 3, R, R] for class c (rows shorter than the longest are padded grey)."""
    plt = pyplot()

    width = max(row.shape[0] for row in rows)
    resolution = rows[0].shape[-1]
    padded = []
    for row in rows:
        pad = torch.zeros(width - row.shape[0], 3, resolution, resolution)
        padded.append(torch.cat([row.detach().float().cpu(), pad]))
    # 1-pixel white border between tiles.
    tiles = torch.nn.functional.pad(torch.stack(padded), (1, 1, 1, 1), value=1.0)
    canvas = to_uint8(rearrange(tiles, "r k c h w -> (r h) (k w) c"))
    tile = resolution + 2
    fig_w = max(4.0, width * tile / 40 + 1.5)
    fig_h = max(2.5, len(rows) * tile / 40 + 0.8)
    fig, ax = plt.subplots(figsize=(fig_w, fig_h), dpi=100)
    ax.imshow(canvas.numpy(), interpolation="nearest")
    ax.set_yticks([tile * (i + 0.5) for i in range(len(rows))], list(class_names))
    if column_labels:
        ax.set_xticks(
            [tile * (i + 0.5) for i in range(len(column_labels))], list(column_labels), fontsize=7, rotation=90
        )
    else:
        ax.set_xticks([])
    ax.set_title(title, fontsize=9)
    for spine in ax.spines.values():
        spine.set_visible(False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
