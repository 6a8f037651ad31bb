"""Fill each class up to its target with filtered VAE-GAN samples; resumable and reproducible.

Determinism is organised around fixed candidate batches: candidate `k` of class `c` lives in
batch `k // batch_size`, whose sources, noise and judge scores depend only on
(seed, c, batch). Progress (the next undecided candidate per class) is committed after
each batch's files are written, so a killed run re-run with the same command regenerates
exactly what was not committed and ends byte-identical to an uninterrupted run; raising
the target later continues from the same candidate as a single run would. manifest.csv lists
its rows in one canonical order (class, then candidate index), however many runs made them.

One writer per OUT (faces.lock.folder_lock); --overwrite only ever replaces a folder the
augmenter made (it has augment.json), and then only the files the augmenter writes.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import functools
import hashlib
import io
import json
import logging
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from einops import rearrange

from faces import MANIFEST_FILE, SETTINGS_FILE, DatasetError, FaceSplit
from faces.generated import FINISHED_KEY, TARGETS_KEY, WANTED_KEY, read_generated_settings, sample_ids_fingerprint
from faces.io import write_json_atomic, write_text_atomic
from faces.lock import LOCK_FILE, folder_lock

from ..images import resize_uint8, to_model_range
from .perturbations import LatentBatch, Perturbation, class_scale_for
from .render import render, render_for
from .preview import preview_grids
from .quality import NEAR_DUPLICATE_FRACTION, nearest_distances, real_spacing
from .writer import PngWriterPool

log = logging.getLogger(__name__)

PROGRESS_FILE = "progress.json"
PREVIEW_DIR = "previews"
MANIFEST_COLUMNS = (
    "path", "class_name", "label", "strategy", "strength", "source_ids", "candidate", "seed",
    "checkpoint_sha256", "judge_label", "judge_confidence", "source_distance", "sha256",
)
# Manifest values that may be NaN (no judge, no source): progress.json stores them as null (strict JSON).
FLOAT_COLUMNS = ("judge_confidence", "source_distance")
REJECT_REASONS = ("wrong_class", "low_confidence", "near_duplicate")
REJECTED_EARLIER = -2  # candidates of a resumed batch that an earlier run already decided on
JUDGE_DIR = "judge"  # OUT/judge: the quality filter's classifier, trained before augment.json exists


class AugmentError(ValueError):
    """Bad arguments or an output folder that cannot be used as asked."""


class GenerationWriteError(OSError):
    """Writing into OUT failed (a full disk, a quota, a folder turned read-only); what was committed is kept."""


@dataclass(frozen=True)
class AugmentSettings:
    """Everything that decides which images come out; an OUT folder is only resumed with equal settings."""

    checkpoint_sha256: str
    strategy: str
    strength: float
    # How codes become images (vaegan.augment.render): "residual" or "decoder".
    render: str
    seed: int
    batch_size: int
    image_size: int
    class_names: tuple[str, ...]
    real_fingerprint: str
    # Exactly which real images the set may be derived from: sha256 of the fit split's sorted sample ids.
    source_ids_sha256: str
    filter: bool
    judge_sha256: str | None
    min_confidence: float
    min_source_distance: float


@dataclass
class ClassProgress:
    # The next candidate index to decide on; mid-batch when a lower target stopped early, so
    # topping up later continues exactly where a single run would have gone.
    next_candidate: int = 0
    attempted: int = 0
    accepted: int = 0
    rejected: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REJECT_REASONS, 0))


@dataclass(frozen=True)
class ClassReport:
    class_name: str
    real: int
    target: int
    generated: int
    rejected: int
    final: int
    shortfall: int


@dataclass(frozen=True)
class AugmentReport:
    out_dir: Path
    classes: list[ClassReport]
    written_this_run: int
    seconds: float
    previews: list[Path] = field(default_factory=list)
    # The filter's judge on real validation images: {"validation_recall": {class: r}, "weak_classes": [...],
    # "recall_floor": f, ...} (written by the caller that owns the judge), or None without a filter.
    judge_quality: dict[str, Any] | None = None

    @property
    def images_per_second(self) -> float:
        return self.written_this_run / self.seconds if self.seconds > 0 else 0.0

    def table(self) -> str:
        recall = (self.judge_quality or {}).get("validation_recall") or {}
        weak = set((self.judge_quality or {}).get("weak_classes") or [])
        lines = [f"{'class':<12}{'real':>8}{'target':>8}{'generated':>11}{'rejected':>10}{'final':>8}"
                 + (f"{'judge val recall':>18}" if recall else "")]
        for r in self.classes:
            short = f"  SHORT by {r.shortfall}" if r.shortfall else ""
            judged = ""
            if recall:
                value = recall.get(r.class_name)
                judged = f"{'–' if value is None or value != value else f'{value:.2f}':>18}" + (" WEAK JUDGE" if r.class_name in weak else "")
            lines.append(f"{r.class_name:<12}{r.real:>8}{r.target:>8}{r.generated:>11}{r.rejected:>10}{r.final:>8}{judged}{short}")
        if weak:
            lines.append(f"WARNING: the judge's validation recall is below {self.judge_quality['recall_floor']:g} for "
                         f"{', '.join(sorted(weak))}: its accept/reject verdicts on those classes mean little")
        return "\n".join(lines)


Judge = Callable[[torch.Tensor], torch.Tensor]  # uint8 [N, 3, H, W] -> class probabilities [N, C]
Embed = Callable[[torch.Tensor], torch.Tensor]  # uint8 [N, 3, H, W] -> features [N, D] (the generation report's space)


class DuplicateFilter:
    """The generation report's near-duplicate rule (vaegan.augment.quality), applied while filtering: a
    candidate closer than NEAR_DUPLICATE_FRACTION x its class's real spacing to any real training image
    (every class) or to a sample of its class accepted before it is rejected. One definition, so the
    report's after-filter near-duplicate share measures what the filter let through.

    The real images are embedded on first use: a re-run of a finished set never needs them."""

    def __init__(self, *, embed: Embed, fit: FaceSplit) -> None:
        self.embed, self._fit = embed, fit

    @functools.cached_property
    def real_features(self) -> torch.Tensor:
        """[N, D] features of every image of the fit split."""
        return self.embed(self._fit.images).cpu()

    @functools.cached_property
    def thresholds(self) -> tuple[float, ...]:
        """Per class: NEAR_DUPLICATE_FRACTION x the class's median real-to-real nearest-neighbour distance."""
        labels = self._fit.labels
        return tuple(NEAR_DUPLICATE_FRACTION * real_spacing(self.real_features[labels == c]) for c in range(len(self._fit.class_names)))


