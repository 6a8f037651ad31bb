"""`python scripts/augment.py --checkpoint PATH --target-count N [...] [hydra overrides]`: the augment
CLI's composition. The generator's engine (vaegan.generation) is given the judge as a callable; this
module, above both model packages, is where a classifier becomes that judge.

Argument checks, the data, the checkpoint and the judge are all settled before a single
image is generated, so a typo fails in seconds rather than after a judge was trained.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

import faces
from faces.errors import CheckpointError, FolderLockedError
from faces.generated import COMMAND_KEY
from faces.io import checkpoint_fingerprint
from faces.runkit.lock import folder_lock
from faces.runkit.runs import RunInterrupted, command_line, interrupt_signals
from vaegan.checkpoint import load_vaegan, read_vaegan_meta
from vaegan.generation.filter import DuplicateFilter, QualityFilter
from vaegan.generation.perturbations import PERTURBATIONS
from vaegan.generation.render import RENDERS
from vaegan.generation.request import AugmentError, GenerationRequest, GenerationWriteError
from vaegan.generation.run import augment
from vaegan.generation.store import JUDGE_DIR, check_out_dir, refuse_inside_dataset, writing_into
from vaegan.generation.targets import parse_target_count

from .config import compose_config
from .generation_report import (
    REPORT_FILE,
    accepted_count,
    feature_embedder,
    format_generation_report,
    judge_generator_overlap,
    judge_quality,
    write_generation_report,
)
from .judge import ensure_judge, judge_trainer, load_judge

log = logging.getLogger("augment")


def add_generation_arguments(parser: argparse.ArgumentParser) -> None:
    """What to generate: checkpoint, per-class targets, output folder, perturbation, rendering and seed."""
    parser.add_argument(
        "--checkpoint",
        required=True,
        type=Path,
        help="VAE-GAN sampling checkpoint (vaegan.safetensors from train_vaegan.py)",
    )
    parser.add_argument(
        "--target-count",
        required=True,
        help="images per class after augmentation: N, 'max' (the majority class count), or per class 'Fear=2000,Disgust=1500'",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: outputs/generated/<dataset>-<strategy>-a<strength>-seed<seed>-<checkpoint sha[:8]>)",
    )
    parser.add_argument(
        "--strategy", default="gaussian", choices=sorted(PERTURBATIONS), help="latent perturbation (default: gaussian)"
    )
    parser.add_argument(
        "--strength", type=float, default=None, help="perturbation strength a (default: the strategy's own)"
    )
    parser.add_argument(
        "--render",
        default=None,
        choices=RENDERS,
        help="how a new code becomes an image: residual = the real source plus the decoder's change (keeps the "
        "source's sharp details), decoder = the decoder's own image, grain = the decoder's image plus pixel noise "
        "matched to the class's real faces (default: the strategy's own; "
        "residual except for reconstruct and prior)",
    )
    parser.add_argument("--seed", type=int, default=0)


def add_filter_arguments(parser: argparse.ArgumentParser) -> None:
    """The quality filter: the judge, its confidence threshold, the near-duplicate rule and the attempt budget."""
    parser.add_argument(
        "--filter",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="quality filter with a real-data classifier (default: on)",
    )
    parser.add_argument(
        "--judge",
        type=Path,
        default=None,
        help="classifier checkpoint for the filter (default: train one on the real train split into OUT/judge/)",
    )
    parser.add_argument(
        "--min-confidence",
        type=float,
        default=None,
        help="drop samples whose judge probability for the target class is below this "
        "(default: the strategy's own, 0.5; 0.9 for guided_transfer)",
    )
    parser.add_argument(
        "--min-source-distance",
        type=float,
        default=0.02,
        help="drop near-duplicates: mean absolute pixel difference (0..1) to the nearest real training image "
        "of the class, or to a sample accepted before, below this",
    )
    parser.add_argument(
        "--max-attempts-factor",
        type=float,
        default=10.0,
        help="give up on a class after this many candidates per image needed",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/augment.py",
        description="Fill the long tail with VAE-GAN samples made by perturbing latent codes of real minority images.",
        epilog="Extra arguments are Hydra overrides for the data and paths, e.g. data=rafdb data.root=/data/RAF-DB/basic. "
        "Without data overrides the data config stored in the checkpoint is used.",
    )
    # Argument order is the --help order: what to generate, then the quality filter, then how to run.
    add_generation_arguments(parser)
    add_filter_arguments(parser)
    parser.add_argument(
        "--batch-size", type=int, default=256, help="candidates per generation batch (part of the reproducibility key)"
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="PNG-writing processes (default: min(16, cores); 0 writes inline)"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    parser.add_argument(
        "--report",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure the finished set (class fidelity, novelty, diversity, precision/recall) into OUT/generation_report.json (default: on)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an OUT made with other settings")
    parser.add_argument(
        "--quiet", action="store_true", help="no per-class progress bars (they show only on a terminal anyway)"
    )
    return parser


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
        with interrupt_signals():
            report = run_cli(args, overrides)
    except RunInterrupted as interrupted:  # SIGTERM from a scheduler or Ctrl-C: never exit 0 as if the set were made
        print(
            f"augment: INTERRUPTED by {interrupted.signal_name}: the set is not finished (augment.json records "
            f"finished=false); everything manifest.csv lists is kept.\nTo resume: {command_line()}",
            file=sys.stderr,
        )
        return interrupted.exit_status
    except (
        GenerationWriteError
    ) as error:  # a full disk: one line naming the file and folder, what is kept, how to finish
        print(f"augment: error: {error.strerror}", file=sys.stderr)
        return 1
    except (AugmentError, CheckpointError, faces.DatasetError, FolderLockedError, ValueError) as error:
        print(f"augment: error: {error}", file=sys.stderr)
        return 2
    except HydraException as error:  # a bad data/paths override: say which, without Hydra's traceback
        print(f"augment: error: bad override in {' '.join(overrides)}: {error}", file=sys.stderr)
        return 2
    print(report.table())
    rate = report.images_per_second  # a few images a minute (a short or strict run) must not print as "0 images/s"
    print(
        f"wrote {report.written_this_run} images in {report.seconds:.1f}s ({rate:.{0 if rate >= 10 else 2}f} images/s)"
    )
    print(
        f"out: {report.out_dir}\nmanifest: {report.out_dir / faces.MANIFEST_FILE}\npreviews: {report.out_dir / 'previews'}"
    )
    if any(c.shortfall for c in report.classes):
        print(
            "WARNING: some classes fell short of their target (see the table); raise --max-attempts-factor or lower --min-confidence",
            file=sys.stderr,
        )
    return 0


def request_from_args(args: argparse.Namespace) -> GenerationRequest:
    """The CLI's flags as one GenerationRequest: every flag is checked here, once."""
    return GenerationRequest(
        target_count=args.target_count,
        strategy=args.strategy,
        strength=args.strength,
        render=args.render,
        seed=args.seed,
        filter=args.filter,
        judge=args.judge,
        min_confidence=args.min_confidence,
        min_source_distance=args.min_source_distance,
        max_attempts_factor=args.max_attempts_factor,
        out_dir=args.out,
        batch_size=args.batch_size,
        workers=args.workers,
        device=args.device,
        report=args.report,
        overwrite=args.overwrite,
        progress_bar=not args.quiet,
    )


