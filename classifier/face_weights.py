"""Face-pretrained backbones from the files FER papers distribute (issue 14).

Face-identity pretraining is the usual starting point of RAF-DB / AffectNet papers, and the weights
come in the formats their authors published, not as timm state dicts:

  msceleb_resnet18   `resnet18_msceleb.pth` of SCN / DAN / EAC: a torch checkpoint whose `state_dict`
                     holds torchvision `resnet18` names (sometimes `module.`-prefixed by DataParallel)
                     and an identity-classification `fc` head of some size.  -> timm `resnet18`
  vggface2_resnet50  `resnet50_ft_weight.pkl` / `resnet50_scratch_weight.pkl` of cydonia999/VGGFace2-pytorch:
                     a pickled dict name -> numpy array converted from the authors' Caffe model.
                                                                               -> `resnet50_caffe` (below)
  vggface2_senet50   `senet50_ft_weight.pkl` / `senet50_scratch_weight.pkl`, same format, SE-ResNet-50.
                                                                               -> timm `legacy_seresnet50`

Each loader maps the file onto the timm model, refuses anything that does not fit (naming the first
offending key and both shapes), drops only the identity head, and returns a `FaceWeightsReport`
that is logged. `convert_face_weights` (scripts/convert_backbone.py) re-exports any of them as a
timm-named .safetensors with the architecture, source format and input normalisation in its
header, so later runs load that file without unpickling anything.

Normalisation is carried by the backbone's `pretrained_cfg["mean"/"std"]`, which classifier/train.py
already reads: MS-Celeb ResNet-18 uses ImageNet mean/std on RGB; the VGGFace2 Caffe models take BGR
0..255 minus a per-channel mean, which `_caffe_bgr_to_rgb` turns into an RGB mean/std (see there).
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import pickle
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
from timm.models import register_model
from torch import nn

from faces.io import save_safetensors

from .backbones import PretrainedWeightsError, read_state_dict, resolve_pretrained

log = logging.getLogger(__name__)

__all__ = [
    "CONVERTED_META_KEY", "CONVERT_FORMATS", "FORMATS", "WEIGHTS_FORMATS", "FaceWeightsFormat", "FaceWeightsReport",
    "check_pretrained_source", "convert_face_weights", "detect_weights_format", "load_face_weights",
    "map_face_state_dict", "missing_weights_error", "read_converted_meta", "read_weight_pickle", "resnet50_caffe",
    "set_normalisation",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Per-channel mean of the VGGFace2 Caffe models, in their BGR order (resnet50_ft.prototxt; the same
# numbers are `VGG_Faces2.mean_bgr` in cydonia999/VGGFace2-pytorch). No std: inputs are raw 0..255.
VGGFACE2_MEAN_BGR = (91.4953, 103.8827, 131.0912)
# The same numbers for an RGB image in [0, 1], the scale classifier.model.preprocess works at.
VGGFACE2_MEAN = tuple(value / 255.0 for value in reversed(VGGFACE2_MEAN_BGR))
VGGFACE2_STD = (1.0 / 255.0,) * 3

# The header key of a file written by convert_face_weights (JSON: architecture, format, mean, std...).
CONVERTED_META_KEY = "fer_backbone_weights"
CONVERTED_VERSION = 1
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
            return new + key[len(old):]
    return key.replace(".conv4.", ".se_module.fc1.").replace(".conv5.", ".se_module.fc2.")


_VGGFACE2_WHERE = (
    "download it from the 'Pretrained models' table of the cydonia999/VGGFace2-pytorch README "
    "(https://github.com/cydonia999/VGGFace2-pytorch)"
)
FORMATS: dict[str, FaceWeightsFormat] = {
    fmt.name: fmt
    for fmt in (
        FaceWeightsFormat(
            name="msceleb_resnet18", architecture="resnet18", preset="resnet18_msceleb",
            env_var="FER_MSCELEB_RESNET18", typical_file="resnet18_msceleb.pth",
            where=("download it via the link in the README of SCN (github.com/kaiwang960112/Self-Cure-Network), "
                   "DAN (github.com/yaoing/DAN) or EAC (github.com/zyh-uaiaaaa/Erasing-Attention-Consistency)"),
            mean=IMAGENET_MEAN, std=IMAGENET_STD,  # SCN / DAN fine-tune it with ImageNet normalisation on RGB
        ),
        FaceWeightsFormat(
            name="vggface2_resnet50", architecture="resnet50_caffe", preset="resnet50_vggface2",
            env_var="FER_VGGFACE2_RESNET50", typical_file="resnet50_ft_weight.pkl", where=_VGGFACE2_WHERE,
            mean=VGGFACE2_MEAN, std=VGGFACE2_STD, caffe_bgr=True,
        ),
        FaceWeightsFormat(
            name="vggface2_senet50", architecture="legacy_seresnet50", preset="senet50_vggface2",
            env_var="FER_VGGFACE2_SENET50", typical_file="senet50_ft_weight.pkl", where=_VGGFACE2_WHERE,
            mean=VGGFACE2_MEAN, std=VGGFACE2_STD, caffe_bgr=True, rename=_senet_key,
        ),
    )
}
WEIGHTS_FORMATS = (TIMM, *FORMATS)
CONVERT_FORMATS = ("auto", *WEIGHTS_FORMATS)


def _choices() -> str:
    return (f"classifier.weights_format is one of {list(WEIGHTS_FORMATS)} "
            f"(presets: {', '.join('classifier=' + f.preset for f in FORMATS.values())})")


def _fmt(weights_format: str) -> FaceWeightsFormat:
    if weights_format not in FORMATS:
        raise PretrainedWeightsError(f"classifier.weights_format={weights_format!r} is not a face-weights format; {_choices()}")
    return FORMATS[weights_format]


# --------------------------------------------------------------------------------------------------
# The Caffe-layout ResNet-50 of the VGGFace2 release, as a named timm model.


@register_model
def resnet50_caffe(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """timm `resnet50` rebuilt to compute what the VGGFace2 Caffe ResNet-50 computes.

    Two differences from timm's (torchvision-style, "ResNet v1.5") resnet50, both from the original
    Caffe prototxt and kept by cydonia999's port:
      * the stride-2 of the first bottleneck of layer2..4 sits on its 1x1 `conv1`, not on the 3x3
        `conv2` (same parameters, different function: the 3x3 sees every other pixel's 1x1 output);
      * the stem max-pool is 3x3/2 with no padding and ceil mode, not padding 1 (same output size at
        224px, but every window shifted by one pixel).
    Identical parameter names and shapes, so the weights map one to one. It is registered under its own
    name rather than patched onto `resnet50` after creation on purpose: a classifier checkpoint records
    the backbone name and is rebuilt with `timm.create_model(name)` (classifier/checkpoint.py), so a
    patched `resnet50` would silently be rebuilt unpatched at evaluation time. Importing this module
    registers the name; timm's legacy_seresnet50 needs nothing like it (Cadene's SENet follows Caffe).
    """
    if pretrained:
        raise PretrainedWeightsError(
            "resnet50_caffe has no timm hub weights; load the VGGFace2 file with classifier=resnet50_vggface2 "
            f"(classifier.pretrained_path=resnet50_ft_weight.pkl or {FORMATS['vggface2_resnet50'].env_var})"
        )
    for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
        kwargs.pop(key, None)
    model = timm.create_model("resnet50", pretrained=False, **kwargs)
    for layer in (model.layer2, model.layer3, model.layer4):
        block = layer[0]
        block.conv1.stride, block.conv2.stride = block.conv2.stride, (1, 1)
    model.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=0, ceil_mode=True)
    cfg = {**model.pretrained_cfg, "architecture": "resnet50_caffe", "tag": None, "hf_hub_id": None, "url": "",
           "mean": VGGFACE2_MEAN, "std": VGGFACE2_STD}
    model.pretrained_cfg = model.default_cfg = cfg
    return model


# --------------------------------------------------------------------------------------------------
# Reading the published files.


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """What protocol-2 pickles written by Python 3 call to rebuild `bytes` (array buffers); any other
    codec is refused because codec names are looked up (and imported) by name."""
    if str(encoding).lower().replace("-", "").replace("_", "") not in ("latin1", "iso88591"):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r} (only latin1 is allowed)")
    return text.encode("latin1")


def _numpy_attr(module: str, name: str) -> Any:
    # numpy 2 moved numpy.core to numpy._core (the old name still imports, with a warning): pickles
    # written by either refer to their own spelling, so both map to the one that exists here.
    for prefix in ("numpy._core", "numpy.core"):
        try:
            return getattr(importlib.import_module(f"{prefix}.{module}"), name)
        except (ImportError, AttributeError):
            continue
    raise pickle.UnpicklingError(f"numpy has no {module}.{name}")


# Everything a pickled dict of numpy arrays needs, and nothing that can run code: array and dtype
# reconstruction (protocol 2 via _reconstruct + __setstate__, protocol 5 via _frombuffer), numpy
# scalars, and plain containers. The callables below only build arrays from the given bytes.
_ALLOWED_GLOBALS: dict[tuple[str, str], Callable[[], Any]] = {
    **{(f"{p}.multiarray", "_reconstruct"): (lambda: _numpy_attr("multiarray", "_reconstruct")) for p in ("numpy.core", "numpy._core")},
    **{(f"{p}.multiarray", "scalar"): (lambda: _numpy_attr("multiarray", "scalar")) for p in ("numpy.core", "numpy._core")},
    **{(f"{p}.numeric", "_frombuffer"): (lambda: _numpy_attr("numeric", "_frombuffer")) for p in ("numpy.core", "numpy._core")},
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("collections", "OrderedDict"): lambda: OrderedDict,
    ("_codecs", "encode"): lambda: _latin1_encode,
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickles name -> numpy array dicts and refuses every other global.

    Plain `pickle.load` on a downloaded file runs whatever its `__reduce__` names (os.system,
    builtins.exec...); here such a global is refused before it is even looked up, so nothing runs.
    """

    def __init__(self, file: Any, *, path: Path) -> None:
        # latin1: the VGGFace2 pickles were written by Python 2, whose array buffers arrive as str.
        super().__init__(file, encoding="latin1")
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        factory = _ALLOWED_GLOBALS.get((module, name))
        if factory is None:
            raise PretrainedWeightsError(
                f"refusing to unpickle {self._path}: it references the global {module}.{name}, and weight pickles may only "
                "hold numpy arrays in dicts (allowed: numpy array/dtype reconstruction, OrderedDict). The file is not a "
                "VGGFace2 weight pickle, or it was tampered with; nothing from it was executed"
            )
        return factory()

    def persistent_load(self, pid: Any) -> Any:
        raise PretrainedWeightsError(f"refusing to unpickle {self._path}: it uses persistent ids, which weight pickles never do")


