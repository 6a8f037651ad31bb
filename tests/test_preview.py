"""Preview grids: a source's variants in a row; one sample per source (donors decoded with the minority label)
as source | sample pairs side by side, so a donor strategy's preview shows as many identities as images fit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from vaegan.generation.preview import GAP, preview_grids


def _write(out: Path, name: str, value: int, size: int) -> str:
    (out / "Fear").mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value, dtype=np.uint8)).save(out / "Fear" / name)
    return f"Fear/{name}"


def _preview(out: Path) -> np.ndarray:
    return np.asarray(Image.open(out / "previews" / "Fear.png").convert("RGB"))


def test_variants_of_one_source_fill_a_row(tmp_path: Path, fit) -> None:
    size, source = fit.image_size, fit.sample_ids[0]
    rows = [
        {"class_name": "Fear", "source_ids": source, "path": _write(tmp_path, f"v{i}.png", 10 * i, size)}
        for i in range(3)
    ]
    (path,) = preview_grids(out_dir=tmp_path, rows=rows, fit=fit, variants=3, scale=1)
    image = _preview(tmp_path)
    assert image.shape[:2] == (size, 4 * size + 5 * GAP)  # source, 3 GAP, then 3 variants GAP apart
    assert np.array_equal(image[:size, :size], fit.images[0].permute(1, 2, 0).numpy())  # the real source first
    assert (image[:size, size + 3 * GAP : 2 * size + 3 * GAP] == 0).all()  # then its variants in order


def test_one_sample_per_donor_is_laid_out_in_pairs(tmp_path: Path, fit) -> None:
    size = fit.image_size
    rows = [
        {"class_name": "Fear", "source_ids": fit.sample_ids[i], "path": _write(tmp_path, f"d{i}.png", 50 + i, size)}
        for i in range(10)
    ]
    preview_grids(out_dir=tmp_path, rows=rows, fit=fit, sources=2, variants=7, scale=1)
    image = _preview(tmp_path)
    # 4 pairs per row (as wide as a source and 7 variants), 2 rows: 8 of the 10 donors shown
    assert image.shape[0] == 2 * size + GAP
    pair = 2 * size + 8 * GAP  # source, 3 GAP, sample, 5 GAP before the next source
    assert image.shape[1] == 3 * pair + 2 * size + 3 * GAP
    for k in range(8):
        top, left = (k // 4) * (size + GAP), (k % 4) * pair
        assert np.array_equal(image[top : top + size, left : left + size], fit.images[k].permute(1, 2, 0).numpy())
        sample = image[top : top + size, left + size + 3 * GAP : left + 2 * size + 3 * GAP]
        assert (sample == 50 + k).all()
