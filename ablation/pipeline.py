"""One experiment end to end: VAE-GAN -> augmentation -> every row x seed -> report.

Every stage writes into `out_dir` and is skipped when its result is already there (the
VAE-GAN export, each generated folder, each run's metrics.json), so re-running the same
command after a crash in run 17 of 36 loses nothing. A run that raises is recorded as
failed (error.json with the traceback) and the sweep goes on; the report lists it.

Stages 1 and 2 always run here. Stage 3 runs here one run after another, or, with
`launcher=<name>` (conf/launcher/), as one Hydra multirun of scripts/train_classifier.py on
that launcher (ablation/launch.py): submitit processes on this machine or a Slurm job array.
Either way each run writes into `runs/<row>/seed<k>/` and the report is built from the files.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from classifier.balance import resolve_balance
from classifier.outputs import format_metrics
from classifier.train import budget_for, run_training
from faces.generated import read_generated_settings
from faces.io import write_json_atomic, write_text_atomic
from faces.runkit.config import single_device_trainer, trainer_device
from faces.runkit.lock import folder_lock
from faces.runkit.runs import (
    ERROR_FILE,
    METRICS_FILE,
    ROW_FILE,
    RunInterrupted,
    check_writable,
    clear_interruption,
    command_line,
    record_failure,
    record_interruption,
)
from vaegan.generation.perturbations import get_perturbation
from vaegan.generation.request import GenerationRequest, check_render_for
from vaegan.train import EXPORT_NAME, format_summary, train_vaegan

from .aggregate import collect_runs
from .config import compose_config
from .generate import augment_with_checkpoint
from .judge import ensure_judge
from .launch import PendingRun, check_launcher, launch_runs
from .progress import StageProgress
from .report import write_report
from .reuse import check_finished_run, check_reusable_vaegan

log = logging.getLogger("ablate")


def generated_spec(spec: str) -> tuple[str, str | None, str]:
    """A row's `generated:` value -> (strategy, rendering or None for the strategy's own, folder name):
    "gaussian" is the strategy with its own rendering, "gaussian@decoder" names the rendering too."""
    strategy, _, render = str(spec).partition("@")
    perturbation = get_perturbation(strategy)  # unknown names fail here, naming the choices
    check_render_for(perturbation, render or None)
    return strategy, render or None, f"{strategy}-{render}" if render else strategy


def check_rows(cfg: DictConfig) -> list[str]:
    """Unknown rows and bad overrides fail here, before the VAE-GAN trains."""
    rows = [str(r) for r in cfg.rows]
    unknown = [r for r in rows if r not in cfg.row_specs]
    if unknown:
        raise ValueError(f"unknown ablation row(s) {unknown}; rows are defined in row_specs: {sorted(cfg.row_specs)}")
    if not cfg.seeds:
        raise ValueError("seeds is empty; give at least one seed, e.g. seeds=[0,1,2]")
    check_seeds(cfg.seeds)
    for row in rows:
        spec = cfg.row_specs[row].get("generated")
        folder = Path(cfg.out_dir) / "generated" / generated_spec(spec)[2] if spec else None
        classifier_config(cfg, row=row, seed=int(cfg.seeds[0]), generated_dir=folder)
    return rows


# numpy's seed range, which every run's seed_everything must accept.
SEED_RANGE = (0, 2**32 - 1)


def check_seeds(seeds) -> None:
    """seeds=[-1] or seeds=[0.5] fail here, before stage 1, not in every run after the VAE-GAN trained."""
    bad = [s for s in seeds if not isinstance(s, int) or isinstance(s, bool) or not SEED_RANGE[0] <= s <= SEED_RANGE[1]]
    if bad:
        raise ValueError(
            f"seeds={list(seeds)}: {bad} not integers in {SEED_RANGE[0]}..{SEED_RANGE[1]} (numpy's seed range); "
            "e.g. seeds=[0,1,2]"
        )


def failed_runs(cfg: DictConfig) -> list[str]:
    """'<row> seed <k>: <error>' for every run of this ablation's rows x seeds that failed (error.json)."""
    wanted = {(str(row), int(seed)) for row in cfg.rows for seed in cfg.seeds}
    return [
        f"{r.row} seed {r.seed}: {r.error}"
        for r in collect_runs(Path(cfg.out_dir) / "runs")
        if r.status == "failed" and (r.row, r.seed) in wanted
    ]


