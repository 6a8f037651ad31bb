"""Decode each image once into a uint8 tensor cache on disk.

A cache file is keyed by dataset, split, image size and a fingerprint of the source files
(relative path, label, byte size, modification time, plus extras such as the label file),
so editing, adding or relabelling a source image invalidates it. Epochs never touch JPEGs.

Decoding applies EXIF orientation (phone photos are stored sideways with a rotation tag every
viewer honours) and records each image's size; images much smaller than the target or far from
square are counted and named in a warning (FaceSplit.flagged), and `data.min_image_size`
refuses images whose shorter side is below it, by name.
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from .errors import DatasetError
from .io import atomic_path
from .listing import ImageRecord, SourceListing
from .split import FaceSplit

log = logging.getLogger(__name__)

# Bump when decoding changes (resize filter, crop rule) so old caches are not reused.
# 2: 16-bit greyscale scaled to 8 bit (was clipped to white). 3: EXIF orientation applied; source sizes kept.
CACHE_FORMAT = 3
# An image whose shorter side is under this fraction of the target side is upsampled a lot: warned about.
SMALL_FRACTION = 0.5
# Longer side / shorter side above this: the centre crop drops much of the picture (a face may be cut).
FAR_FROM_SQUARE = 1.5
# FaceSplit.flagged keys (data_summary counts them).
EXIF_ROTATED, SMALL, NOT_SQUARE = "exif_rotated", "small", "far_from_square"
# 16-bit greyscale modes; PIL's convert("RGB") clips them at 255 instead of scaling.
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})


def fingerprint_records(records: Sequence[ImageRecord], *, class_names: Sequence[str], extra: str = "") -> str:
    digest = hashlib.sha256(f"format={CACHE_FORMAT}\nclasses={','.join(class_names)}\nextra={extra}\n".encode())
    for record in records:
        stat = record.path.stat()
        digest.update(f"{record.sample_id}\t{record.label}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def decode_image(path: Path, *, size: int) -> np.ndarray:
    """RGB uint8 [size, size, 3]: EXIF orientation applied, centre-crop to square (aligned faces already
    are), then resize.

    Truncated files raise instead of being padded with grey, which PIL would otherwise do
    only when LOAD_TRUNCATED_IMAGES is set; we never set it. A header claiming more pixels
    than PIL's decompression-bomb limit raises before anything is decoded. 16-bit greyscale
    (PNG mode I;16) is scaled to 8 bit, not clipped.
    """
    return _decode(path, size=size)[0]


def _decode(path: Path, *, size: int) -> tuple[np.ndarray, tuple[int, int, bool]]:
    """(pixels, (width, height as shown, whether EXIF orientation turned it))."""
    with Image.open(path) as image:
        width, height = image.size
        limit = Image.MAX_IMAGE_PIXELS
        if limit and width * height > limit:
            raise ValueError(
                f"the header claims {width}x{height} pixels, over the {limit}-pixel limit "
                "(a corrupt file or a decompression bomb); refusing to decode it"
            )
        image.load()
        rotated = image.getexif().get(ExifTags.Base.Orientation, 1) not in (1, None)
        image = _to_rgb(ImageOps.exif_transpose(image) if rotated else image)
    width, height = image.size
    shown = (width, height, bool(rotated))
    if width != height:
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        image = image.crop((left, top, left + side, top + side))
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=3.0)
    return np.asarray(image, dtype=np.uint8), shown


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB, with high-bit-depth greyscale scaled (not clipped) to 8 bit."""
    if image.mode in _SIXTEEN_BIT_MODES or image.mode == "I":
        values = np.asarray(image).astype(np.int64)
        low, high = (int(values.min()), int(values.max())) if values.size else (0, 0)
        if low < 0 or high > 65535:
            raise ValueError(f"{image.mode} image with values {low}..{high}: only 8- and 16-bit images are supported")
        if image.mode in _SIXTEEN_BIT_MODES or high > 255:  # mode I holding 8-bit values is left as it is
            values = (values * 255 + 32767) // 65535
        return Image.fromarray(values.astype(np.uint8)).convert("RGB")  # 2-D uint8 -> mode L
    if image.mode == "F":
        raise ValueError("32-bit floating-point image (mode F): only 8- and 16-bit images are supported")
    return image.convert("RGB")


