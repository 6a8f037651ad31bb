"""`python scripts/augment.py --checkpoint PATH --target-count N [...] [hydra overrides]`: the augment
CLI's composition. The generator's engine (vaegan.augment) is given the judge as a callable; this
module, above both model packages, is where a classifier becomes that judge.

Argument checks, the data, the checkpoint and the judge are all settled before a single
image is generated, so a typo fails in seconds rather than after a judge was trained.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

import faces
from faces.errors import CheckpointError, FolderLockedError
from faces.lock import folder_lock
from vaegan.augment.perturbations import PERTURBATIONS, get_perturbation
from vaegan.augment.render import RENDERS
from vaegan.augment.run import (
    AugmentError,
    augment,
    check_generation_args,
    DuplicateFilter,
    check_out_dir,
    check_render_for,
    refuse_inside_dataset,
)
from vaegan.augment.targets import parse_target_count
from vaegan.checkpoint import checkpoint_fingerprint, load_vaegan, read_vaegan_meta

from .config import compose_config
from .generation_report import (
    REPORT_FILE,
    accepted_count,
    feature_embedder,
    format_generation_report,
    judge_quality,
    write_generation_report,
)
from .judge import ensure_judge, judge_trainer, load_judge

log = logging.getLogger("augment")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/augment.py",
        description="Fill the long tail with VAE-GAN samples made by perturbing latent codes of real minority images.",
        epilog="Extra arguments are Hydra overrides for the data and paths, e.g. data=rafdb data.root=/data/RAF-DB/basic. "
               "Without data overrides the data config stored in the checkpoint is used.",
    )
    parser.add_argument("--checkpoint", required=True, type=Path, help="VAE-GAN sampling checkpoint (vaegan.safetensors from train_vaegan.py)")
    parser.add_argument("--target-count", required=True,
                        help="images per class after augmentation: N, 'max' (the majority class count), or per class 'Fear=2000,Disgust=1500'")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: outputs/generated/<dataset>-<strategy>-a<strength>-seed<seed>-<checkpoint sha[:8]>)")
    parser.add_argument("--strategy", default="gaussian", choices=sorted(PERTURBATIONS), help="latent perturbation (default: gaussian)")
    parser.add_argument("--strength", type=float, default=None, help="perturbation strength a (default: the strategy's own)")
    parser.add_argument("--render", default=None, choices=RENDERS,
                        help="how a new code becomes an image: residual = the real source plus the decoder's change (keeps the "
                             "source's sharp details), decoder = the decoder's own image (default: the strategy's own; "
                             "residual except for reconstruct and prior)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--filter", action=argparse.BooleanOptionalAction, default=True,
                        help="quality filter with a real-data classifier (default: on)")
    parser.add_argument("--judge", type=Path, default=None, help="classifier checkpoint for the filter (default: train one on the real train split into OUT/judge/)")
    parser.add_argument("--min-confidence", type=float, default=0.5, help="drop samples whose judge probability for the target class is below this")
    parser.add_argument("--min-source-distance", type=float, default=0.02,
                        help="drop near-duplicates: mean absolute pixel difference (0..1) to the nearest real training image "
                             "of the class, or to a sample accepted before, below this")
    parser.add_argument("--max-attempts-factor", type=float, default=10.0, help="give up on a class after this many candidates per image needed")
    parser.add_argument("--batch-size", type=int, default=256, help="candidates per generation batch (part of the reproducibility key)")
    parser.add_argument("--workers", type=int, default=None, help="PNG-writing processes (default: min(16, cores); 0 writes inline)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    parser.add_argument("--report", action=argparse.BooleanOptionalAction, default=True,
                        help="measure the finished set (class fidelity, novelty, diversity, precision/recall) into OUT/generation_report.json (default: on)")
    parser.add_argument("--overwrite", action="store_true", help="replace an OUT made with other settings")
    return parser


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise AugmentError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    return device


def data_config(cfg: DictConfig, *, meta: dict[str, Any], overrides: list[str]) -> DictConfig:
    """The data config stored in the checkpoint unless the user overrode `data`."""
    if any(o.lstrip("+~").startswith("data") for o in overrides) or not meta.get("data"):
        return cfg.data
    return OmegaConf.create(meta["data"])


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    parser = build_parser()
    args, overrides = parser.parse_known_args(argv)
    unknown = [o for o in overrides if o.startswith("-")]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    from hydra.errors import HydraException

    try:
        report = run_cli(args, overrides)
    except (AugmentError, CheckpointError, faces.DatasetError, FolderLockedError, ValueError) as error:
        print(f"augment: error: {error}", file=sys.stderr)
        return 2
    except HydraException as error:  # a bad data/paths override: say which, without Hydra's traceback
        print(f"augment: error: bad override in {' '.join(overrides)}: {error}", file=sys.stderr)
        return 2
    print(report.table())
    print(f"wrote {report.written_this_run} images in {report.seconds:.1f}s ({report.images_per_second:.0f} images/s)")
    print(f"out: {report.out_dir}\nmanifest: {report.out_dir / faces.MANIFEST_FILE}\npreviews: {report.out_dir / 'previews'}")
    if any(c.shortfall for c in report.classes):
        print("WARNING: some classes fell short of their target (see the table); raise --max-attempts-factor or lower --min-confidence",
              file=sys.stderr)
    return 0


def run_cli(args: argparse.Namespace, overrides: list[str]):
    meta = read_vaegan_meta(args.checkpoint)  # missing or not a checkpoint -> CheckpointError, before any work
    cfg = compose_config("augment", overrides)
    return augment_with_checkpoint(
        checkpoint=args.checkpoint, data_cfg=data_config(cfg, meta=meta, overrides=overrides), paths_cfg=cfg.paths,
        target_count=args.target_count, out_dir=args.out, strategy=args.strategy, strength=args.strength, render=args.render, seed=args.seed,
        use_filter=args.filter, judge=args.judge, judge_overrides=list(cfg.judge.overrides),
        min_confidence=args.min_confidence, min_source_distance=args.min_source_distance,
        max_attempts_factor=args.max_attempts_factor, batch_size=args.batch_size, workers=args.workers,
        device=args.device, overwrite=args.overwrite, generation_report=args.report,
    )


def augment_with_checkpoint(
    *, checkpoint: Path, data_cfg: DictConfig, paths_cfg: DictConfig, target_count: str | int, out_dir: Path | None = None,
    strategy: str = "gaussian", strength: float | None = None, render: str | None = None, seed: int = 0, use_filter: bool = True,
    judge: Path | None = None, judge_overrides: list[str] = (), min_confidence: float = 0.5,
    min_source_distance: float = 0.02, max_attempts_factor: float = 10.0, batch_size: int = 256,
    workers: int | None = None, device: str = "auto", overwrite: bool = False, generation_report: bool = True,
):
    """Everything `scripts/augment.py` does, callable from Python (the ablation uses it).

    With `generation_report` (default) the finished set is measured into OUT/generation_report.json.
    """
    checkpoint = Path(checkpoint)
    perturbation = get_perturbation(strategy)
    strength = perturbation.default_strength if strength is None else float(strength)
    if not strength >= 0:
        raise AugmentError(f"--strength={strength} must be >= 0")
    check_generation_args(min_confidence=min_confidence, min_source_distance=min_source_distance,
                          max_attempts_factor=max_attempts_factor, workers=workers, batch_size=batch_size)
    render = check_render_for(perturbation, render)
    meta = read_vaegan_meta(checkpoint)  # missing or not a checkpoint -> CheckpointError
    device = resolve_device(device)

    # Classes and image size are checked on the listing, before a single image is decoded.
    listing = faces.list_source(data_cfg)
    if tuple(meta["class_names"]) != listing.class_names:
        raise AugmentError(f"--checkpoint {checkpoint} was trained on classes {meta['class_names']}, "
                           f"the data at {listing.root} has {list(listing.class_names)}")
    image_size = faces.resolve_image_size(data_cfg)
    if meta.get("image_size") != image_size:
        raise AugmentError(f"--checkpoint {checkpoint} was trained on {meta.get('image_size')}px images, "
                           f"the data config gives {image_size}px (set data.image_size={meta.get('image_size')})")
    sha = checkpoint_fingerprint(checkpoint)
    out_dir = Path(out_dir) if out_dir else Path(paths_cfg.output_dir) / "generated" / (
        f"{listing.dataset}-{perturbation.name}{'' if render == perturbation.render else '-' + render}-a{strength:g}-seed{seed}-{sha[:8]}")
    refuse_inside_dataset(out_dir, dataset_root=listing.root)
    # Refuse a foreign or mismatching OUT now, before anything is decoded or a judge trained for it
    # (and before the lock creates OUT); the split-dependent settings are checked once the split is known.
    known = {"checkpoint_sha256": sha, "strategy": perturbation.name, "strength": strength, "render": render, "seed": seed,
             "batch_size": batch_size, "filter": bool(use_filter), "image_size": image_size}
    check_out_dir(out_dir, known, overwrite=overwrite)

    data = faces.load_faces(data_cfg, cache_dir=paths_cfg.cache_dir, splits=("train",))
    fit, _ = data.train_val()
    # The VAE-GAN records its fit split's fingerprint (older exports: the whole train split's).
    if meta.get("data_fingerprint") and meta["data_fingerprint"] not in (fit.fingerprint, data.train.fingerprint):
        log.warning("the fit split differs from the one the checkpoint was trained on (fingerprint %s vs %s): other "
                    "images, or another data.split_seed / data.val_fraction", str(meta["data_fingerprint"])[:12], fit.fingerprint[:12])
    targets = parse_target_count(target_count, class_names=data.class_names, real_counts=fit.class_counts())
    check_out_dir(out_dir, {**known, "real_fingerprint": fit.fingerprint,
                            "source_ids_sha256": faces.sample_ids_fingerprint(fit.sample_ids)}, overwrite=overwrite)
    with folder_lock(out_dir, what="augmentation"):  # one writer per OUT, the judge's training included
        return _generate(checkpoint=checkpoint, data=data, fit=fit, data_cfg=data_cfg, paths_cfg=paths_cfg, targets=targets,
                         out_dir=out_dir, perturbation=perturbation, strength=strength, render=render, seed=seed, use_filter=use_filter,
                         judge=judge, judge_overrides=judge_overrides, min_confidence=min_confidence,
                         min_source_distance=min_source_distance, max_attempts_factor=max_attempts_factor,
                         batch_size=batch_size, workers=workers, device=device, overwrite=overwrite, sha=sha,
                         generation_report=generation_report)


def _report_of_unchanged_set(out_dir: Path, *, perturbation, strength: float, render: str) -> dict[str, Any] | None:
    """OUT's generation report if it measured exactly the set now in OUT (same strategy, strength and
    rendering, as many accepted samples as the manifest lists), else None."""
    path = out_dir / REPORT_FILE
    try:
        earlier = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except ValueError:
        return None
    if not isinstance(earlier, dict) or (earlier.get("strategy"), earlier.get("strength"), earlier.get("render")) != (
            perturbation.name, strength, render):
        return None
    measured = ((earlier.get("after_filter") or {}).get("overall") or {}).get("n_generated")
    return earlier if measured == accepted_count(out_dir) else None


def _generate(*, checkpoint: Path, data: faces.FaceData, fit: faces.FaceSplit, data_cfg: DictConfig, paths_cfg: DictConfig,
              targets: list[int], out_dir: Path, perturbation, strength: float, render: str, seed: int, use_filter: bool,
              judge: Path | None, judge_overrides, min_confidence: float, min_source_distance: float,
              max_attempts_factor: float, batch_size: int, workers: int | None, device: torch.device, overwrite: bool,
              sha: str, generation_report: bool = True):
    model, _ = load_vaegan(checkpoint, map_location=device)
    _, val = data.train_val()

    score, judge_sha, quality = None, None, None
    if use_filter:
        judge_path = judge or ensure_judge(
            data_cfg=data_cfg, paths_cfg=paths_cfg, overrides=list(judge_overrides), run_dir=out_dir / "judge",
            trainer=judge_trainer(device), replace=overwrite)
        score, judge_sha = load_judge(Path(judge_path), class_names=data.class_names, device=device)
        # A judge is only as good as its own validation recall: measured here, stored, and warned about.
        quality = judge_quality(score, val)
        log.info("judge: validation mean class accuracy %.3f, recall %s", quality["validation_mean_class_accuracy"],
                 {k: round(v, 2) for k, v in quality["validation_recall"].items()})
        if quality["weak_classes"]:
            log.warning("WEAK JUDGE: validation recall below %g for %s; the filter's verdicts on those classes mean little",
                        quality["recall_floor"], ", ".join(quality["weak_classes"]))
    # The report's feature space, built once: the filter's near-duplicate test and the report share it.
    embed = feature_embedder(device) if use_filter or generation_report else None
    duplicates = DuplicateFilter(embed=embed, fit=fit) if use_filter else None
    workers = min(16, os.cpu_count() or 1) if workers is None else workers
    log.info("generating %s with %s (a=%g) into %s", dict(zip(data.class_names, targets)), perturbation.name, strength, out_dir)
    report = augment(
        model=model, checkpoint_sha256=sha, fit=fit, out_dir=out_dir, targets=targets, perturbation=perturbation,
        strength=strength, render_mode=render, seed=seed, batch_size=batch_size, judge=score, judge_sha256=judge_sha,
        duplicates=duplicates,
        min_confidence=min_confidence, min_source_distance=min_source_distance,
        max_attempts_factor=max_attempts_factor, device=device, workers=workers, overwrite=overwrite,
        source_split={"dataset": data.dataset, "split_seed": data.split_seed, "val_fraction": data.val_fraction,
                      "val_folder": "val" in data.splits},
        extra_record={"judge_quality": quality} if quality is not None else None,
    )
    earlier = _report_of_unchanged_set(out_dir, perturbation=perturbation, strength=strength, render=render) \
        if generation_report and report.written_this_run == 0 else None
    if earlier is not None:  # a re-run of a finished set (e.g. by the ablation): the report on disk measures it
        log.info("the set is unchanged; its generation report is %s\n%s", out_dir / REPORT_FILE, format_generation_report(earlier))
    elif generation_report:
        log.info("measuring the generated set (fidelity, novelty, diversity, precision/recall) into %s", out_dir / REPORT_FILE)
        measured = write_generation_report(
            out_dir=out_dir, model=model, fit=fit, val=val, targets=targets, perturbation=perturbation, strength=strength,
            render=render, seed=seed, batch_size=batch_size, device=device, judge=score, cache_dir=paths_cfg.cache_dir,
            judge_report=quality, embed=embed, real_features=duplicates.real_features if duplicates else None)
        log.info("%s", format_generation_report(measured))
    return dataclasses.replace(report, judge_quality=quality)
