"""The generation report written beside every generated set (OUT/generation_report.json): per
minority class and overall, for the candidates *before* the filter and for the accepted samples,
class fidelity (GAN-test with the judge), novelty, diversity and k-NN precision/recall in the
offline EfficientNet-Lite0 feature space (faces.features). The figures are defined in
vaegan.generation.quality; this module feeds them the judge, which only the ablation floor has.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

import faces
from classifier.metrics import confusion_matrix, per_class_metrics
from faces.features import FEATURE_NETWORK, FeatureNetwork
from faces.io import write_json_atomic
from vaegan.diff_augment import gaussian_blur
from vaegan.generation.candidates import generate, plan
from vaegan.generation.filter import QualityFilter
from vaegan.generation.quality import NEAR_DUPLICATE_FRACTION, generation_figures
from vaegan.generation.request import Embed, GenerationRequest, Judge
from vaegan.images import resize_uint8, to_model_range, to_uint8
from vaegan.metrics import (
    KID_NAME,
    high_frequency_energy,
    label_flip_figures,
    latent_probe_recall,
    per_class_kid,
    reconstruction_fidelity,
)

log = logging.getLogger("augment")
REPORT_FILE = "generation_report.json"
FEATURE_IMAGE_SIZE = 96  # the VAE-GAN's Fréchet metric uses the same size (metrics.feature_image_size)
# A judge whose validation recall on a class is below this cannot tell whether a sample carries
# the class: its verdicts on that class are reported, but flagged as not meaningful.
JUDGE_RECALL_FLOOR = 0.5
# Label-flip figures: this many real validation faces of every other class are decoded with each minority label.
FLIP_SOURCES_PER_CLASS = 16
# Prior samples per minority class for its KID (unbiased at this size; the Fréchet figure is not).
PRIOR_SAMPLES_PER_CLASS = 64
# The judge's recall on real validation faces blurred by a Gaussian of these standard deviations (pixels at
# 64 px, scaled with the side), over its recall on the faces themselves. Why: reconstruction fidelity asks the
# decoder to keep what the judge reads, and a VAE's reconstructions are soft; this says how soft they may be
# (on the embedded faces a 1 px blur costs the judge 80 % of its Disgust readings; BENCHMARKS.md).
JUDGE_BLUR_SIGMAS = (0.5, 1.0)
# The `generator` section depends only on the VAE-GAN, the judge, the real splits, the minority classes and the
# seed, not on the set, so every set made from one generator and judge (the ablation's gaussian, decoder and
# transfer sets) reads it from CACHE_DIR/generator_figures/ after the first (~10-15 s each on the CPU). Bump
# the version when generator_figures measures something new, so older entries are not read.
GENERATOR_FIGURES_VERSION = 1


def judge_validation_recall(judge: Judge, val: faces.FaceSplit) -> list[float]:
    """The judge's recall on the real validation images of each class (NaN for a class with none)."""
    cm = confusion_matrix(judge(val.images).cpu(), val.labels, num_classes=len(val.class_names))
    per_class = per_class_metrics(cm)
    return [float(r) if n > 0 else math.nan for r, n in zip(per_class["recall"], per_class["support"])]


def _mean_defined(values: Sequence[float]) -> float:
    defined = [v for v in values if math.isfinite(v)]
    return sum(defined) / len(defined) if defined else math.nan


def judge_blur_tolerance(
    judge: Judge, val: faces.FaceSplit, *, recall: Sequence[float], sigmas: Sequence[float] = JUDGE_BLUR_SIGMAS
) -> dict[str, dict[str, Any]]:
    """Per blur (keyed by its sigma at 64 px): the sigma at the data's size, and per class the judge's recall on
    the blurred real validation faces over its `recall` on them unblurred (NaN where that is 0 or undefined)."""
    images = to_model_range(val.images)
    out = {}
    for sigma in sigmas:
        pixels = sigma * val.image_size / 64
        blurred = to_uint8(gaussian_blur(images, torch.full((len(images),), pixels)).clamp(-1, 1))
        ratios = [
            b / r if math.isfinite(r) and r > 0 else math.nan
            for b, r in zip(judge_validation_recall(judge, dataclasses.replace(val, images=blurred)), recall)
        ]
        out[f"{sigma:g}"] = {
            "sigma_px": pixels,
            "ratio": dict(zip(val.class_names, ratios)),
            "mean_ratio": _mean_defined(ratios),
        }
    return out