def _batch_generator(*, seed: int, label: int, batch: int) -> torch.Generator:
    # One independent stream per (seed, class, batch), on the CPU so draws do not depend on
    # the device.
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, label, batch]).generate_state(1)[0]))


def _source_order(*, n_sources: int, seed: int, label: int, epoch: int) -> torch.Tensor:
    """A fresh permutation of the sources per pass, so every real image is used about equally."""
    generator = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, label, 10**6 + epoch]).generate_state(1)[0]))
    return torch.randperm(n_sources, generator=generator)


def source_indices(*, candidates: Sequence[int], n_sources: int, seed: int, label: int) -> list[int]:
    """Which source (0..n_sources-1) candidate k uses: pass k // n through a per-pass permutation."""
    orders: dict[int, torch.Tensor] = {}
    result = []
    for k in candidates:
        epoch = k // n_sources
        if epoch not in orders:
            orders[epoch] = _source_order(n_sources=n_sources, seed=seed, label=label, epoch=epoch)
        result.append(int(orders[epoch][k % n_sources]))
    return result


def check_render_for(perturbation: Perturbation, render_mode: str | None) -> str:
    """vaegan.augment.render.render_for, as the augmenter's own error."""
    try:
        return render_for(perturbation, render_mode)
    except ValueError as error:
        raise AugmentError(f"--render={render_mode or perturbation.render}: {error}") from error


def check_generation_args(*, min_confidence: float, min_source_distance: float, max_attempts_factor: float,
                          workers: int | None, batch_size: int) -> None:
    """Refuse filter and budget settings that cannot do what they say, naming the flag and the value."""
    if not 0.0 <= min_confidence <= 1.0:
        raise AugmentError(f"--min-confidence={min_confidence:g} must be a probability in [0, 1]")
    if not min_source_distance >= 0.0:
        raise AugmentError(f"--min-source-distance={min_source_distance:g} must be >= 0 (a mean absolute pixel difference in 0..1)")
    if not max_attempts_factor > 0.0 or not np.isfinite(max_attempts_factor):
        raise AugmentError(f"--max-attempts-factor={max_attempts_factor:g} must be a positive number of candidates per image needed")
    if workers is not None and workers < 0:
        raise AugmentError(f"--workers={workers} must be >= 0 (0 writes PNGs in this process)")
    if batch_size < 1:
        raise AugmentError(f"--batch-size={batch_size} must be >= 1")


def read_settings(out_dir: Path) -> dict[str, Any] | None:
    try:
        return read_generated_settings(out_dir)
    except DatasetError as error:
        raise AugmentError(str(error)) from error


