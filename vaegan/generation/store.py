"""The output folder: what may be resumed or replaced, the commit of each batch, the completeness record.

One writer per OUT (faces.runkit.lock.folder_lock, taken by the run); --overwrite only ever replaces a folder
the augmenter made (it has augment.json), and then only the files the augmenter writes. progress.json
is the source of truth for resuming; manifest.csv, written first at each commit, is never behind it.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import io
import json
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from einops import rearrange

from faces import MANIFEST_FILE, SETTINGS_FILE, DatasetError, FaceSplit
from faces.generated import FINISHED_KEY, TARGETS_KEY, WANTED_KEY, read_generated_settings
from faces.io import write_json_atomic, write_text_atomic
from faces.runkit.lock import LOCK_FILE

from .filter import REJECT_REASONS
from .request import AugmentError, AugmentSettings, GenerationWriteError

PROGRESS_FILE = "progress.json"
PREVIEW_DIR = "previews"
MANIFEST_COLUMNS = (
    "path",
    "class_name",
    "label",
    "strategy",
    "strength",
    "source_ids",
    "candidate",
    "seed",
    "checkpoint_sha256",
    "judge_label",
    "judge_confidence",
    "source_distance",
    "sha256",
)
# Manifest values that may be NaN (no judge, no source): progress.json stores them as null (strict JSON).
FLOAT_COLUMNS = ("judge_confidence", "source_distance")
JUDGE_DIR = "judge"  # OUT/judge: the quality filter's classifier, trained before augment.json exists


@dataclass
class ClassProgress:
    # The next candidate index to decide on; mid-batch when a lower target stopped early, so
    # topping up later continues exactly where a single run would have gone.
    next_candidate: int = 0
    attempted: int = 0
    accepted: int = 0
    rejected: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REJECT_REASONS, 0))


def read_settings(out_dir: Path) -> dict[str, Any] | None:
    try:
        return read_generated_settings(out_dir)
    except DatasetError as error:
        raise AugmentError(str(error)) from error


def _ours_before_settings(entry: Path) -> bool:
    """What an OUT may hold before augment.json is written: the judge's run folder and the lock."""
    return entry.name in (JUDGE_DIR, LOCK_FILE) or entry.name.startswith(f"{LOCK_FILE}.stale.")


def settings_differences(stored: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """'key: old -> new' for every key of `new` whose stored value differs. The real images are compared by their
    content hash where both sides have one (the same faces written again, e.g. rendered anew in a fresh clone,
    have new file times and so another real_fingerprint), else by real_fingerprint (sets made before the hash)."""

    def norm(value: Any) -> Any:
        return list(value) if isinstance(value, tuple) else value

    skip = {"real_fingerprint"} if stored.get("real_sha256") and new.get("real_sha256") else {"real_sha256"}
    return [
        f"{k}: {stored.get(k)!r} -> {norm(v)!r}" for k, v in new.items() if k not in skip and stored.get(k) != norm(v)
    ]


def check_out_dir(out_dir: Path, settings: dict[str, Any], *, overwrite: bool) -> None:
    """Refuse an OUT that the augmenter did not make (always), or made with other settings (unless
    `overwrite`). Read-only: nothing is created or changed here.

    Called with the settings known so far before any expensive work (judge training), and
    again with the full settings right before generating.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise AugmentError(f"--out {out_dir} is a file; choose a folder")
    stored = read_settings(out_dir)
    if stored is None:
        foreign = sorted(p.name for p in out_dir.iterdir() if not _ours_before_settings(p)) if out_dir.is_dir() else []
        if foreign:
            shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
            raise AugmentError(
                f"--out {out_dir} is not an augmentation folder (no {SETTINGS_FILE}) and holds files that "
                f"scripts/augment.py did not make ({shown}); it is left untouched. Choose a new or empty folder for --out"
            )
        return
    differing = settings_differences(stored, settings)
    if differing and not overwrite:
        raise AugmentError(
            f"--out {out_dir} was made with different settings ({'; '.join(differing)}); "
            "pass --overwrite to replace it, or choose another --out"
        )


def _remove_generated(out_dir: Path, *, class_names: Sequence[str]) -> None:
    """Delete what the augmenter writes into OUT (and nothing else); augment.json goes last, so a
    removal killed halfway leaves a folder that is still recognised as the augmenter's."""
    for name in dict.fromkeys([MANIFEST_FILE, PROGRESS_FILE, PREVIEW_DIR, *class_names]):
        if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\\" in name:
            continue  # augment.json is data: a damaged or forged class name never names a path outside OUT
        path = out_dir / name
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path)
    for tmp in out_dir.glob(".*.tmp"):  # atomic-write temp files of a killed run
        tmp.unlink(missing_ok=True)
    (out_dir / SETTINGS_FILE).unlink(missing_ok=True)