def blur_tolerance_line(tolerance: dict[str, dict[str, Any]] | None) -> str:
    """'; recall kept under a Gaussian blur of 0.5 / 1 px: 0.93 / 0.78 (per class in the JSON)', or '' (older reports)."""
    if not tolerance:
        return ""
    sigmas = " / ".join(f"{entry['sigma_px']:.2g}" for entry in tolerance.values())
    kept = " / ".join(format_figure(entry["mean_ratio"]) for entry in tolerance.values())
    return f"; recall kept under a Gaussian blur of {sigmas} px: {kept} (mean over classes; the JSON has each class)"


def judge_generator_overlap(architecture: dict[str, Any], judge_report: dict[str, Any] | None) -> str | None:
    """A warning when the judge starts from the ImageNet weights the decoder's label loss answered to
    (`vaegan.expression_classifier_imagenet` and a judge fine-tuned from the package's EfficientNet-Lite0), else None.
    Why: a decoder trained against a classifier learns patterns that classifier reads as the asked-for label, and
    a judge that shares its weights or family reads them too. Measured (BENCHMARKS.md): each of two judges of
    equal validation accuracy passed more label-flip targets for the generator trained against its own family."""
    if not judge_report or not architecture.get("expression_classifier_imagenet"):
        return None
    backbone, pretrained = judge_report.get("backbone"), str(judge_report.get("pretrained") or "")
    if backbone != "efficientnet_lite0" or not pretrained.startswith("package:"):
        return None
    return (
        f"the judge ({backbone}, {pretrained}) starts from the ImageNet EfficientNet-Lite0 weights the decoder's "
        "label loss answered to (vaegan.expression_classifier_imagenet=true): it may read the patterns made for "
        "that trunk as the asked-for expression; judge this generator with another family"
    )


def judge_overlap_line(judge: dict[str, Any] | None) -> str:
    """The report's warning line for `judge_generator_overlap`, or ''."""
    warning = (judge or {}).get("generator_overlap")
    return f"; WARNING: {warning}" if warning else ""


def judge_quality(judge: Judge, val: faces.FaceSplit, *, floor: float = JUDGE_RECALL_FLOOR) -> dict[str, Any]:
    """Validation mean class accuracy and per-class recall of the judge, the classes it cannot judge, and how
    much of its recall survives a slight blur (`blur_tolerance`: the ceiling soft reconstructions face)."""
    recall = judge_validation_recall(judge, val)
    weak = [name for name, r in zip(val.class_names, recall) if math.isfinite(r) and r < floor]
    return {
        "validation_mean_class_accuracy": _mean_defined(recall),
        "validation_recall": dict(zip(val.class_names, recall)),
        "validation_support": dict(zip(val.class_names, val.class_counts())),
        "recall_floor": floor,
        "weak_classes": weak,
        "blur_tolerance": judge_blur_tolerance(judge, val, recall=recall),
    }


def accepted_count(out_dir: Path) -> int:
    """Rows of OUT/manifest.csv (0 when the filter accepted nothing or there is no manifest yet)."""
    manifest = Path(out_dir) / faces.MANIFEST_FILE
    if not manifest.is_file():
        return 0
    with manifest.open(newline="") as handle:
        return sum(1 for _ in csv.DictReader(handle))


def feature_embedder(device: torch.device) -> Embed:
    """uint8 images -> features on the CPU in the report's space (offline EfficientNet-Lite0 at FEATURE_IMAGE_SIZE);
    an empty batch gives [0, num_features]."""
    network = FeatureNetwork(image_size=FEATURE_IMAGE_SIZE).to(device).eval()
    return lambda images: network(images.to(device)).cpu()


