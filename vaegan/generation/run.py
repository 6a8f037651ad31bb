"""Fill each class up to its target with filtered VAE-GAN samples; resumable and reproducible.

The loop: plan what each class still needs (candidates.plan), then per fixed candidate batch generate
(candidates.generate), judge (filter.judge_batch) and commit (store.commit). A batch's sources, noise
and verdicts depend only on (seed, class, batch); progress (the next undecided candidate per class)
is committed after each batch's files are written, so a killed run re-run with the same command
regenerates exactly what was not committed and ends byte-identical to an uninterrupted run, and
raising the target later continues from the same candidate as a single run would. manifest.csv lists
its rows in one canonical order (class, then candidate index), however many runs made them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from einops import rearrange
from tqdm import tqdm

from faces import FaceSplit
from faces.generated import sample_ids_fingerprint
from faces.runkit.lock import folder_lock

from .candidates import CandidateBatch, ClassPlan, generate, manifest_row, plan
from .filter import REJECT_REASONS, QualityFilter, judge_batch
from .preview import preview_grids
from .request import AugmentError, AugmentSettings, GenerationRequest
from .store import (
    ClassProgress,
    check_out_dir,
    commit,
    completion_record,
    file_sha256,
    load_progress,
    mark_finished,
    prepare_out_dir,
    read_accepted,
    writing_into,
)
from .writer import PngWriterPool


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
    # The grain rendering's noise std per class planned this run (model range, x 127.5 for uint8 levels).
    grain_std: dict[str, float] = field(default_factory=dict)

    @property
    def images_per_second(self) -> float:
        return self.written_this_run / self.seconds if self.seconds > 0 else 0.0

    def table(self) -> str:
        recall = (self.judge_quality or {}).get("validation_recall") or {}
        weak = set((self.judge_quality or {}).get("weak_classes") or [])
        lines = [
            f"{'class':<12}{'real':>8}{'target':>8}{'generated':>11}{'rejected':>10}{'final':>8}"
            + (f"{'judge val recall':>18}" if recall else "")
        ]
        for r in self.classes:
            short = f"  SHORT by {r.shortfall}" if r.shortfall else ""
            judged = ""
            if recall:
                value = recall.get(r.class_name)
                judged = f"{'–' if value is None or value != value else f'{value:.2f}':>18}" + (
                    " WEAK JUDGE" if r.class_name in weak else ""
                )
            lines.append(
                f"{r.class_name:<12}{r.real:>8}{r.target:>8}{r.generated:>11}{r.rejected:>10}{r.final:>8}{judged}{short}"
            )
        if weak:
            lines.append(
                f"WARNING: the judge's validation recall is below {self.judge_quality['recall_floor']:g} for "
                f"{', '.join(sorted(weak))}: its accept/reject verdicts on those classes mean little"
            )
        if self.grain_std:
            levels = ", ".join(f"{name} {std * 127.5:.1f}" for name, std in self.grain_std.items())
            lines.append(f"grain (pixel noise std in uint8 levels, matched to the real faces): {levels}")
        return "\n".join(lines)


@dataclass
class _Run:
    """One locked generation run: what it was asked, what it works on, and its committed state so far."""

    request: GenerationRequest
    settings: AugmentSettings
    model: Any
    fit: FaceSplit
    targets: Sequence[int]
    quality: QualityFilter | None
    progress: dict[str, ClassProgress] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    written: int = 0

    @property
    def out_dir(self) -> Path:
        return self.request.out_dir


def augment(
    request: GenerationRequest,
    *,
    model,
    checkpoint_sha256: str,
    fit: FaceSplit,
    targets: Sequence[int],
    quality: QualityFilter | None = None,
    record: Mapping[str, Any] | None = None,
) -> AugmentReport:
    """Generate `targets[c] - real[c]` accepted images for every class below its target into request.out_dir,
    filtered by `quality` (None: every candidate is kept).

    `fit` is the real train split *minus validation*: sources come only from images the classifier trains
    on, so nothing of the validation images leaks into training data. augment.json records exactly which
    images those are (`source_ids_sha256`) and `record`'s provenance (e.g. `source_split`: {"split_seed": 0,
    "val_fraction": 0.1}, how they were carved out), so a classifier with another carve-out refuses the set
    (faces.check_generated_sources).
    """
    if fit.is_synthetic.any():
        raise AugmentError("source images must be real; the split passed in contains generated samples")
    if len(targets) != len(fit.class_names):
        raise AugmentError(f"{len(targets)} targets for {len(fit.class_names)} classes")
    if request.out_dir is None:
        raise AugmentError("the generation request names no output folder (--out)")
    if request.perturbation.guidance is not None and (quality is None or quality.judge_logits is None):
        raise AugmentError(
            f"--strategy {request.strategy} steers codes with the filter's judge, and this filter has no "
            "differentiable judge (QualityFilter.judge_logits)"
        )
    settings = AugmentSettings(
        checkpoint_sha256=checkpoint_sha256,
        strategy=request.strategy,
        strength=float(request.strength),
        render=request.render,
        seed=int(request.seed),
        batch_size=int(request.batch_size),
        image_size=fit.image_size,
        class_names=tuple(fit.class_names),
        real_fingerprint=fit.fingerprint,
        real_sha256=fit.content_sha256,
        source_ids_sha256=sample_ids_fingerprint(fit.sample_ids),
        filter=quality is not None,
        judge_sha256=quality.judge_sha256 if quality else None,
        min_confidence=float(request.min_confidence),
        min_source_distance=float(request.min_source_distance),
    )
    check_out_dir(
        request.out_dir, asdict(settings), overwrite=request.overwrite
    )  # before the lock creates anything in OUT
    record = dict(record or {})
    # Provenance kept in augment.json that does not decide resumption (e.g. the judge's validation quality).
    record = {
        **record,
        "source_split": {**dict(record.get("source_split") or {}), "fit_images": len(fit)},
        **completion_record(fit, targets),
    }
    run = _Run(
        request=request,
        settings=settings,
        model=model.to(request.torch_device).eval(),
        fit=fit,
        targets=targets,
        quality=quality,
    )
    with writing_into(request.out_dir), folder_lock(request.out_dir, what="augmentation"):
        return _augment_locked(run, record=record)


def _augment_locked(run: _Run, *, record: Mapping[str, Any]) -> AugmentReport:
    request, fit = run.request, run.fit
    prepare_out_dir(run.out_dir, run.settings, overwrite=request.overwrite, record=record)
    run.progress, run.rows = load_progress(run.out_dir, fit.class_names)
    real_counts = fit.class_counts()
    for label, name in enumerate(fit.class_names):
        if run.progress[name].accepted > max(0, run.targets[label] - real_counts[label]):
            raise AugmentError(
                f"{run.out_dir} already holds {run.progress[name].accepted} {name} images, more than target "
                f"{run.targets[label]} minus {real_counts[label]} real; pass --overwrite or choose another --out"
            )
    started = time.perf_counter()
    plans = _plan(run)
    with PngWriterPool(workers=request.workers) as pool:
        _fill(run, plans, pool)
    seconds = time.perf_counter() - started
    previews = preview_grids(
        out_dir=run.out_dir, rows=run.rows, fit=fit, sources=request.preview_sources, variants=request.preview_variants
    )
    mark_finished(run.out_dir)
    return AugmentReport(
        out_dir=run.out_dir,
        classes=class_reports(fit=fit, targets=run.targets, progress=run.progress),
        written_this_run=run.written,
        seconds=seconds,
        previews=previews,
        grain_std={item.name: item.grain_std for item in plans} if request.render == "grain" else {},
    )


def _plan(run: _Run) -> list[ClassPlan]:
    """What each class needs, with the samples an earlier run accepted read back (the duplicate tests see them)."""
    accepted = read_accepted(run.out_dir, run.rows) if run.quality is not None else None
    plans = plan(
        run.model,
        run.fit,
        request=run.request,
        targets=run.targets,
        done={name: state.accepted for name, state in run.progress.items()},
        accepted=accepted,
    )
    duplicates = run.quality.duplicates if run.quality is not None else None
    if duplicates is not None:
        for item in plans:  # samples accepted by an earlier run, embedded as a single run would have them
            empty = duplicates.real_features[:0]
            item.accepted_features = duplicates.embed(item.accepted).cpu() if len(item.accepted) else empty
    return plans


def _fill(run: _Run, plans: Sequence[ClassPlan], pool: PngWriterPool) -> None:
    """Every class's batches in order. A batch is committed once its files are on disk, while the next
    batch's PNGs encode: `pending` is the batch written but not yet committed."""
    pending: tuple[list, dict[str, ClassProgress], int] | None = None
    for item in plans:
        state = run.progress[item.name]
        (run.out_dir / item.name).mkdir(exist_ok=True)
        with _class_bar(run, item) as bar:
            while item.need > 0 and state.attempted < item.budget:
                futures = _next_batch(run, item, pool)
                snapshot = {
                    k: ClassProgress(**{**asdict(v), "rejected": dict(v.rejected)}) for k, v in run.progress.items()
                }
                if pending is not None:
                    _settle(run, pending)
                pending = (futures, snapshot, len(run.rows))
                bar.n = state.accepted
                bar.set_postfix(candidates=state.attempted, refresh=False)
                bar.refresh()
    if pending is not None:
        _settle(run, pending)
    else:
        commit(run.out_dir, run.progress, run.rows)


