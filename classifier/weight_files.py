"""Reading weight files without running code from them, and fitting a state dict onto a backbone.

The lowest module of the weights path (it imports faces only): a torch state dict reader
(`torch.load(weights_only=True)` or safetensors), an array-only unpickler for the numpy weight pickles
some papers distribute, the header of the self-describing .safetensors that scripts/convert_backbone.py
writes, and the loader that fits a timm-named state dict onto a model minus its classifier head. What
the files *mean* (which published format, which timm architecture) is classifier/face_weights.py's job.
"""

from __future__ import annotations

import importlib
import json
import pickle
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from faces.features import PretrainedWeightsError
from faces.io import save_safetensors

__all__ = [
    "CONVERTED_META_KEY",
    "CONVERTED_VERSION",
    "PICKLE_SUFFIXES",
    "load_backbone_weights",
    "read_converted_meta",
    "read_state_dict",
    "read_weight_pickle",
    "strip_data_parallel",
    "write_converted",
]

# The header key of a converted file (JSON: architecture, format, mean, std...).
CONVERTED_META_KEY = "fer_backbone_weights"
CONVERTED_VERSION = 1
PICKLE_SUFFIXES = (".pkl", ".pickle")


# --------------------------------------------------------------------------------------------------
# torch state dicts


def read_state_dict(path: Path | str) -> dict[str, torch.Tensor]:
    """A state_dict from .safetensors or .pth/.pt/.bin (always `weights_only=True`)."""
    path = Path(path)
    if not path.is_file():
        raise PretrainedWeightsError(f"pretrained weights file {path} does not exist (classifier.pretrained_path)")
    if path.suffix.lower() in PICKLE_SUFFIXES:  # never torch.load/pickle.load a downloaded pickle
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


def strip_data_parallel(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # nn.DataParallel saves every key as `module.<name>`; SCN-era checkpoints often carry it.
    if state and all(key.startswith("module.") for key in state):
        return {key[len("module.") :]: value for key, value in state.items()}
    return dict(state)


def _strip_prefix(state: dict[str, torch.Tensor], target_keys: set[str]) -> dict[str, torch.Tensor]:
    """Lightning / wrapper checkpoints prefix keys (`model.`, `backbone.`, `module.`): drop what makes them match."""
    for prefix in ("", "module.", "model.", "backbone.", "model.backbone.", "net."):
        stripped = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
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


# --------------------------------------------------------------------------------------------------
# Numpy weight pickles (VGGFace2-pytorch), read without running code


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
    **{
        (f"{p}.multiarray", "_reconstruct"): (lambda: _numpy_attr("multiarray", "_reconstruct"))
        for p in ("numpy.core", "numpy._core")
    },
    **{
        (f"{p}.multiarray", "scalar"): (lambda: _numpy_attr("multiarray", "scalar"))
        for p in ("numpy.core", "numpy._core")
    },
    **{
        (f"{p}.numeric", "_frombuffer"): (lambda: _numpy_attr("numeric", "_frombuffer"))
        for p in ("numpy.core", "numpy._core")
    },
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
        raise PretrainedWeightsError(
            f"refusing to unpickle {self._path}: it uses persistent ids, which weight pickles never do"
        )


def read_weight_pickle(path: Path | str) -> dict[str, np.ndarray]:
    """A VGGFace2-pytorch weight pickle (dict name -> numeric numpy array), read without running code."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            data = _ArrayOnlyUnpickler(handle, path=path).load()
    except PretrainedWeightsError:
        raise
    except Exception as error:  # truncated file, not a pickle, unknown opcode, numpy refusing the buffer
        raise PretrainedWeightsError(
            f"cannot read {path} as a pickled dict of numpy arrays: {type(error).__name__}: {error}"
        ) from error
    if not isinstance(data, Mapping):
        raise PretrainedWeightsError(f"{path} holds a {type(data).__name__}, not a dict name -> numpy array")
    for key, value in data.items():
        if not isinstance(key, str) or not isinstance(value, np.ndarray) or value.dtype.kind not in "fiub":
            raise PretrainedWeightsError(
                f"{path}: entry {key!r} is a {type(value).__name__}"
                f"{' of dtype ' + str(value.dtype) if isinstance(value, np.ndarray) else ''}, not a numeric numpy array"
            )
    return dict(data)


# --------------------------------------------------------------------------------------------------
# Converted files: .safetensors with a header saying what they hold


def read_converted_meta(path: Path | str) -> dict[str, Any] | None:
    """The header written by `write_converted`, or None for any other file (no tensor is read)."""
    path = Path(path)
    if path.suffix.lower() != ".safetensors" or not path.is_file():
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
    except Exception as error:  # not safetensors at all, truncated header
        raise PretrainedWeightsError(
            f"{path} is not a readable safetensors file: {type(error).__name__}: {error}"
        ) from error
    if CONVERTED_META_KEY not in header:
        return None
    try:
        meta = json.loads(header[CONVERTED_META_KEY])
    except json.JSONDecodeError as error:
        raise PretrainedWeightsError(
            f"{path}: its {CONVERTED_META_KEY!r} header is not JSON ({error}); re-run scripts/convert_backbone.py"
        ) from error
    missing = [k for k in ("architecture", "weights_format", "mean", "std") if k not in meta]
    if missing:
        raise PretrainedWeightsError(
            f"{path}: its {CONVERTED_META_KEY!r} header lacks {missing}; re-run scripts/convert_backbone.py"
        )
    return meta


def write_converted(path: Path | str, state: Mapping[str, torch.Tensor], *, meta: Mapping[str, Any]) -> Path:
    """Write a backbone's timm state dict with `meta` (architecture, weights_format, mean, std...) as its
    header, atomically; `read_converted_meta` reads the header back."""
    return save_safetensors(path, dict(state), metadata={CONVERTED_META_KEY: {"version": CONVERTED_VERSION, **meta}})
