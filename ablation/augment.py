"""`python scripts/augment.py --checkpoint PATH --target-count N [...] [hydra overrides]`: the augment
CLI's composition. The generator's engine (vaegan.augment) is given the judge as a callable; this
module, above both model packages, is where a classifier becomes that judge.

Argument checks, the data, the checkpoint and the judge are all settled before a single
image is generated, so a typo fails in seconds rather than after a judge was trained.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

import faces
from faces.errors import CheckpointError
from vaegan.augment.perturbations import PERTURBATIONS, get_perturbation
from vaegan.augment.run import AugmentError, augment, check_out_dir, refuse_inside_dataset
from vaegan.augment.targets import parse_target_count
from vaegan.checkpoint import checkpoint_fingerprint, load_vaegan, read_vaegan_meta

from .config import compose_config
from .judge import ensure_judge, load_judge

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
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--filter", action=argparse.BooleanOptionalAction, default=True,
                        help="quality filter with a real-data classifier (default: on)")
    parser.add_argument("--judge", type=Path, default=None, help="classifier checkpoint for the filter (default: train one on the real train split into OUT/judge/)")
    parser.add_argument("--min-confidence", type=float, default=0.5, help="drop samples whose judge probability for the target class is below this")
    parser.add_argument("--min-source-distance", type=float, default=0.02,
                        help="drop near-duplicates: mean absolute pixel difference to the source image (0..1) below this")
    parser.add_argument("--max-attempts-factor", type=float, default=10.0, help="give up on a class after this many candidates per image needed")
    parser.add_argument("--batch-size", type=int, default=256, help="candidates per generation batch (part of the reproducibility key)")
    parser.add_argument("--workers", type=int, default=None, help="PNG-writing processes (default: min(16, cores); 0 writes inline)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
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
    try:
        report = run_cli(args, overrides)
    except (AugmentError, CheckpointError, faces.DatasetError, ValueError) as error:
        print(f"augment: error: {error}", file=sys.stderr)
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
        target_count=args.target_count, out_dir=args.out, strategy=args.strategy, strength=args.strength, seed=args.seed,
        use_filter=args.filter, judge=args.judge, judge_overrides=list(cfg.judge.overrides),
        min_confidence=args.min_confidence, min_source_distance=args.min_source_distance,
        max_attempts_factor=args.max_attempts_factor, batch_size=args.batch_size, workers=args.workers,
        device=args.device, overwrite=args.overwrite,
    )


def augment_with_checkpoint(
    *, checkpoint: Path, data_cfg: DictConfig, paths_cfg: DictConfig, target_count: str | int, out_dir: Path | None = None,
    strategy: str = "gaussian", strength: float | None = None, seed: int = 0, use_filter: bool = True,
    judge: Path | None = None, judge_overrides: list[str] = (), min_confidence: float = 0.5,
    min_source_distance: float = 0.02, max_attempts_factor: float = 10.0, batch_size: int = 256,
    workers: int | None = None, device: str = "auto", overwrite: bool = False,
):
    """Everything `scripts/augment.py` does, callable from Python (the ablation uses it)."""
    checkpoint = Path(checkpoint)
    perturbation = get_perturbation(strategy)
    strength = perturbation.default_strength if strength is None else float(strength)
    if strength < 0:
        raise AugmentError(f"--strength={strength} must be >= 0")
    if batch_size < 1:
        raise AugmentError(f"--batch-size={batch_size} must be >= 1")
    meta = read_vaegan_meta(checkpoint)  # missing or not a checkpoint -> CheckpointError
    device = resolve_device(device)

    data = faces.load_faces(data_cfg, cache_dir=paths_cfg.cache_dir, splits=("train",))
    fit, _ = data.train_val()
    if tuple(meta["class_names"]) != data.class_names:
        raise AugmentError(f"--checkpoint {checkpoint} was trained on classes {meta['class_names']}, "
                           f"the data has {list(data.class_names)}")
    if meta.get("image_size") != fit.image_size:
        raise AugmentError(f"--checkpoint {checkpoint} was trained on {meta.get('image_size')}px images, "
                           f"the data config gives {fit.image_size}px (set data.image_size={meta.get('image_size')})")
    if meta.get("data_fingerprint") and meta["data_fingerprint"] != data.train.fingerprint:
        log.warning("the train split differs from the one the checkpoint was trained on (fingerprint %s vs %s)",
                    str(meta["data_fingerprint"])[:12], data.train.fingerprint[:12])
    targets = parse_target_count(target_count, class_names=data.class_names, real_counts=fit.class_counts())

    sha = checkpoint_fingerprint(checkpoint)
    out_dir = Path(out_dir) if out_dir else Path(paths_cfg.output_dir) / "generated" / (
        f"{data.dataset}-{perturbation.name}-a{strength:g}-seed{seed}-{sha[:8]}")
    refuse_inside_dataset(out_dir, dataset_root=data.root)
    # Refuse a mismatching OUT now, before a judge is trained for it.
    check_out_dir(out_dir, {"checkpoint_sha256": sha, "strategy": perturbation.name, "strength": strength,
                            "seed": seed, "batch_size": batch_size, "filter": bool(use_filter)}, overwrite=overwrite)
    model, _ = load_vaegan(checkpoint, map_location=device)

    score, judge_sha = (None, None)
    if use_filter:
        judge_path = judge or ensure_judge(
            data_cfg=data_cfg, paths_cfg=paths_cfg, overrides=list(judge_overrides), run_dir=out_dir / "judge",
            trainer="gpu" if device.type == "cuda" else "cpu")
        score, judge_sha = load_judge(Path(judge_path), class_names=data.class_names, device=device)
    workers = min(16, os.cpu_count() or 1) if workers is None else workers
    log.info("generating %s with %s (a=%g) into %s", dict(zip(data.class_names, targets)), perturbation.name, strength, out_dir)
    return augment(
        model=model, checkpoint_sha256=sha, fit=fit, out_dir=out_dir, targets=targets, perturbation=perturbation,
        strength=strength, seed=seed, batch_size=batch_size, judge=score, judge_sha256=judge_sha,
        min_confidence=min_confidence, min_source_distance=min_source_distance,
        max_attempts_factor=max_attempts_factor, device=device, workers=workers, overwrite=overwrite,
    )