def prepare_out_dir(
    out_dir: Path, settings: AugmentSettings, *, overwrite: bool, record: Mapping[str, Any] | None = None
) -> None:
    """Replace the augmenter's files if `overwrite` and the settings differ, write augment.json (the settings,
    plus `record`: provenance that is kept but does not decide resumption). OUT was checked (check_out_dir)
    before the lock was taken; the lock keeps anyone else from changing it since."""
    stored = read_settings(out_dir)
    if overwrite and stored is not None and settings_differences(stored, asdict(settings)):
        # The judge stays: ablation.judge.ensure_judge reuses it only if it was trained on the same data.
        _remove_generated(out_dir, class_names=[*(stored.get("class_names") or []), *settings.class_names])
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / SETTINGS_FILE, {**dict(record or {}), **asdict(settings)}, indent=1, sort_keys=True)


def load_progress(out_dir: Path, class_names: Sequence[str]) -> tuple[dict[str, ClassProgress], list[dict[str, Any]]]:
    path = out_dir / PROGRESS_FILE
    progress = {name: ClassProgress() for name in class_names}
    rows: list[dict[str, Any]] = []
    if path.is_file():
        try:
            data = json.loads(path.read_text())
            rows = data["rows"]
        except (ValueError, KeyError, TypeError) as error:
            raise AugmentError(
                f"{path}: damaged progress record ({type(error).__name__}: {error}); rerun with --overwrite"
            ) from error
        for name, state in data["classes"].items():
            progress[name] = ClassProgress(**state)
        # null in strict JSON is NaN in the manifest, as an uninterrupted run writes it.
        rows = [{k: float("nan") if k in FLOAT_COLUMNS and v is None else v for k, v in row.items()} for row in rows]
    # The manifest may only list files that exist: a listed file that vanished is an error
    # (regenerating it would silently change which candidates were accepted).
    missing = [row["path"] for row in rows if not (out_dir / row["path"]).is_file()]
    if missing:
        raise AugmentError(
            f"{out_dir}: {len(missing)} listed image(s) are missing (e.g. {missing[0]}); rerun with --overwrite"
        )
    for row in rows:  # rows committed before manifests carried checksums
        row.setdefault("sha256", file_sha256(out_dir / row["path"]))
    # A run stopped between the manifest and progress.json leaves the manifest one batch ahead: put it back
    # to what progress.json committed before that batch's files (orphans) are removed below.
    manifest = out_dir / MANIFEST_FILE
    if (rows or manifest.is_file()) and (
        not manifest.is_file() or manifest.read_text(encoding="utf-8") != manifest_text(rows)
    ):
        write_text_atomic(manifest, manifest_text(rows))
    # Files written by a run killed before it committed their batch are orphans: remove them,
    # the same batch is regenerated identically.
    listed = {row["path"] for row in rows}
    for name in class_names:
        for path in (out_dir / name).glob("*") if (out_dir / name).is_dir() else []:
            if path.relative_to(out_dir).as_posix() not in listed:
                path.unlink()
    return progress, rows


