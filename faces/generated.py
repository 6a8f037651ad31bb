"""VAE-GAN output as a dataset: `OUT/manifest.csv` + `OUT/<class>/*.png`, every sample tagged synthetic.

The augmenter (scripts/augment.py) writes the folder; the classifier's `synthetic` strategies
read it here and concatenate it with the *real* train split. Its samples carry
`is_synthetic=True`, so `require_real` rejects them anywhere near validation or test.

manifest.csv has one row per image; the loader needs `path` (relative to OUT, a regular file
inside OUT: no `..`, no absolute path, no symbolic link) and `class_name`; the augmenter adds
provenance columns (strategy, strength, source ids, seed, checkpoint fingerprint, quality
scores). augment.json records the image size and exactly which real images the set may be
derived from (`source_ids_sha256`, a fingerprint of the sorted sample ids of the fit split, and
`source_split`, how that split was carved out): `check_generated_sources` refuses a set made
from a run's validation or test images, `load_generated` one made at another image size.

Sets are verified file by file and refused unless finished: each manifest row carries its file's
`sha256` (a changed file is refused by name and manifest line), and augment.json records the
targets, the generated images each class wants and `finished` (false until the augmenter's run
ended), so an interrupted set is refused naming the classes short and the command that
completes it. Sets made before these records still load, with one warning saying what cannot be
verified.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath

from .cache import load_split
from .errors import DatasetError, EmptyGeneratedSetError
from .listing import ImageRecord, SourceListing, require_directory
from .split import FaceSplit

MANIFEST_FILE = "manifest.csv"
# The augmenter's settings record (strategy, strength, checkpoint, judge, filter): written by
# vaegan.generation, read by reports that describe a generated set.
SETTINGS_FILE = "augment.json"
REQUIRED_COLUMNS = ("path", "class_name")
SOURCE_COLUMN = "source_ids"  # ';'-separated sample ids of the real images a generated image was made from
GENERATED_LAYOUT = "augmentation-manifest"
CHECKSUM_COLUMN = "sha256"  # sha256 of the file's bytes as the augmenter wrote them
# augment.json's completeness record (written by vaegan.generation): per-class targets (real + generated),
# generated images wanted per class, whether the run ended, and the command that made (and completes) the set.
TARGETS_KEY, WANTED_KEY, FINISHED_KEY, COMMAND_KEY = "targets", "generated_wanted", "finished", "command"

log = logging.getLogger(__name__)


def sample_ids_fingerprint(sample_ids: Iterable[str]) -> str:
    """sha256 of the sorted sample ids: which real images a split holds, independent of order,
    file times and where the dataset lives (augment.json's `source_ids_sha256`)."""
    return hashlib.sha256("\n".join(sorted(sample_ids)).encode("utf-8")).hexdigest()


def _symlink_under(root: Path, parts: Sequence[str]) -> Path | None:
    """The first path component below `root` that is a symbolic link, if any."""
    current = root
    for part in parts:
        current = current / part
        if current.is_symlink():
            return current
    return None


def manifest_fingerprint(out_dir: Path | str) -> str:
    """sha256 of manifest.csv: recorded by runs that train on the generated set."""
    return hashlib.sha256((Path(out_dir) / MANIFEST_FILE).read_bytes()).hexdigest()


def list_generated(out_dir: Path | str, *, class_names: Sequence[str]) -> SourceListing:
    root = require_directory(out_dir, what="generated data folder")
    manifest = root / MANIFEST_FILE
    if not manifest.is_file():
        raise DatasetError(f"{root} has no {MANIFEST_FILE}; create the folder with scripts/augment.py")
    index = {name: i for i, name in enumerate(class_names)}
    resolved_root = root.resolve()
    records: list[ImageRecord] = []
    first_line: dict[str, int] = {}
    missing: list[str] = []
    with manifest.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        absent = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if absent:
            raise DatasetError(f"{manifest}: missing column(s) {absent}; header is {reader.fieldnames}")
        for lineno, row in enumerate(reader, start=2):
            name, rel = row["class_name"], row["path"]
            if name not in index:
                raise DatasetError(
                    f"{manifest}:{lineno}: class {name!r} is not a class of the dataset {list(class_names)}; "
                    "the generated set was made for another dataset"
                )
            posix = PurePosixPath(rel)
            if posix.is_absolute() or ".." in posix.parts:
                raise DatasetError(f"{manifest}:{lineno}: path {rel!r} must be relative and inside {root}")
            if rel in first_line:
                raise DatasetError(f"{manifest}:{lineno}: duplicate path {rel} (first on line {first_line[rel]})")
            first_line[rel] = lineno
            path = root / posix
            link = _symlink_under(root, posix.parts)
            if link is not None or not path.resolve().is_relative_to(resolved_root):
                what = f"{link} is a symbolic link" if link is not None else f"it resolves to {path.resolve()}"
                raise DatasetError(
                    f"{manifest}:{lineno}: path {rel!r}: {what}; generated images must be regular files "
                    f"inside {root} (a link could smuggle in real or test images)"
                )
            if not path.is_file():
                missing.append(f"{path} (line {lineno})")
                continue
            if CHECKSUM_COLUMN in reader.fieldnames:
                _verify_checksum(path, row[CHECKSUM_COLUMN], where=f"{manifest}:{lineno}")
            records.append(ImageRecord(path=path, sample_id=f"generated/{rel}", label=index[name]))
    if missing:
        shown = "\n  ".join(missing[:10])
        raise DatasetError(f"{manifest} lists {len(missing)} file(s) that do not exist, e.g.:\n  {shown}")
    if not records:
        raise EmptyGeneratedSetError(
            f"no samples passed the filter: {manifest} lists no images (see {SETTINGS_FILE} and the "
            "augment table for how many candidates were rejected and why)"
        )
    return SourceListing(
        dataset="generated",
        layout=GENERATED_LAYOUT,
        root=root,
        class_names=tuple(class_names),
        splits={"train": records},
        extra_fingerprint=manifest_fingerprint(root),
        is_synthetic=True,
    )


def _verify_checksum(path: Path, expected: str | None, *, where: str) -> None:
    if not expected:
        raise DatasetError(
            f"{where}: {path} has no {CHECKSUM_COLUMN} in the manifest, although the set records checksums; "
            "the manifest was edited by hand: regenerate the set with scripts/augment.py"
        )
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    if actual != expected:
        raise DatasetError(
            f"{where}: {path} changed after it was generated (its sha256 is {actual[:12]}…, the manifest "
            f"recorded {expected[:12]}…); it is not the augmenter's image. Restore it, or regenerate the set "
            "with scripts/augment.py (--overwrite)"
        )


def _manifest_columns(root: Path) -> list[str]:
    with (root / MANIFEST_FILE).open(newline="", encoding="utf-8") as handle:
        return next(csv.reader(handle), [])


def generated_completion(out_dir: Path | str, *, counts: dict[str, int] | None = None) -> dict:
    """What a generated set records about its completeness: {"finished": bool | None (None: made before sets recorded
    it), "short": {class: (have, wanted)} for classes below what they want, "command": str | None}."""
    root = Path(out_dir)
    settings = read_generated_settings(root) or {}
    if FINISHED_KEY not in settings:
        return {"finished": None, "short": {}, "command": None}
    if counts is None and not (root / MANIFEST_FILE).is_file():
        counts = {}  # interrupted before its first batch was committed
    if counts is None:
        with (root / MANIFEST_FILE).open(newline="", encoding="utf-8") as handle:
            names = [row.get("class_name") for row in csv.DictReader(handle)]
        counts = {name: names.count(name) for name in set(names)}
    wanted = settings.get(WANTED_KEY) or {}
    short = {name: (counts.get(name, 0), int(n)) for name, n in wanted.items() if counts.get(name, 0) < int(n)}
    return {"finished": bool(settings[FINISHED_KEY]), "short": short, "command": settings.get(COMMAND_KEY)}


def check_generated_complete(out_dir: Path | str, *, allow_incomplete: bool = False) -> dict:
    """Refuse a set whose augmenter run did not finish (unless `allow_incomplete`, which is logged and returned for
    the caller to record), naming the classes short and the command that completes it. Returns generated_completion."""
    status = generated_completion(out_dir)
    short = (
        ", ".join(f"{name} has {have} of {wanted}" for name, (have, wanted) in sorted(status["short"].items()))
        or "every class has its images, but the run stopped before it ended"
    )
    if status["finished"] and status["short"]:  # the filter rejected more than the budget allowed for
        log.warning(
            "generated set %s finished short of its targets (%s generated images); see its augment table",
            out_dir,
            short,
        )
    if status["finished"] is not False:
        return {**status, "allowed_incomplete": False}
    command = status["command"] or "the scripts/augment.py command that made it, unchanged"
    if not allow_incomplete:
        raise DatasetError(
            f"generated set {out_dir} is unfinished (its run was interrupted; {SETTINGS_FILE} finished=false): "
            f"{short} generated images. Complete it with: {command}  "
            "(or train on it as it is with balance.allow_incomplete_generated=true, which is recorded)"
        )
    log.warning(
        "training on the UNFINISHED generated set %s as asked (allow_incomplete): %s generated images", out_dir, short
    )
    return {**status, "allowed_incomplete": True}


def _warn_unverifiable(root: Path, *, has_completion: bool) -> None:
    """One warning for a set made before sets recorded their completeness and per-file checksums (or by hand)."""
    has_checksums = CHECKSUM_COLUMN in _manifest_columns(root)
    if has_completion and has_checksums:
        return
    lacks = [
        what
        for what, known in (("targets and finished flag", has_completion), (f"{CHECKSUM_COLUMN} column", has_checksums))
        if not known
    ]
    cannot = [
        what
        for what, known in (("that it is complete", has_completion), ("that its files are unchanged", has_checksums))
        if not known
    ]
    log.warning(
        "generated set %s has no %s: cannot verify %s (it was made before sets recorded them, or by hand); "
        "regenerate it with scripts/augment.py to have it checked",
        root,
        " and no ".join(lacks),
        " nor ".join(cannot),
    )


def load_generated(
    out_dir: Path | str,
    *,
    class_names: Sequence[str],
    image_size: int,
    cache_dir: Path | str,
    allow_incomplete: bool = False,
) -> FaceSplit:
    """The generated images as a FaceSplit named 'generated', all `is_synthetic`; for training only.

    A set whose augment.json records another image size is refused (never silently resized), an unfinished set
    unless `allow_incomplete` (check_generated_complete), and a file whose bytes differ from its manifest
    checksum always.
    """
    settings = read_generated_settings(out_dir) or {}
    made_at = settings.get("image_size")
    if made_at is not None and made_at != image_size:
        raise DatasetError(
            f"{out_dir} holds {made_at}px images ({SETTINGS_FILE} image_size={made_at}), but this run uses "
            f"{image_size}px images (data.image_size={image_size}); generate the set at {image_size}px or set data.image_size={made_at}"
        )
    check_generated_complete(out_dir, allow_incomplete=allow_incomplete)
    listing = list_generated(out_dir, class_names=class_names)
    _warn_unverifiable(Path(out_dir), has_completion=FINISHED_KEY in settings)
    split = load_split(listing, "train", image_size=image_size, cache_dir=cache_dir)
    return FaceSplit(
        name="generated",
        images=split.images,
        labels=split.labels,
        is_synthetic=split.is_synthetic,
        sample_ids=split.sample_ids,
        class_names=split.class_names,
        fingerprint=split.fingerprint,
    )


def read_generated_settings(out_dir: Path | str) -> dict | None:
    """The settings a generated folder was made with (augment.json), or None if it has none."""
    path = Path(out_dir) / SETTINGS_FILE
    if not path.is_file():
        return None
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path}: not valid JSON ({error}); the generated set's settings are damaged") from error
    if not isinstance(settings, dict):
        raise DatasetError(f"{path}: expected a JSON object of settings, got {type(settings).__name__}")
    return settings