def _ours_before_settings(entry: Path) -> bool:
    """What an OUT may hold before augment.json is written: the judge's run folder and the lock."""
    return entry.name in (JUDGE_DIR, LOCK_FILE) or entry.name.startswith(f"{LOCK_FILE}.stale.")


def settings_differences(stored: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """'key: old -> new' for every key of `new` whose stored value differs."""
    def norm(value: Any) -> Any:
        return list(value) if isinstance(value, tuple) else value

    return [f"{k}: {stored.get(k)!r} -> {norm(v)!r}" for k, v in new.items() if stored.get(k) != norm(v)]


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
            raise AugmentError(f"--out {out_dir} is not an augmentation folder (no {SETTINGS_FILE}) and holds files that "
                               f"scripts/augment.py did not make ({shown}); it is left untouched. Choose a new or empty folder for --out")
        return
    differing = settings_differences(stored, settings)
    if differing and not overwrite:
        raise AugmentError(f"--out {out_dir} was made with different settings ({'; '.join(differing)}); "
                           "pass --overwrite to replace it, or choose another --out")


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


def _prepare_out_dir(out_dir: Path, settings: AugmentSettings, *, overwrite: bool,
                     record: Mapping[str, Any] | None = None) -> None:
    """Check OUT, replace the augmenter's files if `overwrite` and the settings differ, write augment.json
    (the settings, plus `record`: provenance that is kept but does not decide resumption)."""
    check_out_dir(out_dir, asdict(settings), overwrite=overwrite)
    stored = read_settings(out_dir)
    if overwrite and stored is not None and settings_differences(stored, asdict(settings)):
        # The judge stays: ablation.judge.ensure_judge reuses it only if it was trained on the same data.
        _remove_generated(out_dir, class_names=[*(stored.get("class_names") or []), *settings.class_names])
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / SETTINGS_FILE, {**dict(record or {}), **asdict(settings)}, indent=1, sort_keys=True)


def _load_progress(out_dir: Path, class_names: Sequence[str]) -> tuple[dict[str, ClassProgress], list[dict[str, Any]]]:
    path = out_dir / PROGRESS_FILE
    progress = {name: ClassProgress() for name in class_names}
    rows: list[dict[str, Any]] = []
    if path.is_file():
        try:
            data = json.loads(path.read_text())
            rows = data["rows"]
        except (ValueError, KeyError, TypeError) as error:
            raise AugmentError(f"{path}: damaged progress record ({type(error).__name__}: {error}); rerun with --overwrite") from error
        for name, state in data["classes"].items():
            progress[name] = ClassProgress(**state)
        # null in strict JSON is NaN in the manifest, as an uninterrupted run writes it.
        rows = [{k: float("nan") if k in FLOAT_COLUMNS and v is None else v for k, v in row.items()} for row in rows]
    # The manifest may only list files that exist: a listed file that vanished is an error
    # (regenerating it would silently change which candidates were accepted).
    missing = [row["path"] for row in rows if not (out_dir / row["path"]).is_file()]
    if missing:
        raise AugmentError(f"{out_dir}: {len(missing)} listed image(s) are missing (e.g. {missing[0]}); rerun with --overwrite")
    for row in rows:  # rows committed before manifests carried checksums
        row.setdefault("sha256", file_sha256(out_dir / row["path"]))
    # A run stopped between the manifest and progress.json leaves the manifest one batch ahead: put it back
    # to what progress.json committed before that batch's files (orphans) are removed below.
    manifest = out_dir / MANIFEST_FILE
    if (rows or manifest.is_file()) and (not manifest.is_file() or manifest.read_text(encoding="utf-8") != manifest_text(rows)):
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


def _commit(out_dir: Path, progress: dict[str, ClassProgress], rows: list[dict[str, Any]]) -> None:
    """progress.json is the source of truth for resuming; manifest.csv is written first, so progress never runs
    ahead of it (a failure between the two leaves the manifest one batch ahead, which a resume rewrites)."""
    rows = canonical_order(rows)
    write_text_atomic(out_dir / MANIFEST_FILE, manifest_text(rows))
    stored = [{k: None if k in FLOAT_COLUMNS and v != v else v for k, v in row.items()} for row in rows]
    write_json_atomic(out_dir / PROGRESS_FILE, {"classes": {k: asdict(v) for k, v in progress.items()}, "rows": stored},
                      indent=1, sort_keys=True, allow_nan=False)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@torch.no_grad()
def _encode_sources(model, images: torch.Tensor, labels: torch.Tensor, *, device: torch.device, batch_size: int):
    mus, logvars = [], []
    for start in range(0, len(images), batch_size):
        x = to_model_range(resize_uint8(images[start : start + batch_size], size=model.resolution).to(device))
        mu, logvar = model.encode(x, labels[start : start + batch_size].to(device))
        mus.append(mu.float())
        logvars.append(logvar.float())
    return torch.cat(mus), torch.cat(logvars)