def canonical_order(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows by class, then candidate index: the same files give the same manifest bytes (and the same
    training order), whether one run made them or several with rising targets."""
    return sorted(rows, key=lambda row: (int(row["label"]), int(row["candidate"])))


def manifest_text(rows: Sequence[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(canonical_order(rows))
    return buffer.getvalue()


def commit(out_dir: Path, progress: dict[str, ClassProgress], rows: list[dict[str, Any]]) -> None:
    """progress.json is the source of truth for resuming; manifest.csv is written first, so progress never runs
    ahead of it (a failure between the two leaves the manifest one batch ahead, which a resume rewrites)."""
    rows = canonical_order(rows)
    write_text_atomic(out_dir / MANIFEST_FILE, manifest_text(rows))
    stored = [{k: None if k in FLOAT_COLUMNS and v != v else v for k, v in row.items()} for row in rows]
    write_json_atomic(
        out_dir / PROGRESS_FILE,
        {"classes": {k: asdict(v) for k, v in progress.items()}, "rows": stored},
        indent=1,
        sort_keys=True,
        allow_nan=False,
    )


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def completion_record(fit: FaceSplit, targets: Sequence[int]) -> dict[str, Any]:
    """What augment.json says about the set's completeness until the run ends (faces.generated reads it): the
    targets, the generated images each class wants, and finished=false (set true once every class is done)."""
    real = fit.class_counts()
    return {
        TARGETS_KEY: dict(zip(fit.class_names, map(int, targets))),
        WANTED_KEY: {name: max(0, int(t) - real[c]) for c, (name, t) in enumerate(zip(fit.class_names, targets))},
        FINISHED_KEY: False,
    }


def mark_finished(out_dir: Path) -> None:
    stored = read_settings(out_dir) or {}
    write_json_atomic(out_dir / SETTINGS_FILE, {**stored, FINISHED_KEY: True}, indent=1, sort_keys=True)


# errno values that mean "OUT cannot take more bytes or writes", not a bug: one line for the user, no traceback.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO})


@contextlib.contextmanager
def writing_into(out_dir: Path) -> Iterator[None]:
    """Turn a failed write into OUT into a GenerationWriteError naming the file and the folder; what manifest.csv
    lists is committed and complete, so the same command finishes the set once the cause is fixed."""
    try:
        yield
    except OSError as error:
        if isinstance(error, GenerationWriteError) or error.errno not in WRITE_ERRNOS:
            raise
        target = error.filename2 if str(error.filename or "").endswith(".tmp") and error.filename2 else error.filename
        raise GenerationWriteError(
            error.errno,
            f"cannot write {target or 'a file'} in {out_dir}: {error.strerror or error}. Everything "
            f"{MANIFEST_FILE} lists is complete and kept; free space (or fix the folder) and re-run the same command to "
            "finish the set",
        ) from error


def read_accepted(out_dir: Path, rows: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
    """The images an earlier (interrupted or lower-target) run accepted, per class in candidate order:
    PNG is lossless, so the near-duplicate check sees exactly what a single run would have."""
    from PIL import Image

    by_class: dict[str, list[torch.Tensor]] = {}
    for row in sorted(rows, key=lambda r: (r["class_name"], int(r["candidate"]))):
        with Image.open(out_dir / row["path"]) as image:
            array = np.asarray(image.convert("RGB"))
        by_class.setdefault(row["class_name"], []).append(rearrange(torch.from_numpy(array.copy()), "h w c -> c h w"))
    return {name: torch.stack(images) for name, images in by_class.items()}


def refuse_inside_dataset(out_dir: Path, *, dataset_root: Path) -> None:
    """Generated images must never land inside the real dataset, where a loader would take them for real."""
    out, root = Path(out_dir).resolve(), Path(dataset_root).resolve()
    if out == root or root in out.parents or out in root.parents:
        raise AugmentError(f"--out {out} overlaps the real dataset folder {root}; choose a folder outside it")
