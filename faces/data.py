"""One entry point from a `data` config to decoded splits: `load_faces(cfg.data, cache_dir=...)`."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .cache import load_split
from .errors import DatasetError
from .folder import list_image_folder
from .listing import SPLITS, SourceListing
from .rafdb import list_rafdb
from .split import FaceSplit, stratified_split
from .synthetic import get_preset, list_synthetic_faces

log = logging.getLogger(__name__)

DATASETS = ("synthetic", "rafdb", "folder")
# RAF-DB's aligned faces are 100x100; decoding at their native size loses nothing.
_NATIVE_SIZE = {"rafdb": 100}


@dataclass(frozen=True)
class FaceData:
    """The decoded splits of one dataset and how they were found on disk."""

    dataset: str
    layout: str
    root: Path
    class_names: tuple[str, ...]
    splits: dict[str, FaceSplit]
    val_fraction: float
    split_seed: int
    ignored: tuple[Path, ...] = ()

    def split(self, name: str) -> FaceSplit:
        if name not in self.splits:
            raise KeyError(
                f"split {name!r} was not loaded (loaded: {sorted(self.splits)}); pass it in load_faces(splits=...)"
            )
        return self.splits[name]

    @property
    def train(self) -> FaceSplit:
        return self.split("train")

    @property
    def test(self) -> FaceSplit:
        return self.split("test")

    def train_val(self) -> tuple[FaceSplit, FaceSplit]:
        """(train used for fitting, validation) — the same carve-out for the VAE-GAN and the classifier.

        A dataset with its own val/ folder uses it; otherwise a stratified `val_fraction` of
        the real train split, fixed by `split_seed`, is held out.
        """
        if "val" in self.splits:
            return self.train, self.splits["val"]
        keep, held = stratified_split(
            self.train.labels, fraction=self.val_fraction, seed=self.split_seed, num_classes=len(self.class_names)
        )
        return self.train.subset(keep, name="train"), self.train.subset(held, name="val")


def _get(cfg: Mapping[str, Any] | Any, key: str, default: Any = None) -> Any:
    return cfg.get(key, default) if hasattr(cfg, "get") else getattr(cfg, key, default)


def resolve_image_size(cfg: Mapping[str, Any]) -> int:
    name = _get(cfg, "name")
    size = _get(cfg, "image_size")
    if size is None:
        if name == "synthetic":
            return get_preset(_get(cfg, "preset", "small")).image_size
        if name in _NATIVE_SIZE:
            return _NATIVE_SIZE[name]
        raise DatasetError(f"data.image_size must be set for data={name} (e.g. data.image_size=100)")
    if not isinstance(size, int) or not 16 <= size <= 512:
        raise DatasetError(f"data.image_size={size!r} must be an integer in 16..512")
    return size


def list_source(cfg: Mapping[str, Any]) -> SourceListing:
    """The files of the dataset a `data` config names; all structural checks, no decoding."""
    name = _get(cfg, "name")
    if name == "synthetic":
        return list_synthetic_faces(
            root=_get(cfg, "root"),
            preset=_get(cfg, "preset", "small"),
            seed=int(_get(cfg, "seed", 0)),
            image_size=_get(cfg, "image_size"),
            num_workers=_get(cfg, "num_workers"),
            test_per_class=_get(cfg, "test_per_class"),
        )
    if name == "rafdb":
        return list_rafdb(_get(cfg, "root"))
    if name == "folder":
        class_names = _get(cfg, "class_names")
        return list_image_folder(_get(cfg, "root"), class_names=list(class_names) if class_names else None)
    raise DatasetError(f"data.name={name!r} is not a known dataset; choose one of {list(DATASETS)}")


def load_faces(cfg: Mapping[str, Any], *, cache_dir: Path | str, splits: Sequence[str] = ("train", "test")) -> FaceData:
    """Decode (once, then from cache) the requested splits of the dataset `cfg` describes.

    Only the splits asked for are read: the VAE-GAN passes `splits=("train",)` so the test
    images are never opened, let alone decoded.
    """
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise DatasetError(f"unknown split(s) {unknown}; choose from {list(SPLITS)}")
    image_size = resolve_image_size(cfg)
    val_fraction = float(_get(cfg, "val_fraction", 0.1))
    if not 0.0 < val_fraction < 1.0:
        raise DatasetError(f"data.val_fraction={val_fraction} must be in (0, 1)")
    listing = list_source(cfg)
    # An explicit val/ folder always comes with train, so train_val() is the same for every caller.
    if "train" in splits and "val" in listing.splits:
        splits = [*splits, "val"]
    wanted = [s for s in dict.fromkeys(splits) if s != "val" or "val" in listing.splits]
    if listing.ignored:
        shown = ", ".join(str(p) for p in listing.ignored[:5])
        log.warning("%s: ignored %d non-image entries, e.g. %s", listing.root, len(listing.ignored), shown)
    decoded = {
        split: load_split(
            listing,
            split,
            image_size=image_size,
            cache_dir=cache_dir,
            skip_unreadable=bool(_get(cfg, "skip_unreadable", False)),
            num_workers=_get(cfg, "num_workers"),
            min_image_size=_get(cfg, "min_image_size"),
        )
        for split in wanted
    }
    return FaceData(
        dataset=listing.dataset,
        layout=listing.layout,
        root=listing.root,
        class_names=listing.class_names,
        splits=decoded,
        val_fraction=val_fraction,
        split_seed=int(_get(cfg, "split_seed", 0)),
        ignored=tuple(listing.ignored),
    )