def read_weight_pickle(path: Path | str) -> dict[str, np.ndarray]:
    """A VGGFace2-pytorch weight pickle (dict name -> numeric numpy array), read without running code."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            data = _ArrayOnlyUnpickler(handle, path=path).load()
    except PretrainedWeightsError:
        raise
    except Exception as error:  # truncated file, not a pickle, unknown opcode, numpy refusing the buffer
        raise PretrainedWeightsError(f"cannot read {path} as a pickled dict of numpy arrays: {type(error).__name__}: {error}") from error
    if not isinstance(data, Mapping):
        raise PretrainedWeightsError(f"{path} holds a {type(data).__name__}, not a dict name -> numpy array")
    for key, value in data.items():
        if not isinstance(key, str) or not isinstance(value, np.ndarray) or value.dtype.kind not in "fiub":
            raise PretrainedWeightsError(
                f"{path}: entry {key!r} is a {type(value).__name__}"
                f"{' of dtype ' + str(value.dtype) if isinstance(value, np.ndarray) else ''}, not a numeric numpy array"
            )
    return dict(data)


def _read_raw(path: Path, fmt: FaceWeightsFormat) -> dict[str, torch.Tensor]:
    """The file's tensors under its own names; pickles only through the array-only unpickler."""
    if path.suffix.lower() in (".pkl", ".pickle"):
        return {k: torch.from_numpy(np.array(v, dtype=np.float32 if v.dtype.kind == "f" else v.dtype)) for k, v in read_weight_pickle(path).items()}
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
    """What a face-weights file contributed to a timm backbone (logged by `load_face_weights`)."""

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
        """Human-readable provenance, e.g. `msceleb_resnet18:/data/resnet18_msceleb.pth`."""
        return f"{'file' if self.weights_format == TIMM else self.weights_format}:{self.path}"

    def summary(self) -> str:
        parts = [f"{self.weights_used} -> timm {self.architecture}: {self.mapped} tensors mapped"]
        if self.dropped:
            parts.append(f"dropped {len(self.dropped)} ({', '.join(self.dropped[:4])}{', ...' if len(self.dropped) > 4 else ''})")
        if self.missing:  # only BatchNorm step counters can be (map_face_state_dict refuses anything else)
            parts.append(f"{len(self.missing)} BatchNorm step counters not in the file (kept at their initial value; no effect on outputs)")
        return "; ".join(parts + list(self.notes))


