"""Per-class preview grids: each row is a real source image followed by its accepted variants, or, where each
source has one sample (donors decoded with the minority label), source | sample pairs side by side."""

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
        tiles = _tile_positions(_layout(groups, sources=sources, variants=variants), size=size, by_id=by_id)
        height = max(top for _, top, _ in tiles) + size
        width = max(left for _, _, left in tiles) + size
        canvas = np.full((height, width, 3), 255, dtype=np.uint8)
        for what, top, left in tiles:
            if isinstance(what, int):  # a real source image of the fit split
                canvas[top : top + size, left : left + size] = fit.images[what].permute(1, 2, 0).numpy()
            else:
                canvas[top : top + size, left : left + size] = np.asarray(Image.open(out_dir / what).convert("RGB"))
        image = torch.from_numpy(canvas).repeat_interleave(scale, 0).repeat_interleave(scale, 1).numpy()
        path = out_dir / "previews" / f"{class_name}.png"
        path.parent.mkdir(exist_ok=True)
        write_png_atomic(path, image)
        written.append(path)
    return written


def _layout(groups: dict[str, list[str]], *, sources: int, variants: int) -> list[list[tuple[str, list[str]]]]:
    """Preview rows, each a list of (source id or "", its variants' paths)."""
    if "" in groups:  # no real source (prior samples): rows of variants only
        flat = groups[""][: sources * variants]
        return [[("", flat[i : i + variants])] for i in range(0, len(flat), variants)]
    # Sources with the most accepted variants first, so each preview row is full.
    ranked = sorted(groups.items(), key=lambda kv: -len(kv[1]))
    if len(ranked[0][1]) > 1:
        return [[(source_id, paths[:variants])] for source_id, paths in ranked[:sources]]
    # One variant per source (a donor decoded with the minority label): source | sample pairs side by side,
    # so the preview shows as many identities as a row of variants would show images.
    per_row = max(1, (variants + 1) // 2)
    pairs = ranked[: sources * per_row]
    return [pairs[i : i + per_row] for i in range(0, len(pairs), per_row)]


def _tile_positions(
    rows: list[list[tuple[str, list[str]]]], *, size: int, by_id: dict[str, int]
) -> list[tuple[int | str, int, int]]:
    """(fit index or generated path, top, left) for every tile; a wider gap after each source column marks
    the real image, a wider one still separates groups in a row."""
    tiles: list[tuple[int | str, int, int]] = []
    for r, row in enumerate(rows):
        top, left = r * (size + GAP), 0
        for source_id, paths in row:
            if source_id in by_id:
                tiles.append((by_id[source_id], top, left))
            left += size + 3 * GAP
            for rel in paths:
                tiles.append((rel, top, left))
                left += size + GAP
            left += 4 * GAP
    return tiles