@dataclass
class ClassPlan:
    """What one class still needs: its real source images (the fit split's) and its candidate budget."""

    label: int
    name: str
    need: int
    budget: int
    members: torch.Tensor          # indices into the fit split
    source_images: torch.Tensor    # uint8 [n, 3, H, W]
    source_labels: torch.Tensor    # the label each source was encoded with (its own)
    # The class's own real images, for the pixel near-duplicate test (None: the sources are the class's own).
    class_images: torch.Tensor | None = None
    mu: torch.Tensor | None = None
    logvar: torch.Tensor | None = None
    class_scale: torch.Tensor | None = None  # L with L L^T = Cov(mu | class), for the semantic perturbation
    # Samples of this class accepted so far (earlier runs' from disk, then this run's), in candidate
    # order: a new candidate too close to any of them is a near-duplicate.
    accepted: torch.Tensor | None = None
    accepted_features: torch.Tensor | None = None  # their features, with a DuplicateFilter


@dataclass
class CandidateBatch:
    """One fixed batch of candidates of one class: images, their sources and the filter's verdicts."""

    batch: int
    candidates: list[int]
    images: torch.Tensor           # uint8 [B, 3, H, W] at the data's image size
    sources: list[int]             # index into plan.members per candidate ([] for source-free strategies)
    partners: list[int]
    reason: torch.Tensor | None = None
    judge_label: torch.Tensor | None = None
    judge_confidence: torch.Tensor | None = None
    distance: torch.Tensor | None = None
    features: torch.Tensor | None = None  # DuplicateFilter features of the candidates it embedded (NaN elsewhere)


def donor_indices(labels: torch.Tensor, *, label: int, counts: Sequence[int]) -> torch.Tensor:
    """Fit-split indices of the real images a donor strategy may start from for class `label`: those of
    the classes with more real images (M2m translates majority into minority), or of every other class
    when none is larger."""
    larger = [c for c, n in enumerate(counts) if n > counts[label]]
    pool = larger or [c for c in range(len(counts)) if c != label]
    return torch.isin(labels, torch.as_tensor(pool, dtype=labels.dtype)).nonzero().flatten()


def plan(*, model, fit: FaceSplit, targets: Sequence[int], progress: dict[str, ClassProgress], perturbation: Perturbation,
         max_attempts_factor: float, device: torch.device, batch_size: int,
         accepted: Mapping[str, torch.Tensor] | None = None) -> list[ClassPlan]:
    """The classes below their target, with their sources encoded once (not per batch) and the
    samples already accepted for them (`accepted`, e.g. read back from an interrupted run's PNGs)."""
    real_counts = fit.class_counts()
    plans = []
    for label, name in enumerate(fit.class_names):
        need = targets[label] - real_counts[label] - progress[name].accepted
        if need <= 0:
            continue
        own = (fit.labels == label).nonzero().flatten()
        members = donor_indices(fit.labels, label=label, counts=real_counts) if perturbation.donors else own
        if perturbation.sources and len(members) == 0:
            raise AugmentError(f"class {name} has no real training images to {'borrow' if perturbation.donors else 'perturb'}")
        item = ClassPlan(label=label, name=name, need=need, members=members, source_images=fit.images[members],
                         source_labels=fit.labels[members], class_images=fit.images[own] if perturbation.donors else None,
                         budget=int(np.ceil(max_attempts_factor * (targets[label] - real_counts[label]))),
                         accepted=(accepted or {}).get(name, torch.zeros((0, *fit.images.shape[1:]), dtype=torch.uint8)))
        if perturbation.sources:
            item.mu, item.logvar = _encode_sources(model, item.source_images, item.source_labels, device=device, batch_size=batch_size)
            item.class_scale = class_scale_for(perturbation, item.mu)
        plans.append(item)
    return plans