def run_cli(args: argparse.Namespace, overrides: list[str]):
    meta = read_vaegan_meta(args.checkpoint)  # missing or not a checkpoint -> CheckpointError, before any work
    request = request_from_args(args)
    cfg = compose_config("augment", overrides)
    return augment_with_checkpoint(
        request,
        checkpoint=args.checkpoint,
        data_cfg=data_config(cfg, meta=meta, overrides=overrides),
        paths_cfg=cfg.paths,
        judge_overrides=list(cfg.judge.overrides),
    )


@dataclass(frozen=True)
class _Inputs:
    """What a request is carried out on: the checkpoint, the data and its configs, and the resolved targets."""

    checkpoint: Path
    checkpoint_sha256: str
    data: faces.FaceData
    fit: faces.FaceSplit
    targets: list[int]
    data_cfg: DictConfig
    paths_cfg: DictConfig
    judge_overrides: tuple[str, ...]


def warn_if_other_fit_split(meta: dict, *, fit: faces.FaceSplit, train: faces.FaceSplit) -> str | None:
    """Warn (and return the message) when the VAE-GAN was trained on another fit split than `fit`. Its export
    records the split's content hash (data_sha256: ids, labels, pixels); older exports only the cache
    fingerprint, which includes file times, so the same faces written again (a fresh clone renders the synthetic
    faces anew) look different to it, and the message says so."""
    if meta.get("data_sha256"):
        if meta["data_sha256"] == fit.content_sha256:
            return None
        message = (
            f"the fit split differs from the one the checkpoint was trained on (content hash "
            f"{str(meta['data_sha256'])[:12]} vs {fit.content_sha256[:12]}): other images or labels, or another "
            "data.split_seed / data.val_fraction"
        )
    elif meta.get("data_fingerprint") and meta["data_fingerprint"] not in (fit.fingerprint, train.fingerprint):
        # The VAE-GAN records its fit split's fingerprint (exports before data_sha256: the whole train split's).
        message = (
            f"the fit split may differ from the one the checkpoint was trained on (fingerprint "
            f"{str(meta['data_fingerprint'])[:12]} vs {fit.fingerprint[:12]}): other images, another "
            "data.split_seed / data.val_fraction, or the same files written again (this older checkpoint records "
            "file times, not pixels)"
        )
    else:
        return None
    log.warning(message)
    return message