def classifier_config(cfg: DictConfig, *, row: str, seed: int, generated_dir: Path | None) -> DictConfig:
    spec = cfg.row_specs[row]
    overrides = [*cfg.classifier_overrides, *spec.overrides, f"seed={seed}"]
    if generated_dir is not None:
        overrides.append(f"balance.generated_dir={generated_dir}")
    run_cfg = compose_config("train_classifier", overrides)
    run_cfg.data, run_cfg.paths, run_cfg.trainer = cfg.data, cfg.paths, cfg.trainer
    resolve_balance(run_cfg.balance)  # unknown strategy/loss names fail now
    settings = (
        read_generated_settings(generated_dir) if generated_dir is not None and cfg.get("equal_steps", True) else None
    )
    fit_images = ((settings or {}).get("source_split") or {}).get("fit_images")
    if fit_images and run_cfg.train.get("limit_train_batches") is None:  # an explicit cap (a debug run) wins
        equal_steps(run_cfg, fit_images=int(fit_images))
    return run_cfg


def equal_steps(run_cfg: DictConfig, *, fit_images: int) -> None:
    """Give a row that trains on real + generated images the optimiser steps of the real-data rows.

    A generated set makes every epoch longer (the demo's 1,799 real images plus 1,301 samples: 48 steps
    instead of 28), so at equal epochs such a row would also get ~1.7x the updates, and in a short
    budget "more updates" alone moves the numbers. The real rows' budget (classifier.budget, the same
    config on the real fit split) is applied as is: its epochs, head-only, warm-up and patience, with
    each epoch capped at the real rows' batches (`train.limit_train_batches`; the sampler still draws
    from all images, so every epoch sees a fresh random part of the larger set)."""
    budget = budget_for(run_cfg, num_train=fit_images)
    t = run_cfg.train
    t.limit_train_batches, t.epochs, t.freeze_epochs = budget.steps_per_epoch, budget.epochs, budget.freeze_epochs
    t.warmup_epochs, t.early_stop_patience = budget.warmup_epochs, budget.early_stop_patience


def ensure_vaegan(cfg: DictConfig, *, out_dir: Path) -> Path:
    if cfg.vaegan.checkpoint:
        return Path(cfg.vaegan.checkpoint)
    run_dir = out_dir / "vaegan"
    export = run_dir / EXPORT_NAME
    vaegan_cfg = compose_config("train_vaegan", list(cfg.vaegan.overrides))
    vaegan_cfg.data, vaegan_cfg.paths, vaegan_cfg.trainer = cfg.data, cfg.paths, single_device_trainer(cfg.trainer)
    if export.is_file():
        check_reusable_vaegan(export, requested=vaegan_cfg)  # the recipe may have changed since it was trained
        log.info("reusing the VAE-GAN %s", export)
        return export
    last = run_dir / "checkpoints" / "last.ckpt"
    if last.is_file():
        log.info("resuming the interrupted VAE-GAN from %s", last)
        vaegan_cfg.resume = str(last)
    log.info("stage 1/3: training the VAE-GAN into %s", run_dir)
    result = train_vaegan(vaegan_cfg, output_dir=run_dir)
    log.info("%s", format_summary(result))
    return result.export


def ensure_generated(cfg: DictConfig, *, checkpoint: Path, strategies: list[str], out_dir: Path) -> dict[str, Path]:
    a = cfg.augment
    judge = Path(a.judge) if a.judge else None
    device = trainer_device(cfg.trainer)
    if a.filter and judge is None:
        judge = ensure_judge(
            data_cfg=cfg.data,
            paths_cfg=cfg.paths,
            overrides=list(a.judge_overrides),
            run_dir=out_dir / "judge",
            trainer=single_device_trainer(cfg.trainer),
        )
    folders = {}
    for spec in strategies:
        strategy, render, name = generated_spec(spec)
        folder = out_dir / "generated" / name
        log.info("stage 2/3: generating with %s into %s", spec, folder)
        request = GenerationRequest(
            target_count=a.target_count,
            out_dir=folder,
            strategy=strategy,
            strength=a.strength,
            render=render,
            seed=int(a.seed),
            filter=bool(a.filter),
            judge=judge,
            min_confidence=None if a.min_confidence is None else float(a.min_confidence),
            max_attempts_factor=float(a.max_attempts_factor),
            batch_size=int(a.batch_size),
            workers=a.workers,
            device=str(device),
        )
        report = augment_with_checkpoint(request, checkpoint=checkpoint, data_cfg=cfg.data, paths_cfg=cfg.paths)
        log.info("%s\n%s", spec, report.table())
        folders[spec] = folder
    return folders


def check_finished_runs(
    cfg: DictConfig, *, runs: list[tuple[str, int]], generated: dict[str, Path], out_dir: Path
) -> None:
    """Before any new run: every finished run to be reused was trained with the config it would get now."""
    for row, seed in runs:
        run_dir = out_dir / "runs" / row / f"seed{seed}"
        if (run_dir / METRICS_FILE).is_file():
            strategy = cfg.row_specs[row].get("generated")
            generated_dir = generated.get(str(strategy)) if strategy else None
            check_finished_run(run_dir, run_cfg=classifier_config(cfg, row=row, seed=seed, generated_dir=generated_dir))