def generate(*, model, item: ClassPlan, batch: int, perturbation: Perturbation, strength: float, seed: int, batch_size: int,
             image_size: int, device: torch.device, render_mode: str | None = None) -> CandidateBatch:
    """Decode candidate batch `batch` of a class; its noise and sources depend only on (seed, class, batch).
    `render_mode` (default: the perturbation's own) says how codes become images (vaegan.augment.render)."""
    candidates = list(range(batch * batch_size, (batch + 1) * batch_size))
    generator = _batch_generator(seed=seed, label=item.label, batch=batch)
    noise = torch.randn((batch_size, model.latent_dim), generator=generator)
    mix = torch.rand((batch_size, 1), generator=generator)
    labels = torch.full((batch_size,), item.label, dtype=torch.long)
    n = len(item.members)
    if perturbation.sources:
        src = source_indices(candidates=candidates, n_sources=n, seed=seed, label=item.label)
        partner_offset = torch.randint(1, max(2, n), (batch_size,), generator=generator)
        partner = [(s + int(o)) % n if n > 1 else s for s, o in zip(src, partner_offset)]
        latents = LatentBatch(mu=item.mu[src], logvar=item.logvar[src], partner_mu=item.mu[partner],
                              noise=noise.to(device), mix=mix.to(device), class_scale=item.class_scale)
    else:
        src, partner = [], []
        zeros = torch.zeros((batch_size, model.latent_dim), device=device)
        latents = LatentBatch(mu=zeros, logvar=zeros, partner_mu=zeros, noise=noise.to(device), mix=mix.to(device))
    with torch.no_grad():
        z = perturbation.apply(latents, float(strength))
    sourced = dict(source_images=item.source_images[src], source_mu=item.mu[src], source_labels=item.source_labels[src]) if src else {}
    images = render(model, z=z, labels=labels.to(device), mode=render_mode or perturbation.render, image_size=image_size, **sourced)
    return CandidateBatch(batch=batch, candidates=candidates, images=images, sources=src, partners=partner)


def judge_batch(candidates: CandidateBatch, *, item: ClassPlan, judge: Judge | None, min_confidence: float,
                min_source_distance: float, undecided_from: int, duplicates: DuplicateFilter | None = None) -> None:
    """Fill in the filter's verdict per candidate: -1 accepted, else an index into REJECT_REASONS
    (REJECTED_EARLIER for candidates a previous run already decided on)."""
    size = len(candidates.candidates)
    reason = torch.full((size,), -1)
    judge_label = torch.full((size,), -1)
    judge_conf = torch.full((size,), float("nan"))
    distance = torch.full((size,), float("nan"))
    if candidates.sources:
        distance = (candidates.images.float() - item.source_images[candidates.sources].float()).abs().mean(dim=(1, 2, 3)) / 255.0
    if judge is not None:
        probs = judge(candidates.images).float().cpu()
        judge_label = probs.argmax(dim=1)
        judge_conf = probs[:, item.label]
        # A copy of *any* real training image of the class (not only its source) adds nothing oversampling lacks.
        nearest_real = nearest_pixel_distance(candidates.images, item.source_images if item.class_images is None else item.class_images)
        reason[(distance < min_source_distance) | (nearest_real < min_source_distance)] = REJECT_REASONS.index("near_duplicate")
        reason[judge_conf < min_confidence] = REJECT_REASONS.index("low_confidence")
        reason[judge_label != item.label] = REJECT_REASONS.index("wrong_class")
    reason[:undecided_from] = REJECTED_EARLIER
    if judge is not None:
        _reject_copies_of_accepted(candidates.images, reason, accepted=item.accepted, min_distance=min_source_distance)
    if judge is not None and duplicates is not None:
        _reject_feature_duplicates(candidates, reason, item=item, duplicates=duplicates)
    candidates.reason, candidates.judge_label, candidates.judge_confidence, candidates.distance = reason, judge_label, judge_conf, distance


def nearest_pixel_distance(images: torch.Tensor, references: torch.Tensor | None) -> torch.Tensor:
    """Mean absolute pixel difference (0..1) of each image to its nearest reference (inf with none)."""
    if references is None or references.shape[0] == 0:
        return torch.full((images.shape[0],), float("inf"))
    flat = rearrange(images.float(), "n c h w -> n (c h w)") / 255.0
    refs = rearrange(references.float(), "n c h w -> n (c h w)") / 255.0
    # L1 distance / number of values = mean absolute difference; chunked to bound memory.
    return torch.cat([torch.cdist(chunk, refs, p=1).min(dim=1).values for chunk in flat.split(64)]) / flat.shape[1]


def _reject_copies_of_accepted(images: torch.Tensor, reason: torch.Tensor, *, accepted: torch.Tensor | None, min_distance: float) -> None:
    """In candidate order: a candidate the filter would accept is a near-duplicate if it is within
    `min_distance` of a sample accepted before it (earlier batches, runs, or this batch)."""
    pool = accepted if accepted is not None else images[:0]
    kept: list[int] = []
    for i in (reason == -1).nonzero().flatten().tolist():
        previous = torch.cat([pool, images[kept]]) if kept else pool
        if float(nearest_pixel_distance(images[i : i + 1], previous)[0]) < min_distance:
            reason[i] = REJECT_REASONS.index("near_duplicate")
        else:
            kept.append(i)