def _try_decode(path: Path, size: int) -> tuple[np.ndarray, tuple[int, int, bool]] | str:
    try:
        return _decode(path, size=size)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        return f"{type(error).__name__}: {error}"


def cache_file(*, cache_dir: Path, listing: SourceListing, split: str, image_size: int, fingerprint: str) -> Path:
    # The root's hash keeps two copies of a dataset (or two synthetic presets) apart.
    root_key = hashlib.sha256(str(listing.root.resolve()).encode()).hexdigest()[:8]
    return Path(cache_dir) / f"{listing.dataset}-{root_key}" / f"{split}-{image_size}px-{fingerprint[:16]}.pt"


def load_split(
    listing: SourceListing,
    split: str,
    *,
    image_size: int,
    cache_dir: Path | str,
    skip_unreadable: bool = False,
    num_workers: int | None = None,
    min_image_size: int | None = None,
) -> FaceSplit:
    """The decoded split from the cache, decoding (once) and caching it when needed."""
    if min_image_size is not None and (
        not isinstance(min_image_size, int) or isinstance(min_image_size, bool) or min_image_size < 1
    ):
        raise DatasetError(f"data.min_image_size={min_image_size!r} must be a positive integer (pixels) or null (off)")
    records = listing.records(split)
    fingerprint = fingerprint_records(records, class_names=listing.class_names, extra=listing.extra_fingerprint)
    path = cache_file(
        cache_dir=Path(cache_dir), listing=listing, split=split, image_size=image_size, fingerprint=fingerprint
    )
    cached = _read_cache(path, fingerprint=fingerprint)
    if cached is None:
        cached = _decode_records(
            records, image_size=image_size, skip_unreadable=skip_unreadable, num_workers=num_workers
        )
        cached["fingerprint"] = fingerprint
        _write_atomic(path, cached)
        _remove_stale(path)
        log.info("decoded %d %s images of %s into %s", len(cached["sample_ids"]), split, listing.dataset, path)
    if cached["skipped"]:
        log.warning(
            "%s/%s: skipped %d unreadable image(s) (data.skip_unreadable=true)",
            listing.dataset,
            split,
            len(cached["skipped"]),
        )
    flagged = check_image_sizes(
        cached,
        records=records,
        where=f"{listing.dataset}/{split}",
        image_size=image_size,
        min_image_size=min_image_size,
    )
    return FaceSplit(
        name=split,
        images=cached["images"],
        labels=cached["labels"],
        is_synthetic=torch.full((len(cached["labels"]),), listing.is_synthetic, dtype=torch.bool),
        sample_ids=tuple(cached["sample_ids"]),
        class_names=listing.class_names,
        fingerprint=fingerprint,
        skipped=tuple(cached["skipped"]),
        flagged=flagged,
    )


