"""Export a classifier checkpoint to ONNX (or a torch.export .pt2 program) for deployment without this code, and prove it:
the exported model's outputs must match torch's on a batch within a stated tolerance, or the export fails
and leaves no file.

The exported graph takes the *preprocessed* batch, float32 [N, 3, S, S] (N free): RGB scaled to [0, 1],
resized to S = input_size (bilinear, antialiased), then (x - mean) / std per channel. The preprocessing
and the class names travel in the model's metadata (ONNX metadata_props / the .pt2 archive's extra files).
Outputs: `logits` (post-hoc logit adjustment included, as in classifier/predict.py) and `probabilities`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from faces.io import atomic_path

from .model import preprocess

ONNX_OPSET = 18
# |exported - torch| <= ATOL + RTOL * |torch| for every logit and probability of the check batches (fp32).
ATOL, RTOL = 1e-4, 1e-4
CHECK_BATCHES = (4, 1)  # the second size proves the batch dimension is dynamic
META_KEY = "fer_classifier"
FORMATS = {"onnx": ".onnx", "pt2": ".pt2"}


class ExportError(RuntimeError):
    """The export cannot be written or does not reproduce torch's outputs."""


@dataclass(frozen=True)
class ExportReport:
    path: Path
    format: str
    opset: int | None
    max_abs_diff: float
    batch_sizes: tuple[int, ...]

    def describe(self) -> str:
        opset = f", opset {self.opset}" if self.opset else ""
        return (
            f"wrote {self.path} ({self.format}{opset}, dynamic batch); verified against torch on batches of "
            f"{list(self.batch_sizes)}: max |difference| {self.max_abs_diff:.2e} (tolerance {ATOL:g} + {RTOL:g} * |value|)"
        )


class Exportable(nn.Module):
    """The classifier as deployed: preprocessed batch in, (logits, probabilities) out."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(images)
        return logits, logits.softmax(dim=1)


def deployment_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """What a deployment needs to feed the model and read its output, plus where it came from."""
    keep = (
        "class_names",
        "image_size",
        "input_size",
        "mean",
        "std",
        "backbone",
        "dataset",
        "checkpoint",
        "balance",
        "seed",
    )
    return {
        **{k: meta[k] for k in keep if k in meta},
        "input": "float32 [N, 3, input_size, input_size]: RGB / 255, resized to input_size (bilinear, antialiased), "
        "then (x - mean) / std per channel",
        "outputs": ["logits", "probabilities"],
        "tta": "none in the graph; horizontal-flip TTA = mean of the probabilities of the image and its mirror",
    }


def check_output_path(path: Path | str, *, fmt: str) -> Path:
    path = Path(path)
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of {list(FORMATS)}")
    if not path.parent.is_dir():
        raise ExportError(f"cannot write {path}: its folder {path.parent} does not exist (create it first)")
    if path.suffix != FORMATS[fmt]:
        raise ExportError(f"{path}: the {fmt} format writes a {FORMATS[fmt]} file")
    return path


def check_batches(meta: dict[str, Any], *, seed: int = 0) -> list[torch.Tensor]:
    """Preprocessed batches of random uint8 images (fixed seed), one per CHECK_BATCHES size."""
    generator = torch.Generator().manual_seed(seed)
    size = int(meta["image_size"])
    return [
        preprocess(
            torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=generator),
            input_size=int(meta["input_size"]),
            mean=meta["mean"],
            std=meta["std"],
        )
        for n in CHECK_BATCHES
    ]


def compare(expected: list[np.ndarray], actual: list[np.ndarray], *, path: Path) -> float:
    worst = 0.0
    for want, got in zip(expected, actual):
        if want.shape != got.shape:
            raise ExportError(f"{path}: output shape {got.shape}, torch gives {want.shape}")
        diff = np.abs(want - got)
        worst = max(worst, float(diff.max()))
        if not np.all(diff <= ATOL + RTOL * np.abs(want)):
            raise ExportError(
                f"{path}: outputs differ from torch by up to {float(diff.max()):.3g} "
                f"(tolerance {ATOL:g} + {RTOL:g} * |value|); the file was not kept"
            )
    return worst


def export_classifier(model: nn.Module, meta: dict[str, Any], path: Path | str, *, fmt: str = "onnx") -> ExportReport:
    """Write `path` atomically, only once its outputs match torch's on CHECK_BATCHES."""
    path = check_output_path(path, fmt=fmt)
    wrapped = Exportable(model.float().cpu().eval()).eval()
    batches = check_batches(meta)
    with torch.no_grad():
        expected = [[t.numpy() for t in wrapped(x)] for x in batches]
    info = json.dumps(deployment_meta(meta))
    export = _export_onnx if fmt == "onnx" else _export_program
    with atomic_path(path) as tmp:
        work = tmp.with_suffix(FORMATS[fmt])  # the temp file atomic_path renames, with the suffix exporters expect
        try:
            actual = export(wrapped, batches, work, info=info, meta=meta)
            worst = compare([a for pair in expected for a in pair], actual, path=path)
            work.replace(tmp)
        finally:
            work.unlink(missing_ok=True)
    return ExportReport(
        path=path,
        format=fmt,
        opset=ONNX_OPSET if fmt == "onnx" else None,
        max_abs_diff=worst,
        batch_sizes=CHECK_BATCHES,
    )


def _export_onnx(
    wrapped: nn.Module, batches: list[torch.Tensor], tmp: Path, *, info: str, meta: dict[str, Any]
) -> list[np.ndarray]:
    import onnx
    import onnxruntime

    batch = torch.export.Dim("batch", min=1)
    program = torch.onnx.export(
        wrapped,
        (batches[0],),
        dynamo=True,
        opset_version=ONNX_OPSET,
        input_names=["images"],
        output_names=["logits", "probabilities"],
        dynamic_shapes={"images": {0: batch}},
        external_data=False,
        verbose=False,
    )
    program.save(str(tmp), external_data=False)
    graph = onnx.load(str(tmp))
    entries = {
        META_KEY: info,
        "class_names": json.dumps(meta["class_names"]),
        "input_size": str(meta["input_size"]),
        "mean": json.dumps(list(meta["mean"])),
        "std": json.dumps(list(meta["std"])),
    }
    del graph.metadata_props[:]
    for key, value in entries.items():
        graph.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(graph)
    onnx.save(graph, str(tmp))
    session = onnxruntime.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    return [out for x in batches for out in session.run(["logits", "probabilities"], {"images": x.numpy()})]


def _export_program(
    wrapped: nn.Module, batches: list[torch.Tensor], tmp: Path, *, info: str, meta: dict[str, Any]
) -> list[np.ndarray]:
    """torch.export's ExportedProgram (.pt2; TorchScript is deprecated in torch 2.14): loads with torch alone."""
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(wrapped, (batches[0],), dynamic_shapes={"images": {0: batch}})
    torch.export.save(program, str(tmp), extra_files={f"{META_KEY}.json": info})
    loaded = torch.export.load(str(tmp)).module()
    with torch.no_grad():
        return [t.numpy() for x in batches for t in loaded(x)]


def read_onnx_meta(path: Path | str) -> dict[str, Any]:
    """The deployment metadata export_classifier wrote into an ONNX file."""
    import onnx

    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    if META_KEY not in props:
        raise ExportError(f"{path} has no {META_KEY!r} metadata: not written by fer-export")
    return json.loads(props[META_KEY])