def _reject_feature_duplicates(candidates: CandidateBatch, reason: torch.Tensor, *, item: ClassPlan,
                               duplicates: DuplicateFilter) -> None:
    """DuplicateFilter's rule on the candidates still accepted, in candidate order. Only those are embedded:
    the judge has already rejected most of a batch, and the feature network is the expensive part."""
    alive = (reason == -1).nonzero().flatten()
    if len(alive) == 0:
        return
    features = duplicates.embed(candidates.images[alive]).cpu()
    threshold = duplicates.thresholds[item.label]
    near_real = nearest_distances(features, duplicates.real_features) < threshold
    pool = item.accepted_features if item.accepted_features is not None else features[:0]
    kept: list[int] = []
    for j, i in enumerate(alive.tolist()):
        previous = torch.cat([pool, features[kept]]) if kept else pool
        if bool(near_real[j]) or float(nearest_distances(features[j : j + 1], previous)[0]) < threshold:
            reason[i] = REJECT_REASONS.index("near_duplicate")
        else:
            kept.append(j)
    candidates.features = torch.full((len(reason), features.shape[1]), float("nan"), dtype=features.dtype)
    candidates.features[alive] = features


def manifest_row(candidates: CandidateBatch, i: int, *, item: ClassPlan, fit: FaceSplit, perturbation: Perturbation,
                 strength: float, seed: int, checkpoint_sha256: str) -> dict[str, Any]:
    """The provenance of accepted candidate i: which real images it came from and how it was judged."""
    name, k = item.name, candidates.candidates[i]
    if not candidates.sources:
        used = []
    elif perturbation.sources == 2:
        used = [candidates.sources[i], candidates.partners[i]]
    else:
        used = [candidates.sources[i]]
    return {
        "path": f"{name}/{name}_{k:07d}.png", "class_name": name, "label": item.label, "strategy": perturbation.name,
        "strength": float(strength), "source_ids": ";".join(fit.sample_ids[int(item.members[j])] for j in used),
        "candidate": k, "seed": seed, "checkpoint_sha256": checkpoint_sha256,
        "judge_label": int(candidates.judge_label[i]), "judge_confidence": round(float(candidates.judge_confidence[i]), 6),
        "source_distance": round(float(candidates.distance[i]), 6),
    }


def augment(
    *,
    model,
    checkpoint_sha256: str,
    fit: FaceSplit,
    out_dir: Path,
    targets: Sequence[int],
    perturbation: Perturbation,
    strength: float,
    seed: int,
    batch_size: int = 256,
    judge: Judge | None = None,
    judge_sha256: str | None = None,
    duplicates: DuplicateFilter | None = None,
    render_mode: str | None = None,
    min_confidence: float = 0.5,
    min_source_distance: float = 0.02,
    max_attempts_factor: float = 10.0,
    device: torch.device | str = "cpu",
    workers: int = 0,
    overwrite: bool = False,
    preview_sources: int = 4,
    preview_variants: int = 8,
    source_split: Mapping[str, Any] | None = None,
    extra_record: Mapping[str, Any] | None = None,
) -> AugmentReport:
    """Generate `targets[c] - real[c]` accepted images for every class below its target:
    plan (what each class needs), then per fixed candidate batch generate, judge and commit.

    `fit` is the real train split *minus validation*: sources come only from images the
    classifier trains on, so nothing of the validation images leaks into training data.
    augment.json records exactly which images those are (`source_ids_sha256`) and, from
    `source_split` (e.g. {"split_seed": 0, "val_fraction": 0.1}), how they were carved out, so a
    classifier with another carve-out refuses the set (faces.check_generated_sources).
    """
    if fit.is_synthetic.any():
        raise AugmentError("source images must be real; the split passed in contains generated samples")
    if len(targets) != len(fit.class_names):
        raise AugmentError(f"{len(targets)} targets for {len(fit.class_names)} classes")
    check_generation_args(min_confidence=min_confidence, min_source_distance=min_source_distance,
                          max_attempts_factor=max_attempts_factor, workers=workers, batch_size=batch_size)
    render_mode = check_render_for(perturbation, render_mode)
    settings = AugmentSettings(
        checkpoint_sha256=checkpoint_sha256, strategy=perturbation.name, strength=float(strength), render=render_mode, seed=int(seed),
        batch_size=int(batch_size), image_size=fit.image_size, class_names=tuple(fit.class_names),
        real_fingerprint=fit.fingerprint, source_ids_sha256=sample_ids_fingerprint(fit.sample_ids),
        filter=judge is not None, judge_sha256=judge_sha256,
        min_confidence=float(min_confidence), min_source_distance=float(min_source_distance),
    )
    out_dir = Path(out_dir)
    check_out_dir(out_dir, asdict(settings), overwrite=overwrite)  # before the lock creates anything in OUT
    # Provenance kept in augment.json that does not decide resumption (e.g. the judge's validation quality).
    record = {"source_split": {**dict(source_split or {}), "fit_images": len(fit)}, **dict(extra_record or {}),
              **completion_record(fit, targets)}
    with writing_into(out_dir), folder_lock(out_dir, what="augmentation"):
        return _augment_locked(
            model=model, checkpoint_sha256=checkpoint_sha256, fit=fit, out_dir=out_dir, targets=targets,
            perturbation=perturbation, strength=strength, seed=seed, batch_size=batch_size, judge=judge, render_mode=render_mode,
            duplicates=duplicates,
            min_confidence=min_confidence, min_source_distance=min_source_distance,
            max_attempts_factor=max_attempts_factor, device=torch.device(device), workers=workers, overwrite=overwrite,
            preview_sources=preview_sources, preview_variants=preview_variants, settings=settings, record=record,
        )


