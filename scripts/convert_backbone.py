"""Re-export published face-pretrained weights as timm-named .safetensors.

    python scripts/convert_backbone.py resnet18_msceleb.pth  weights/resnet18_msceleb.safetensors
    python scripts/convert_backbone.py senet50_ft_weight.pkl weights/senet50_vggface2.safetensors --format vggface2_senet50
    python scripts/convert_backbone.py my_resnet50.pth weights/resnet50.safetensors --format timm --backbone resnet50

The output holds the backbone's timm state_dict (no identity head) and, in its header, the timm
architecture, the source format and the input normalisation; later runs load it with
classifier.pretrained_path=OUT (with its classifier=<preset>, or any weights_format), and never
unpickle anything again. Pickles are read with an array-only unpickler. The logic lives in
classifier/backbones.py (convert_face_weights) and the modules below it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from classifier.backbones import PretrainedWeightsError, convert_face_weights
    from classifier.face_weights import CONVERT_FORMATS, FORMATS

    parser = argparse.ArgumentParser(prog="scripts/convert_backbone.py", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "src",
        type=Path,
        help="the published file: resnet18_msceleb.pth, resnet50_ft_weight.pkl, senet50_ft_weight.pkl, ...",
    )
    parser.add_argument("dst", type=Path, help="the .safetensors to write (atomically)")
    parser.add_argument(
        "--format",
        dest="weights_format",
        choices=CONVERT_FORMATS,
        default="auto",
        help="the source format (default: auto, from the file type and key layout)",
    )
    parser.add_argument("--backbone", default=None, help="timm model name; needed for --format timm, implied otherwise")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        report = convert_face_weights(args.src, args.dst, weights_format=args.weights_format, backbone=args.backbone)
    except PretrainedWeightsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    preset = FORMATS[report.weights_format].preset if report.weights_format in FORMATS else None
    use = f"classifier={preset} " if preset else f"classifier.backbone={report.architecture} "
    print(f"wrote {args.dst} (timm {report.architecture}, from {report.weights_format}; mapping logged above)")
    print(f"use it with: {use}classifier.pretrained_path={args.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
