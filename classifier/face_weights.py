"""Face-pretrained backbones from the files FER papers distribute: the formats, their mapping onto
timm, and the one path that checks and loads any pretrained weights file.

Face-identity pretraining is the usual starting point of RAF-DB / AffectNet papers, and the weights
come in the formats their authors published, not as timm state dicts:

  msceleb_resnet18   `resnet18_msceleb.pth` of SCN / DAN / EAC: a torch checkpoint whose `state_dict`
                     holds torchvision `resnet18` names (sometimes `module.`-prefixed by DataParallel)
                     and an identity-classification `fc` head of some size.  -> timm `resnet18`
  vggface2_resnet50  `resnet50_ft_weight.pkl` / `resnet50_scratch_weight.pkl` of cydonia999/VGGFace2-pytorch:
                     a pickled dict name -> numpy array converted from the authors' Caffe model.
                                                     -> `resnet50_caffe` (classifier/architectures.py)
  vggface2_senet50   `senet50_ft_weight.pkl` / `senet50_scratch_weight.pkl`, same format, SE-ResNet-50.
                                                                               -> timm `legacy_seresnet50`

A new format is one `FaceWeightsFormat` in FORMATS (and a conf/classifier preset). `check_weights_file`
is the one check of a weights file against the config (cheap: it reads at most a safetensors header);
`load_weights_file` runs it, then reads the tensors, maps them onto the timm model, refuses anything
that does not fit (naming the first offending key and both shapes), drops only the identity head, and
returns a logged `FaceWeightsReport`. classifier/backbones.py's `convert_face_weights` re-exports any of
them as a timm-named .safetensors with the architecture, source format and input normalisation in its
header, so later runs load that file without unpickling anything.

Normalisation is carried by the backbone's `pretrained_cfg["mean"/"std"]`, which classifier/train.py
already reads: MS-Celeb ResNet-18 uses ImageNet mean/std on RGB; the VGGFace2 Caffe models take BGR
0..255 minus a per-channel mean, which `_caffe_bgr_to_rgb` turns into an RGB mean/std (see there).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from faces.features import IMAGENET_MEAN, IMAGENET_STD, PretrainedWeightsError

from .architectures import VGGFACE2_MEAN, VGGFACE2_MEAN_BGR, VGGFACE2_STD
from .weight_files import (
    PICKLE_SUFFIXES,
    load_backbone_weights,
    read_converted_meta,
    read_state_dict,
    read_weight_pickle,
    strip_data_parallel,
)

log = logging.getLogger(__name__)

__all__ = [
    "CONVERT_FORMATS",
    "FORMATS",
    "TIMM",
    "VGGFACE2_MEAN_BGR",
    "WEIGHTS_FORMATS",
    "FaceWeightsFormat",
    "FaceWeightsReport",
    "WeightsFile",
    "check_weights_file",
    "detect_weights_format",
    "load_weights_file",
    "map_face_state_dict",
    "missing_weights_error",
    "set_normalisation",
    "weights_used",
]

TIMM = "timm"


def _same_key(key: str) -> str:
    # torchvision resnet18 and the Caffe ResNet-50 port already use timm's resnet names.
    return key


@dataclass(frozen=True, kw_only=True)
class FaceWeightsFormat:
    """One published weight format: which timm model it becomes and what input it expects."""

    name: str
    architecture: str  # the timm model name (classifier.backbone) the weights map onto
    preset: str  # conf/classifier/<preset>.yaml
    env_var: str  # the preset's default for classifier.pretrained_path
    typical_file: str
    where: str  # where users get the file
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    head_keys: tuple[str, ...] = ("fc.weight", "fc.bias")  # the identity-classification head, dropped
    caffe_bgr: bool = False  # first conv expects BGR input (flipped to RGB on load)
    rename: Callable[[str], str] = _same_key  # source key -> timm key


def _senet_key(key: str) -> str:
    """cydonia999 SENet-50 names -> timm legacy_seresnet50 (Cadene's layout): the stem lives in
    `layer0`, and the SE block's 1x1 convs `conv4`/`conv5` are `se_module.fc1`/`fc2`."""
    for old, new in (("conv1.", "layer0.conv1."), ("bn1.", "layer0.bn1.")):
        if key.startswith(old):
            return new + key[len(old) :]
    return key.replace(".conv4.", ".se_module.fc1.").replace(".conv5.", ".se_module.fc2.")


_VGGFACE2_WHERE = (
    "download it from the 'Pretrained models' table of the cydonia999/VGGFace2-pytorch README "
    "(https://github.com/cydonia999/VGGFace2-pytorch)"
)
FORMATS: dict[str, FaceWeightsFormat] = {
    fmt.name: fmt
    for fmt in (
        FaceWeightsFormat(
            name="msceleb_resnet18",
            architecture="resnet18",
            preset="resnet18_msceleb",
            env_var="FER_MSCELEB_RESNET18",
            typical_file="resnet18_msceleb.pth",
            where=(
                "download it via the link in the README of SCN (github.com/kaiwang960112/Self-Cure-Network), "
                "DAN (github.com/yaoing/DAN) or EAC (github.com/zyh-uaiaaaa/Erasing-Attention-Consistency)"
            ),
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,  # SCN / DAN fine-tune it with ImageNet normalisation on RGB
        ),
        FaceWeightsFormat(
            name="vggface2_resnet50",
            architecture="resnet50_caffe",
            preset="resnet50_vggface2",
            env_var="FER_VGGFACE2_RESNET50",
            typical_file="resnet50_ft_weight.pkl",
            where=_VGGFACE2_WHERE,
            mean=VGGFACE2_MEAN,
            std=VGGFACE2_STD,
            caffe_bgr=True,
        ),
        FaceWeightsFormat(
            name="vggface2_senet50",
            architecture="legacy_seresnet50",
            preset="senet50_vggface2",
            env_var="FER_VGGFACE2_SENET50",
            typical_file="senet50_ft_weight.pkl",
            where=_VGGFACE2_WHERE,
            mean=VGGFACE2_MEAN,
            std=VGGFACE2_STD,
            caffe_bgr=True,
            rename=_senet_key,
        ),
    )
}
WEIGHTS_FORMATS = (TIMM, *FORMATS)
CONVERT_FORMATS = ("auto", *WEIGHTS_FORMATS)


def weights_used(weights_format: str, path: Path | str) -> str:
    """Human-readable provenance of a weights file, e.g. `msceleb_resnet18:/data/resnet18_msceleb.pth`."""
    return f"{'file' if weights_format == TIMM else weights_format}:{path}"


def _choices() -> str:
    return (
        f"classifier.weights_format is one of {list(WEIGHTS_FORMATS)} "
        f"(presets: {', '.join('classifier=' + f.preset for f in FORMATS.values())})"
    )


def _fmt(weights_format: str) -> FaceWeightsFormat:
    if weights_format not in FORMATS:
        raise PretrainedWeightsError(
            f"classifier.weights_format={weights_format!r} is not a face-weights format; {_choices()}"
        )
    return FORMATS[weights_format]


# --------------------------------------------------------------------------------------------------
# Reading the published files.


def _read_raw(path: Path, fmt: FaceWeightsFormat) -> dict[str, torch.Tensor]:
    """The file's tensors under its own names; pickles only through the array-only unpickler."""
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return {
            k: torch.from_numpy(np.array(v, dtype=np.float32 if v.dtype.kind == "f" else v.dtype))
            for k, v in read_weight_pickle(path).items()
        }
    if fmt.caffe_bgr and path.suffix.lower() != ".safetensors":
        raise PretrainedWeightsError(
            f"{path}: weights_format={fmt.name} expects the cydonia999 pickle ({fmt.typical_file}) or a .safetensors written "
            "by scripts/convert_backbone.py"
        )
    return read_state_dict(path)  # torch.load(weights_only=True) / safetensors; unwraps {"state_dict": ...}


# --------------------------------------------------------------------------------------------------
# Mapping onto timm, with a report.


@dataclass(frozen=True, kw_only=True)
class FaceWeightsReport:
    """What a weights file contributed to a timm backbone (logged by `load_weights_file`)."""

    path: str
    weights_format: str  # the published format the tensors came from (or "timm")
    architecture: str
    mapped: int  # tensors loaded into the backbone
    dropped: tuple[str, ...] = ()  # source keys not used: the identity-classification head
    # Backbone keys the file did not provide, kept at their initial values: only BatchNorm step
    # counters (num_batches_tracked) can be; a missing weight is an error, never a silent random init.
    missing: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def weights_used(self) -> str:
        return weights_used(self.weights_format, self.path)

    def summary(self) -> str:
        parts = [f"{self.weights_used} -> timm {self.architecture}: {self.mapped} tensors mapped"]
        if self.dropped:
            parts.append(
                f"dropped {len(self.dropped)} ({', '.join(self.dropped[:4])}{', ...' if len(self.dropped) > 4 else ''})"
            )
        if self.missing:  # only BatchNorm step counters can be (map_face_state_dict refuses anything else)
            parts.append(
                f"{len(self.missing)} BatchNorm step counters not in the file (kept at their initial value; no effect on outputs)"
            )
        return "; ".join(parts + list(self.notes))


def _shape(tensor: torch.Tensor) -> tuple[int, ...]:
    return tuple(tensor.shape)


def map_face_state_dict(
    state: Mapping[str, torch.Tensor], *, weights_format: str, target: Mapping[str, torch.Tensor], path: Path | str
) -> tuple[dict[str, torch.Tensor], FaceWeightsReport]:
    """Rename `state` (a published format's tensors) to the keys of `target` (a timm state_dict).

    Strict both ways, because a wrong file must not load "mostly": the identity head is the only
    thing dropped; any other unused key (e.g. layer1.2.* of a ResNet-34 given as a ResNet-18), any
    shape mismatch, and any missing weight is an error naming the first such key and its shapes.
    BatchNorm step counters (`num_batches_tracked`, absent from Caffe conversions and old torch files)
    keep the model's values: they do not affect the function.
    """
    fmt = _fmt(weights_format)
    where = f"{path} read as classifier.weights_format={fmt.name} (timm {fmt.architecture})"
    mapped: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    for key, value in strip_data_parallel(state).items():
        if key in fmt.head_keys:
            dropped.append(key)
            continue
        if key.endswith("num_batches_tracked") and fmt.rename(key) not in target:
            dropped.append(key)
            continue
        new = fmt.rename(key)
        if new not in target:
            raise PretrainedWeightsError(
                f"{where}: the file has {key} {_shape(value)}, which timm {fmt.architecture} does not have; the file is a "
                f"different architecture (a deeper or wider network?). {_choices()}"
            )
        if _shape(value) != _shape(target[new]):
            raise PretrainedWeightsError(
                f"{where}: {key} has shape {_shape(value)} in the file but {new} is {_shape(target[new])} in timm "
                f"{fmt.architecture}; the file is a different architecture. {_choices()}"
            )
        mapped[new] = value.to(target[new].dtype)
    counters = [k for k in target if k not in mapped and k.endswith("num_batches_tracked")]
    missing = [k for k in target if k not in mapped and not k.endswith("num_batches_tracked")]
    if missing:
        raise PretrainedWeightsError(
            f"{where}: the file lacks {len(missing)} tensor(s) timm {fmt.architecture} needs, first {missing[0]} "
            f"{_shape(target[missing[0]])}; the file is a different architecture or truncated. {_choices()}"
        )
    for key in counters:
        mapped[key] = target[key].clone()
    notes: list[str] = []
    if fmt.caffe_bgr:
        notes.append(_caffe_bgr_to_rgb(mapped, fmt=fmt))
    report = FaceWeightsReport(
        path=str(path),
        weights_format=fmt.name,
        architecture=fmt.architecture,
        mapped=sum(not k.endswith("num_batches_tracked") for k in mapped),
        dropped=tuple(dropped),
        missing=tuple(counters),
        notes=tuple(notes),
    )
    return mapped, report


def _first_conv_key(architecture: str) -> str:
    return "layer0.conv1.weight" if architecture.startswith("legacy_se") else "conv1.weight"


def _caffe_bgr_to_rgb(mapped: dict[str, torch.Tensor], *, fmt: FaceWeightsFormat) -> str:
    """Let a Caffe BGR network take the RGB input every other backbone here gets, without touching
    the preprocessing code.

    Caffe feeds x_bgr_255 - mean_bgr (no scaling). classifier.model.preprocess computes
    (x_rgb_01 - mean) / std, so with mean = mean_rgb / 255 and std = 1/255 it produces
    (x_rgb_255 / 255 - mean_rgb / 255) * 255 = x_rgb_255 - mean_rgb: Caffe's numbers in RGB order.
    The first conv is linear in its input channels, so reversing its weight's channel axis makes it
    read RGB exactly as the original read BGR. `fmt.mean/std` (set on the backbone's pretrained_cfg)
    carry the first half, this flip the second.
    """
    key = _first_conv_key(fmt.architecture)
    mapped[key] = mapped[key].flip(1).contiguous()
    return f"{key} input channels reversed (Caffe BGR -> RGB); normalise RGB with mean {tuple(round(m, 5) for m in fmt.mean)}, std 1/255"


def set_normalisation(model: nn.Module, *, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
    """The input statistics the weights were trained with, where train.py reads them (pretrained_cfg).

    A new dict: timm may share one cfg dict between models; `default_cfg` is timm's older alias."""
    cfg = {
        **(getattr(model, "pretrained_cfg", None) or {}),
        "mean": tuple(float(m) for m in mean),
        "std": tuple(float(s) for s in std),
    }
    model.pretrained_cfg = cfg
    model.default_cfg = cfg


# --------------------------------------------------------------------------------------------------
# The one check of a weights file, and the one load that follows it.


def _require_file(path: Path, *, weights_format: str) -> Path:
    if path.is_file():
        return path
    fmt = FORMATS.get(weights_format)
    if fmt is None:
        raise PretrainedWeightsError(f"pretrained weights file {path} does not exist (classifier.pretrained_path)")
    via = (
        f" (taken from ${fmt.env_var})"
        if os.environ.get(fmt.env_var) and Path(os.environ[fmt.env_var]).expanduser() == path
        else ""
    )
    raise PretrainedWeightsError(
        f"classifier.pretrained_path={path}{via} does not exist; classifier.weights_format={fmt.name} needs {fmt.typical_file}: "
        f"{fmt.where}, then set classifier.pretrained_path=/path/{fmt.typical_file} or export {fmt.env_var}=/path/{fmt.typical_file}"
    )


def _check_converted(meta: Mapping[str, Any], *, path: Path, backbone: str, weights_format: str) -> None:
    source = str(meta["weights_format"])
    if weights_format not in (TIMM, source):
        raise PretrainedWeightsError(
            f"{path} was converted from weights_format={source}, but classifier.weights_format={weights_format}; "
            f"set classifier.weights_format={source} (or {TIMM})"
        )
    if str(meta["architecture"]) != backbone:
        preset = f" (classifier={FORMATS[source].preset})" if source in FORMATS else ""
        raise PretrainedWeightsError(
            f"{path} holds timm {meta['architecture']} weights (converted from {source}), but classifier.backbone={backbone}; "
            f"set classifier.backbone={meta['architecture']}{preset}"
        )


@dataclass(frozen=True, kw_only=True)
class WeightsFile:
    """A weights file checked against the config: where it is and how it will be read."""

    path: Path
    weights_format: str  # the format its tensors came from: TIMM or a FORMATS name
    converted: Mapping[str, Any] | None = None  # the header of a scripts/convert_backbone.py output

    @property
    def weights_used(self) -> str:
        return weights_used(self.weights_format, self.path)


def check_weights_file(path: Path | str, *, backbone: str, weights_format: str) -> WeightsFile:
    """Everything that can be known about a weights file without reading its tensors.

    A missing file (naming the env var and where to get it for a face format), a converted file of another
    format or architecture, a pickle given as a timm state dict, or a format for another architecture fails
    here, with the same message whether the early config check or the loader asks.
    """
    path = _require_file(Path(path).expanduser(), weights_format=weights_format)
    meta = read_converted_meta(path)
    if meta is not None:
        _check_converted(meta, path=path, backbone=backbone, weights_format=weights_format)
        return WeightsFile(path=path, weights_format=str(meta["weights_format"]), converted=meta)
    if weights_format == TIMM:
        if path.suffix.lower() in PICKLE_SUFFIXES:
            raise PretrainedWeightsError(
                f"classifier.pretrained_path={path} is a pickle; timm state dicts are .pth/.safetensors. For a VGGFace2 "
                "weight pickle use classifier=resnet50_vggface2 or classifier=senet50_vggface2"
            )
        return WeightsFile(path=path, weights_format=TIMM)
    fmt = _fmt(weights_format)
    if backbone != fmt.architecture:
        raise PretrainedWeightsError(
            f"classifier.weights_format={fmt.name} maps onto timm {fmt.architecture}, but classifier.backbone={backbone}; "
            f"use classifier={fmt.preset} (backbone: {fmt.architecture})"
        )
    return WeightsFile(path=path, weights_format=fmt.name)


def _load_converted(model: nn.Module, weights: WeightsFile, *, backbone: str) -> FaceWeightsReport:
    from safetensors.torch import load_file

    path, meta, target = weights.path, weights.converted, model.state_dict()
    state = load_file(str(path))
    extra = sorted(set(state) - set(target))
    absent = sorted(set(target) - set(state))
    wrong = [k for k in state if k in target and state[k].shape != target[k].shape]
    if extra or absent or wrong:
        first = (wrong or extra or absent)[0]
        raise PretrainedWeightsError(
            f"{path} (converted, timm {meta['architecture']}) does not fit this timm {backbone}: first mismatch {first} "
            f"{_shape(state[first]) if first in state else None} vs {_shape(target[first]) if first in target else None}; "
            "re-convert it with this timm version"
        )
    model.load_state_dict(state, strict=True)
    set_normalisation(model, mean=tuple(meta["mean"]), std=tuple(meta["std"]))
    return FaceWeightsReport(
        path=str(path),
        weights_format=weights.weights_format,
        architecture=backbone,
        mapped=sum(not k.endswith("num_batches_tracked") for k in state),
        notes=(f"converted by scripts/convert_backbone.py from {meta.get('source_file', '?')}",),
    )


def load_weights_file(model: nn.Module, path: Path | str, *, backbone: str, weights_format: str) -> FaceWeightsReport:
    """Load a timm state dict, a published face-weights file, or a converted .safetensors into `model`
    (timm, no head), after `check_weights_file`.

    A face format or a converted file also sets the model's pretrained_cfg mean/std to the normalisation
    those weights expect (a plain timm file keeps the model's own) and logs the report;
    `report.weights_used` is the run's human-readable weights source.
    """
    weights = check_weights_file(path, backbone=backbone, weights_format=weights_format)
    if weights.converted is not None:
        report = _load_converted(model, weights, backbone=backbone)
    elif weights.weights_format == TIMM:
        load_backbone_weights(model, read_state_dict(weights.path), source=str(weights.path))
        return FaceWeightsReport(
            path=str(weights.path),
            weights_format=TIMM,
            architecture=backbone,
            mapped=sum(not k.endswith("num_batches_tracked") for k in model.state_dict()),
        )
    else:
        fmt = FORMATS[weights.weights_format]
        raw = _read_raw(weights.path, fmt)
        state, report = map_face_state_dict(raw, weights_format=fmt.name, target=model.state_dict(), path=weights.path)
        model.load_state_dict(state, strict=True)
        set_normalisation(model, mean=fmt.mean, std=fmt.std)
    log.info("face-pretrained backbone: %s", report.summary())
    return report


def missing_weights_error(weights_format: str) -> PretrainedWeightsError:
    """The error for a face preset with no file: names the key, the env var and where to get the file."""
    fmt = _fmt(weights_format)
    return PretrainedWeightsError(
        f"classifier={fmt.preset} (classifier.weights_format={fmt.name}) needs the {fmt.typical_file} weights file and none "
        f"was given: classifier.pretrained_path is unset and ${fmt.env_var} is not set. {fmt.where}; then export "
        f"{fmt.env_var}=/path/{fmt.typical_file} or pass classifier.pretrained_path=/path/{fmt.typical_file} "
        f"(or classifier.pretrained=hub to fall back to timm's ImageNet {fmt.architecture} where the hub has one)"
    )


def detect_weights_format(path: Path | str) -> str:
    """Guess a file's published format from its type and key layout (for `--format auto`)."""
    path = Path(path)
    if read_converted_meta(path) is not None:
        raise PretrainedWeightsError(
            f"{path} is already a converted file (scripts/convert_backbone.py output); load it directly"
        )
    if path.suffix.lower() in PICKLE_SUFFIXES:
        keys = set(read_weight_pickle(path))
        return "vggface2_senet50" if any(".conv4." in k for k in keys) else "vggface2_resnet50"
    keys = set(strip_data_parallel(read_state_dict(path)))
    # torchvision resnet18: BasicBlocks (no conv3), two per stage.
    if "layer4.1.conv2.weight" in keys and "layer1.0.conv3.weight" not in keys and "layer1.2.conv1.weight" not in keys:
        return "msceleb_resnet18"
    raise PretrainedWeightsError(
        f"cannot tell the format of {path} from its keys (first: {sorted(keys)[:3]}); pass --format "
        f"{'|'.join(WEIGHTS_FORMATS)} (timm also needs --backbone NAME)"
    )