def check_ablation(cfg: DictConfig) -> tuple[list[str], str | None]:
    """Every check that needs no work (rows, seeds, launcher, DDP, a writable out_dir): (rows, launcher plugin or None)."""
    rows = check_rows(cfg)
    plugin = check_launcher(cfg, rows)
    check_writable(Path(cfg.out_dir), what="the ablation's out_dir")
    return rows, plugin


def run_ablation(cfg: DictConfig) -> dict[str, Path]:
    """Run (or finish) the experiment described by an `ablate` config; returns the report paths."""
    started = time.perf_counter()
    out_dir = Path(cfg.out_dir)
    rows, plugin = check_ablation(cfg)  # plugin None: stage 3 runs here, one run after another
    # One writer per ablation folder: a second ablate.py on it gets an error naming this one's pid.
    with folder_lock(out_dir, what="ablation"), StageProgress(enabled=cfg.get("progress")) as progress:
        out_dir.mkdir(parents=True, exist_ok=True)
        clear_interruption(out_dir)  # this invocation is the resume a stopped one asked for
        write_text_atomic(out_dir / "ablate_config.yaml", OmegaConf.to_yaml(cfg, resolve=True))

        strategies = list(
            dict.fromkeys(str(cfg.row_specs[r].generated) for r in rows if cfg.row_specs[r].get("generated"))
        )
        generated: dict[str, Path] = {}
        if strategies:
            checkpoint = ensure_vaegan(cfg, out_dir=out_dir)
            generated = ensure_generated(cfg, checkpoint=checkpoint, strategies=strategies, out_dir=out_dir)

        # Seed-major: a study stopped part-way holds whole seeds of every row, so its comparisons stay paired.
        runs = [(row, int(seed)) for seed in cfg.seeds for row in rows]
        pending: list[PendingRun] = []
        if plugin is None:
            progress.start(
                total=len(runs), done=sum((out_dir / "runs" / r / f"seed{s}" / METRICS_FILE).is_file() for r, s in runs)
            )
        check_finished_runs(cfg, runs=runs, generated=generated, out_dir=out_dir)
        for number, (row, seed) in enumerate(runs, start=1):
            run_dir = out_dir / "runs" / row / f"seed{seed}"
            if (run_dir / METRICS_FILE).is_file():
                log.info("run %d/%d %s seed %d: finished earlier, skipped", number, len(runs), row, seed)
                continue
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / ERROR_FILE).unlink(missing_ok=True)
            clear_interruption(run_dir)
            write_json_atomic(run_dir / ROW_FILE, {"row": row, "seed": seed})
            strategy = cfg.row_specs[row].get("generated")
            if plugin is None:
                log.info(
                    "stage 3/3: run %d/%d %s seed %d (%.0fs so far)",
                    number,
                    len(runs),
                    row,
                    seed,
                    time.perf_counter() - started,
                )
                progress.running(f"{row} seed {seed}")
            try:
                run_cfg = classifier_config(
                    cfg, row=row, seed=seed, generated_dir=generated.get(str(strategy)) if strategy else None
                )
                if plugin is not None:  # handed to the launcher below, all pending runs at once
                    pending.append(PendingRun(row=row, seed=seed, run_dir=run_dir, config=run_cfg))
                    continue
                metrics = run_training(run_cfg, run_dir=run_dir)
                log.info("%s seed %d\n%s", row, seed, format_metrics(metrics))
            except RunInterrupted as interrupted:  # not a failure: the re-run starts this run again
                record_interruption(run_dir, interrupted, resume=command_line())
                raise
            except Exception as error:  # recorded, reported as failed, never dropped
                log.error("run %s seed %d failed: %s", row, seed, error)
                record_failure(run_dir, error, row=row, seed=seed)
            progress.finished()
        if pending:
            launch_runs(cfg, pending, out_dir=out_dir)

        extra = {"rows": ", ".join(rows), "wall time": f"{time.perf_counter() - started:.0f}s (this invocation)"}
        extra |= {"classifier runs": f"one Hydra multirun on hydra/launcher={plugin}"} if plugin is not None else {}
        return _write_ablation_report(cfg, rows=rows, generated=generated, out_dir=out_dir, extra=extra)


def _write_ablation_report(
    cfg: DictConfig, *, rows: list[str], generated: dict[str, Path], out_dir: Path, extra: dict[str, str]
) -> dict[str, Path]:
    grids = {
        f"{strategy}/{p.stem}": p
        for strategy, folder in generated.items()
        for p in sorted((folder / "previews").glob("*.png"))
    }
    return write_report(
        out_dir / "runs",
        out_dir=out_dir,
        row_order=rows,
        title=f"Ablation: {cfg.name}",
        extra_setup=extra,
        sample_grids=grids,
    )