def _encode_batched(model, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int, device) -> torch.Tensor:
    """mu of uint8 faces, resized to the generator's resolution, in batches (the generator's own input range)."""
    resolution = model.resolution
    return torch.cat(
        [
            model.encode(
                to_model_range(resize_uint8(images[i : i + batch_size], size=resolution)).to(device),
                labels[i : i + batch_size].to(device),
            )[0]
            for i in range(0, len(images), batch_size)
        ]
    )


def _decode_batched(
    model, z: torch.Tensor, labels: torch.Tensor, *, image_size: int, batch_size: int, device
) -> torch.Tensor:
    """Decoded uint8 faces, resized to the data's size, in batches."""
    return torch.cat(
        [
            resize_uint8(
                to_uint8(model.decode(z[i : i + batch_size], labels[i : i + batch_size].to(device))).cpu(),
                size=image_size,
            )
            for i in range(0, len(z), batch_size)
        ]
    )


def label_flip_pairs(
    val_labels: torch.Tensor, *, classes: Sequence[int], num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(source indices, target labels) for the label-flip test: for each minority class, up to
    FLIP_SOURCES_PER_CLASS validation faces of every other class, in class order."""
    sources = (
        torch.cat(
            [
                torch.cat(
                    [
                        (val_labels == c).nonzero().flatten()[:FLIP_SOURCES_PER_CLASS]
                        for c in range(num_classes)
                        if c != target
                    ]
                )
                for target in classes
            ]
        )
        if classes
        else torch.zeros(0, dtype=torch.long)
    )
    targets = (
        torch.cat(
            [
                torch.full(
                    (
                        sum(
                            min(FLIP_SOURCES_PER_CLASS, int((val_labels == c).sum()))
                            for c in range(num_classes)
                            if c != t
                        ),
                    ),
                    t,
                )
                for t in classes
            ]
        )
        if classes
        else torch.zeros(0, dtype=torch.long)
    )
    return sources, targets


def _prior_fidelity(
    prior_predictions: torch.Tensor,
    prior_labels: torch.Tensor,
    *,
    classes: Sequence[int],
    names: Sequence[str],
    reconstruction: dict[str, Any],
) -> dict[str, Any]:
    """Per class: the judge's recall on prior samples, and its ratio to the judge's recall on real faces."""
    out: dict[str, Any] = {}
    for c in classes:
        recall = float((prior_predictions[prior_labels == c] == c).double().mean())
        real_recall = reconstruction[names[c]]["judge_recall_real"]
        out[names[c]] = {
            "judge_recall": recall,
            "ratio": recall / real_recall if real_recall else math.nan,
            "n": PRIOR_SAMPLES_PER_CLASS,
        }
    return out


@torch.no_grad()
def generator_figures(
    *,
    model,
    fit: faces.FaceSplit,
    val: faces.FaceSplit,
    classes: Sequence[int],
    judge: Judge,
    embed: Embed,
    real_features: torch.Tensor,
    device: torch.device,
    seed: int,
    batch_size: int = 256,
) -> dict[str, Any]:
    """Whether the generator itself does its job, judged by the real-data judge on real validation faces
    (no rendering trick involved, every image is the decoder's own, resized to the data's size):
    - reconstruction_fidelity per class: judge recall on dec(mu(x), y) / on x;
    - label_flip per minority class y': faces of the other classes decoded as dec(mu(x), y') (accuracy,
      source_kept, identity_kept, high_frequency_ratio: vaegan.metrics.label_flip_figures);
    - kid and prior_fidelity per minority class: prior samples dec(z ~ N(0, I), y').
    """
    names = fit.class_names

    def encode(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return _encode_batched(model, images, labels, batch_size=batch_size, device=device)

    def decode(z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return _decode_batched(model, z, labels, image_size=fit.image_size, batch_size=batch_size, device=device)

    def predict(images: torch.Tensor) -> torch.Tensor:
        return judge(images).argmax(dim=1).cpu()

    mu = encode(val.images, val.labels)
    reconstructed = decode(mu, val.labels)
    # What the codes say about the expression (Fader's aim: nothing): a probe fitted on the fit split's codes.
    probe = latent_probe_recall(
        train_codes=encode(fit.images, fit.labels),
        train_labels=fit.labels,
        test_codes=mu,
        test_labels=val.labels,
        class_names=names,
        seed=seed,
    )
    figures: dict[str, Any] = {
        "latent_probe": probe,
        "reconstruction_fidelity": reconstruction_fidelity(
            reconstructed_predictions=predict(reconstructed),
            real_predictions=predict(val.images),
            labels=val.labels,
            class_names=names,
        ),
    }
    sources, targets = label_flip_pairs(val.labels, classes=classes, num_classes=len(names))
    flipped = decode(mu[sources.to(device)], targets)
    figures["label_flip"] = label_flip_figures(
        predictions=predict(flipped),
        target_labels=targets,
        source_labels=val.labels[sources],
        class_names=names,
        flipped_features=embed(flipped),
        source_features=embed(val.images[sources]),
        real_features=real_features,
        real_labels=fit.labels,
        flipped_high_frequency=high_frequency_energy(to_model_range(flipped)),
        reconstructed_high_frequency=high_frequency_energy(to_model_range(reconstructed))[sources],  # once per face
    )
    generator = torch.Generator(device=device).manual_seed(seed + 4242)
    prior_labels = torch.tensor(classes, dtype=torch.long).repeat_interleave(PRIOR_SAMPLES_PER_CLASS)
    figures.update(
        _prior_figures(
            decode(torch.randn(len(prior_labels), model.latent_dim, generator=generator, device=device), prior_labels),
            prior_labels,
            embed=embed,
            predict=predict,
            real=(real_features, fit.labels),
            classes=classes,
            names=names,
            reconstruction=figures["reconstruction_fidelity"],
        )
    )
    return figures


def _prior_figures(prior, prior_labels, *, embed, predict, real, classes, names, reconstruction) -> dict[str, Any]:
    """Per-class KID of the prior samples against the real fit faces, and their fidelity ratio."""
    real_features, real_labels = real
    return {
        KID_NAME + "_prior": per_class_kid(
            generated=embed(prior),
            generated_labels=prior_labels,
            real=real_features,
            real_labels=real_labels,
            class_names=names,
        ),
        "prior_fidelity": _prior_fidelity(
            predict(prior), prior_labels, classes=classes, names=names, reconstruction=reconstruction
        ),
    }


def _predictions(judge: Judge | None, images: torch.Tensor) -> torch.Tensor | None:
    return None if judge is None or images.shape[0] == 0 else judge(images).argmax(dim=1).cpu()


def _first_candidates(
    model, plans, *, request: GenerationRequest, image_size: int, judge: QualityFilter | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Before the filter: the first candidate batch of each class, exactly as the augmenter drew it (a guided
    strategy's codes steered by the filter's judge)."""
    guide = judge.judge_logits if judge is not None else None
    candidates = [
        generate(model, item, 0, request=request, image_size=image_size, guide=guide).images for item in plans
    ]
    before_images = (
        torch.cat(candidates) if candidates else torch.zeros(0, 3, image_size, image_size, dtype=torch.uint8)
    )
    before_labels = (
        torch.cat([torch.full((c.shape[0],), item.label) for c, item in zip(candidates, plans)])
        if candidates
        else torch.zeros(0, dtype=torch.long)
    )
    return before_images, before_labels


def _accepted_set(
    out_dir: Path, *, fit: faces.FaceSplit, cache_dir: Path | str, empty
) -> tuple[torch.Tensor, torch.Tensor]:
    """After the filter: the accepted generated faces on disk, or `empty` (images, labels) when none were kept."""
    if accepted_count(out_dir) > 0:
        accepted = faces.load_generated(
            out_dir, class_names=fit.class_names, image_size=fit.image_size, cache_dir=cache_dir
        )
        return accepted.images, accepted.labels
    return empty


def _set_figures(features, labels, judge_predictions, *, real, class_names, classes, real_val_recall) -> dict[str, Any]:
    """generation_figures for one generated set (before or after the filter) against the real training faces."""
    real_features, real_labels = real
    return generation_figures(
        generated=features,
        generated_labels=labels,
        real=real_features,
        real_labels=real_labels,
        class_names=class_names,
        classes=classes,
        judge_predictions=judge_predictions,
        real_val_recall=real_val_recall,
    )


def _judge_section(model, judge: Judge | None, judge_report: dict[str, Any] | None, val) -> dict[str, Any] | None:
    """The report's judge section: its validation quality (measured here unless given) and whether it shares
    the weights the decoder's label loss answered to."""
    if judge_report is None and judge is not None:
        judge_report = judge_quality(judge, val)
    if judge_report is None:
        return None
    overlap = judge_generator_overlap(dict(getattr(model, "architecture", {})), judge_report)
    return {**judge_report, "generator_overlap": overlap}


def _grain_levels(request: GenerationRequest, plans) -> dict[str, Any]:
    """{"grain_levels": {class: std in uint8 levels}} for the grain rendering (its noise per class, matched to the
    class's real faces), else {}."""
    if request.render != "grain":
        return {}
    return {"grain_levels": {item.name: round(item.grain_std * 127.5, 3) for item in plans}}


@torch.no_grad()
def write_generation_report(
    request: GenerationRequest,
    *,
    model,
    fit: faces.FaceSplit,
    val: faces.FaceSplit,
    targets: Sequence[int],
    cache_dir: Path | str,
    judge: QualityFilter | None = None,
    judge_report: dict[str, Any] | None = None,
    embed: Embed | None = None,
    checkpoint_sha256: str | None = None,
) -> dict[str, Any]:
    """Measure the finished generated set in request.out_dir and write OUT/generation_report.json (atomically).
    `embed` and the judge's duplicate filter (every fit image's features) may come from the filter, which already
    built them. `checkpoint_sha256` (the VAE-GAN file's) lets sets of one generator share its section (the cache)."""
    out_dir, device = request.out_dir, request.torch_device
    judge_probabilities = judge.judge_probabilities if judge is not None else None
    real_features = judge.duplicates.real_features if judge is not None and judge.duplicates is not None else None
    plans = plan(model, fit, request=request, targets=targets, done={})
    classes = [item.label for item in plans]
    before_images, before_labels = _first_candidates(
        model, plans, request=request, image_size=fit.image_size, judge=judge
    )
    after_images, after_labels = _accepted_set(
        out_dir, fit=fit, cache_dir=cache_dir, empty=(before_images[:0], before_labels[:0])
    )
    embed = feature_embedder(device) if embed is None else embed
    # Every real training image: per-class figures use their class's, near-duplicates are checked against all.
    real_features = embed(fit.images) if real_features is None else real_features
    before_features = embed(before_images)
    judge_report = _judge_section(model, judge_probabilities, judge_report, val)
    val_recall = [judge_report["validation_recall"][n] for n in fit.class_names] if judge_report else None
    common = dict(class_names=fit.class_names, classes=classes, real_val_recall=val_recall)
    report = {
        "feature_network": f"{FEATURE_NETWORK} (ImageNet, offline), {FEATURE_IMAGE_SIZE}px",
        "near_duplicate_rule": f"nearest real training image (any class) or earlier sample closer than {NEAR_DUPLICATE_FRACTION:g} x "
        "the class's median real-to-real nearest-neighbour distance",
        "strategy": request.strategy,
        "strength": request.strength,
        "render": request.render,
        **_grain_levels(request, plans),
        "judge": judge_report,
        "before_filter": _set_figures(
            before_features,
            before_labels,
            _predictions(judge_probabilities, before_images),
            real=(real_features, fit.labels),
            **common,
        ),
        "after_filter": _set_figures(
            embed(after_images),
            after_labels,
            _predictions(judge_probabilities, after_images),
            real=(real_features, fit.labels),
            **common,
        ),
    }
    report["before_filter"]["kid"] = per_class_kid(
        generated=before_features,
        generated_labels=before_labels,
        real=real_features,
        real_labels=fit.labels,
        class_names=fit.class_names,
    )
    if judge is not None:
        report["generator"] = _generator_section(
            model,
            judge=judge,
            checkpoint_sha256=checkpoint_sha256,
            cache_dir=cache_dir,
            fit=fit,
            val=val,
            classes=classes,
            embed=embed,
            real_features=real_features,
            request=request,
        )
    write_json_atomic(out_dir / REPORT_FILE, report, indent=1, allow_nan=True)
    return report


def _generator_section(
    model,
    *,
    judge: QualityFilter,
    checkpoint_sha256: str | None,
    cache_dir: Path | str,
    fit: faces.FaceSplit,
    val: faces.FaceSplit,
    classes: Sequence[int],
    embed: Embed,
    real_features: torch.Tensor,
    request: GenerationRequest,
) -> dict[str, Any]:
    """`generator_figures` for this generator and judge, through the cache where both have a content hash; the
    request gives the seed and the device."""
    # What the figures depend on besides the generator, the judge and the fixed feature network (embed, and
    # real_features = embed(fit.images)), named once: the cache key covers exactly these.
    inputs = dict(fit=fit, val=val, classes=classes, seed=request.seed, device=request.torch_device)
    key = generator_figures_key(checkpoint_sha256=checkpoint_sha256, judge_sha256=judge.judge_sha256, **inputs)

    def measure() -> dict[str, Any]:
        return generator_figures(
            model=model, judge=judge.judge_probabilities, embed=embed, real_features=real_features, **inputs
        )

    return cached_generator_figures(cache_dir=cache_dir, key=key, compute=measure)


def generator_figures_key(
    *,
    checkpoint_sha256: str | None,
    judge_sha256: str | None,
    fit: faces.FaceSplit,
    val: faces.FaceSplit,
    classes: Sequence[int],
    seed: int,
    device: torch.device,
) -> str | None:
    """The cache key of `generator_figures` for these inputs, or None where the generator or the judge has no
    known content hash (then nothing is cached). The device type is part of it: CUDA kernels may round
    differently from the CPU's."""
    if not checkpoint_sha256 or not judge_sha256:
        return None
    parts = {
        "version": GENERATOR_FIGURES_VERSION,
        "checkpoint_sha256": checkpoint_sha256,
        "judge_sha256": judge_sha256,
        "fit_sha256": fit.content_sha256,
        "val_sha256": val.content_sha256,
        "classes": [int(c) for c in classes],
        "seed": int(seed),
        "device": torch.device(device).type,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def cached_generator_figures(*, cache_dir: Path | str, key: str | None, compute) -> dict[str, Any]:
    """`compute()` (the generator section), read from CACHE_DIR/generator_figures/KEY.json where an earlier set
    measured the same generator with the same judge, else computed and stored there (atomically). Stored as the
    report stores it (JSON, NaN allowed), so a cached section writes the same report bytes as a fresh one."""
    if key is None:
        return compute()
    path = Path(cache_dir) / "generator_figures" / f"{key}.json"
    if path.is_file():
        try:
            figures = json.loads(path.read_text())
        except (OSError, ValueError) as error:  # a damaged entry is measured again, never trusted
            log.warning("ignoring the unreadable generator-figures cache %s (%s)", path, error)
        else:
            log.info("the generator's own figures: the same VAE-GAN and judge as an earlier set (%s)", path)
            return figures
    figures = compute()
    # Round-trip through JSON so this run returns exactly what a later run reads from the cache.
    figures = json.loads(json.dumps(figures, allow_nan=True))
    write_json_atomic(path, figures, allow_nan=True)
    return figures


def format_figure(value: Any, digits: int = 2) -> str:
    """A figure for a table: fixed digits, or "–" where it is undefined (too few samples)."""
    return "–" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.{digits}f}"


def read_instead(recon: dict[str, Any]) -> str:
    """'Anger 0.44': the class the judge reads most of a class's reconstructions as, and that share."""
    other = recon.get("read_instead_as")
    return "-" if other is None else f"{other} {format_figure(recon.get('read_instead_share'))}"


def format_generation_report(report: dict[str, Any]) -> str:
    """A per-class table for the terminal: n, fidelity ratio, diversity, near-duplicates, before -> after the filter."""
    lines = [
        f"generation report ({report['strategy']}, a={report['strength']:g}; features: {report['feature_network']})",
        f"{'class':<11}{'n before':>9}{'n after':>8}{'fidelity':>15}{'diversity':>15}{'near-dup':>15}{'prec/rec after':>16}",
    ]
    before, after = report["before_filter"]["classes"], report["after_filter"]["classes"]

    def pair(b: float | None, a: float | None, *, sep: str = " -> ") -> str:
        return f"{format_figure(b)}{sep}{format_figure(a)}"

    for name, b in before.items():
        a = after.get(name, {})
        lines.append(
            f"{name:<11}{b['n_generated']:>9}{a.get('n_generated', 0):>8}"
            f"{pair(b.get('fidelity', {}).get('ratio'), a.get('fidelity', {}).get('ratio')):>15}"
            f"{pair(b['diversity_ratio'], a.get('diversity_ratio')):>15}"
            f"{pair(b['novelty']['near_duplicate_share'], a.get('novelty', {}).get('near_duplicate_share')):>15}"
            f"{pair(a.get('precision'), a.get('recall'), sep=' / '):>16}"
        )
    separable = {name: a["real_vs_generated"] for name, a in after.items() if "real_vs_generated" in a}
    if separable:
        lines.append(
            "real vs generated after the filter, 1-NN two-sample accuracy (0.5: indistinguishable, 1: separable): "
            + ", ".join(f"{name} {format_figure(f['accuracy'])} (n {f['n_per_side']})" for name, f in separable.items())
        )
    if report.get("grain_levels"):
        lines.append(
            "grain rendering, pixel noise std per class (uint8 levels, matched to its real faces): "
            + ", ".join(f"{name} {level:.1f}" for name, level in report["grain_levels"].items())
        )
    generator = report.get("generator")
    if generator:
        lines.append("the generator's own images (decoder, judged by the judge on real val faces):")
        lines.append(
            f"{'class':<11}{'recon fid':>10}{'flip acc':>9}{'src kept':>9}{'identity':>9}{'flip HF':>8}{'prior fid':>10}"
            f"{'KID prior':>10}"
            "  recon read instead as"
        )
        if "latent_probe" in generator:
            probe = generator["latent_probe"]
            lines.append(
                f"a linear probe reads the expression from the codes: mean class recall "
                f"{format_figure(probe['mean_class_recall'])} (chance {probe['chance']:.2f})"
            )
        for name, flip in generator["label_flip"].items():
            if name not in generator["prior_fidelity"]:
                continue
            lines.append(
                f"{name:<11}{format_figure(generator['reconstruction_fidelity'][name]['ratio']):>10}"
                f"{format_figure(flip['accuracy']):>9}{format_figure(flip['source_kept']):>9}"
                f"{format_figure(flip['identity_kept']):>9}{format_figure(flip.get('high_frequency_ratio')):>8}"
                f"{format_figure(generator['prior_fidelity'][name]['ratio']):>10}"
                f"{format_figure(generator[KID_NAME + '_prior'][name]['kid'], 3):>10}"
                f"  {read_instead(generator['reconstruction_fidelity'][name])}  (n flip {flip['n']})"
            )
    judge = report.get("judge")
    if judge:
        lines.append(
            f"judge: validation mean class accuracy {judge['validation_mean_class_accuracy']:.3f}; "
            + (
                "WEAK on " + ", ".join(judge["weak_classes"]) + f" (validation recall < {judge['recall_floor']:g}): "
                "its verdicts there mean little"
                if judge["weak_classes"]
                else "every class above the recall floor"
            )
            + blur_tolerance_line(judge.get("blur_tolerance"))
            + judge_overlap_line(judge)
        )
    return "\n".join(lines)
