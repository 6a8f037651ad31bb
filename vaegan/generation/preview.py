"""Per-class preview grids: each row is a real source image followed by its accepted variants."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from faces import FaceSplit
from faces.io import write_png_atomic

GAP = 2  # pixels between tiles; a wider gap after the source column marks it as the real image


def preview_grids(
    *,
    out_dir: Path,
    rows: Sequence[dict[str, Any]],
    fit: FaceSplit,
    sources: int = 4,
    variants: int = 8,
    scale: int = 2,
) -> list[Path]:
    """Write `previews/<class>.png` for every class with generated images; returns the paths."""
    by_id = {sample_id: i for i, sample_id in enumerate(fit.sample_ids)}
    by_class: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        source = row["source_ids"].split(";")[0] if row["source_ids"] else ""
        by_class[row["class_name"]][source].append(row["path"])
    written = []
    size = fit.image_size
    for class_name, groups in by_class.items():
        # Sources with the most accepted variants first, so each preview row is full.
        chosen = (
            sorted(groups.items(), key=lambda kv: -len(kv[1]))[:sources]
            if "" not in groups
            else [
                ("", groups[""][i : i + variants]) for i in range(0, min(len(groups[""]), sources * variants), variants)
            ]
        )
        height = len(chosen) * (size + GAP)
        width = (variants + 1) * (size + GAP) + 2 * GAP
        canvas = np.full((height, width, 3), 255, dtype=np.uint8)
        for r, (source_id, paths) in enumerate(chosen):
            top = r * (size + GAP)
            if source_id and source_id in by_id:
                canvas[top : top + size, :size] = fit.images[by_id[source_id]].permute(1, 2, 0).numpy()
            for c, rel in enumerate(paths[:variants]):
                left = (c + 1) * (size + GAP) + 2 * GAP
                canvas[top : top + size, left : left + size] = np.asarray(Image.open(out_dir / rel).convert("RGB"))
        image = torch.from_numpy(canvas).repeat_interleave(scale, 0).repeat_interleave(scale, 1).numpy()
        path = out_dir / "previews" / f"{class_name}.png"
        path.parent.mkdir(exist_ok=True)
        write_png_atomic(path, image)
        written.append(path)
    return written
