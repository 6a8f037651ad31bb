"""The embedded default dataset: procedurally rendered expression faces with RAF-DB's long tail.

RAF-DB needs a licence, so the demo and tests use faces drawn by `synthetic_render` in
RAF-DB's 7 classes and train/test proportions. They are written once as PNGs in the
image-folder layout (`train/<Class>/*.png`, `test/<Class>/*.png`) and then flow through
the same listing, decoding and caching path as any real dataset. In the evaluation
protocol they play the part of *real* data; only VAE-GAN samples are `is_synthetic`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .classes import RAFDB_CLASSES, RAFDB_OFFICIAL_COUNTS
from .errors import DatasetError
from .folder import list_image_folder
from .listing import SourceListing
from .runkit.workers import spawn_pool
from .synthetic_render import EXPRESSIONS, render_face

log = logging.getLogger(__name__)

# Bump when the renderer changes so previously generated folders are regenerated (the
# renderer's source hash in meta.json catches edits that forget to).
GENERATOR_VERSION = 1
_RENDERER_SHA = hashlib.sha256(Path(render_face.__code__.co_filename).read_bytes()).hexdigest()[:16]
META_FILE = "meta.json"
_SPLIT_CODES = {"train": 0, "test": 1}
assert EXPRESSIONS == RAFDB_CLASSES


@dataclass(frozen=True)
class SyntheticPreset:
    name: str
    image_size: int
    train_total: int
    test_total: int


PRESETS: dict[str, SyntheticPreset] = {
    # Unit tests: seconds to render, still every class present in both splits.
    "tiny": SyntheticPreset(name="tiny", image_size=32, train_total=280, test_total=140),
    # Demo and CPU experiments.
    "small": SyntheticPreset(name="small", image_size=64, train_total=2000, test_total=700),
    # RAF-DB's exact counts and resolution, for GPU benchmarks.
    "full": SyntheticPreset(name="full", image_size=100, train_total=12271, test_total=3068),
}


def scaled_counts(counts: tuple[int, ...], *, total: int, minimum: int = 2) -> tuple[int, ...]:
    """Scale class counts to `total` keeping proportions (largest remainder), each >= `minimum`.

    With total equal to sum(counts) this is the identity, so `full` has RAF-DB's exact counts.
    """
    grand = sum(counts)
    raw = [c * total / grand for c in counts]
    floors = [max(minimum, int(r)) for r in raw]
    order = sorted(range(len(counts)), key=lambda i: raw[i] - int(raw[i]), reverse=True)
    for i in order[: max(0, total - sum(floors))]:
        floors[i] += 1
    # Raising tiny classes to `minimum` can overshoot: pay it back from the largest class.
    while sum(floors) > total:
        floors[floors.index(max(floors))] -= 1
    return tuple(floors)


def preset_counts(preset: SyntheticPreset, *, test_per_class: int | None = None) -> dict[str, tuple[int, ...]]:
    """Per-split class counts; `test_per_class` raises every test class to at least that many faces
    (the training split never changes)."""
    test = scaled_counts(RAFDB_OFFICIAL_COUNTS["test"], total=preset.test_total)
    return {
        "train": scaled_counts(RAFDB_OFFICIAL_COUNTS["train"], total=preset.train_total),
        "test": tuple(max(n, int(test_per_class or 0)) for n in test),
    }


def check_test_per_class(value: object) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 100_000:
        raise DatasetError(
            f"data.test_per_class={value!r} must be null or an integer in 1..100000 (test faces per class, at least)"
        )
    return value


def _tasks(split: str, counts: tuple[int, ...], base: tuple[int, ...]) -> list[tuple[str, int, int]]:
    """(split, index, label) of every face. The preset's faces keep their indices (so their images); the
    faces a larger test split adds get indices after them, so it is a superset of the preset's."""
    tasks, index = [], 0
    for label, count in enumerate(base):
        tasks += [(split, index + i, label) for i in range(count)]
        index += count
    for label, (count, preset) in enumerate(zip(counts, base)):
        tasks += [(split, index + i, label) for i in range(count - preset)]
        index += count - preset
    return tasks


def get_preset(name: str) -> SyntheticPreset:
    if name not in PRESETS:
        raise DatasetError(f"data.preset={name!r} is not a synthetic-faces preset; choose one of {sorted(PRESETS)}")
    return PRESETS[name]