def _class_bar(run: _Run, item: ClassPlan) -> tqdm:
    """accepted/wanted for one class, with candidates tried, rate and ETA; only on a terminal (disable=None)."""
    state = run.progress[item.name]
    return tqdm(
        total=state.accepted + item.need,
        initial=state.accepted,
        desc=item.name,
        unit="img",
        dynamic_ncols=True,
        disable=None if run.request.progress_bar else True,
        leave=False,
    )


def _next_batch(run: _Run, item: ClassPlan, pool: PngWriterPool) -> list:
    """Generate and judge the batch holding the class's next undecided candidate; record its verdicts and
    accepted rows, and start writing its PNGs (the futures)."""
    state, batch_size = run.progress[item.name], run.request.batch_size
    b, start = divmod(state.next_candidate, batch_size)
    guide = run.quality.judge_logits if run.quality is not None else None
    candidates = generate(run.model, item, b, request=run.request, image_size=run.fit.image_size, guide=guide)
    judge_batch(candidates, item=item, quality=run.quality, undecided_from=start)
    accepted = (candidates.reason == -1).nonzero().flatten()[: item.need].tolist()
    # Candidates after the last one needed stay undecided (not counted as attempts).
    decided = accepted[-1] + 1 if len(accepted) == item.need else batch_size
    state.attempted += decided - start
    for code, reason_name in enumerate(REJECT_REASONS):
        state.rejected[reason_name] += int((candidates.reason[start:decided] == code).sum())
    new_rows = [
        manifest_row(
            candidates,
            i,
            item=item,
            fit=run.fit,
            settings=run.settings,
            sources_per_sample=run.request.perturbation.sources,
        )
        for i in accepted
    ]
    run.rows.extend(new_rows)
    _remember_accepted(item, candidates, accepted)
    state.accepted += len(accepted)
    state.next_candidate = b * batch_size + decided
    item.need -= len(accepted)
    run.written += len(accepted)
    if not accepted:
        return []
    paths = [run.out_dir / row["path"] for row in new_rows]
    return pool.submit(
        paths, rearrange(candidates.images[accepted], "b c h w -> b h w c").cpu().numpy()
    )  # what is written