def completion_record(fit: FaceSplit, targets: Sequence[int]) -> dict[str, Any]:
    """What augment.json says about the set's completeness until the run ends (faces.generated reads it): the
    targets, the generated images each class wants, and finished=false (set true once every class is done)."""
    real = fit.class_counts()
    return {TARGETS_KEY: dict(zip(fit.class_names, map(int, targets))),
            WANTED_KEY: {name: max(0, int(t) - real[c]) for c, (name, t) in enumerate(zip(fit.class_names, targets))},
            FINISHED_KEY: False}


def _mark_finished(out_dir: Path) -> None:
    stored = read_settings(out_dir) or {}
    write_json_atomic(out_dir / SETTINGS_FILE, {**stored, FINISHED_KEY: True}, indent=1, sort_keys=True)


# errno values that mean "OUT cannot take more bytes or writes", not a bug: one line for the user, no traceback.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO})


@contextlib.contextmanager
def writing_into(out_dir: Path):
    """Turn a failed write into OUT into a GenerationWriteError naming the file and the folder; what manifest.csv
    lists is committed and complete, so the same command finishes the set once the cause is fixed."""
    try:
        yield
    except OSError as error:
        if isinstance(error, GenerationWriteError) or error.errno not in WRITE_ERRNOS:
            raise
        target = error.filename2 if str(error.filename or "").endswith(".tmp") and error.filename2 else error.filename
        raise GenerationWriteError(
            error.errno, f"cannot write {target or 'a file'} in {out_dir}: {error.strerror or error}. Everything "
            f"{MANIFEST_FILE} lists is complete and kept; free space (or fix the folder) and re-run the same command to "
            "finish the set") from error