def augment_with_checkpoint(
    request: GenerationRequest,
    *,
    checkpoint: Path,
    data_cfg: DictConfig,
    paths_cfg: DictConfig,
    judge_overrides: Sequence[str] = (),
):
    """Everything `scripts/augment.py` does, callable from Python (the ablation uses it): the request (checked when it
    was built) carried out with a VAE-GAN checkpoint on the data of `data_cfg`. With `request.report` (default) the
    finished set is measured into OUT/generation_report.json.
    """
    checkpoint = Path(checkpoint)
    meta = read_vaegan_meta(checkpoint)  # missing or not a checkpoint -> CheckpointError
    # Classes and image size are checked on the listing, before a single image is decoded.
    listing = faces.list_source(data_cfg)
    image_size = faces.resolve_image_size(data_cfg)
    _check_checkpoint_fits(checkpoint, meta=meta, listing=listing, image_size=image_size)
    sha = checkpoint_fingerprint(checkpoint)
    perturbation = request.perturbation
    request = request.with_out_dir(
        request.out_dir
        or Path(paths_cfg.output_dir)
        / "generated"
        / (
            f"{listing.dataset}-{perturbation.name}{'' if request.render == perturbation.render else '-' + request.render}"
            f"-a{request.strength:g}-seed{request.seed}-{sha[:8]}"
        )
    )
    refuse_inside_dataset(request.out_dir, dataset_root=listing.root)
    # Refuse a foreign or mismatching OUT now, before anything is decoded or a judge trained for it (and before the
    # lock creates OUT); the settings that depend on the split and the judge are checked by the augmenter.
    check_out_dir(
        request.out_dir,
        {**request.settings_so_far(), "checkpoint_sha256": sha, "image_size": image_size},
        overwrite=request.overwrite,
    )

    data = faces.load_faces(data_cfg, cache_dir=paths_cfg.cache_dir, splits=("train",))
    fit, _ = data.train_val()
    warn_if_other_fit_split(meta, fit=fit, train=data.train)
    targets = parse_target_count(request.target_count, class_names=data.class_names, real_counts=fit.class_counts())
    inputs = _Inputs(
        checkpoint=checkpoint,
        checkpoint_sha256=sha,
        data=data,
        fit=fit,
        targets=targets,
        data_cfg=data_cfg,
        paths_cfg=paths_cfg,
        judge_overrides=tuple(judge_overrides),
    )
    with (
        writing_into(request.out_dir),
        folder_lock(request.out_dir, what="augmentation"),
    ):  # one writer, the judge's training included
        return _generate(request, inputs)


def _check_checkpoint_fits(checkpoint: Path, *, meta: dict[str, Any], listing, image_size: int) -> None:
    if tuple(meta["class_names"]) != listing.class_names:
        raise AugmentError(
            f"--checkpoint {checkpoint} was trained on classes {meta['class_names']}, "
            f"the data at {listing.root} has {list(listing.class_names)}"
        )
    if meta.get("image_size") != image_size:
        raise AugmentError(
            f"--checkpoint {checkpoint} was trained on {meta.get('image_size')}px images, "
            f"the data config gives {image_size}px (set data.image_size={meta.get('image_size')})"
        )


def _report_of_unchanged_set(request: GenerationRequest) -> dict[str, Any] | None:
    """OUT's generation report if it measured exactly the set now in OUT (same strategy, strength and
    rendering, as many accepted samples as the manifest lists), else None."""
    path = request.out_dir / REPORT_FILE
    try:
        earlier = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except ValueError:
        return None
    if not isinstance(earlier, dict) or (earlier.get("strategy"), earlier.get("strength"), earlier.get("render")) != (
        request.strategy,
        request.strength,
        request.render,
    ):
        return None
    measured = ((earlier.get("after_filter") or {}).get("overall") or {}).get("n_generated")
    return earlier if measured == accepted_count(request.out_dir) else None


