"""Export a classifier to ONNX (or a torch.export program) that runs without this code, verified against torch.

    python scripts/export.py outputs/ablate/demo/runs/oversample/seed0 model.onnx
    python scripts/export.py CKPT model.pt2 --format pt2

CKPT is a classifier run folder or its checkpoints/best.safetensors. The ONNX file (opset 18, dynamic
batch) takes the preprocessed batch and returns logits and probabilities; size, mean, std and class
names are in its metadata. The export is kept only if onnxruntime (or the reloaded .pt2 program)
matches torch within 1e-4 + 1e-4 * |value| on two batches (classifier/export.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from classifier.checkpoint import load_classifier
    from classifier.export import (
        FORMATS,
        ExportError,
        check_output_path,
        export_classifier,
    )
    from faces.errors import CheckpointError

    parser = argparse.ArgumentParser(prog="fer-export", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="a classifier run folder or its checkpoints/best.safetensors")
    parser.add_argument("out", type=Path, help="the file to write: .onnx (default format) or .pt2 (--format pt2)")
    parser.add_argument("--format", dest="fmt", choices=list(FORMATS), default="onnx")
    args, unknown = parser.parse_known_args(argv)
    if "--tta" in unknown:
        parser.error(
            "--tta is a prediction option (fer-predict --tta): an exported model is one forward pass; for flip "
            "TTA average its probabilities on the image and on the mirrored image"
        )
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        check_output_path(args.out, fmt=args.fmt)  # before the model loads
        model, meta = load_classifier(args.checkpoint)
        report = export_classifier(model, meta, args.out, fmt=args.fmt)
    except (CheckpointError, ExportError) as error:
        print(f"fer-export: error: {error}", file=sys.stderr)
        return 2
    except ImportError as error:
        print(
            f"fer-export: error: {error.name or error} is not installed: pip install 'fer-longtail[deploy]' "
            "(onnx, onnxruntime, onnxscript)",
            file=sys.stderr,
        )
        return 2
    print(report.describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