def _read_accepted(out_dir: Path, rows: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
    """The images an earlier (interrupted or lower-target) run accepted, per class in candidate order:
    PNG is lossless, so the near-duplicate check sees exactly what a single run would have."""
    from PIL import Image

    by_class: dict[str, list[torch.Tensor]] = {}
    for row in sorted(rows, key=lambda r: (r["class_name"], int(r["candidate"]))):
        with Image.open(out_dir / row["path"]) as image:
            array = np.asarray(image.convert("RGB"))
        by_class.setdefault(row["class_name"], []).append(rearrange(torch.from_numpy(array.copy()), "h w c -> c h w"))
    return {name: torch.stack(images) for name, images in by_class.items()}


def _augment_locked(*, model, checkpoint_sha256: str, fit: FaceSplit, out_dir: Path, targets: Sequence[int],
                    perturbation: Perturbation, strength: float, seed: int, batch_size: int, judge: Judge | None, render_mode: str,
                    duplicates: DuplicateFilter | None,
                    min_confidence: float, min_source_distance: float, max_attempts_factor: float, device: torch.device,
                    workers: int, overwrite: bool, preview_sources: int, preview_variants: int,
                    settings: AugmentSettings, record: Mapping[str, Any]) -> AugmentReport:
    model = model.to(device).eval()
    _prepare_out_dir(out_dir, settings, overwrite=overwrite, record=record)
    progress, rows = _load_progress(out_dir, fit.class_names)
    real_counts = fit.class_counts()
    for label, name in enumerate(fit.class_names):
        if progress[name].accepted > max(0, targets[label] - real_counts[label]):
            raise AugmentError(
                f"{out_dir} already holds {progress[name].accepted} {name} images, more than target {targets[label]} minus "
                f"{real_counts[label]} real; pass --overwrite or choose another --out"
            )

    started = time.perf_counter()
    written = 0
    plans = plan(model=model, fit=fit, targets=targets, progress=progress, perturbation=perturbation,
                 max_attempts_factor=max_attempts_factor, device=device, batch_size=batch_size,
                 accepted=_read_accepted(out_dir, rows) if judge is not None else None)
    if judge is not None and duplicates is not None:
        for item in plans:  # samples accepted by an earlier run, embedded as a single run would have them
            empty = duplicates.real_features[:0]
            item.accepted_features = duplicates.embed(item.accepted).cpu() if len(item.accepted) else empty
    with PngWriterPool(workers=workers) as pool:
        pending: tuple[list, dict, int] | None = None

        def settle(pending_batch) -> None:
            futures, snapshot, n_rows = pending_batch
            for future in futures:
                future.result()
            for row in rows[:n_rows]:  # this batch's files, now on disk: the manifest records what they hold
                if "sha256" not in row:
                    row["sha256"] = file_sha256(out_dir / row["path"])
            _commit(out_dir, snapshot, rows[:n_rows])

        for item in plans:
            state = progress[item.name]
            (out_dir / item.name).mkdir(exist_ok=True)
            need = item.need
            while need > 0 and state.attempted < item.budget:
                b, start = divmod(state.next_candidate, batch_size)
                candidates = generate(model=model, item=item, batch=b, perturbation=perturbation, strength=strength, seed=seed,
                                      batch_size=batch_size, image_size=fit.image_size, device=device, render_mode=render_mode)
                judge_batch(candidates, item=item, judge=judge, min_confidence=min_confidence,
                            min_source_distance=min_source_distance, undecided_from=start, duplicates=duplicates)
                accepted = (candidates.reason == -1).nonzero().flatten()[:need].tolist()
                # Candidates after the last one needed stay undecided (not counted as attempts).
                decided = accepted[-1] + 1 if len(accepted) == need else batch_size
                state.attempted += decided - start
                for code, reason_name in enumerate(REJECT_REASONS):
                    state.rejected[reason_name] += int((candidates.reason[start:decided] == code).sum())
                new_rows = [manifest_row(candidates, i, item=item, fit=fit, perturbation=perturbation, strength=strength,
                                         seed=seed, checkpoint_sha256=checkpoint_sha256) for i in accepted]
                rows.extend(new_rows)
                if accepted:
                    item.accepted = torch.cat([item.accepted, candidates.images[accepted]])
                    if candidates.features is not None:
                        item.accepted_features = torch.cat([item.accepted_features, candidates.features[accepted]])
                state.accepted += len(accepted)
                state.next_candidate = b * batch_size + decided
                need -= len(accepted)
                written += len(accepted)
                paths = [out_dir / row["path"] for row in new_rows]
                futures = pool.submit(paths, rearrange(candidates.images[accepted], "b c h w -> b h w c").numpy()) if accepted else []
                snapshot = {k: ClassProgress(**{**asdict(v), "rejected": dict(v.rejected)}) for k, v in progress.items()}
                # Commit the previous batch once its files are on disk; this batch's PNGs encode meanwhile.
                if pending is not None:
                    settle(pending)
                pending = (futures, snapshot, len(rows))
        if pending is not None:
            settle(pending)
        else:
            _commit(out_dir, progress, rows)
    seconds = time.perf_counter() - started
    previews = preview_grids(out_dir=out_dir, rows=rows, fit=fit, sources=preview_sources, variants=preview_variants)
    _mark_finished(out_dir)
    return AugmentReport(out_dir=out_dir, classes=class_reports(fit=fit, targets=targets, progress=progress),
                         written_this_run=written, seconds=seconds, previews=previews)


def class_reports(*, fit: FaceSplit, targets: Sequence[int], progress: dict[str, ClassProgress]) -> list[ClassReport]:
    real_counts = fit.class_counts()
    reports = []
    for label, name in enumerate(fit.class_names):
        state = progress[name]
        wanted = max(0, targets[label] - real_counts[label])
        reports.append(ClassReport(
            class_name=name, real=real_counts[label], target=max(targets[label], real_counts[label]),
            generated=state.accepted, rejected=sum(state.rejected.values()), final=real_counts[label] + state.accepted,
            shortfall=max(0, wanted - state.accepted),
        ))
    return reports


def refuse_inside_dataset(out_dir: Path, *, dataset_root: Path) -> None:
    """Generated images must never land inside the real dataset, where a loader would take them for real."""
    out, root = Path(out_dir).resolve(), Path(dataset_root).resolve()
    if out == root or root in out.parents or out in root.parents:
        raise AugmentError(f"--out {out} overlaps the real dataset folder {root}; choose a folder outside it")