def check_image_sizes(
    cached: dict, *, records: Sequence[ImageRecord], where: str, image_size: int, min_image_size: int | None
) -> dict[str, tuple[str, ...]]:
    """Name the images EXIF orientation turned, those much smaller than `image_size` and those far from square
    (a warning each, with names); with `min_image_size`, refuse every image whose shorter side is below it."""
    paths = {record.sample_id: record.path for record in records}
    sizes = cached["source_sizes"].tolist()
    ids = cached["sample_ids"]
    small = [(i, w, h) for i, (w, h) in zip(ids, sizes) if min(w, h) < SMALL_FRACTION * image_size]
    oblong = [(i, w, h) for i, (w, h) in zip(ids, sizes) if max(w, h) > FAR_FROM_SQUARE * min(w, h)]

    def named(items: list[tuple[str, int, int]]) -> str:
        shown = ", ".join(f"{paths.get(i, i)} ({w}x{h})" for i, w, h in items[:5])
        return shown + (f" and {len(items) - 5} more" if len(items) > 5 else "")

    if min_image_size is not None:
        refused = [(i, w, h) for i, (w, h) in zip(ids, sizes) if min(w, h) < min_image_size]
        if refused:
            raise DatasetError(
                f"{where}: {len(refused)} image(s) with a side under data.min_image_size={min_image_size}px: "
                f"{named(refused)}; remove them or lower data.min_image_size"
            )
    if cached["exif_rotated"]:
        log.info("%s: %d image(s) turned upright by their EXIF orientation tag", where, len(cached["exif_rotated"]))
    if small:
        log.warning(
            "%s: %d image(s) much smaller than the %dpx target (shorter side < %d px), upsampled a lot: %s; "
            "data.min_image_size=N refuses images under N px",
            where,
            len(small),
            image_size,
            round(SMALL_FRACTION * image_size),
            named(small),
        )
    if oblong:
        log.warning(
            "%s: %d image(s) far from square (sides over %.1f:1), centre-cropped to their middle square: %s; "
            "crop them to the face",
            where,
            len(oblong),
            FAR_FROM_SQUARE,
            named(oblong),
        )
    return {
        EXIF_ROTATED: tuple(cached["exif_rotated"]),
        SMALL: tuple(i for i, _, _ in small),
        NOT_SQUARE: tuple(i for i, _, _ in oblong),
    }


def _decode_records(
    records: Sequence[ImageRecord], *, image_size: int, skip_unreadable: bool, num_workers: int | None
) -> dict:
    # PIL releases the GIL while decoding and resizing, so threads scale without the
    # start-up cost and fork hazards of worker processes.
    workers = num_workers or min(8, os.cpu_count() or 1)
    # decode_image refuses any image over PIL's pixel limit itself (named, skippable); PIL's own
    # warning for such headers would only repeat that. (A filter, not catch_warnings: threads.)
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda r: _try_decode(r.path, image_size), records, chunksize=64))
    failures = [(record, result) for record, result in zip(records, results) if isinstance(result, str)]
    if failures and not skip_unreadable:
        shown = "\n  ".join(f"{record.path}: {message}" for record, message in failures[:10])
        raise DatasetError(
            f"{len(failures)} of {len(records)} image(s) could not be read (truncated or not an image):\n  {shown}\n"
            "Fix or remove them, or set data.skip_unreadable=true to skip them (the count is reported)."
        )
    kept = [(record, result) for record, result in zip(records, results) if not isinstance(result, str)]
    if kept:
        images = torch.from_numpy(np.stack([array for _, (array, _) in kept])).permute(0, 3, 1, 2).contiguous()
    else:
        images = torch.zeros((0, 3, image_size, image_size), dtype=torch.uint8)
    return {
        "format": CACHE_FORMAT,
        "images": images,
        "source_sizes": torch.tensor([[w, h] for _, (_, (w, h, _)) in kept], dtype=torch.long).reshape(-1, 2),
        "exif_rotated": [record.sample_id for record, (_, (_, _, rotated)) in kept if rotated],
        "labels": torch.tensor([record.label for record, _ in kept], dtype=torch.long),
        "sample_ids": [record.sample_id for record, _ in kept],
        "skipped": [record.sample_id for record, _ in failures],
    }


def _read_cache(path: Path, *, fingerprint: str) -> dict | None:
    if not path.is_file():
        return None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a cache is disposable: rebuild rather than fail
        log.warning("ignoring unreadable cache %s (%s); decoding again", path, error)
        return None
    if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT or data.get("fingerprint") != fingerprint:
        return None
    return data


def _write_atomic(path: Path, data: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(data, tmp)


def _remove_stale(current: Path) -> None:
    """Drop caches of the same dataset/split/size whose fingerprint no longer matches."""
    prefix = current.name.rsplit("-", 1)[0] + "-"
    for other in current.parent.glob(f"{prefix}*.pt"):
        if other != current:
            other.unlink(missing_ok=True)