def _remember_accepted(item: ClassPlan, candidates: CandidateBatch, accepted: list[int]) -> None:
    """Later candidates of the class are near-duplicates if too close to these."""
    if accepted:
        item.accepted = torch.cat([item.accepted, candidates.images[accepted]])
        if candidates.features is not None:
            item.accepted_features = torch.cat([item.accepted_features, candidates.features[accepted]])


def _settle(run: _Run, pending: tuple[list, dict[str, ClassProgress], int]) -> None:
    """Wait for a batch's files, record their checksums and commit the progress taken when it was decided."""
    futures, snapshot, n_rows = pending
    for future in futures:
        future.result()
    for row in run.rows[:n_rows]:  # this batch's files, now on disk: the manifest records what they hold
        if "sha256" not in row:
            row["sha256"] = file_sha256(run.out_dir / row["path"])
    commit(run.out_dir, snapshot, run.rows[:n_rows])


def class_reports(*, fit: FaceSplit, targets: Sequence[int], progress: dict[str, ClassProgress]) -> list[ClassReport]:
    real_counts = fit.class_counts()
    reports = []
    for label, name in enumerate(fit.class_names):
        state = progress[name]
        wanted = max(0, targets[label] - real_counts[label])
        reports.append(
            ClassReport(
                class_name=name,
                real=real_counts[label],
                target=max(targets[label], real_counts[label]),
                generated=state.accepted,
                rejected=sum(state.rejected.values()),
                final=real_counts[label] + state.accepted,
                shortfall=max(0, wanted - state.accepted),
            )
        )
    return reports