def _quality_filter(
    request: GenerationRequest, inputs: _Inputs, *, embed
) -> tuple[QualityFilter | None, dict[str, Any] | None]:
    """The filter's judge (given, or trained on the real train split into OUT/judge) with its own validation quality."""
    if not request.filter:
        return None, None
    judge_path = request.judge or ensure_judge(
        data_cfg=inputs.data_cfg,
        paths_cfg=inputs.paths_cfg,
        overrides=list(inputs.judge_overrides),
        run_dir=request.out_dir / JUDGE_DIR,
        trainer=judge_trainer(request.torch_device),
        replace=request.overwrite,
    )
    judge = load_judge(Path(judge_path), class_names=inputs.data.class_names, device=request.torch_device)
    # A judge is only as good as its own validation recall: measured here, stored, and warned about.
    quality = judge_quality(judge.probabilities, inputs.data.train_val()[1])
    # which weights it starts from: judge_generator_overlap
    quality.update(backbone=judge.meta["backbone"], pretrained=judge.meta.get("pretrained"))
    log.info(
        "judge: validation mean class accuracy %.3f, recall %s",
        quality["validation_mean_class_accuracy"],
        {k: round(v, 2) for k, v in quality["validation_recall"].items()},
    )
    if quality["weak_classes"]:
        log.warning(
            "WEAK JUDGE: validation recall below %g for %s; the filter's verdicts on those classes mean little",
            quality["recall_floor"],
            ", ".join(quality["weak_classes"]),
        )
    return QualityFilter(
        judge_probabilities=judge.probabilities,
        judge_logits=judge.logits,
        min_confidence=request.min_confidence,
        min_source_distance=request.min_source_distance,
        judge_sha256=judge.sha256,
        duplicates=DuplicateFilter(embed=embed, fit=inputs.fit),
    ), quality


def _generate(request: GenerationRequest, inputs: _Inputs):
    model, _ = load_vaegan(inputs.checkpoint, map_location=request.torch_device)
    data, fit = inputs.data, inputs.fit
    # The report's feature space, built once: the filter's near-duplicate test and the report share it.
    embed = feature_embedder(request.torch_device) if request.filter or request.report else None
    quality_filter, quality = _quality_filter(request, inputs, embed=embed)
    overlap = judge_generator_overlap(dict(model.architecture), quality)
    if overlap:
        log.warning("JUDGE AND GENERATOR SHARE WEIGHTS: %s", overlap)
    log.info(
        "generating %s with %s (a=%g) into %s",
        dict(zip(data.class_names, inputs.targets)),
        request.strategy,
        request.strength,
        request.out_dir,
    )
    record = {
        "source_split": {
            "dataset": data.dataset,
            "split_seed": data.split_seed,
            "val_fraction": data.val_fraction,
            "val_folder": "val" in data.splits,
        },
        # The command that made the set completes it after an interruption (faces.check_generated_complete says so).
        COMMAND_KEY: shlex.join(["python", *sys.argv]),
        **({"judge_quality": quality} if quality is not None else {}),
    }
    report = augment(
        request,
        model=model,
        checkpoint_sha256=inputs.checkpoint_sha256,
        fit=fit,
        targets=inputs.targets,
        quality=quality_filter,
        record=record,
    )
    earlier = _report_of_unchanged_set(request) if request.report and report.written_this_run == 0 else None
    if earlier is not None:  # a re-run of a finished set (e.g. by the ablation): the report on disk measures it
        log.info(
            "the set is unchanged; its generation report is %s\n%s",
            request.out_dir / REPORT_FILE,
            format_generation_report(earlier),
        )
    elif request.report:
        log.info(
            "measuring the generated set (fidelity, novelty, diversity, precision/recall) into %s",
            request.out_dir / REPORT_FILE,
        )
        measured = write_generation_report(
            request,
            model=model,
            fit=fit,
            val=data.train_val()[1],
            targets=inputs.targets,
            cache_dir=inputs.paths_cfg.cache_dir,
            judge=quality_filter,
            judge_report=quality,
            embed=embed,
            checkpoint_sha256=inputs.checkpoint_sha256,
        )
        log.info("%s", format_generation_report(measured))
    return dataclasses.replace(report, judge_quality=quality)
