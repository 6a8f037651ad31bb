"""Predict expressions on photos, folders (recursively) and videos with a trained classifier.

    python scripts/predict.py outputs/ablate/demo/runs/oversample/seed0 photos/ --tta --annotate annotated/
    python scripts/predict.py CKPT clip.mp4 --every 10 --out clip.csv          # every 10th frame
    python scripts/predict.py CKPT RAF-DB/Image/aligned --aligned               # crops that are already aligned

CKPT is a classifier run folder or its checkpoints/best.safetensors. Faces are found with OpenCV's
bundled Haar cascades (offline), levelled on the eyes and cropped like the training data
(classifier/predict_photos.py, faces/align.py). One CSV row per face: file, frame, box, class and every
class's probability; an image without a face or an unreadable file gets a row saying so. The CSV is
written atomically when all inputs are done. A progress bar over the files shows on a terminal; --quiet
prints errors only.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    import torch

    from classifier.checkpoint import load_classifier
    from classifier.predict_photos import (
        STATUS_NO_FACE,
        STATUS_OK,
        PhotoPredictor,
        PredictInputError,
        check_checkpoint_argument,
        list_sources,
        predict_sources,
        write_predictions,
    )
    from faces.align import DetectorUnavailableError
    from faces.errors import CheckpointError

    parser = argparse.ArgumentParser(prog="fer-predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="a classifier run folder or its checkpoints/best.safetensors")
    parser.add_argument("inputs", type=Path, nargs="+", help="images, folders (searched recursively) or videos")
    parser.add_argument(
        "--out", type=Path, default=Path("predictions.csv"), help="the CSV to write (default: %(default)s)"
    )
    parser.add_argument(
        "--tta", action="store_true", help="average the probabilities of each face and its mirror image"
    )
    parser.add_argument(
        "--annotate", type=Path, default=None, metavar="DIR", help="save copies with boxes and labels drawn"
    )
    parser.add_argument(
        "--aligned", action="store_true", help="inputs are aligned face crops (e.g. RAF-DB's): no detection"
    )
    parser.add_argument(
        "--every", type=int, default=1, metavar="N", help="videos: classify every N-th frame (default: 1)"
    )
    parser.add_argument(
        "--min-face", type=int, default=40, metavar="PX", help="smallest face side to detect (default: 40)"
    )
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no summary; errors only")
    args = parser.parse_args(argv)
    if args.every < 1:
        parser.error(f"--every must be >= 1, got {args.every}")
    logging.basicConfig(level=logging.ERROR if args.quiet else logging.INFO, format="%(message)s")
    device = (
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    try:
        check_checkpoint_argument(args.checkpoint)
        sources = list_sources(args.inputs)  # a missing input or an empty folder fails before the model loads
        model, meta = load_classifier(args.checkpoint, map_location=device)
        predictor = PhotoPredictor(
            model=model, meta=meta, aligned=args.aligned, tta=args.tta, device=device, min_face=args.min_face
        )
    except (PredictInputError, CheckpointError, DetectorUnavailableError) as error:
        print(f"fer-predict: error: {error}", file=sys.stderr)
        return 2
    rows = predict_sources(
        sources,
        predictor=predictor,
        every=args.every,
        annotate_dir=args.annotate,
        progress=False if args.quiet else None,
    )
    out = write_predictions(args.out, rows, columns=predictor.columns())
    if args.quiet:
        return 0
    status = Counter("unreadable" if r["status"].startswith("unreadable") else r["status"] for r in rows)
    print(
        f"{len(sources)} input file(s): {status[STATUS_OK]} face(s) classified, {status[STATUS_NO_FACE]} picture(s) "
        f"without a face, {status['unreadable']} unreadable file(s){' (flip TTA)' if args.tta else ''}"
    )
    print(f"predictions: {out}")
    if args.annotate is not None:
        print(f"annotated: {args.annotate}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