def check_generated_sources(
    out_dir: Path | str,
    *,
    fit_ids: Sequence[str] = (),
    val_ids: Iterable[str] = (),
    test_ids: Iterable[str] = (),
    split_seed: int | None = None,
) -> None:
    """Refuse a generated set that may be derived from this run's validation or test images.

    Two checks, before anything is decoded: (1) every real image a manifest row names in
    `source_ids` must be outside `val_ids` and `test_ids`; (2) when augment.json records
    `source_ids_sha256`, it must equal the fingerprint of this run's `fit_ids` — a set made from
    another carve-out (another data.split_seed or data.val_fraction) had a generator input and a
    quality filter that may have seen this run's validation images even where no row names one
    (e.g. the prior strategy). A hand-made set without provenance is accepted with a warning.
    """
    root = Path(out_dir)
    manifest = root / MANIFEST_FILE
    if not manifest.is_file():
        return  # load_generated reports the missing manifest
    settings = read_generated_settings(root) or {}
    made_from = settings.get("source_split") or {}
    made_seed = made_from.get("split_seed")
    this_seed = f" (data.split_seed={split_seed})" if split_seed is not None else ""
    if made_seed is not None:
        advice = (
            f"it was made from the fit split of data.split_seed={made_seed}: train with data.split_seed={made_seed}, "
            f"or regenerate the set (scripts/augment.py ... data.split_seed={split_seed if split_seed is not None else 'N'})"
        )
    else:
        advice = "regenerate the set from this run's fit split (same data.split_seed and data.val_fraction)"
    roles = {**{sample_id: "test" for sample_id in test_ids}, **{sample_id: "validation" for sample_id in val_ids}}
    with manifest.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        has_sources = SOURCE_COLUMN in (reader.fieldnames or [])
        if has_sources and roles:
            for lineno, row in enumerate(reader, start=2):
                for source in filter(None, (row.get(SOURCE_COLUMN) or "").split(";")):
                    role = roles.get(source)
                    if role == "validation":
                        raise DatasetError(
                            f"generated set {root}: {row.get('path')} ({MANIFEST_FILE}:{lineno}) is derived from the real image "
                            f"{source!r}, which is in this run's validation split{this_seed}; training on it would leak "
                            f"validation images into training. {advice[0].upper()}{advice[1:]}"
                        )
                    if role == "test":
                        raise DatasetError(
                            f"generated set {root}: {row.get('path')} ({MANIFEST_FILE}:{lineno}) is derived from the real image "
                            f"{source!r}, which is a test image; generated sets must be made from training images only"
                        )
    recorded = settings.get("source_ids_sha256")
    if recorded and fit_ids:
        mine = sample_ids_fingerprint(fit_ids)
        if recorded != mine:
            size = made_from.get("fit_images")
            raise DatasetError(
                f"generated set {root} was made from another set of real training images than this run fits on "
                f"({SETTINGS_FILE} source_ids_sha256={recorded[:12]}…{f' over {size} images' if size else ''}; this run: "
                f"{mine[:12]}… over {len(fit_ids)} images{this_seed}); its generator inputs and quality filter may include "
                f"this run's validation images. {advice[0].upper()}{advice[1:]}"
            )
    if not has_sources and not recorded:
        log.warning(
            "generated set %s records no source images (no %s column, no %s); cannot check that it was not "
            "made from validation or test images",
            root,
            SOURCE_COLUMN,
            SETTINGS_FILE,
        )