def _shape(tensor: torch.Tensor) -> tuple[int, ...]:
    return tuple(tensor.shape)


def _strip_data_parallel(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # nn.DataParallel saves every key as `module.<name>`; SCN-era checkpoints often carry it.
    if state and all(key.startswith("module.") for key in state):
        return {key[len("module."):]: value for key, value in state.items()}
    return dict(state)


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
    for key, value in _strip_data_parallel(state).items():
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
        path=str(path), weights_format=fmt.name, architecture=fmt.architecture,
        mapped=sum(not k.endswith("num_batches_tracked") for k in mapped),
        dropped=tuple(dropped), missing=tuple(counters), notes=tuple(notes),
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
    cfg = {**(getattr(model, "pretrained_cfg", None) or {}), "mean": tuple(float(m) for m in mean), "std": tuple(float(s) for s in std)}
    model.pretrained_cfg = cfg
    model.default_cfg = cfg


# --------------------------------------------------------------------------------------------------
# Converted files (.safetensors with a header saying what they are).


def read_converted_meta(path: Path | str) -> dict[str, Any] | None:
    """The header written by `convert_face_weights`, or None for any other file (no tensor is read)."""
    path = Path(path)
    if path.suffix.lower() != ".safetensors" or not path.is_file():
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
    except Exception as error:  # not safetensors at all, truncated header
        raise PretrainedWeightsError(f"{path} is not a readable safetensors file: {type(error).__name__}: {error}") from error
    if CONVERTED_META_KEY not in header:
        return None
    try:
        meta = json.loads(header[CONVERTED_META_KEY])
    except json.JSONDecodeError as error:
        raise PretrainedWeightsError(f"{path}: its {CONVERTED_META_KEY!r} header is not JSON ({error}); re-run scripts/convert_backbone.py") from error
    missing = [k for k in ("architecture", "weights_format", "mean", "std") if k not in meta]
    if missing:
        raise PretrainedWeightsError(f"{path}: its {CONVERTED_META_KEY!r} header lacks {missing}; re-run scripts/convert_backbone.py")
    return meta


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


# --------------------------------------------------------------------------------------------------
# Entry points: load into a model (create_backbone), convert, check a config early.


def _require_file(path: Path, *, weights_format: str) -> Path:
    if path.is_file():
        return path
    fmt = FORMATS.get(weights_format)
    if fmt is None:
        raise PretrainedWeightsError(f"pretrained weights file {path} does not exist (classifier.pretrained_path)")
    via = f" (taken from ${fmt.env_var})" if os.environ.get(fmt.env_var) and Path(os.environ[fmt.env_var]).expanduser() == path else ""
    raise PretrainedWeightsError(
        f"classifier.pretrained_path={path}{via} does not exist; classifier.weights_format={fmt.name} needs {fmt.typical_file}: "
        f"{fmt.where}, then set classifier.pretrained_path=/path/{fmt.typical_file} or export {fmt.env_var}=/path/{fmt.typical_file}"
    )


def load_face_weights(model: nn.Module, path: Path | str, *, backbone: str, weights_format: str) -> FaceWeightsReport:
    """Load a published face-weights file, or a converted .safetensors, into `model` (timm, no head).

    Sets the model's pretrained_cfg mean/std to the normalisation those weights expect, logs the
    report, and returns it; `report.weights_used` is the run's human-readable weights source.
    """
    path = _require_file(Path(path).expanduser(), weights_format=weights_format)
    target = model.state_dict()
    meta = read_converted_meta(path)
    if meta is not None:
        _check_converted(meta, path=path, backbone=backbone, weights_format=weights_format)
        from safetensors.torch import load_file

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
        report = FaceWeightsReport(
            path=str(path), weights_format=str(meta["weights_format"]), architecture=backbone,
            mapped=sum(not k.endswith("num_batches_tracked") for k in state),
            notes=(f"converted by scripts/convert_backbone.py from {meta.get('source_file', '?')}",),
        )
    else:
        fmt = _fmt(weights_format)
        if backbone != fmt.architecture:
            raise PretrainedWeightsError(
                f"classifier.weights_format={fmt.name} maps onto timm {fmt.architecture}, but classifier.backbone={backbone}; "
                f"use classifier={fmt.preset} (backbone: {fmt.architecture})"
            )
        state, report = map_face_state_dict(_read_raw(path, fmt), weights_format=fmt.name, target=target, path=path)
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


def check_pretrained_source(classifier: Mapping[str, Any]) -> str:
    """Validate `cfg.classifier`'s weight source without building anything; return what will be used.

    Cheap (reads at most a safetensors header), so it runs at config-validation time, before any data
    is decoded: an unknown weights_format, a face preset with neither classifier.pretrained_path nor
    its environment variable, a missing file, or a file for another architecture fail here with the
    same messages create_backbone would give. The returned string is the human-readable weights
    source, e.g. `msceleb_resnet18:/data/resnet18_msceleb.pth`, `timm-hub:resnet18`, `none`.
    """
    backbone = str(classifier.get("backbone"))
    weights_format = str(classifier.get("weights_format") or TIMM)
    raw_path = classifier.get("pretrained_path")
    source = resolve_pretrained(str(classifier.get("pretrained", "package")), raw_path, weights_format=weights_format)
    if source != "file":
        return {"hub": f"timm-hub:{backbone}", "package": f"package:{backbone}"}.get(source, source)
    path = _require_file(Path(str(raw_path)).expanduser(), weights_format=weights_format)
    meta = read_converted_meta(path)
    if meta is not None:
        _check_converted(meta, path=path, backbone=backbone, weights_format=weights_format)
        used = str(meta["weights_format"])
    elif weights_format == TIMM:
        if path.suffix.lower() in (".pkl", ".pickle"):
            raise PretrainedWeightsError(
                f"classifier.pretrained_path={path} is a pickle; timm state dicts are .pth/.safetensors. For a VGGFace2 "
                "weight pickle use classifier=resnet50_vggface2 or classifier=senet50_vggface2"
            )
        used = TIMM
    else:
        fmt = _fmt(weights_format)
        if backbone != fmt.architecture:
            raise PretrainedWeightsError(
                f"classifier.weights_format={fmt.name} maps onto timm {fmt.architecture}, but classifier.backbone={backbone}; "
                f"use classifier={fmt.preset}"
            )
        used = fmt.name
    return f"{'file' if used == TIMM else used}:{path}"


def detect_weights_format(path: Path | str) -> str:
    """Guess a file's published format from its type and key layout (for `--format auto`)."""
    path = Path(path)
    if read_converted_meta(path) is not None:
        raise PretrainedWeightsError(f"{path} is already a converted file (scripts/convert_backbone.py output); load it directly")
    if path.suffix.lower() in (".pkl", ".pickle"):
        keys = set(read_weight_pickle(path))
        return "vggface2_senet50" if any(".conv4." in k for k in keys) else "vggface2_resnet50"
    keys = set(_strip_data_parallel(read_state_dict(path)))
    # torchvision resnet18: BasicBlocks (no conv3), two per stage.
    if "layer4.1.conv2.weight" in keys and "layer1.0.conv3.weight" not in keys and "layer1.2.conv1.weight" not in keys:
        return "msceleb_resnet18"
    raise PretrainedWeightsError(
        f"cannot tell the format of {path} from its keys (first: {sorted(keys)[:3]}); pass --format "
        f"{'|'.join(WEIGHTS_FORMATS)} (timm also needs --backbone NAME)"
    )


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
    if weights_format == TIMM:
        if not backbone:
            raise PretrainedWeightsError("--format timm needs --backbone NAME (the timm model the state_dict belongs to)")
        from .backbones import create_backbone

        model, _ = create_backbone(backbone, pretrained="none", pretrained_path=str(src))
        report = FaceWeightsReport(path=str(src), weights_format=TIMM, architecture=backbone,
                                   mapped=sum(not k.endswith("num_batches_tracked") for k in model.state_dict()))
    else:
        fmt = _fmt(weights_format)
        if backbone not in (None, "", fmt.architecture):
            raise PretrainedWeightsError(f"--format {fmt.name} maps onto timm {fmt.architecture}, not --backbone {backbone}")
        backbone = fmt.architecture
        model = timm.create_model(backbone, pretrained=False, num_classes=0)
        report = load_face_weights(model, src, backbone=backbone, weights_format=fmt.name)
    cfg = model.pretrained_cfg
    meta = {
        "version": CONVERTED_VERSION, "architecture": backbone, "weights_format": report.weights_format,
        "source_file": src.name, "mean": list(cfg["mean"]), "std": list(cfg["std"]), "input": "RGB",
        "mapped": report.mapped, "dropped": list(report.dropped), "notes": list(report.notes),
    }
    save_safetensors(dst, model.state_dict(), metadata={CONVERTED_META_KEY: meta})
    return report