def render_sample(*, split: str, index: int, label: int, seed: int, image_size: int) -> np.ndarray:
    """The image for one (split, index): its own RNG stream, so order and workers don't matter."""
    rng = np.random.default_rng([seed, _SPLIT_CODES[split], index])
    return render_face(label=label, rng=rng, size=image_size)


def _render_chunk(tasks: list[tuple[str, int, int, int, int, str]]) -> None:
    for split, index, label, seed, image_size, out_path in tasks:
        image = render_sample(split=split, index=index, label=label, seed=seed, image_size=image_size)
        Image.fromarray(image).save(out_path, format="PNG")


def ensure_synthetic_faces(
    *,
    root: Path | str,
    preset: str,
    seed: int,
    image_size: int | None = None,
    num_workers: int | None = None,
    test_per_class: int | None = None,
) -> Path:
    """Render the preset into `root/<preset>-<size>px-seed<seed>[-test<N>]` once; return that folder.

    `test_per_class=N` gives every test class at least N faces (a test split that resolves a few
    points: the `small` preset has 17 Fear test faces, so its recall moves in 5.9-point steps); the
    training split is the preset's, file for file and byte for byte."""
    spec = get_preset(preset)
    size = int(image_size or spec.image_size)
    test_per_class = check_test_per_class(test_per_class)
    counts = preset_counts(spec, test_per_class=test_per_class)
    target = Path(root).expanduser() / (
        f"{spec.name}-{size}px-seed{seed}" + (f"-test{test_per_class}" if test_per_class else "")
    )
    meta = {
        "generator_version": GENERATOR_VERSION,
        "renderer_sha256": _RENDERER_SHA,
        "preset": asdict(spec),
        "seed": seed,
        "image_size": size,
        "counts": {k: list(v) for k, v in counts.items()},
        "classes": list(RAFDB_CLASSES),
    }
    if test_per_class:
        meta["test_per_class"] = test_per_class
    meta_path = target / META_FILE
    if meta_path.is_file():
        if json.loads(meta_path.read_text()) == meta:
            return target
        log.info("synthetic faces in %s are from another generator version; rendering again", target)
    elif target.exists() and any(target.iterdir()):
        raise DatasetError(
            f"{target} exists but is not a synthetic-faces folder (no {META_FILE}); refusing to overwrite it"
        )

    base = preset_counts(spec)
    tasks = [
        (split, index, label, seed, size, f"{RAFDB_CLASSES[label]}/{split}_{index:05d}.png")
        for name, split_counts in counts.items()
        for split, index, label in _tasks(name, split_counts, base[name])
    ]

    # Render into a sibling temp folder and rename at the end: an interrupted run never
    # leaves a half-written dataset that looks complete.
    staging = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    for split in counts:
        for name in RAFDB_CLASSES:
            (staging / split / name).mkdir(parents=True)
    jobs = [(s, i, lab, sd, sz, str(staging / s / rel)) for s, i, lab, sd, sz, rel in tasks]
    workers = min(num_workers or os.cpu_count() or 1, 16)
    log.info(
        "rendering %d synthetic faces (%s preset, %dpx, seed %d) into %s", len(jobs), spec.name, size, seed, target
    )
    try:
        if workers > 1 and len(jobs) >= 4000:
            chunks = [jobs[i : i + 256] for i in range(0, len(jobs), 256)]
            # Spawned workers that die with this process (faces.runkit.workers).
            with spawn_pool(workers) as pool:
                list(pool.map(_render_chunk, chunks))
        else:
            _render_chunk(jobs)
        (staging / META_FILE).write_text(json.dumps(meta, indent=2))
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def list_synthetic_faces(
    *,
    root: Path | str,
    preset: str,
    seed: int,
    image_size: int | None = None,
    num_workers: int | None = None,
    test_per_class: int | None = None,
) -> SourceListing:
    folder = ensure_synthetic_faces(
        root=root,
        preset=preset,
        seed=seed,
        image_size=image_size,
        num_workers=num_workers,
        test_per_class=test_per_class,
    )
    return list_image_folder(folder, class_names=RAFDB_CLASSES, dataset=f"synthetic-{preset}", layout="synthetic-faces")
